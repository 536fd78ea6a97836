//! `wask new-task NAME [--project DIR]`: scaffold a guest crate that uses the
//! `wask-guest` SDK and declare a task that runs it, so `wask run NAME` works at once.
//!
//! The crate goes to `<project>/tasks/NAME/`; the SDK is written once per workspace to
//! `<workspace>/wask-guest/` (the same source this wask was built with), so the crate
//! builds without anything outside the workspace but the crate registry.

use super::{CliError, EXIT_OK};
use crate::workspace::Project;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct NewTaskArgs {
    /// The task's name (and the crate's): letters, digits, `_`, `-`.
    name: String,
    /// The project directory to add the task to [default: the project containing the
    /// current directory, or the only project].
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
}

const SDK_DIR: &str = "wask-guest";
const SDK_LIB: &str = include_str!("../../../guest-sdk/src/lib.rs");

pub fn new_task(directory: Option<PathBuf>, args: NewTaskArgs) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, _) = super::load(&dir)?;
    crate::workspace::check_name(&args.name)
        .map_err(|e| CliError::Usage(format!("`{}` cannot name a task: {e}", args.name)))?;
    let project = pick_project(&ws.projects, &ws.root, &dir, args.project.as_deref())?;
    if project.tasks.contains_key(&args.name) {
        return Err(CliError::Usage(format!(
            "project {} already has a task `{}`",
            project.name, args.name
        )));
    }
    let project_host = ws.host_path(&project.dir);
    let crate_rel = format!("tasks/{}", args.name);
    let crate_dir = project_host.join(&crate_rel);
    if crate_dir.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists; choose another name or remove it",
            crate_dir.display()
        )));
    }
    let sdk_dir = ws.root.join(SDK_DIR);
    let write = |path: &Path, text: &str| -> Result<(), CliError> {
        std::fs::create_dir_all(path.parent().expect("files have parents"))
            .and_then(|_| std::fs::write(path, text))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()).into())
    };
    if !sdk_dir.join("Cargo.toml").exists() {
        write(&sdk_dir.join("Cargo.toml"), &sdk_manifest())?;
        write(&sdk_dir.join("src/lib.rs"), SDK_LIB)?;
        println!("wrote the wask-guest SDK to {}", sdk_dir.display());
    }
    // From <project>/tasks/NAME back up to the workspace root.
    let depth = project.dir.split('/').filter(|s| !s.is_empty()).count() + 2;
    let sdk_path = format!("{}{SDK_DIR}", "../".repeat(depth));
    write(
        &crate_dir.join("Cargo.toml"),
        &crate_manifest(&args.name, &sdk_path),
    )?;
    write(&crate_dir.join("src/main.rs"), &crate_main(&args.name))?;

    let toml_path = project_host.join("wask.toml");
    let mut text = std::fs::read_to_string(&toml_path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", toml_path.display()))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&task_table(&args.name, &crate_rel));
    write(&toml_path, &text)?;
    println!("created the guest crate {}", crate_dir.display());
    println!(
        "added task {}:{} to {}",
        project.name,
        args.name,
        toml_path.display()
    );
    println!(
        "next: `wask run {}:{}` builds it for wasm32-wasip1 and runs it;",
        project.name, args.name
    );
    println!(
        "      `cargo test --manifest-path {}/Cargo.toml` tests it natively",
        crate_dir.display()
    );
    Ok(EXIT_OK)
}

fn pick_project<'w>(
    projects: &'w [Project],
    root: &Path,
    cwd: &Path,
    chosen: Option<&Path>,
) -> Result<&'w Project, CliError> {
    let by_dir = |d: &Path| {
        let d = d.canonicalize().ok()?;
        projects.iter().find(|p| {
            root.join(p.dir.trim_start_matches('/'))
                .canonicalize()
                .ok()
                .as_deref()
                == Some(&d)
        })
    };
    if let Some(dir) = chosen {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            cwd.join(dir)
        };
        return by_dir(&dir).ok_or_else(|| {
            CliError::Usage(format!(
                "{} is not a project directory of this workspace",
                dir.display()
            ))
        });
    }
    let mut here = cwd.canonicalize().ok();
    while let Some(d) = here {
        if let Some(p) = by_dir(&d) {
            return Ok(p);
        }
        here = d.parent().map(Path::to_path_buf);
    }
    match projects {
        [only] => Ok(only),
        _ => Err(CliError::Usage(
            "which project? run inside a project directory or pass --project DIR".into(),
        )),
    }
}

fn sdk_manifest() -> String {
    format!(
        r#"# The wask-guest SDK, written by `wask new-task` (wask {}).
[package]
name = "wask-guest"
version = "{}"
edition = "2024"
publish = false

[dependencies]
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[dev-dependencies]
tempfile = "3"

[workspace]
"#,
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    )
}

fn crate_manifest(name: &str, sdk_path: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
wask-guest = {{ path = "{sdk_path}" }}

[dev-dependencies]
tempfile = "3"

# Small modules: wask compiles each once and caches it.
[profile.release]
opt-level = "s"
lto = true
panic = "abort"
strip = true
codegen-units = 1

# A crate of its own, never a member of an enclosing cargo workspace.
[workspace]
"#
    )
}

fn crate_main(name: &str) -> String {
    format!(
        r#"//! The `{name}` task: writes a report of its declared inputs to the file named by its
//! first argument. Replace `report` with what the task should do.

// What `wask describe` shows of this plugin, embedded in its module; argument errors
// end with the usage.
wask_guest::main! {{
    name: "{name}",
    summary: "writes a report of its declared inputs",
    usage: "args = [OUT_FILE]",
    inputs: "the files to report on",
    outputs: "OUT_FILE",
    run: write_report,
}}

fn write_report(task: &wask_guest::Task) -> wask_guest::Result<()> {{
    let [out] = task.args_exact::<1>()?;
    let report = report(task)?;
    task.write_output(&out, report)?;
    wask_guest::log(format!("{name}: wrote {{}}", task.resolve(&out)));
    Ok(())
}}

/// One line per declared input: its size and path.
fn report(task: &wask_guest::Task) -> wask_guest::Result<String> {{
    let mut text = format!("{{}} declared input(s)\n", task.inputs().len());
    for path in task.inputs() {{
        let bytes = task.read(path)?;
        text.push_str(&format!("{{:>10}}  {{path}}\n", bytes.len()));
    }}
    Ok(text)
}}

#[cfg(test)]
mod tests {{
    #[test]
    fn reports_every_input() {{
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("p")).unwrap();
        std::fs::write(dir.path().join("p/a.txt"), "hello").unwrap();
        let task = wask_guest::Task::from_parts(
            dir.path(),
            "/p",
            vec!["out.txt".into()],
            vec!["/p/a.txt".into()],
            vec!["/p/out.txt".into()],
        );
        assert_eq!(super::report(&task).unwrap(), "1 declared input(s)\n         5  /p/a.txt\n");
    }}
}}
"#
    )
}

fn task_table(name: &str, crate_rel: &str) -> String {
    format!(
        r#"
# Scaffolded by `wask new-task {name}`: the guest crate in {crate_rel}/.
[tasks.{name}]
module = {{ crate = "{crate_rel}" }}
args = ["out/{name}.txt"]
inputs = ["wask.toml"]
outputs = ["out/{name}.txt"]
"#
    )
}
