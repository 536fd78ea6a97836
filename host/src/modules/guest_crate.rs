//! Building a guest crate (`module = { crate = "/plugins/x" }`) for `wasm32-wasip1`.
//!
//! **Building a crate runs its build scripts and procedural macros natively, on this
//! machine, with this user's rights.** That is cargo's nature, not wask's choice; a
//! crate is trusted like any code you build. What wask adds:
//!
//! * a clean, fixed environment: cargo sees only [`KEPT_ENV`] (and the network settings
//!   of [`FETCH_ENV`], which cannot change what is built), with the crate's directory as
//!   its working directory;
//! * an honest build key: the toolchain (`rustc -vV` and `cargo -V`, asked exactly as
//!   the build asks), that environment, every file of the crate and of its path
//!   dependencies (hidden ones included; only a `target/` directory at their top is
//!   left out), the `Cargo.lock`, the cargo configuration and toolchain files in every
//!   directory above them and in `$CARGO_HOME`, and, once it has built, every file
//!   cargo's dep-info says the build read (an `include_str!` outside the crate, a build
//!   script's `rerun-if-changed`). A change to any of them is a rebuild;
//! * cargo's target directory is `<workspace>/.wask/build/`, never inside a cache
//!   directory that others may share or write;
//! * the built module is kept under `<cache>/built/`, authenticated with this user's key
//!   ([`super::built`]), so a writer of the cache cannot put their module in its place.
//!
//! Task outputs can never land on anything the build reads (see [`crate::protect`]).

use super::built::{BuildRecord, BuiltStore};
use super::{ModuleError, Obtain, TARGET};
use crate::cancel::Cancel;
use crate::workspace::Workspace;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variables cargo is given, and that the build key covers.
pub const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
];

/// Variables kept so that cargo can download dependencies (proxies, certificates).
/// They are not in the build key: `Cargo.lock` checksums fix the bytes fetched.
pub const FETCH_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CARGO_HTTP_CAINFO",
];

/// Files cargo and rustup read from every directory above a crate.
const CONFIG_FILES: &[&str] = &[
    ".cargo/config",
    ".cargo/config.toml",
    "rust-toolchain",
    "rust-toolchain.toml",
    "Cargo.toml",
    "Cargo.lock",
];

/// A command for `program` with exactly the environment of a build, run in `dir`.
fn clean_command(program: &std::ffi::OsStr, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().current_dir(dir);
    for name in KEPT_ENV.iter().chain(FETCH_ENV) {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd
}

fn cargo_program() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// What the build key says of the toolchain and environment.
fn toolchain(dir: &Path) -> String {
    let ask = |program: &std::ffi::OsStr, arg: &str| {
        clean_command(program, dir)
            .arg(arg)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let mut text = ask("rustc".as_ref(), "-vV");
    text.push_str(&ask(&cargo_program(), "-V"));
    for name in KEPT_ENV {
        text.push_str(&format!(
            "{name}={:?}\n",
            std::env::var_os(name).unwrap_or_default()
        ));
    }
    text
}

fn target_installed(dir: &Path) -> bool {
    clean_command("rustc".as_ref(), dir)
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

/// Builds the guest crate at workspace path `dir` (or takes the verified build of the
/// same inputs) and returns the module's bytes.
///
/// A build is kept under the key of its sources only if they held still while it ran:
/// the same key after the build as before, and nothing it read changed meanwhile (even
/// back to what it was). Sources that changed during the build (an editor saving; the
/// first build writing `Cargo.lock`) are built again, up to [`BUILD_ATTEMPTS`] times.
pub fn build(from: &Obtain<'_>, dir: &str) -> Result<Vec<u8>, ModuleError> {
    let ws = from.ws;
    let crate_dir = ws.host_path(dir);
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(ModuleError::Cargo {
            dir: dir.to_string(),
            message: format!("{} has no Cargo.toml", crate_dir.display()),
        });
    }
    let store = BuiltStore::new(from.cache_dir, from.key.clone());
    let tools = toolchain(&crate_dir);
    let mut before = source_key(&crate_dir, &ws.root, &tools);
    if let Some(bytes) = store.find(&before) {
        return Ok(bytes);
    }
    if !target_installed(&crate_dir) {
        return Err(ModuleError::TargetMissing(dir.to_string()));
    }
    eprintln!("building the guest crate {dir} for {TARGET} (release)");
    let target_dir = ws
        .root
        .join(".wask/build")
        .join(&blake3::hash(dir.as_bytes()).to_hex()[..16]);
    let build = Build {
        dir,
        crate_dir: &crate_dir,
        manifest: &manifest,
        target_dir: &target_dir,
        cancel: from.cancel,
    };
    for _ in 0..BUILD_ATTEMPTS {
        build.forget_own_packages()?;
        let started = file_system_now(&target_dir).map_err(|e| ModuleError::Cargo {
            dir: dir.to_string(),
            message: format!("cannot write to {}: {e}", target_dir.display()),
        })?;
        let (bytes, extra) = build.run()?;
        let after = source_key(&crate_dir, &ws.root, &tools);
        if after == before && !changed_since(&crate_dir, &ws.root, &extra, started) {
            // A failed store only costs a rebuild next time.
            let _ = store.keep(&after, &BuildRecord::new(&bytes, extra), &bytes);
            return Ok(bytes);
        }
        before = after;
    }
    Err(ModuleError::SourcesChanging(dir.to_string()))
}

/// How many builds a crate whose sources keep changing gets before wask gives up.
const BUILD_ATTEMPTS: usize = 3;

/// Files outside the crate a build read, each with the hash of its contents.
type FilesRead = Vec<(PathBuf, [u8; 32])>;

/// One guest crate's build, as cargo runs it.
struct Build<'a> {
    dir: &'a str,
    crate_dir: &'a Path,
    manifest: &'a Path,
    target_dir: &'a Path,
    cancel: &'a Cancel,
}

impl Build<'_> {
    /// Runs cargo with `args` in the build's clean environment.
    fn cargo(&self, args: &[&str]) -> Result<std::process::Output, ModuleError> {
        let mut cmd = clean_command(&cargo_program(), self.crate_dir);
        cmd.args(args)
            .arg("--manifest-path")
            .arg(self.manifest)
            .arg("--target-dir")
            .arg(self.target_dir);
        let progress = (args.first() == Some(&"build")).then_some(self.dir);
        super::cargo::run(cmd, self.cancel, progress).map_err(|stopped| match stopped {
            super::cargo::Stopped::Cancelled => ModuleError::Cancelled(self.dir.to_string()),
            super::cargo::Stopped::Io(e) => ModuleError::Cargo {
                dir: self.dir.to_string(),
                message: e.to_string(),
            },
        })
    }

    /// A cargo command that failed is the build's failure, with what cargo said.
    fn succeeded(&self, output: &std::process::Output) -> Result<(), ModuleError> {
        if output.status.success() {
            return Ok(());
        }
        Err(ModuleError::BuildFailed {
            dir: self.dir.to_string(),
            output: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_string(),
        })
    }

    /// Makes cargo rebuild the crate and its path dependencies from what their files
    /// hold now. Cargo decides what is fresh by modification times and wask by
    /// contents: a file whose contents changed under an old time stamp (restored from
    /// an archive, or put back by a tool) would otherwise leave the old build in place
    /// under the new key. Registry dependencies are fixed by `Cargo.lock` and stay.
    fn forget_own_packages(&self) -> Result<(), ModuleError> {
        if !self.target_dir.exists() {
            return Ok(());
        }
        let names = local_package_names(self.crate_dir);
        let mut args = vec!["clean", "--release", "--target", TARGET];
        for name in &names {
            args.extend(["-p", name.as_str()]);
        }
        let output = self.cargo(&args)?;
        self.succeeded(&output)?;
        Ok(())
    }

    /// Builds, returning the module and the files outside the crate its build read.
    fn run(&self) -> Result<(Vec<u8>, FilesRead), ModuleError> {
        let output = self.cargo(&[
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])?;
        self.succeeded(&output)?;
        let wasm =
            built_artifact(&output.stdout, self.manifest).ok_or_else(|| ModuleError::Cargo {
                dir: self.dir.to_string(),
                message: "the build produced no .wasm binary: a guest crate must have exactly one binary target".into(),
            })?;
        let bytes = std::fs::read(&wasm).map_err(|source| ModuleError::Read {
            path: wasm.display().to_string(),
            source,
        })?;
        let covered = crate_dirs(self.crate_dir);
        let extra = read_by_the_build(&wasm.with_extension("d"), &covered);
        Ok((bytes, extra))
    }
}

/// The package names of the crate at `dir` and of its path dependencies.
fn local_package_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = crate_dirs(dir)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("Cargo.toml")).ok())
        .filter_map(|text| text.parse::<toml::Table>().ok())
        .filter_map(|t| t.get("package")?.get("name")?.as_str().map(String::from))
        .collect();
    names.sort();
    names.dedup();
    names
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

/// Every file cargo's dep-info at `dep_info` lists that the source key does not already
/// cover (it lies outside `covered`), with the hash of its contents now.
fn read_by_the_build(dep_info: &Path, covered: &[PathBuf]) -> FilesRead {
    let Ok(text) = std::fs::read_to_string(dep_info) else {
        return Vec::new();
    };
    let mut files = BTreeSet::new();
    for line in text.lines() {
        let Some((_, deps)) = split_rule(line) else {
            continue;
        };
        files.extend(dep_info_paths(deps));
    }
    files
        .into_iter()
        // Dep-info paths are as rustc saw them (`src/../../shared/x`): resolved first,
        // or a file outside the crate would pass for one inside it.
        .map(|p| p.canonicalize().unwrap_or(p))
        .filter(|p| !covered.iter().any(|d| p.starts_with(d)))
        .map(|p| {
            let digest = std::fs::read(&p)
                .map(|b| *blake3::hash(&b).as_bytes())
                .unwrap_or([0; 32]);
            (p, digest)
        })
        .collect()
}

/// `target: deps` of one dep-info line, at the first `: ` that is not escaped.
fn split_rule(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b':' && bytes[i + 1] == b' ' && (i == 0 || bytes[i - 1] != b'\\'))
        .map(|i| (&line[..i], &line[i + 2..]))
}

/// The paths of a dep-info rule's right side: separated by spaces, `\ ` an escaped space.
fn dep_info_paths(deps: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' => {
                if !current.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(PathBuf::from(current));
    }
    out
}

/// The host directories cargo reads for the crate at `dir`: the crate and its path
/// dependencies, transitively, canonical.
fn crate_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(d) = d.canonicalize() else { continue };
        if seen.insert(d.clone()) {
            pending.extend(path_dependencies(&d));
        }
    }
    seen.into_iter().collect()
}

/// The workspace paths cargo reads for the crate at workspace path `dir`: the crate and
/// its path dependencies that lie in the workspace ([`crate::protect`]).
pub fn crate_source_dirs(ws: &Workspace, dir: &str) -> Vec<String> {
    let mut out = vec![dir.to_string()];
    for d in crate_dirs(&ws.host_path(dir)) {
        if let Ok(rel) = d.strip_prefix(&ws.root) {
            out.push(format!("/{}", rel.to_string_lossy()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The key of everything a build of the crate at `dir` reads that wask can name before
/// it builds (see the module docs).
pub fn source_key(dir: &Path, workspace_root: &Path, toolchain: &str) -> String {
    let mut h = blake3::Hasher::new();
    let mut frame = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    frame(b"wask-guest-crate-2");
    frame(toolchain.as_bytes());
    let dirs = crate_dirs(dir);
    for d in &dirs {
        frame(d.to_string_lossy().as_bytes());
        for entry in crate_tree(d).filter(|e| e.file_type().is_file()) {
            frame(
                entry
                    .path()
                    .strip_prefix(d)
                    .unwrap_or(entry.path())
                    .to_string_lossy()
                    .as_bytes(),
            );
            frame(&std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    for c in config_files(&dirs, workspace_root) {
        frame(c.to_string_lossy().as_bytes());
        match std::fs::read(&c) {
            Ok(bytes) => {
                frame(b"present");
                frame(&bytes);
            }
            Err(_) => frame(b"absent"),
        }
    }
    h.finalize().to_hex().to_string()
}

/// Everything under a crate's directory `d` that its build may read, in name order: a
/// `target/` directory at its top is cargo's, not the crate's.
fn crate_tree(d: &Path) -> impl Iterator<Item = walkdir::DirEntry> {
    walkdir::WalkDir::new(d)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !(e.depth() == 1 && e.file_name() == "target" && e.file_type().is_dir()))
        .flatten()
}

/// The cargo and rustup configuration files a build of crates in `dirs` may read: in
/// every directory above them up to the workspace root (cargo reads on to the file
/// system root; the workspace root is where wask's writes stop), and in `$CARGO_HOME`.
fn config_files(dirs: &[PathBuf], workspace_root: &Path) -> BTreeSet<PathBuf> {
    let mut configs = BTreeSet::new();
    for d in dirs {
        let mut above = d.parent();
        while let Some(a) = above {
            for f in CONFIG_FILES {
                configs.insert(a.join(f));
            }
            if a == workspace_root || !a.starts_with(workspace_root) {
                break;
            }
            above = a.parent();
        }
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home {
        configs.insert(home.join("config"));
        configs.insert(home.join("config.toml"));
    }
    configs
}

/// A moment on the file system's own clock: the change time of a file made now in
/// `dir`. Comparing change times with it, not with the system clock, keeps both on the
/// clock and granularity the kernel stamps files with.
fn file_system_now(dir: &Path) -> std::io::Result<(i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(dir)?;
    let mark = dir.join("wask-build-started");
    std::fs::write(&mark, b"")?;
    let meta = std::fs::metadata(&mark)?;
    Ok((meta.ctime(), meta.ctime_nsec()))
}

/// Whether anything the build of the crate at `dir` read changed at or after `since`
/// (a [`file_system_now`]): a file or directory of the crate or its path dependencies,
/// a configuration file, or a file outside them the build read (`extra`). A change
/// time cannot be set back by its owner, so an edit undone before the build ended
/// (which leaves the contents as they were) still shows.
fn changed_since(dir: &Path, workspace_root: &Path, extra: &FilesRead, since: (i64, i64)) -> bool {
    use std::os::unix::fs::MetadataExt;
    let changed =
        |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| (m.ctime(), m.ctime_nsec()) >= since);
    let dirs = crate_dirs(dir);
    dirs.iter()
        .flat_map(|d| crate_tree(d))
        .any(|e| changed(e.path()))
        || config_files(&dirs, workspace_root)
            .iter()
            .any(|c| changed(c))
        || extra.iter().any(|(p, _)| changed(p))
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

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn the_source_key_covers_sources_hidden_files_path_deps_and_configuration() {
        let ws = tempfile::tempdir().unwrap();
        let root = &ws.path().canonicalize().unwrap();
        write(
            root,
            "task/Cargo.toml",
            "[package]\nname = \"t\"\n[dependencies]\nsdk = { path = \"../sdk\" }\n",
        );
        write(root, "task/src/main.rs", "fn main() {}");
        write(root, "sdk/Cargo.toml", "[package]\nname = \"sdk\"\n");
        write(root, "sdk/src/lib.rs", "");
        let key = || source_key(&root.join("task"), root, "rustc 1");
        let mut seen = BTreeSet::from([key()]);
        write(root, "task/target/junk", "ignored");
        assert!(!seen.insert(key()), "target/ is not a source");
        for (what, rel) in [
            ("a path dependency's source", "sdk/src/lib.rs"),
            ("the lock file", "task/Cargo.lock"),
            ("a hidden file", "task/.data/x"),
            ("a nested `target` name", "task/src/target/mod.rs"),
            ("cargo configuration above the crate", ".cargo/config.toml"),
            ("a toolchain file above the crate", "rust-toolchain.toml"),
            ("a workspace manifest above the crate", "Cargo.toml"),
        ] {
            write(root, rel, "changed");
            assert!(seen.insert(key()), "{what} is not covered");
        }
        assert!(
            seen.insert(source_key(&root.join("task"), root, "rustc 2")),
            "the toolchain is covered"
        );
    }

    #[test]
    fn dep_info_lists_escaped_paths() {
        let line = r"/t/release/x.wasm: /a/src/main.rs /a/.data/my\ file.txt /b/c.rs";
        let (target, deps) = split_rule(line).unwrap();
        assert_eq!(target, "/t/release/x.wasm");
        assert_eq!(
            dep_info_paths(deps),
            [
                PathBuf::from("/a/src/main.rs"),
                PathBuf::from("/a/.data/my file.txt"),
                PathBuf::from("/b/c.rs")
            ]
        );
    }
}
