//! Task modules: reading `.wasm` files, building guest crates ([`guest_crate`]), and
//! checking pinned digests.
//!
//! The key of a task uses the module's own bytes (CACHE-005), so an identical rebuild
//! changes nothing downstream.

mod built;
mod cargo;
pub mod describe;
mod guest_crate;

pub use guest_crate::crate_source_dirs;

use crate::cancel::Cancel;
use crate::workspace::{ModuleSpec, Workspace};
use std::path::Path;
use wask_runtime::secret::UserKey;

/// The target guest crates are built for.
pub const TARGET: &str = "wasm32-wasip1";

/// Why a module could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("module {path} does not exist{hint}")]
    Missing { path: String, hint: String },
    #[error("the guest crate {dir} has no Cargo.toml{hint}")]
    CrateMissing { dir: String, hint: String },
    #[error("cannot read module {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("module {0} is not a regular file")]
    NotAFile(String),
    #[error(
        "the {TARGET} target is not installed for this Rust toolchain, so wask cannot build the guest crate {0}\n  install it with: rustup target add {TARGET}"
    )]
    TargetMissing(String),
    #[error("cannot run cargo to build the guest crate {dir}: {message}")]
    Cargo { dir: String, message: String },
    #[error("building the guest crate {dir} failed:\n{output}")]
    BuildFailed { dir: String, output: String },
    #[error("the build of the guest crate {0} was interrupted")]
    Cancelled(String),
    #[error(
        "the sources of the guest crate {0} kept changing while it was built, so no build of them can be named\n  hint: build again once they are saved"
    )]
    SourcesChanging(String),
    #[error(
        "module {what} does not match its pinned digest\n  pinned:   blake3 = \"{pinned}\"\n  actual:   blake3 = \"{actual}\"\n  if the new module is trusted, update the pin in wask.toml"
    )]
    PinMismatch {
        what: String,
        pinned: String,
        actual: String,
    },
}

/// What reading or building a module needs besides its spec.
pub struct Obtain<'a> {
    pub ws: &'a Workspace,
    /// Where built modules are kept (`<cache>/built/`).
    pub cache_dir: &'a Path,
    /// Authenticates the built modules kept there.
    pub key: &'a UserKey,
    /// Interrupts a build.
    pub cancel: &'a Cancel,
}

/// Reads or builds the module `spec` names and checks its pin. Returns its bytes.
pub fn obtain(from: &Obtain<'_>, spec: &ModuleSpec) -> Result<Vec<u8>, ModuleError> {
    let (what, bytes) = match spec {
        ModuleSpec::File { path, .. } => (path.clone(), read_file(from.ws, path)?),
        ModuleSpec::Crate { dir, .. } => {
            if let Some(missing) = missing_crate(from.ws, dir) {
                return Err(missing);
            }
            (format!("built from {dir}"), guest_crate::build(from, dir)?)
        }
    };
    if let Some(pinned) = spec.pin() {
        let actual = blake3::hash(&bytes).to_hex().to_string();
        if actual != pinned {
            return Err(ModuleError::PinMismatch {
                what,
                pinned: pinned.to_string(),
                actual,
            });
        }
    }
    Ok(bytes)
}

fn read_file(ws: &Workspace, path: &str) -> Result<Vec<u8>, ModuleError> {
    let host = ws.host_path(path);
    match std::fs::symlink_metadata(&host) {
        Ok(m) if m.is_file() => std::fs::read(&host).map_err(|source| ModuleError::Read {
            path: path.to_string(),
            source,
        }),
        Ok(_) => Err(ModuleError::NotAFile(path.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ModuleError::Missing {
            path: path.to_string(),
            hint: near_miss(ws, path, |p| ws.host_path(p).is_file()),
        }),
        Err(source) => Err(ModuleError::Read {
            path: path.to_string(),
            source,
        }),
    }
}

/// The error for a module file that is not there, or is no regular file.
pub fn missing_file(ws: &Workspace, path: &str) -> Option<ModuleError> {
    match std::fs::symlink_metadata(ws.host_path(path)) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some(ModuleError::NotAFile(path.to_string())),
        Err(_) => Some(ModuleError::Missing {
            path: path.to_string(),
            hint: near_miss(ws, path, |p| ws.host_path(p).is_file()),
        }),
    }
}

/// The error for a guest crate directory without a `Cargo.toml`, if `dir` is one.
pub fn missing_crate(ws: &Workspace, dir: &str) -> Option<ModuleError> {
    let has_manifest = |d: &str| ws.host_path(d).join("Cargo.toml").is_file();
    (!has_manifest(dir)).then(|| ModuleError::CrateMissing {
        dir: dir.to_string(),
        hint: near_miss(ws, dir, has_manifest),
    })
}

/// A hint for a module path that names nothing: the same path from the workspace root
/// (a relative path is the project's, a common slip), or a file of a near name in the
/// same directory.
fn near_miss(ws: &Workspace, path: &str, exists: impl Fn(&str) -> bool) -> String {
    if let Some(project) = ws
        .projects
        .iter()
        .find(|p| p.dir != "/" && wask_runtime::paths::is_under(path, &p.dir) && path != p.dir)
    {
        let from_root = &path[project.dir.len()..];
        if exists(from_root) {
            return format!(
                "\n  hint: a module path without a leading `/` is relative to its project ({}); module paths are workspace-absolute with one: did you mean {from_root}?",
                project.dir
            );
        }
    }
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let listing = std::fs::read_dir(ws.host_path(if dir.is_empty() { "/" } else { dir }));
    let names: Vec<String> = listing
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    match crate::workspace::suggest::closest(name, names.iter().map(String::as_str)) {
        Some(near) if exists(&format!("{dir}/{near}")) => {
            format!("\n  hint: did you mean {dir}/{near}?")
        }
        _ => String::new(),
    }
}
