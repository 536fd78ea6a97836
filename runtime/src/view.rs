//! The filesystem a guest sees, built from its task's declarations (SANDBOX-001, 002).
//!
//! The guest sees the workspace at `/`, but only through a staged tree made for this
//! run in a scratch directory:
//!
//! * every declared input is copied at its workspace path into a tree that is opened
//!   read-only, together with the task's description at `/.wask/task.json`;
//! * every *output root* (the directory part of an output pattern before its first glob
//!   character, or the parent of a literal output) is a separate, empty, writable
//!   directory opened at its workspace path. An input that lies under an output root is
//!   copied there, never linked, so writing to it cannot reach the workspace.
//!
//! Inputs are staged as the bytes their key was derived from, or not at all: each
//! [`InputFile`] carries the digest it had when the host hashed it, and its copy is
//! hashed as it is made and must give that digest. The copy is the run's own: an edit
//! of the workspace file while the task runs (in place, with its time stamp put back)
//! cannot reach what the guest reads, and two inputs that are links of one file on the
//! host are two files in the view, as they are in the key. Hard links were cheaper,
//! but a link is the live file: what the guest read could differ from what was hashed
//! with nothing on the file to show it.
//!
//! After a successful run, [`StagedView::collect`] walks the writable directories: files
//! that match an output pattern are outputs, anything else the guest created or changed
//! is a [`Violation`]. Symbolic links are never followed and never collected. Every name
//! meets the one path rule ([`crate::paths`]), so nothing is collected that a restore
//! would refuse.

use crate::Limits;
use crate::paths::{
    check_workspace_path, glob_set, is_glob_segment, is_under, join_lexically, name_text,
    output_root, shown,
};
use globset::GlobSet;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// The mode of every output, fresh or restored. WASI preview 1 has no way to set
/// permissions, so a mode carries nothing from the task; a fixed one keeps a result
/// independent of the host's umask and gives a forged cache entry nothing to set.
pub const OUTPUT_MODE: u32 = 0o644;

/// What a file was when it was hashed: enough to tell, without reading it, that it is
/// still the same file with the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
}

impl FileIdentity {
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// One declared input file, already resolved and hashed by the host.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Workspace-absolute path, as the guest will see it (`/docs/a.md`).
    pub guest_path: String,
    /// The regular file on the host holding its contents (symlinks already resolved).
    pub host_path: PathBuf,
    /// Its content digest, with the hash function of [`ViewSpec::hash`].
    pub digest: [u8; 32],
}

/// A directory given to the guest.
#[derive(Debug, Clone)]
pub struct Mount {
    pub host_dir: PathBuf,
    pub guest_path: String,
    pub writable: bool,
}

/// Hashes a stream of bytes with the host's hash function (the key's).
pub type HashFn<'a> = &'a (dyn Fn(&mut dyn Read) -> std::io::Result<[u8; 32]> + Sync);

/// What was declared, ready to stage.
pub struct ViewSpec<'a> {
    pub inputs: &'a [InputFile],
    /// Workspace-absolute output patterns (`/docs/dist/**/*.html`).
    pub outputs: &'a [String],
    /// Contents of `/.wask/task.json`.
    pub task_json: &'a [u8],
    /// The hash function of [`InputFile::digest`].
    pub hash: HashFn<'a>,
}

/// A file the guest produced that matches an output pattern.
#[derive(Debug, Clone)]
pub struct CollectedOutput {
    pub guest_path: String,
    /// Where it lies in the scratch directory, on the same filesystem as the workspace's
    /// `.wask` directory so it can be renamed into place.
    pub host_path: PathBuf,
    pub size: u64,
}

/// Why a view could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// An input is not the file (or not the bytes) its key was derived from.
    #[error("input {0} changed after wask hashed it (it was being edited or replaced)")]
    InputChanged(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
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
    #[error("created a file named {path}, which wask cannot keep: {why}")]
    BadName { path: String, why: String },
    #[error("created {path}, which wask could not read: {why}")]
    Unreadable { path: String, why: String },
    #[error("produced {0} bytes of outputs, over its outputs size limit of {1} bytes")]
    OutputsSize(u64, u64),
    #[error("produced {0} files and directories, over its outputs count limit of {1}")]
    OutputsCount(u64, u64),
}

/// What collecting has found so far.
#[derive(Default)]
struct Found {
    outputs: Vec<CollectedOutput>,
    violations: Vec<Violation>,
    seen_inputs: usize,
    /// Bytes of the outputs, and entries of every kind.
    total: u64,
    entries: u64,
    /// Outputs with more than one name (the guest made hard links).
    linked: Vec<PathBuf>,
}

/// A staged view; the scratch directory is removed when this is dropped.
pub struct StagedView {
    scratch: crate::tree::ScratchDir,
    mounts: Vec<Mount>,
    /// (output root, host directory) pairs.
    writable: Vec<(String, PathBuf)>,
    /// Inputs copied into writable directories, with their digest.
    copied_inputs: HashMap<String, [u8; 32]>,
    matcher: GlobSet,
    literal_outputs: Vec<String>,
}

fn host_path_in(dir: &Path, root: &str, guest_path: &str) -> PathBuf {
    let rel = guest_path[root.len()..].trim_start_matches('/');
    dir.join(rel)
}

/// Copies `input` to `to` and checks the copy's digest against the key's: what the
/// guest sees is the bytes that were hashed, whatever happened to the file since.
fn copy_verified(input: &InputFile, to: &Path, hash: HashFn<'_>) -> Result<(), StageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let changed = || StageError::InputChanged(input.guest_path.clone());
    // No link is followed: the host resolved every link among the inputs already, so a
    // link at an input's path now was put there since.
    let mut src = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&input.host_path)
        .map_err(|_| changed())?;
    if !src.metadata()?.is_file() {
        return Err(changed());
    }
    let mut dst = std::fs::File::create(to)?;
    // Hash exactly the bytes written: a tee of the copy.
    struct Tee<'f>(&'f mut std::fs::File, &'f mut std::fs::File);
    impl Read for Tee<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.write_all(&buf[..n])?;
            Ok(n)
        }
    }
    if hash(&mut Tee(&mut src, &mut dst))? != input.digest {
        return Err(changed());
    }
    Ok(())
}

/// The output roots of `outputs`, nested ones collapsed into the outermost.
fn outer_roots(outputs: &[String]) -> Vec<String> {
    let mut roots: Vec<String> = outputs.iter().map(|p| output_root(p)).collect();
    roots.sort();
    roots.dedup();
    roots
        .iter()
        .filter(|r| !roots.iter().any(|o| o != *r && is_under(r, o)))
        .cloned()
        .collect()
}

/// Whether the file at `path` holds exactly the bytes of `digest`.
fn holds(path: &Path, digest: &[u8; 32], hash: HashFn<'_>) -> bool {
    std::fs::File::open(path)
        .and_then(|mut f| hash(&mut f))
        .is_ok_and(|d| &d == digest)
}

impl StagedView {
    /// Stages the view in a new scratch directory under `scratch_parent`, which should
    /// be on the same filesystem as the workspace so inputs can be hard-linked.
    pub fn stage(spec: &ViewSpec<'_>, scratch_parent: &Path) -> Result<StagedView, StageError> {
        std::fs::create_dir_all(scratch_parent)?;
        let scratch = crate::tree::ScratchDir::new_in(scratch_parent, "run-")?;
        let matcher = glob_set(spec.outputs).map_err(std::io::Error::other)?;

        let read_only = scratch.path().join("ro");
        std::fs::create_dir_all(read_only.join(".wask"))?;
        let mut writable = Vec::new();
        for (i, root) in outer_roots(spec.outputs).into_iter().enumerate() {
            let dir = scratch.path().join(format!("rw{i}"));
            std::fs::create_dir_all(&dir)?;
            writable.push((root, dir));
        }

        let task_json_target = match writable.iter().find(|(r, _)| r == "/") {
            Some((_, dir)) => dir.join(".wask/task.json"),
            None => read_only.join(".wask/task.json"),
        };
        std::fs::create_dir_all(task_json_target.parent().unwrap())?;
        std::fs::write(&task_json_target, spec.task_json)?;

        let mut copied_inputs = HashMap::new();
        for input in spec.inputs {
            match writable
                .iter()
                .find(|(r, _)| is_under(&input.guest_path, r))
            {
                Some((root, dir)) => {
                    let target = host_path_in(dir, root, &input.guest_path);
                    std::fs::create_dir_all(target.parent().unwrap())?;
                    copy_verified(input, &target, spec.hash)?;
                    copied_inputs.insert(input.guest_path.clone(), input.digest);
                }
                None => {
                    let target = host_path_in(&read_only, "/", &input.guest_path);
                    std::fs::create_dir_all(target.parent().unwrap())?;
                    copy_verified(input, &target, spec.hash)?;
                }
            }
        }

        let mut mounts = Vec::new();
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

    /// Collects the outputs of a successful run, or every violation found. `hash` is the
    /// host's hash function, to check copied inputs are unchanged.
    pub fn collect(
        &self,
        limits: &Limits,
        hash: HashFn<'_>,
    ) -> Result<Vec<CollectedOutput>, Vec<Violation>> {
        let mut found = Found::default();
        for (root, dir) in &self.writable {
            self.walk(root, dir, hash, &mut found);
        }
        let linked = std::mem::take(&mut found.linked);
        let outputs = self.judge(found, limits)?;
        // A hit restores each output as a file of its own, so a fresh run must place
        // them so too: two names of one file in the workspace would be one file there
        // (a write through one changes the other) only after a fresh run.
        for path in &linked {
            if let Err(e) = unshare(path) {
                return Err(vec![Violation::Unreadable {
                    path: path.display().to_string(),
                    why: format!("cannot give the hard-linked output a file of its own: {e}"),
                }]);
            }
        }
        Ok(outputs)
    }

    /// Walks one writable directory (mounted at `root`) without following links.
    fn walk(&self, root: &str, dir: &Path, hash: HashFn<'_>, found: &mut Found) {
        let mut walk = WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = walk.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let at = e.path().unwrap_or(dir);
                    let rel = at.strip_prefix(dir).unwrap_or(at);
                    let path = shown(&join_lexically(root, &rel.to_string_lossy()));
                    let io = e.io_error();
                    found.violations.push(
                        if io.and_then(|io| io.raw_os_error()) == Some(libc::ENAMETOOLONG) {
                            // Reached through descriptors, a path can outgrow what the
                            // host can name once the scratch directory is put before it.
                            Violation::BadName {
                                path,
                                why: "with wask's scratch directory before it, the path is \
                                      longer than the host allows (4096 bytes)"
                                    .to_string(),
                            }
                        } else {
                            Violation::Unreadable {
                                path,
                                why: io.map(|io| io.to_string()).unwrap_or_else(|| e.to_string()),
                            }
                        },
                    );
                    continue;
                }
            };
            let rel = entry.path().strip_prefix(dir).unwrap();
            if rel.as_os_str().is_empty() {
                continue;
            }
            let Some(guest) = guest_path(root, rel, &mut found.violations) else {
                // Nothing under a name wask cannot keep is looked at.
                if entry.file_type().is_dir() {
                    walk.skip_current_dir();
                }
                continue;
            };
            if root == "/" && guest == "/.wask/task.json" {
                continue;
            }
            self.classify(guest, &entry, hash, found);
        }
    }

    /// What one entry the guest left is: an output, a copied input, or a violation.
    fn classify(
        &self,
        guest: String,
        entry: &walkdir::DirEntry,
        hash: HashFn<'_>,
        found: &mut Found,
    ) {
        found.entries += 1;
        let ft = entry.file_type();
        if let Some(expected) = self.copied_inputs.get(&guest) {
            found.seen_inputs += 1;
            if !(ft.is_file() && holds(entry.path(), expected, hash)) {
                found.violations.push(Violation::ModifiedInput(guest));
            }
        } else if ft.is_dir() {
        } else if ft.is_symlink() {
            found.violations.push(Violation::SymlinkOutput(guest));
        } else if !ft.is_file() {
            found.violations.push(Violation::SpecialFile(guest));
        } else if self.matcher.is_match(&guest) {
            let meta = entry.metadata();
            let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            if meta.is_ok_and(|m| m.nlink() > 1) {
                found.linked.push(entry.path().to_path_buf());
            }
            found.total = found.total.saturating_add(size);
            found.outputs.push(CollectedOutput {
                guest_path: guest,
                host_path: entry.path().to_path_buf(),
                size,
            });
        } else {
            found.violations.push(Violation::UndeclaredWrite(guest));
        }
    }

    /// The verdict on everything found: the limits, copied inputs that went missing,
    /// literal outputs that were not produced.
    fn judge(
        &self,
        mut found: Found,
        limits: &Limits,
    ) -> Result<Vec<CollectedOutput>, Vec<Violation>> {
        if found.total > limits.outputs_size {
            found
                .violations
                .push(Violation::OutputsSize(found.total, limits.outputs_size));
        }
        if found.entries > limits.outputs_count {
            found
                .violations
                .push(Violation::OutputsCount(found.entries, limits.outputs_count));
        }
        if found.seen_inputs != self.copied_inputs.len() {
            let mut missing: Vec<&String> = self
                .copied_inputs
                .keys()
                .filter(|p| {
                    let (root, dir) = self.writable.iter().find(|(r, _)| is_under(p, r)).unwrap();
                    !host_path_in(dir, root, p).is_file()
                })
                .collect();
            missing.sort();
            found.violations.extend(
                missing
                    .into_iter()
                    .map(|p| Violation::ModifiedInput(p.clone())),
            );
        }
        for literal in &self.literal_outputs {
            if !found.outputs.iter().any(|o| &o.guest_path == literal) {
                found
                    .violations
                    .push(Violation::MissingOutput(literal.clone()));
            }
        }
        if found.violations.is_empty() {
            Ok(found.outputs)
        } else {
            Err(found.violations)
        }
    }
}

/// Replaces the file at `path` with a copy of its own, leaving its other names alone.
fn unshare(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut copy = tempfile::Builder::new()
        .prefix(".wask-unshare-")
        .permissions(std::fs::Permissions::from_mode(OUTPUT_MODE))
        .tempfile_in(dir)?;
    std::io::copy(&mut std::fs::File::open(path)?, copy.as_file_mut())?;
    copy.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The guest path of `rel` under `root`, if every name of it meets the path rule; else
/// the violation is recorded.
fn guest_path(root: &str, rel: &Path, violations: &mut Vec<Violation>) -> Option<String> {
    let mut names = Vec::new();
    for part in rel.iter() {
        match name_text(part) {
            Ok(n) => names.push(n),
            Err(why) => {
                violations.push(Violation::BadName {
                    path: format!("{:?}", shown(&join_lexically(root, &rel.to_string_lossy()))),
                    why: why.to_string(),
                });
                return None;
            }
        }
    }
    let guest = join_lexically(root, &names.join("/"));
    if let Err(why) = check_workspace_path(&guest) {
        violations.push(Violation::BadName {
            path: format!("{:?}", shown(&guest)),
            why: why.to_string(),
        });
        return None;
    }
    Some(guest)
}
