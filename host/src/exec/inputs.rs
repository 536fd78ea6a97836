//! Resolving a task's input patterns to files (PATH-003, PATH-004), with the symlink
//! policy of `docs/sandbox.md`: a link among the inputs is followed only when it leads
//! to another declared input of the same task, inside the workspace.

use globset::GlobSet;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use wask_runtime::paths::{glob_set, is_glob_segment, output_root};

/// One resolved input: where the guest sees it, and the regular file holding its bytes.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub guest_path: String,
    pub host_path: PathBuf,
}

/// What a task's inputs may not be, or may be despite the workspace's `.gitignore`.
pub struct Rules<'a> {
    /// Directories that are never inputs: the `.wask` directory and the cache.
    pub excluded: &'a [PathBuf],
    /// The task's own outputs, which are never its inputs.
    pub own_outputs: &'a [String],
    /// The outputs of the task's hard predecessors: what they wrote (by the ledger) is
    /// read even where `.gitignore` ignores it (build output usually is).
    pub predecessor_outputs: &'a [String],
    /// Whether a predecessor really wrote a path (the output ledger says so).
    pub predecessor_wrote: &'a dyn Fn(&str) -> bool,
    /// Whether globs skip what the workspace's `.gitignore` files ignore.
    pub gitignore: bool,
}

/// Resolves `patterns` (workspace-absolute) under `root` (canonical).
pub fn resolve(
    root: &Path,
    patterns: &[String],
    rules: &Rules<'_>,
) -> Result<Vec<Resolved>, String> {
    // guest path -> host path as found (not yet checked for links)
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    // `.wask/` is never an input, wherever it is in the workspace (issue 13).
    let is_excluded = |p: &Path| {
        rules.excluded.iter().any(|e| p.starts_with(e))
            || p.strip_prefix(root)
                .is_ok_and(|rel| rel.components().any(|c| c.as_os_str() == ".wask"))
    };
    // A task's own outputs are never its inputs (issue 13): a glob skips what they
    // match, so `inputs = ["**"]` beside `outputs = ["SUMS"]` does not read its last
    // run's SUMS. A file named literally is read even under an output glob (a source
    // beside its outputs; a restore never writes over it); one named literally in both
    // is a contradiction, said as one.
    let own_outputs = rules.own_outputs;
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
    let mut ignores = rules
        .gitignore
        .then(|| Gitignores::new(root, rules.predecessor_outputs))
        .transpose()?;
    for pattern in patterns {
        let pattern = pattern.as_str();
        if pattern.split('/').any(is_glob_segment) {
            let mut matched = BTreeMap::new();
            glob(
                root,
                pattern,
                &is_excluded,
                rules.predecessor_wrote,
                ignores.as_mut(),
                &mut matched,
            )?;
            matched.retain(|guest, _| !outputs.is_match(guest));
            found.extend(matched);
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

/// The largest `.gitignore` read.
const MAX_GITIGNORE: u64 = 128 << 10;

/// The most `.gitignore` bytes one task's globs read: compiled patterns take a few
/// hundred times their text in memory.
const MAX_GITIGNORES: u64 = 512 << 10;

/// The workspace's `.gitignore` files, read as a glob's walk reaches them. Only files
/// inside the workspace count, and only `.gitignore` (not a user's global excludes nor
/// `.git/info/exclude`): what a task reads must not depend on whose machine it runs on
/// or whether the tree is a git checkout (`docs/decisions.md`).
struct Gitignores {
    root: PathBuf,
    by_dir: HashMap<PathBuf, Option<Gitignore>>,
    /// Matches what a predecessor wrote: read even when ignored.
    readable: GlobSet,
    /// Where predecessors write: an ignored directory on the way there is still walked.
    readable_roots: Vec<String>,
    /// Bytes of `.gitignore` read so far, against [`MAX_GITIGNORES`].
    read: u64,
}

impl Gitignores {
    fn new(root: &Path, predecessor_outputs: &[String]) -> Result<Gitignores, String> {
        Ok(Gitignores {
            root: root.to_path_buf(),
            by_dir: HashMap::new(),
            readable: glob_set(predecessor_outputs).map_err(|e| e.to_string())?,
            readable_roots: predecessor_outputs.iter().map(|p| output_root(p)).collect(),
            read: 0,
        })
    }

    /// The rules `dir/.gitignore` holds, if any. One that cannot be read or parsed is
    /// an error: skipping it would silently put ignored files into the key.
    fn of(&mut self, dir: &Path) -> Result<Option<&Gitignore>, String> {
        if !self.by_dir.contains_key(dir) {
            let file = dir.join(".gitignore");
            let rules = match std::fs::symlink_metadata(&file) {
                // Read whole into the matcher: bounded, like every file wask reads.
                Ok(m) if m.is_file() && m.len() > MAX_GITIGNORE => {
                    return Err(format!(
                        "{} is over {MAX_GITIGNORE} bytes; wask reads no larger .gitignore",
                        self.shown(&file)
                    ));
                }
                Ok(m) if m.is_file() && self.read + m.len() > MAX_GITIGNORES => {
                    return Err(format!(
                        "the .gitignore files this task's globs reach hold over {MAX_GITIGNORES} bytes in all (at {}); wask reads no more for one task",
                        self.shown(&file)
                    ));
                }
                Ok(m) if m.is_file() => {
                    self.read += m.len();
                    let mut builder = GitignoreBuilder::new(dir);
                    if let Some(e) = builder.add(&file) {
                        return Err(format!("cannot read {}: {e}", self.shown(&file)));
                    }
                    let built = builder
                        .build()
                        .map_err(|e| format!("{}: {e}", self.shown(&file)))?;
                    Some(built)
                }
                _ => None,
            };
            self.by_dir.insert(dir.to_path_buf(), rules);
        }
        Ok(self.by_dir[dir].as_ref())
    }

    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .map(|p| format!("/{}", p.display()))
            .unwrap_or_else(|_| path.display().to_string())
    }

    /// Whether `path` (under the root) is ignored by the nearest `.gitignore` rule that
    /// speaks of it, deepest directory first, as git decides.
    fn ignores(&mut self, path: &Path, is_dir: bool) -> Result<bool, String> {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if !d.starts_with(&self.root) {
                break;
            }
            if let Some(rules) = self.of(d)? {
                match rules.matched(path, is_dir) {
                    ignore::Match::Ignore(_) => return Ok(true),
                    ignore::Match::Whitelist(_) => return Ok(false),
                    ignore::Match::None => {}
                }
            }
            dir = d.parent();
        }
        Ok(false)
    }

    /// Whether `path` or a directory above it (up to the root) is ignored.
    fn ignores_here_or_above(&mut self, path: &Path, is_dir: bool) -> Result<bool, String> {
        if self.ignores(path, is_dir)? {
            return Ok(true);
        }
        let mut dir = path.parent();
        while let Some(d) = dir {
            if !d.starts_with(&self.root) || d == self.root {
                break;
            }
            if self.ignores(d, true)? {
                return Ok(true);
            }
            dir = d.parent();
        }
        Ok(false)
    }

    /// Whether a walk must enter the ignored directory `guest`: a predecessor writes
    /// under it (or above it).
    fn leads_to_readable(&self, guest: &str) -> bool {
        self.readable_roots.iter().any(|r| {
            wask_runtime::paths::is_under(r, guest) || wask_runtime::paths::is_under(guest, r)
        })
    }
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
    predecessor_wrote: &dyn Fn(&str) -> bool,
    mut ignores: Option<&mut Gitignores>,
    found: &mut BTreeMap<String, PathBuf>,
) -> Result<(), String> {
    let matcher = glob_set(&[pattern.to_string()]).map_err(|e| e.to_string())?;
    let base = root.join(output_root(pattern).trim_start_matches('/'));
    // Ignored directories the walk still enters because a predecessor writes there:
    // only what it wrote is read from them.
    let mut ignored_dirs: Vec<PathBuf> = Vec::new();
    if let Some(ignores) = ignores.as_deref_mut()
        && base != root
        && base.is_dir()
        && ignores.ignores_here_or_above(&base, true)?
    {
        if !ignores.leads_to_readable(output_root(pattern).as_str()) {
            return Ok(());
        }
        ignored_dirs.push(base.clone());
    }
    let mut walker = walkdir::WalkDir::new(&base).follow_links(false).into_iter();
    while let Some(entry) = walker.next() {
        if let Ok(e) = &entry
            && is_excluded(e.path())
        {
            if e.file_type().is_dir() {
                walker.skip_current_dir();
            }
            continue;
        }
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
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        if entry.file_type().is_dir() {
            if entry.depth() > 0
                && let Some(ignores) = ignores.as_deref_mut()
                && ignores.ignores(entry.path(), true)?
            {
                let guest = format!("/{}", rel.to_string_lossy());
                if ignores.leads_to_readable(&guest) {
                    ignored_dirs.push(entry.path().to_path_buf());
                } else {
                    walker.skip_current_dir();
                }
            }
            continue;
        }
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
        if let Some(ignores) = ignores.as_deref_mut()
            && !(ignores.readable.is_match(&guest) && predecessor_wrote(&guest))
            && (ignored_dirs.iter().any(|d| entry.path().starts_with(d))
                || ignores.ignores(entry.path(), false)?)
        {
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
