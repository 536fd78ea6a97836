//! `wask describe MODULE|REF`: what a plugin says of itself (name, summary, usage, the
//! inputs and outputs it expects), read from its module without running it.

use super::{CliError, EXIT_OK, EXIT_TASK_FAILED};
use crate::modules::describe;
use crate::workspace::ModuleSpec;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct DescribeArgs {
    /// A `.wasm` file, or a task (`project:task`, `~:task`) whose module to describe.
    #[arg(value_name = "MODULE|REF")]
    target: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn describe(directory: Option<PathBuf>, args: DescribeArgs) -> Result<i32, CliError> {
    let module = Module::find(directory, &args.target)?;
    let description = describe::read(&module.bytes)
        .map_err(|e| CliError::Usage(format!("{}: {e}", module.shown)))?;
    let Some(d) = description else {
        eprintln!(
            "{} carries no description (a `{}` custom section; a Rust plugin gets one from `wask_guest::main!`)",
            module.shown,
            describe::SECTION
        );
        return Ok(EXIT_TASK_FAILED);
    };
    if args.json {
        let text = serde_json::json!({
            "module": module.shown,
            "blake3": module.blake3(),
            // The same text a terminal would show: JSON escapes C0 controls only.
            "name": printable(&d.name),
            "summary": printable(&d.summary),
            "usage": printable(&d.usage),
            "inputs": printable(&d.inputs),
            "outputs": printable(&d.outputs),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&text).expect("JSON serialises")
        );
    } else {
        println!("{}: {}", printable(&d.name), printable(&d.summary));
        for (what, text) in [
            ("usage", &d.usage),
            ("inputs", &d.inputs),
            ("outputs", &d.outputs),
        ] {
            if !text.is_empty() {
                println!("  {what:<8} {}", printable(text));
            }
        }
        println!(
            "  {:<8} {} (blake3 = \"{}\")",
            "module",
            module.shown,
            module.blake3()
        );
    }
    Ok(EXIT_OK)
}

/// A module named on the command line: a file, or the module of a task.
pub(super) struct Module {
    pub bytes: Vec<u8>,
    /// How to name it in messages: the file as given, or `project:task (path)`.
    pub shown: String,
    /// The task, when a reference named it.
    pub task: Option<crate::refs::TaskId>,
}

impl Module {
    /// A path that exists or ends in `.wasm` is a file; anything else is a task
    /// reference, resolved in the workspace around `directory` (a crate module is built).
    pub(super) fn find(directory: Option<PathBuf>, target: &str) -> Result<Module, CliError> {
        let dir = super::start_dir(directory)?;
        let as_file = dir.join(target);
        if as_file.is_file() || target.ends_with(".wasm") {
            // No larger than a task may load: a module file is no reason to read gigabytes.
            let limit = wask_runtime::Limits::default().module_bytes;
            let bytes = crate::fs::read_named(&as_file, limit)
                .map_err(|e| CliError::Usage(format!("cannot read {target}: {e}")))?;
            return Ok(Module {
                bytes,
                shown: target.to_string(),
                task: None,
            });
        }
        let (ws, graph) = super::load(&dir)?;
        let selected = super::run::resolve_refs(&ws, &graph, &dir, &[target.to_string()])?;
        let [n] = selected[..] else {
            return Err(CliError::Usage(format!(
                "`{target}` names {} tasks; name one (`project:task`)",
                selected.len()
            )));
        };
        let cancel = crate::cancel::Cancel::on_signals()
            .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
        let keys = crate::exec::KeyContext::new(&ws, &graph, cancel)?;
        let def = graph.task(&ws, n);
        let id = graph.nodes[n].id.clone();
        // The bytes as they are now, whatever the pin says: `pin` is how a pin that no
        // longer matches is updated, and `describe` runs nothing.
        let unpinned = match &def.module_spec {
            ModuleSpec::File { path, .. } => ModuleSpec::File {
                path: path.clone(),
                pin: None,
            },
            ModuleSpec::Crate { dir, .. } => ModuleSpec::Crate {
                dir: dir.clone(),
                pin: None,
            },
        };
        let from = crate::modules::Obtain {
            ws: &ws,
            cache_dir: keys.cache.dir(),
            key: &keys.key,
            cancel: &keys.cancel,
        };
        let bytes = crate::modules::obtain(&from, &unpinned)
            .map_err(|e| CliError::Modules(vec![(id.to_string(), std::sync::Arc::new(e))]))?;
        Ok(Module {
            bytes,
            shown: format!("{id} ({})", def.module.value),
            task: Some(id),
        })
    }

    pub(super) fn blake3(&self) -> String {
        blake3::hash(&self.bytes).to_hex().to_string()
    }
}

/// A plugin's text as it may reach a terminal: the module is whoever's, so a control
/// character (a newline forging a line, an escape sequence hiding one) or a bidi
/// override is shown escaped, and a value is cut at 500 characters.
fn printable(text: &str) -> String {
    let shown: String = text
        .chars()
        .take(500)
        .flat_map(|c| {
            if c.is_control() || invisible(c) {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if text.chars().count() > 500 {
        format!("{shown}…")
    } else {
        shown
    }
}

/// Characters that change or hide how text around them shows without showing
/// themselves: line and paragraph separators, bidi controls, zero-width and other
/// format characters, fillers that render blank.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
        | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
        | '\u{ffa0}' | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e0fff}')
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_and_bidi_overrides_are_shown_escaped() {
        let forged = "ok\n  module   x (blake3 = \"00\")\u{1b}[8m\u{202e}";
        let shown = super::printable(forged);
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{shown}"
        );
        assert!(
            shown.contains("\\u{a}") && shown.contains("\\u{1b}"),
            "{shown}"
        );
    }
}
