//! The workspace: which projects exist and what their tasks declare (section 1 of the
//! spec), loaded from `wask.toml` files and checked before anything runs.

pub mod diag;
mod discover;
mod load;
pub(crate) mod lower;
mod names;
mod raw;
mod settings;
pub mod suggest;

pub use diag::{FileId, LoadError, LoadErrors, Sources, Span};
pub use discover::find_root;
pub use load::load;
pub use names::{check_name, check_path};
pub use settings::{
    ClockSetting, HashKind, MutexMode, MutexScope, OutputMode, RemoteSettings, Settings, parse_size,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wask_runtime::Limits;

/// A loaded, checked workspace.
pub struct Workspace {
    /// The workspace root directory (WS-001), canonical.
    pub root: PathBuf,
    pub settings: Settings,
    /// Sorted by name.
    pub projects: Vec<Project>,
    pub sources: Sources,
}

/// One project: a directory with a `wask.toml` holding a `[project]` table.
pub struct Project {
    pub name: String,
    /// Workspace-absolute directory: `/` for the root, `/content` below it.
    pub dir: String,
    pub tags: Vec<String>,
    pub tasks: BTreeMap<String, TaskDef>,
    pub file: FileId,
}

/// A task's mutex declaration (WS-005).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutexDecl {
    pub name: String,
    pub scope: MutexScope,
    pub mode: MutexMode,
}

/// A value with where it was written.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub span: Span,
}

/// Where a task's module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSpec {
    /// A `.wasm` file (workspace-absolute path).
    File { path: String, pin: Option<String> },
    /// A guest crate (workspace-absolute directory) that wask builds for wasm32-wasip1.
    Crate { dir: String, pin: Option<String> },
}

impl ModuleSpec {
    /// The pinned blake3 digest (lower-case hex), if any.
    pub fn pin(&self) -> Option<&str> {
        match self {
            ModuleSpec::File { pin, .. } | ModuleSpec::Crate { pin, .. } => pin.as_deref(),
        }
    }
}

/// One task as declared (WS-005), with paths made workspace-absolute.
#[derive(Debug, Clone)]
pub struct TaskDef {
    pub name: String,
    pub span: Span,
    /// Workspace-absolute path of the `.wasm` module or of the guest crate directory,
    /// with its location in `wask.toml`.
    pub module: Located<String>,
    /// What `module` names, and its pinned digest if any.
    pub module_spec: ModuleSpec,
    pub args: Vec<String>,
    /// Workspace-absolute patterns.
    pub inputs: Vec<Located<String>>,
    /// Workspace-absolute patterns.
    pub outputs: Vec<Located<String>>,
    /// `!PATTERN` entries of `outputs`, without the `!`: files a run writes there are
    /// dropped, never stored nor placed (a fresh run and a hit leave the same files).
    pub output_exclusions: Vec<Located<String>>,
    pub deps: Vec<Located<crate::refs::TaskRef>>,
    pub weak_deps: Vec<Located<crate::refs::TaskRef>>,
    pub mutex: Option<MutexDecl>,
    pub env_from_host: Vec<String>,
    pub env_set: BTreeMap<String, String>,
    pub limits: Limits,
    pub clock: ClockSetting,
    /// Whether input globs skip what the workspace's `.gitignore` files ignore.
    pub gitignore: bool,
    /// A one-line summary for `wask query`.
    pub description: Option<String>,
}

impl Workspace {
    pub fn project(&self, name: &str) -> Option<&Project> {
        self.projects
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.projects[i])
    }

    /// The host path of a workspace-absolute path.
    pub fn host_path(&self, workspace_path: &str) -> PathBuf {
        self.root.join(workspace_path.trim_start_matches('/'))
    }

    /// The project whose directory contains `dir` (deepest first), if any.
    pub fn project_containing(&self, dir: &Path) -> Option<&Project> {
        let canonical = dir.canonicalize().ok()?;
        let rel = canonical.strip_prefix(&self.root).ok()?;
        let rel = format!("/{}", rel.to_string_lossy());
        self.projects
            .iter()
            .filter(|p| p.dir == "/" || rel == p.dir || rel.starts_with(&format!("{}/", p.dir)))
            .max_by_key(|p| p.dir.len())
    }
}

/// Joins a declared path onto a project directory (PATH-002): a leading `/` is
/// workspace-absolute, anything else is relative to the project.
pub fn absolutize(project_dir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else if project_dir == "/" {
        format!("/{path}")
    } else {
        format!("{project_dir}/{path}")
    }
}
