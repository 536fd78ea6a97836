//! `wask pin MODULE|REF [--write]`: the `blake3 =` digest that pins a module, so nobody
//! needs `b3sum`; with `--write`, put into the task's `module` in its `wask.toml`
//! (comments and layout kept).

use super::describe::Module;
use super::{CliError, EXIT_OK};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PinArgs {
    /// A `.wasm` file, or a task (`project:task`, `~:task`) whose module to pin (a guest
    /// crate is built, and its build pinned).
    #[arg(value_name = "MODULE|REF")]
    target: String,
    /// Write the pin into the task's `module` (a task reference only).
    #[arg(long)]
    write: bool,
}

pub fn pin(directory: Option<PathBuf>, args: PinArgs) -> Result<i32, CliError> {
    let module = Module::find(directory.clone(), &args.target)?;
    let digest = module.blake3();
    if !args.write {
        println!("blake3 = \"{digest}\"");
        return Ok(EXIT_OK);
    }
    let Some(id) = &module.task else {
        return Err(CliError::Usage(format!(
            "--write needs a task to write the pin into, and {} is a file: name the task (`project:task`)",
            args.target
        )));
    };
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    let n = graph.find(id).expect("the task was just found");
    let def = graph.task(&ws, n);
    let file = ws.root.join(ws.sources.name(def.span.file));
    write_pin(&file, &id.task, &digest)
        .map_err(|e| CliError::Usage(format!("cannot pin {id} in {}: {e}", file.display())))?;
    println!(
        "pinned {id}: blake3 = \"{digest}\" in {}",
        ws.sources.name(def.span.file)
    );
    Ok(EXIT_OK)
}

/// Sets `blake3 = digest` in the `module` of task `task` in `file`: a string module
/// becomes `{ path = "...", blake3 = "..." }`. The file is replaced whole, by rename.
fn write_pin(file: &std::path::Path, task: &str, digest: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let mut found = Vec::new();
    if doc.get("tasks").and_then(|t| t.get(task)).is_some() {
        found.push(vec!["tasks".to_string(), task.to_string()]);
    }
    if let Some(overlays) = doc.get("overlays").and_then(|o| o.as_table_like()) {
        for (name, overlay) in overlays.iter() {
            if overlay.get("tasks").and_then(|t| t.get(task)).is_some() {
                found.push(vec![
                    "overlays".into(),
                    name.into(),
                    "tasks".into(),
                    task.into(),
                ]);
            }
        }
    }
    let [path] = &found[..] else {
        return Err(format!(
            "found {} definitions of task `{task}` in the file; pin it by hand",
            found.len()
        ));
    };
    if path[0] == "overlays" {
        return Err(format!(
            "task `{task}` comes from the overlay `{}`, which every project it matches shares: a pin there would hold for all of them; pin it by hand if they all run the same module",
            path[1]
        ));
    }
    let mut item = doc.as_item_mut();
    for key in path {
        item = &mut item[key.as_str()];
    }
    let module = &mut item["module"];
    if let Some(value) = module.as_value().filter(|v| v.is_str()) {
        let written = value.as_str().unwrap_or_default().to_string();
        // The comment after the value stays after it.
        let decor = value.decor().clone();
        let mut table = toml_edit::InlineTable::new();
        table.insert("path", written.into());
        table.insert("blake3", digest.into());
        *table.decor_mut() = decor;
        *module = toml_edit::Item::Value(toml_edit::Value::InlineTable(table));
    } else if let Some(table) = module.as_table_like_mut() {
        table.insert("blake3", toml_edit::value(digest));
    } else {
        return Err("its `module` is neither a path nor a table".into());
    }
    let dir = file.parent().ok_or("the file has no directory")?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut temp, doc.to_string().as_bytes()).map_err(|e| e.to_string())?;
    // The file keeps its mode (a temporary file is made 0600).
    let mode = std::fs::metadata(file)
        .map_err(|e| e.to_string())?
        .permissions();
    temp.as_file()
        .set_permissions(mode)
        .map_err(|e| e.to_string())?;
    temp.persist(file).map_err(|e| e.error.to_string())?;
    Ok(())
}
