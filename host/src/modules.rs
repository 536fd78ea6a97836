//! Task modules: reading `.wasm` files, building guest crates, and checking pinned
//! digests.
//!
//! A `module = { crate = "/plugins/x" }` is built by cargo for `wasm32-wasip1` in
//! release mode. The built module is cached under `<cache>/built/` by a hash of
//! everything the build reads that wask can see: every file of the crate and of its
//! path dependencies (except `target/` and hidden directories), the nearest `Cargo.lock`
//! and the compiler's version. The key of a task uses the built module's own bytes
//! (CACHE-005), so an identical build changes nothing downstream.

use crate::workspace::{ModuleSpec, Workspace};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";

/// Why a module could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error(
        "cannot read module {path}: {source}\n  hint: build the module first (for the examples: bash scripts/build-guests.sh)"
    )]
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
    #[error(
        "module {what} does not match its pinned digest\n  pinned:   blake3 = \"{pinned}\"\n  actual:   blake3 = \"{actual}\"\n  if the new module is trusted, update the pin in wask.toml"
    )]
    PinMismatch {
        what: String,
        pinned: String,
        actual: String,
    },
}

/// Reads or builds the module `spec` names and checks its pin. Returns its bytes.
pub fn obtain(ws: &Workspace, cache_dir: &Path, spec: &ModuleSpec) -> Result<Vec<u8>, ModuleError> {
    let (what, bytes) = match spec {
        ModuleSpec::File { path, .. } => (path.clone(), read_file(ws, path)?),
        ModuleSpec::Crate { dir, .. } => (
            format!("built from {dir}"),
            build_crate(ws, cache_dir, dir)?,
        ),
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
        Err(source) => Err(ModuleError::Read {
            path: path.to_string(),
            source,
        }),
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds a guest crate (or takes the cached build of the same sources).
fn build_crate(ws: &Workspace, cache_dir: &Path, dir: &str) -> Result<Vec<u8>, ModuleError> {
    let crate_dir = ws.host_path(dir);
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(ModuleError::Cargo {
            dir: dir.to_string(),
            message: format!("{} has no Cargo.toml", crate_dir.display()),
        });
    }
    let rustc = rustc_version();
    let sources = source_hash(&crate_dir, &ws.root, &rustc);
    let built = cache_dir.join("built").join(format!("{sources}.wasm"));
    if let Ok(bytes) = std::fs::read(&built) {
        return Ok(bytes);
    }
    if !target_installed() {
        return Err(ModuleError::TargetMissing(dir.to_string()));
    }
    eprintln!("building the guest crate {dir} for {TARGET} (release)");
    let target_dir = cache_dir
        .join("build")
        .join(&blake3::hash(dir.as_bytes()).to_hex()[..16]);
    let output = cargo()
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .map_err(|e| ModuleError::Cargo {
            dir: dir.to_string(),
            message: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(ModuleError::BuildFailed {
            dir: dir.to_string(),
            output: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_string(),
        });
    }
    let wasm = built_artifact(&output.stdout, &manifest).ok_or_else(|| ModuleError::Cargo {
        dir: dir.to_string(),
        message:
            "the build produced no .wasm binary: a guest crate must have exactly one binary target"
                .into(),
    })?;
    let bytes = std::fs::read(&wasm).map_err(|source| ModuleError::Read {
        path: wasm.display().to_string(),
        source,
    })?;
    // Keep it under the hash of the sources before and after the build: the first
    // build of a crate writes its `Cargo.lock`, which is one of those sources.
    let after = source_hash(&crate_dir, &ws.root, &rustc);
    for name in [sources, after] {
        let path = cache_dir.join("built").join(format!("{name}.wasm"));
        // Write then rename: a concurrent reader sees the whole module or none.
        if let Some(parent) = path.parent()
            && std::fs::create_dir_all(parent).is_ok()
            && let Ok(mut tmp) = tempfile::NamedTempFile::new_in(parent)
            && std::io::Write::write_all(&mut tmp, &bytes).is_ok()
        {
            let _ = tmp.persist(&path);
        }
    }
    Ok(bytes)
}

/// The `.wasm` executable cargo reported for the crate at `manifest`.
fn built_artifact(messages: &[u8], manifest: &Path) -> Option<PathBuf> {
    let manifest = manifest.canonicalize().ok()?;
    let mut found = Vec::new();
    for line in messages.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let same = msg["manifest_path"]
            .as_str()
            .and_then(|p| Path::new(p).canonicalize().ok())
            .is_some_and(|p| p == manifest);
        if let (true, Some(exe)) = (same, msg["executable"].as_str()) {
            found.push(PathBuf::from(exe));
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

fn rustc_version() -> String {
    Command::new("rustc")
        .arg("-vV")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn target_installed() -> bool {
    Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("libstd"))
                })
                .unwrap_or(false)
        })
}

/// A hash of what building the crate at `dir` reads: its files, its path dependencies'
/// files, the nearest `Cargo.lock`, and the compiler version.
pub fn source_hash(dir: &Path, workspace_root: &Path, rustc: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"wask-guest-crate-1\0");
    h.update(rustc.as_bytes());
    let mut seen = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut lock = None;
    while let Some(d) = pending.pop() {
        let Ok(d) = d.canonicalize() else { continue };
        if !seen.insert(d.clone()) {
            continue;
        }
        if lock.is_none() {
            lock = nearest_lock(&d, workspace_root);
        }
        pending.extend(path_dependencies(&d));
    }
    for d in &seen {
        h.update(d.to_string_lossy().as_bytes());
        h.update(b"\0");
        let walker = walkdir::WalkDir::new(d)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let name = e.file_name().to_string_lossy();
                e.depth() == 0 || !(name == "target" || name.starts_with('.'))
            });
        for entry in walker.flatten().filter(|e| e.file_type().is_file()) {
            h.update(
                entry
                    .path()
                    .strip_prefix(d)
                    .unwrap_or(entry.path())
                    .to_string_lossy()
                    .as_bytes(),
            );
            h.update(b"\0");
            if let Ok(bytes) = std::fs::read(entry.path()) {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
    }
    if let Some(lock) = lock
        && let Ok(bytes) = std::fs::read(&lock)
    {
        h.update(b"Cargo.lock\0");
        h.update(&bytes);
    }
    h.finalize().to_hex().to_string()
}

fn nearest_lock(dir: &Path, workspace_root: &Path) -> Option<PathBuf> {
    let mut d = Some(dir);
    while let Some(cur) = d {
        let lock = cur.join("Cargo.lock");
        if lock.is_file() {
            return Some(lock);
        }
        if cur == workspace_root {
            break;
        }
        d = cur.parent();
    }
    None
}

/// Directories of the `path` dependencies in `dir/Cargo.toml` (normal and build).
fn path_dependencies(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return Vec::new();
    };
    let Ok(doc) = toml::from_str::<toml::Table>(&text) else {
        return Vec::new();
    };
    let mut tables: Vec<&toml::Table> = Vec::new();
    for key in ["dependencies", "build-dependencies"] {
        tables.extend(doc.get(key).and_then(|v| v.as_table()));
    }
    if let Some(targets) = doc.get("target").and_then(|t| t.as_table()) {
        for t in targets.values().filter_map(|t| t.as_table()) {
            for key in ["dependencies", "build-dependencies"] {
                tables.extend(t.get(key).and_then(|v| v.as_table()));
            }
        }
    }
    tables
        .into_iter()
        .flat_map(|t| t.values())
        .filter_map(|dep| dep.get("path").and_then(|p| p.as_str()))
        .map(|p| dir.join(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_hash_covers_sources_and_path_deps_but_not_target() {
        let ws = tempfile::tempdir().unwrap();
        let root = ws.path();
        let write = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "task/Cargo.toml",
            "[package]\nname = \"t\"\n[dependencies]\nsdk = { path = \"../sdk\" }\n",
        );
        write("task/src/main.rs", "fn main() {}");
        write("sdk/Cargo.toml", "[package]\nname = \"sdk\"\n");
        write("sdk/src/lib.rs", "");
        let h = || source_hash(&root.join("task"), root, "rustc 1");
        let first = h();
        write("task/target/junk", "ignored");
        assert_eq!(h(), first, "target/ is not a source");
        write("sdk/src/lib.rs", "pub fn f() {}");
        let second = h();
        assert_ne!(second, first, "a path dependency's source is covered");
        write("task/Cargo.lock", "# lock");
        assert_ne!(h(), second, "the lock file is covered");
        assert_ne!(
            source_hash(&root.join("task"), root, "rustc 2"),
            h(),
            "the compiler is covered"
        );
    }
}
