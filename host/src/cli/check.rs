//! `wask check`: load the workspace and report every error, running nothing; then look
//! at the files the tasks name, as a run would find them: modules that do not exist,
//! literal inputs that are missing or are directories (errors, exit 2), and input globs
//! that match nothing (warnings). What a predecessor writes is not looked for: it
//! exists only once that task has run.

use super::{CliError, EXIT_BAD_CONFIG, EXIT_OK};
use crate::exec::inputs;
use crate::graph::{Graph, can_meet};
use crate::workspace::{LoadError, LoadErrors, ModuleSpec, Workspace};
use codespan_reporting::term::termcolor::StandardStream;
use std::path::PathBuf;

pub fn check(directory: Option<PathBuf>) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    let findings = findings(&ws, &graph);
    let errors = findings.iter().filter(|f| !f.warning).count();
    if !findings.is_empty() {
        let shown = LoadErrors {
            sources: ws.sources,
            errors: findings,
            partial: None,
        };
        let mut err = StandardStream::stderr(super::color_choice());
        let _ = shown.render(&mut err);
        if errors > 0 {
            return Ok(EXIT_BAD_CONFIG);
        }
    }
    println!(
        "workspace {} is valid: {} project{}, {} task{}",
        ws.root.display(),
        ws.projects.len(),
        if ws.projects.len() == 1 { "" } else { "s" },
        graph.nodes.len(),
        if graph.nodes.len() == 1 { "" } else { "s" },
    );
    Ok(EXIT_OK)
}

/// Everything a run would trip over in the files the tasks name, in task order.
fn findings(ws: &Workspace, graph: &Graph) -> Vec<LoadError> {
    let mut out = Vec::new();
    let written = crate::graph::PathPatterns::outputs_of(ws);
    let excluded = [ws.root.join(".wask"), ws.settings.cache_dir.clone()];
    for (n, node) in graph.nodes.iter().enumerate() {
        let def = graph.task(ws, n);
        let module = &def.module;
        let missing = match &def.module_spec {
            ModuleSpec::File { path, .. } if !written.matches(path) => {
                crate::modules::missing_file(ws, path).map(|e| e.to_string())
            }
            ModuleSpec::Crate { dir, .. } => {
                crate::modules::missing_crate(ws, dir).map(|e| e.to_string())
            }
            ModuleSpec::File { .. } => None,
        };
        if let Some(text) = missing {
            let (message, hint) = split_hint(&text);
            let mut e = LoadError::at(module.span.clone(), message, "this module");
            if let Some(h) = hint {
                e = e.note(h);
            }
            out.push(e.note(format!("in task {}", node.id)));
        }
        let own_outputs: Vec<String> = def.outputs.iter().map(|o| o.value.clone()).collect();
        let written_before = |p: &str| {
            node.predecessor_outputs
                .iter()
                .chain(&node.dep_outputs)
                .any(|o| can_meet(o, p))
        };
        for input in &def.inputs {
            let pattern = input.value.as_str();
            if pattern.starts_with('!') || written_before(pattern) {
                continue;
            }
            let rules = inputs::Rules {
                excluded: &excluded,
                own_outputs: &own_outputs,
                predecessor_outputs: &node.predecessor_outputs,
                predecessor_wrote: &|_| false,
                gitignore: def.gitignore,
            };
            let is_glob = pattern.split('/').any(wask_runtime::paths::is_glob_segment);
            match inputs::resolve(&ws.root, &[pattern.to_string()], &rules) {
                Err(why) => out.push(
                    LoadError::at(input.span.clone(), why, "this input")
                        .note(format!("in task {}", node.id)),
                ),
                Ok(found) if found.is_empty() && is_glob => out.push(
                    LoadError::at(
                        input.span.clone(),
                        format!("input `{pattern}` of {} matches no file", node.id),
                        "matches nothing",
                    )
                    .note("a glob that matches nothing is no error, but often a misspelt path (globs are relative to the project, or workspace-absolute with a leading `/`)")
                    .as_warning(),
                ),
                Ok(_) => {}
            }
        }
    }
    out
}

/// A module error's message and its `hint:` line, apart.
fn split_hint(text: &str) -> (String, Option<String>) {
    match text.split_once("\n  hint: ") {
        Some((message, hint)) => (message.to_string(), Some(format!("hint: {hint}"))),
        None => (text.to_string(), None),
    }
}
