//! The filesystem a guest sees, built from its task's declarations (SANDBOX-001, 002).
//!
//! The guest sees the workspace at `/`, but only through a staged tree made for this
//! run in a scratch directory:
//!
//! * every declared input is hard-linked (or copied, where a link is impossible) at its
//!   workspace path into a tree that is opened read-only, together with the task's
//!   description at `/.wask/task.json`;
//! * every *output root* (the directory part of an output pattern before its first glob
//!   character, or the parent of a literal output) is a separate, empty, writable
//!   directory opened at its workspace path. An input that lies under an output root is
//!   copied there, never linked, so writing to it cannot reach the workspace.
//!
//! After a successful run, [`StagedView::collect`] walks the writable directories: files
//! that match an output pattern are outputs, anything else the guest created or changed
//! is a [`Violation`]. Symbolic links are never followed and never collected.

use crate::Digest;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// One declared input file, already resolved by the host.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Workspace-absolute path, as the guest will see it (`/docs/a.md`).
    pub guest_path: String,
    /// The regular file on the host holding its contents (symlinks already resolved).
    pub host_path: PathBuf,
}

/// A directory given to the guest.
#[derive(Debug, Clone)]
pub struct Mount {
    pub host_dir: PathBuf,
    pub guest_path: String,
    pub writable: bool,
}

/// What was declared, ready to stage.
pub struct ViewSpec<'a> {
    pub inputs: &'a [InputFile],
    /// Workspace-absolute output patterns (`/docs/dist/**/*.html`).
    pub outputs: &'a [String],
    /// Contents of `/.wask/task.json`.
    pub task_json: &'a [u8],
}

/// A file the guest produced that matches an output pattern.
#[derive(Debug, Clone)]
pub struct CollectedOutput {
    pub guest_path: String,
    /// Where it lies in the scratch directory, on the same filesystem as the workspace's
    /// `.wask` directory so it can be renamed into place.
    pub host_path: PathBuf,
    /// Unix permission bits.
    pub mode: u32,
}

/// Something the guest did that its declarations do not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("wrote {0}, which matches none of the task's `outputs` patterns")]
    UndeclaredWrite(String),
    #[error("changed or removed its declared input {0}")]
    ModifiedInput(String),
    #[error("created {0} as a symbolic link; outputs must be regular files")]
    SymlinkOutput(String),
    #[error("created {0}, which is not a regular file")]
    SpecialFile(String),
    #[error("did not produce its declared output {0}")]
    MissingOutput(String),
}

/// A staged view; the scratch directory is removed when this is dropped.
pub struct StagedView {
    scratch: tempfile::TempDir,
    mounts: Vec<Mount>,
    /// (output root, host directory) pairs.
    writable: Vec<(String, PathBuf)>,
    /// Inputs copied into writable directories, with the digest of their contents.
    copied_inputs: HashMap<String, Digest>,
    matcher: GlobSet,
    literal_outputs: Vec<String>,
}

/// Characters that make a path segment a glob (PATH-003).
pub fn is_glob_segment(segment: &str) -> bool {
    segment.contains(['*', '?', '[', '{', '\\'])
}

/// The directory under which every match of `pattern` lies (workspace-absolute).
pub fn output_root(pattern: &str) -> String {
    let segs: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let literal = segs.iter().take_while(|s| !is_glob_segment(s)).count();
    let keep = if literal == segs.len() {
        literal.saturating_sub(1)
    } else {
        literal
    };
    format!("/{}", segs[..keep].join("/"))
}

fn is_under(path: &str, root: &str) -> bool {
    root == "/"
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Builds a matcher with wask's glob rules (PATH-003).
pub fn glob_set(patterns: &[String]) -> Result<GlobSet, globset::Error> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(
            GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()?,
        );
    }
    b.build()
}

fn host_path_in(dir: &Path, root: &str, guest_path: &str) -> PathBuf {
    let rel = guest_path[root.len()..].trim_start_matches('/');
    dir.join(rel)
}

fn copy_hashing(from: &Path, to: &Path) -> std::io::Result<Digest> {
    std::fs::copy(from, to)?;
    hash_file(to)
}

fn hash_file(path: &Path) -> std::io::Result<Digest> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(*h.finalize().as_bytes())
}

impl StagedView {
    /// Stages the view in a new scratch directory under `scratch_parent`, which should
    /// be on the same filesystem as the workspace so inputs can be hard-linked.
    pub fn stage(spec: &ViewSpec<'_>, scratch_parent: &Path) -> anyhow::Result<StagedView> {
        std::fs::create_dir_all(scratch_parent)?;
        let scratch = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(scratch_parent)?;
        let matcher = glob_set(spec.outputs)?;

        let mut roots: Vec<String> = spec.outputs.iter().map(|p| output_root(p)).collect();
        roots.sort();
        roots.dedup();
        let outer: Vec<String> = roots
            .iter()
            .filter(|r| !roots.iter().any(|o| o != *r && is_under(r, o)))
            .cloned()
            .collect();

        let read_only = scratch.path().join("ro");
        std::fs::create_dir_all(read_only.join(".wask"))?;
        let mut mounts = Vec::new();
        let mut writable = Vec::new();
        for (i, root) in outer.iter().enumerate() {
            let dir = scratch.path().join(format!("rw{i}"));
            std::fs::create_dir_all(&dir)?;
            writable.push((root.clone(), dir));
        }

        let task_json_target = match writable.iter().find(|(r, _)| r == "/") {
            Some((_, dir)) => dir.join(".wask/task.json"),
            None => read_only.join(".wask/task.json"),
        };
        std::fs::create_dir_all(task_json_target.parent().unwrap())?;
        std::fs::write(&task_json_target, spec.task_json)?;

        let mut copied_inputs = HashMap::new();
        for input in spec.inputs {
            let meta = std::fs::symlink_metadata(&input.host_path)?;
            anyhow::ensure!(
                meta.is_file(),
                "input {} is not a regular file on the host ({}); this is a bug in wask",
                input.guest_path,
                input.host_path.display()
            );
            if let Some((root, dir)) = writable
                .iter()
                .find(|(r, _)| is_under(&input.guest_path, r))
            {
                let target = host_path_in(dir, root, &input.guest_path);
                std::fs::create_dir_all(target.parent().unwrap())?;
                let digest = copy_hashing(&input.host_path, &target)?;
                copied_inputs.insert(input.guest_path.clone(), digest);
            } else {
                let target = host_path_in(&read_only, "/", &input.guest_path);
                std::fs::create_dir_all(target.parent().unwrap())?;
                if std::fs::hard_link(&input.host_path, &target).is_err() {
                    std::fs::copy(&input.host_path, &target)?;
                }
            }
        }

        if !writable.iter().any(|(r, _)| r == "/") {
            mounts.push(Mount {
                host_dir: read_only,
                guest_path: "/".into(),
                writable: false,
            });
        }
        for (root, dir) in &writable {
            mounts.push(Mount {
                host_dir: dir.clone(),
                guest_path: root.clone(),
                writable: true,
            });
        }
        let literal_outputs = spec
            .outputs
            .iter()
            .filter(|p| !p.split('/').any(is_glob_segment))
            .cloned()
            .collect();
        Ok(StagedView {
            scratch,
            mounts,
            writable,
            copied_inputs,
            matcher,
            literal_outputs,
        })
    }

    /// The directories to give the guest, in order.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The scratch directory of this run.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Collects the outputs of a successful run, or every violation found.
    pub fn collect(&self) -> Result<Vec<CollectedOutput>, Vec<Violation>> {
        let mut outputs = Vec::new();
        let mut violations = Vec::new();
        let mut seen_inputs = 0;
        for (root, dir) in &self.writable {
            for entry in WalkDir::new(dir).follow_links(false).sort_by_file_name() {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        violations.push(Violation::SpecialFile(e.to_string()));
                        continue;
                    }
                };
                let rel = entry.path().strip_prefix(dir).unwrap();
                if rel.as_os_str().is_empty() {
                    continue;
                }
                let guest = crate::access::join_lexically(root, &rel.to_string_lossy());
                if root == "/" && guest == "/.wask/task.json" {
                    continue;
                }
                let ft = entry.file_type();
                if let Some(expected) = self.copied_inputs.get(&guest) {
                    seen_inputs += 1;
                    let same =
                        ft.is_file() && hash_file(entry.path()).ok().as_ref() == Some(expected);
                    if !same {
                        violations.push(Violation::ModifiedInput(guest));
                    }
                } else if ft.is_dir() {
                } else if ft.is_symlink() {
                    violations.push(Violation::SymlinkOutput(guest));
                } else if !ft.is_file() {
                    violations.push(Violation::SpecialFile(guest));
                } else if self.matcher.is_match(&guest) {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = entry
                        .metadata()
                        .map(|m| m.permissions().mode() & 0o777)
                        .unwrap_or(0o644);
                    outputs.push(CollectedOutput {
                        guest_path: guest,
                        host_path: entry.path().to_path_buf(),
                        mode,
                    });
                } else {
                    violations.push(Violation::UndeclaredWrite(guest));
                }
            }
        }
        if seen_inputs != self.copied_inputs.len() {
            let mut missing: Vec<&String> = self
                .copied_inputs
                .keys()
                .filter(|p| {
                    let (root, dir) = self.writable.iter().find(|(r, _)| is_under(p, r)).unwrap();
                    !host_path_in(dir, root, p).is_file()
                })
                .collect();
            missing.sort();
            violations.extend(
                missing
                    .into_iter()
                    .map(|p| Violation::ModifiedInput(p.clone())),
            );
        }
        for literal in &self.literal_outputs {
            if !outputs.iter().any(|o| &o.guest_path == literal) {
                violations.push(Violation::MissingOutput(literal.clone()));
            }
        }
        if violations.is_empty() {
            Ok(outputs)
        } else {
            Err(violations)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_roots_stop_before_the_first_glob() {
        assert_eq!(output_root("/docs/dist/**/*.html"), "/docs/dist");
        assert_eq!(output_root("/docs/out.txt"), "/docs");
        assert_eq!(output_root("/out.txt"), "/");
        assert_eq!(output_root("/a/b{1,2}/c"), "/a");
    }

    #[test]
    fn star_does_not_cross_directories() {
        let set = glob_set(&["/p/*.txt".into(), "/q/**/*.md".into()]).unwrap();
        assert!(set.is_match("/p/a.txt"));
        assert!(!set.is_match("/p/sub/a.txt"));
        assert!(set.is_match("/q/x/y/z.md"));
        assert!(set.is_match("/q/z.md"));
    }
}
