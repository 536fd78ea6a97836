//! What a task may write: the paths no output may land on, whatever its patterns match.
//!
//! An output is bytes a sandboxed module chose. Written where another program acts on
//! it, they become that program's input: a `build.rs` cargo runs natively when it builds
//! a guest crate, a git hook, a `wask.toml` that decides what every task runs, another
//! task's module (which would then run with that task's inputs and secrets). So besides
//! matching its own `outputs`, every path a task writes, fresh or restored from a cache,
//! must pass [`WriteRules::refusal`]:
//!
//! * not in wask's own directory (`/.wask`) or the cache directory;
//! * not in version-control metadata: no segment `.git`, `.hg`, `.svn` or `.jj`;
//! * not a `wask.toml`;
//! * not configuration cargo or rustup look for in every directory above where they
//!   run, which can name the programs a build runs (a `rustc` wrapper, a linker): no
//!   `.cargo` segment, no `rust-toolchain` or `rust-toolchain.toml`, anywhere;
//! * not what cargo reads when it builds a guest crate (`module = { crate = ... }`): the
//!   crate's directory and its path dependencies, and in every directory above them up to
//!   the workspace root the `.cargo/` directory, `Cargo.toml`, `Cargo.lock`,
//!   `rust-toolchain` and `rust-toolchain.toml`;
//! * not a task's module file, unless every task using that module lists the writer in
//!   its `deps` (a build step that makes a module is a declared edge, never an accident);
//! * not a path another task's `outputs` also match: two tasks never write one file.
//!
//! The load-time half ([`check_declarations`]) refuses what a declaration shows at
//! once: a literal output on such a path, a glob whose directory lies in one, a glob over
//! the workspace root or over a project's own directory (which holds its `wask.toml` and
//! sources), and outputs of two tasks that can meet. Globs are checked again path by path
//! when outputs are collected and restored. Replacing files that exist is the output
//! ledger's rule ([`crate::exec::ledger`]).

use crate::graph::Graph;
use crate::workspace::{LoadError, ModuleSpec, Workspace};
use globset::GlobSet;
use std::collections::{BTreeMap, BTreeSet};
use wask_runtime::paths::{glob_set, is_glob, is_under, output_root};

/// Version-control metadata directories: hooks and configuration live there.
pub const VCS_DIRS: &[&str] = &[".git", ".hg", ".svn", ".jj"];

/// Tool configuration found by searching upwards from wherever the tool runs, which can
/// name programs the tool then runs: refused anywhere, whether or not wask builds a
/// crate below it.
const UPWARD_CONFIG_DIRS: &[&str] = &[".cargo"];
const UPWARD_CONFIG_FILES: &[&str] = &["rust-toolchain", "rust-toolchain.toml"];

/// Files cargo reads from the directories above a crate it builds.
const CARGO_FILES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain",
    "rust-toolchain.toml",
];

/// Why a path may not be an output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("lies in wask's own directory {0}")]
    Reserved(String),
    #[error("lies in version-control metadata (`{0}`), which holds hooks and configuration")]
    VersionControl(String),
    #[error("is a wask.toml, which decides what every task runs")]
    WorkspaceFile,
    #[error(
        "is `{0}` configuration, which cargo and rustup read in every directory below it and which can name the programs a build runs"
    )]
    ToolConfig(String),
    #[error(
        "is read by cargo when wask builds the guest crate {0}, and a crate's build scripts run natively on this machine"
    )]
    CrateBuild(String),
    #[error(
        "is the module of {users}, which would run these bytes with its own inputs and environment; a task may write another's module only if that task lists it in `deps`"
    )]
    Module { users: String },
    #[error("also matches the outputs of {0}; two tasks may not write the same path")]
    SharedOutput(String),
    #[error(
        "lies in a `.wask` directory, where a workspace keeps its cache and state: a forged entry there would be restored by that workspace's runs"
    )]
    WaskDirectory,
    #[error(
        "is a `CACHEDIR.TAG`, which makes a directory a cache that tools (wask among them) trust"
    )]
    CacheTag,
    #[error("is a `.gitignore`, which decides what other tasks' globs read (and what git commits)")]
    Gitignore,
    #[error("lies in a wask cache directory (one with wask's `CACHEDIR.TAG`)")]
    InsideACache,
    #[error(
        "lies in {0}, the root of another workspace, whose cache and state that workspace trusts"
    )]
    AnotherWorkspace(String),
}

/// The rules of one workspace, built once per run.
pub struct WriteRules {
    /// `/.wask` and the cache directory when it lies in the workspace.
    reserved: Vec<String>,
    /// Directories cargo reads when it builds a guest crate, with the crate each is for.
    crate_dirs: Vec<(String, String)>,
    /// Files cargo reads above those directories, with the crate each is for.
    crate_files: BTreeMap<String, String>,
    /// Module file path to the tasks (graph indices) that run it.
    modules: BTreeMap<String, Vec<usize>>,
    /// Every task's declared (not implied) hard predecessors.
    deps: Vec<BTreeSet<usize>>,
    /// Every output pattern of every task, and which task each belongs to.
    outputs: GlobSet,
    owners: Vec<usize>,
    names: Vec<String>,
    /// The workspace root and its project directories: never another workspace.
    own_dirs: BTreeSet<String>,
    /// Whether a directory is another workspace's root, once looked at: a task can
    /// never write a `wask.toml`, so the answer holds for the run.
    workspace_roots: std::sync::Mutex<BTreeMap<String, bool>>,
}

impl WriteRules {
    pub fn new(ws: &Workspace, graph: &Graph, reserved: Vec<String>) -> WriteRules {
        let mut patterns = Vec::new();
        let mut owners = Vec::new();
        let mut modules: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut crates = BTreeSet::new();
        for n in 0..graph.nodes.len() {
            let def = graph.task(ws, n);
            for o in &def.outputs {
                patterns.push(o.value.clone());
                owners.push(n);
            }
            match &def.module_spec {
                ModuleSpec::File { path, .. } => modules.entry(path.clone()).or_default().push(n),
                ModuleSpec::Crate { dir, .. } => {
                    crates.insert(dir.clone());
                }
            }
        }
        let mut crate_dirs = Vec::new();
        let mut crate_files = BTreeMap::new();
        for dir in crates {
            for read in crate::modules::crate_source_dirs(ws, &dir) {
                crate_dirs.push((read.clone(), dir.clone()));
                let mut above = Some(read.as_str());
                while let Some(a) = above {
                    let base = if a == "/" {
                        String::new()
                    } else {
                        a.to_string()
                    };
                    crate_dirs.push((format!("{base}/.cargo"), dir.clone()));
                    for f in CARGO_FILES {
                        crate_files.insert(format!("{base}/{f}"), dir.clone());
                    }
                    above = parent(a);
                }
            }
        }
        crate_dirs.sort();
        crate_dirs.dedup();
        WriteRules {
            reserved,
            crate_dirs,
            crate_files,
            modules,
            deps: graph
                .nodes
                .iter()
                .map(|node| {
                    node.hard
                        .iter()
                        .filter(|p| !node.implied.contains(p))
                        .copied()
                        .collect()
                })
                .collect(),
            // Checked at load: every pattern compiles.
            outputs: glob_set(&patterns).unwrap_or_else(|_| GlobSet::empty()),
            owners,
            names: graph.nodes.iter().map(|n| n.id.to_string()).collect(),
            own_dirs: std::iter::once("/".to_string())
                .chain(ws.projects.iter().map(|p| p.dir.clone()))
                .collect(),
            workspace_roots: Default::default(),
        }
    }

    /// Why guest path `path` may not be written for what lies above it on the host, if
    /// so: a directory under `root` that is another workspace's root (its `wask.toml`
    /// has a `[workspace]` table: its cache and state are its own, wherever they are),
    /// or that carries wask's cache tag (a cache kept outside any `.wask`). Checked when
    /// outputs are collected, again just before they are placed, and before a restore
    /// writes. The workspace's own root and projects are neither.
    pub fn foreign_ground(&self, root: &std::path::Path, path: &str) -> Option<Refusal> {
        let mut dir = parent(path);
        while let Some(d) = dir {
            if !self.own_dirs.contains(d) {
                let host = root.join(d.trim_start_matches('/'));
                let known = self.workspace_roots.lock().unwrap().get(d).copied();
                let is_root = known.unwrap_or_else(|| {
                    let found = is_workspace_root(&host);
                    self.workspace_roots
                        .lock()
                        .unwrap()
                        .insert(d.to_string(), found);
                    found
                });
                if is_root {
                    return Some(Refusal::AnotherWorkspace(d.to_string()));
                }
                // Not remembered: a cache can be made while the run goes on.
                if let Ok(opened) = crate::fs::open_ambient(&host)
                    && crate::cache::marker::is_tagged(&opened)
                {
                    return Some(Refusal::InsideACache);
                }
            }
            dir = parent(d);
        }
        None
    }

    /// Why task `task` may not write `path` (workspace-absolute), if it may not.
    pub fn refusal(&self, task: usize, path: &str) -> Option<Refusal> {
        if let Some(r) = self.dir_refusal(path) {
            return Some(r);
        }
        let name = path.rsplit('/').next().unwrap_or_default();
        if name == "wask.toml" {
            return Some(Refusal::WorkspaceFile);
        }
        if name == crate::cache::marker::TAG {
            return Some(Refusal::CacheTag);
        }
        if name == ".gitignore" {
            return Some(Refusal::Gitignore);
        }
        if let Some(c) = self.crate_files.get(path) {
            return Some(Refusal::CrateBuild(c.clone()));
        }
        if UPWARD_CONFIG_FILES.contains(&name) {
            return Some(Refusal::ToolConfig(name.to_string()));
        }
        if let Some(users) = self.modules.get(path) {
            let allowed = users.iter().all(|u| self.deps[*u].contains(&task));
            if !allowed {
                return Some(Refusal::Module {
                    users: self.list(users),
                });
            }
        }
        let others: Vec<usize> = self
            .outputs
            .matches(path)
            .into_iter()
            .map(|i| self.owners[i])
            .filter(|o| *o != task)
            .collect();
        if !others.is_empty() {
            return Some(Refusal::SharedOutput(self.list(&others)));
        }
        None
    }

    /// Why nothing at or under directory `dir` may be written, if so.
    pub fn dir_refusal(&self, dir: &str) -> Option<Refusal> {
        if let Some(r) = self.reserved.iter().find(|r| is_under(dir, r)) {
            return Some(Refusal::Reserved(r.clone()));
        }
        if let Some(v) = dir.split('/').find(|s| VCS_DIRS.contains(s)) {
            return Some(Refusal::VersionControl(v.to_string()));
        }
        // Not only this workspace's: a workspace nested in this one keeps its cache in
        // its own `.wask`, and would trust what a task of this one wrote there.
        if dir.split('/').any(|s| s == ".wask") {
            return Some(Refusal::WaskDirectory);
        }
        if let Some((_, c)) = self.crate_dirs.iter().find(|(d, _)| is_under(dir, d)) {
            return Some(Refusal::CrateBuild(c.clone()));
        }
        if let Some(c) = dir.split('/').find(|s| UPWARD_CONFIG_DIRS.contains(s)) {
            return Some(Refusal::ToolConfig(c.to_string()));
        }
        None
    }

    /// The directories no task may write (wask's own, the cache, what cargo reads for
    /// a guest crate) that lie below `root`, each with its refusal.
    pub fn dirs_below(&self, root: &str) -> Vec<(String, Refusal)> {
        let below = |d: &str| d != root && is_under(d, root);
        let reserved = self.reserved.iter().filter(|r| below(r));
        let crates = self.crate_dirs.iter().filter(|(d, _)| below(d));
        reserved
            .map(|r| (r.clone(), Refusal::Reserved(r.clone())))
            .chain(crates.map(|(d, c)| (d.clone(), Refusal::CrateBuild(c.clone()))))
            .collect()
    }

    fn list(&self, tasks: &[usize]) -> String {
        let names: BTreeSet<&str> = tasks.iter().map(|t| self.names[*t].as_str()).collect();
        names.into_iter().collect::<Vec<_>>().join(", ")
    }
}

fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    Some(match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    })
}

/// `/.wask` and, when they lie inside the workspace, the cache directory, the user
/// key's directory (`wask_runtime::secret`) and the signing key `WASK_SIGNING_KEY`
/// names: the one place
/// that says which workspace paths are wask's own.
pub fn reserved_paths(ws: &Workspace) -> Vec<String> {
    let mut reserved = vec![wask_runtime::paths::RESERVED_DIR.to_string()];
    let root = crate::fs::resolved(&ws.root);
    let cache = crate::fs::resolved(&ws.settings.cache_dir);
    let key = wask_runtime::secret::key_dir().ok().flatten();
    let key_resolved = key.as_deref().map(crate::fs::resolved);
    let mut pairs = vec![(&ws.root, &ws.settings.cache_dir), (&root, &cache)];
    if let (Some(k), Some(kr)) = (&key, &key_resolved) {
        pairs.extend([(&ws.root, k), (&root, kr)]);
    }
    let signing = crate::signing::key_from_environment().ok().flatten();
    let signing_resolved = signing.as_deref().map(crate::fs::resolved);
    if let (Some(s), Some(sr)) = (&signing, &signing_resolved) {
        pairs.extend([(&ws.root, s), (&root, sr)]);
    }
    for (r, c) in pairs {
        if let Ok(rel) = c.strip_prefix(r) {
            let rel = rel.to_string_lossy();
            reserved.push(if rel.is_empty() {
                "/".to_string()
            } else {
                format!("/{rel}")
            });
        }
    }
    reserved.sort();
    reserved.dedup();
    reserved
}

/// The load-time half of the rule (DAG-004 and `docs/security.md`): every declaration
/// that can only ever write where it may not, reported with its span. Two tasks whose
/// outputs can meet are reported by the graph ([`crate::graph`]).
pub fn check_declarations(ws: &Workspace, graph: &Graph, rules: &WriteRules) -> Vec<LoadError> {
    let mut errors = Vec::new();
    let project_dirs: Vec<&str> = ws.projects.iter().map(|p| p.dir.as_str()).collect();
    for n in 0..graph.nodes.len() {
        let def = graph.task(ws, n);
        let id = &graph.nodes[n].id;
        for out in &def.outputs {
            let pattern = &out.value;
            let why = if is_glob(pattern) {
                glob_refusal(rules, n, pattern, &project_dirs)
            } else {
                match rules.refusal(n, pattern) {
                    Some(Refusal::SharedOutput(_)) | None => None,
                    Some(r) => Some(r.to_string()),
                }
            };
            // Another workspace's root or a wask cache already above where it writes.
            let above = if is_glob(pattern) {
                format!("{}/x", output_root(pattern).trim_end_matches('/'))
            } else {
                pattern.clone()
            };
            let why = why.or_else(|| {
                rules
                    .foreign_ground(&ws.root, &above)
                    .map(|r| r.to_string())
            });
            if let Some(why) = why {
                errors.push(LoadError::at(
                    out.span.clone(),
                    format!("output `{pattern}` of {id} {why}"),
                    "no task may write here",
                ));
            }
        }
    }
    errors
}

/// Why a glob output can only write where it may not.
fn glob_refusal(
    rules: &WriteRules,
    task: usize,
    pattern: &str,
    projects: &[&str],
) -> Option<String> {
    let root = output_root(pattern);
    if let Some(r) = rules.dir_refusal(&root) {
        return Some(r.to_string());
    }
    if let Some(p) = projects.iter().find(|p| is_under(p, &root)) {
        return Some(format!(
            "is a glob over {root}, which holds the project directory {p} (its wask.toml and its sources); give the task's outputs a directory of their own, such as `dist/**`"
        ));
    }
    // A protected directory below the glob's root: refused when the glob can name a
    // path in it (`dist/**` over a cache at `dist/c`; `dist/*.js` is fine).
    for (dir, refusal) in rules.dirs_below(&root) {
        let inside = format!("{}/**", globset::escape(&dir));
        if crate::graph::can_meet(pattern, &inside) {
            return Some(format!(
                "can name paths in {dir}, and a path there {refusal}"
            ));
        }
    }
    let glob = glob_set(&[pattern.to_string()]).ok()?;
    rules.modules.keys().find_map(|m| match rules.refusal(task, m) {
        Some(Refusal::Module { users }) if glob.is_match(m) => Some(format!(
            "matches the module {m} of {users}; a task may write another's module only if that task lists it in `deps`"
        )),
        _ => None,
    })
}

/// Whether `dir` holds a `wask.toml` with a `[workspace]` table (a regular file of at
/// most 1 MiB; anything else is not a workspace root wask would load).
fn is_workspace_root(dir: &std::path::Path) -> bool {
    crate::fs::read_named_text(&dir.join("wask.toml"), 1 << 20)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("workspace"))
}
