//! `wask init`: write a starter `wask.toml` in the current directory (or `-C DIR`).

use super::{CliError, EXIT_OK};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct InitArgs {
    /// The project's name [default: the directory's name, made a valid name].
    #[arg(long)]
    name: Option<String>,
}

pub fn init(directory: Option<PathBuf>, args: InitArgs) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let path = dir.join("wask.toml");
    let name = match args.name {
        Some(n) => n,
        None => default_name(&dir),
    };
    crate::workspace::check_name(&name).map_err(|e| {
        CliError::Usage(format!("`{name}` cannot name a project: {e}; pass --name"))
    })?;
    // `create_new` refuses an existing file atomically: never overwrite (not even a
    // file that appears between a check and the write).
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CliError::Usage(format!(
                "{} already exists; wask init never overwrites it",
                path.display()
            )));
        }
        Err(e) => return Err(anyhow::anyhow!("cannot create {}: {e}", path.display()).into()),
    };
    file.write_all(starter(&name).as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    match ignore_wask_dir(&dir) {
        Ok(true) => println!("added .wask/ to {}", dir.join(".gitignore").display()),
        Ok(false) => {}
        // The workspace file is written; a .gitignore left alone costs a line by hand.
        Err(e) => eprintln!("warning: could not add .wask/ to .gitignore: {e}"),
    }
    println!(
        "next: `wask new-task hello` scaffolds a task written in Rust; `wask run {name}:hello` runs it"
    );
    Ok(EXIT_OK)
}

/// Adds `.wask/` (the cache, scratch and ledger) to `dir/.gitignore`, creating it, unless
/// a line already ignores it; whether it was added.
fn ignore_wask_dir(dir: &std::path::Path) -> std::io::Result<bool> {
    let path = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let ignored = existing
        .lines()
        .map(str::trim)
        .any(|l| matches!(l, ".wask" | ".wask/" | "/.wask" | "/.wask/" | ".wask/*"));
    if ignored {
        return Ok(false);
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let sep = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    write!(file, "{sep}# wask's cache and scratch\n.wask/\n")?;
    Ok(true)
}

/// The directory's name with everything ID-001 forbids replaced by `-`.
fn default_name(dir: &std::path::Path) -> String {
    let raw = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    name = name.trim_start_matches(['-', '_']).to_string();
    if name.is_empty() {
        "main".to_string()
    } else {
        name
    }
}

fn starter(name: &str) -> String {
    format!(
        r#"# A wask workspace with one project: this directory.
# Every task is a WASI module that sees only what it declares.

[workspace]
# projects = ["libs/*", "apps/*"]   # more projects, each with its own wask.toml

[project]
name = "{name}"

# [tasks.hello]
# module = "/tools/hello.wasm"      # workspace-absolute, or relative to this project
# args = ["src", "dist"]
# inputs = ["src/**/*.md"]          # the only files the task can read
# outputs = ["dist/**"]             # the only places it can write
# deps = []                         # tasks that must succeed first
"#
    )
}
