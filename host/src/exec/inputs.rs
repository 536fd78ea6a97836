//! Resolving a task's input patterns to files (PATH-003, PATH-004), with the symlink
//! policy of `docs/sandbox.md`: a link among the inputs is followed only when it leads
//! to another declared input of the same task, inside the workspace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wask_runtime::paths::{glob_set, is_glob_segment, output_root};

/// One resolved input: where the guest sees it, and the regular file holding its bytes.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub guest_path: String,
    pub host_path: PathBuf,
}

/// Resolves `patterns` (workspace-absolute) under `root` (canonical). Directories in
/// `excluded` (the `.wask` directory, the cache) are never inputs.
pub fn resolve(
    root: &Path,
    patterns: &[String],
    excluded: &[PathBuf],
    own_outputs: &[String],
) -> Result<Vec<Resolved>, String> {
    // guest path -> host path as found (not yet checked for links)
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    let is_excluded = |p: &Path| excluded.iter().any(|e| p.starts_with(e));
    // A task's own outputs are never its inputs (issue 13): a glob skips what they
    // match, so `inputs = ["**"]` beside `outputs = ["SUMS"]` does not read its last
    // run's SUMS. A file named literally is read even under an output glob (a source
    // beside its outputs; a restore never writes over it); one named literally in both
    // is a contradiction, said as one.
    let outputs = wask_runtime::paths::glob_set(own_outputs)
        .map_err(|e| format!("invalid output pattern: {e}"))?;
    let (exclusions, patterns): (Vec<&String>, Vec<&String>) =
        patterns.iter().partition(|p| p.starts_with('!'));
    let exclusions: Vec<String> = exclusions
        .iter()
        .map(|p| p.trim_start_matches('!').to_string())
        .collect();
    let excluded_by_pattern = wask_runtime::paths::glob_set(&exclusions)
        .map_err(|e| format!("invalid input exclusion: {e}"))?;
    for pattern in patterns {
        let pattern = pattern.as_str();
        if pattern.split('/').any(is_glob_segment) {
            glob(root, pattern, &is_excluded, &mut found)?;
            found.retain(|guest, _| !outputs.is_match(guest));
        } else if own_outputs.iter().any(|o| o == pattern) {
            return Err(format!(
                "input {pattern} is also one of the task's outputs: a task's outputs are never its inputs; remove it from `inputs` (or from `outputs`)"
            ));
        } else {
            literal(root, pattern, &is_excluded, &mut found)?;
        }
    }
    // `!PATTERN` entries take what they match out, whatever named it.
    found.retain(|guest, _| !excluded_by_pattern.is_match(guest));
    follow_links(root, found, &is_excluded)
}

/// A literal input: it must exist, be no directory, and lie outside wask's own.
fn literal(
    root: &Path,
    pattern: &str,
    is_excluded: &dyn Fn(&Path) -> bool,
    found: &mut BTreeMap<String, PathBuf>,
) -> Result<(), String> {
    let host = root.join(pattern.trim_start_matches('/'));
    match std::fs::symlink_metadata(&host) {
        Err(_) => Err(format!("input {pattern} does not exist")),
        Ok(m) if m.is_dir() => Err(format!(
            "input {pattern} is a directory; declare the files in it with a glob such as `{pattern}/**`"
        )),
        Ok(_) if is_excluded(&host) => Err(format!(
            "input {pattern} lies in wask's own directory and cannot be read by tasks"
        )),
        Ok(_) => {
            found.insert(pattern.to_string(), host);
            Ok(())
        }
    }
}

/// Every file a glob input matches, walking from its directory without following
/// links (PATH-004: a glob that matches nothing contributes nothing).
fn glob(
    root: &Path,
    pattern: &str,
    is_excluded: &dyn Fn(&Path) -> bool,
    found: &mut BTreeMap<String, PathBuf>,
) -> Result<(), String> {
    let matcher = glob_set(&[pattern.to_string()]).map_err(|e| e.to_string())?;
    let base = root.join(output_root(pattern).trim_start_matches('/'));
    let walker = walkdir::WalkDir::new(&base)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !is_excluded(e.path()));
    for entry in walker {
        // A directory that cannot be listed would silently take its files out of the
        // view and the key.
        let entry = match entry {
            // The glob's directory does not exist: it matches nothing (PATH-004).
            Err(e)
                if e.depth() == 0
                    && e.io_error()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
            {
                break;
            }
            e => e,
        };
        let entry = entry.map_err(|e| {
            format!(
                "cannot list what input `{pattern}` matches: {}",
                e.io_error()
                    .map(|io| io.to_string())
                    .unwrap_or_else(|| e.to_string())
            )
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        // The one path rule: a name that is not UTF-8 text, or that holds a control
        // character, is refused, never made lossy (two such names would become one
        // path and one would drop out of the view and the key).
        let guest = match rel.to_str() {
            Some(text) => format!("/{text}"),
            // Only a name the pattern would take matters.
            None if !matcher.is_match(format!("/{}", rel.to_string_lossy())) => continue,
            None => {
                return Err(format!(
                    "input /{} (matched by `{pattern}`) has a name that is not valid UTF-8; wask paths are UTF-8 text: rename it, or narrow the pattern",
                    rel.to_string_lossy()
                ));
            }
        };
        if !matcher.is_match(&guest) {
            continue;
        }
        if let Err(why) = wask_runtime::paths::check_workspace_path(&guest) {
            return Err(format!(
                "input {guest:?} (matched by `{pattern}`) is no path wask accepts: {why}"
            ));
        }
        found.insert(guest, entry.path().to_path_buf());
    }
    Ok(())
}

/// Anything whose real path is not where it appears went through a link: followed only
/// to another declared input inside the workspace (`docs/sandbox.md`).
fn follow_links(
    root: &Path,
    found: BTreeMap<String, PathBuf>,
    is_excluded: &dyn Fn(&Path) -> bool,
) -> Result<Vec<Resolved>, String> {
    let mut plain: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut linked: Vec<(String, PathBuf)> = Vec::new();
    for (guest, host) in found {
        let real = host
            .canonicalize()
            .map_err(|e| format!("input {guest} cannot be resolved: {e}"))?;
        if real == host {
            if !real.is_file() {
                return Err(format!("input {guest} is not a regular file"));
            }
            plain.insert(guest, real);
        } else {
            linked.push((guest, real));
        }
    }
    let mut resolved: Vec<Resolved> = Vec::new();
    for (guest, real) in linked {
        let target = real
            .strip_prefix(root)
            .ok()
            .filter(|_| !is_excluded(&real))
            .map(|rel| format!("/{}", rel.to_string_lossy()));
        match target {
            None => {
                return Err(format!(
                    "input {guest} is a symbolic link that leads outside the workspace (to {}); wask does not follow it",
                    real.display()
                ));
            }
            Some(t) if plain.contains_key(&t) => resolved.push(Resolved {
                guest_path: guest,
                host_path: real,
            }),
            Some(t) => {
                return Err(format!(
                    "input {guest} is a symbolic link to {t}, which is not a declared input of this task; declare {t} too"
                ));
            }
        }
    }
    resolved.extend(plain.into_iter().map(|(guest_path, host_path)| Resolved {
        guest_path,
        host_path,
    }));
    resolved.sort_by(|a, b| a.guest_path.cmp(&b.guest_path));
    Ok(resolved)
}
