//! `wask why REF...`: a task's cache key part by part, whether it is a hit, and for a
//! miss what changed since the last entry this task stored.

use super::{CliError, EXIT_OK};
use crate::exec::KeyContext;
use crate::exec::plan::{Planned, plan};
use crate::explain::{ExplainStore, Explained};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct WhyArgs {
    /// The tasks to explain (`project:task`, `~:task`, ...); their hard predecessors are
    /// planned too, since their outputs are part of the key.
    #[arg(value_name = "REFS", required = true)]
    refs: Vec<String>,
    /// Print JSON: for each task its state (`hit`, `miss`, `unknown`), key, parts and
    /// changes.
    #[arg(long)]
    json: bool,
}

pub fn why(directory: Option<PathBuf>, args: WhyArgs) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    let selected = super::run::resolve_refs(&ws, &graph, &dir, &args.refs)?;
    let run_set = graph.run_set(&selected);
    // Keys only: `why` starts no engine.
    let ctx = KeyContext::new(&ws, &graph)?;
    let history = ExplainStore::new(&ctx.wask_dir);
    let mut reports = Vec::new();
    for (n, planned) in plan(&ctx, &run_set) {
        if !selected.contains(&n) {
            continue;
        }
        let node = &graph.nodes[n];
        let def = graph.task(&ws, n);
        let report = match planned {
            Planned::AfterRunning(preds) => {
                let names: Vec<String> = preds.iter().map(ToString::to_string).collect();
                serde_json::json!({
                    "id": node.id.to_string(),
                    "state": "unknown",
                    "reason": format!(
                        "the key depends on the output of {}, which is not in the cache and would run first",
                        names.join(", ")
                    ),
                })
            }
            Planned::Error(e) => serde_json::json!({
                "id": node.id.to_string(), "state": "unknown", "reason": e,
            }),
            Planned::Known { prepared, entry } => {
                let now = Explained::new(&prepared.parts, &ctx.key);
                let last = history.last(&node.id);
                let changes = match (&entry, &last) {
                    (Some(_), _) => None,
                    (None, Some(last)) => Some(now.changes_since(last)),
                    (None, None) => None,
                };
                serde_json::json!({
                    "id": node.id.to_string(),
                    "state": if entry.is_some() { "hit" } else { "miss" },
                    "key": now.key,
                    "module_path": def.module.value,
                    "parts": now,
                    "stored_at": entry.as_ref().map(|e| humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.manifest.created_at),
                    ).to_string()),
                    "stored_by": entry.as_ref().map(|e| e.manifest.stored_by.clone()),
                    "has_history": last.is_some(),
                    // SANDBOX-009: what the stored run opened and was refused.
                    "access": entry.as_ref().map(|e| serde_json::json!({
                        "opened": e.manifest.access.opened,
                        "refused": e.manifest.access.refused,
                    })),
                    "changes": changes,
                    "predecessors": node.hard.iter().map(|p| graph.nodes[*p].id.to_string()).collect::<Vec<_>>(),
                })
            }
        };
        reports.push(report);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "tasks": reports }))
            .expect("JSON serialises");
        println!("{text}");
    } else {
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print_report(r);
        }
    }
    Ok(EXIT_OK)
}

fn print_report(r: &serde_json::Value) {
    let id = r["id"].as_str().unwrap_or_default();
    let state = r["state"].as_str().unwrap_or_default();
    if state == "unknown" {
        println!("{id}: key not known yet");
        println!("  {}", r["reason"].as_str().unwrap_or_default());
        return;
    }
    let p = &r["parts"];
    println!("{id}: {state}");
    println!(
        "  key          {} ({})",
        r["key"].as_str().unwrap_or_default(),
        p["hash"].as_str().unwrap_or_default()
    );
    println!(
        "  module       {}  {}",
        r["module_path"].as_str().unwrap_or_default(),
        p["module"].as_str().unwrap_or_default()
    );
    println!("  args         {}", p["args"]);
    println!(
        "  project dir  {}",
        p["project_dir"].as_str().unwrap_or_default()
    );
    let inputs = p["inputs"].as_object().cloned().unwrap_or_default();
    println!(
        "  inputs       {} file{}",
        inputs.len(),
        if inputs.len() == 1 { "" } else { "s" }
    );
    for (path, hash) in &inputs {
        println!("    {path}  {}", hash.as_str().unwrap_or_default());
    }
    println!("  outputs      {}", p["outputs"]);
    let preds = r["predecessors"].as_array().cloned().unwrap_or_default();
    let streams = p["predecessors"].as_array().cloned().unwrap_or_default();
    if preds.is_empty() {
        println!("  after        (no hard predecessors)");
    }
    for (pred, s) in preds.iter().zip(&streams) {
        println!(
            "  after        {}  stdout {}  stderr {}",
            pred.as_str().unwrap_or_default(),
            s[0].as_str().unwrap_or_default(),
            s[1].as_str().unwrap_or_default()
        );
    }
    let env = p["env"].as_object().cloned().unwrap_or_default();
    if env.is_empty() {
        println!("  env          (none declared)");
    }
    for (name, v) in &env {
        println!("  env          {name}: {}", v.as_str().unwrap_or_default());
    }
    println!(
        "  sandbox      clock {}",
        p["clock"].as_str().unwrap_or_default()
    );
    match state {
        "hit" => {
            println!(
                "  hit: the entry stored by {} at {} is restored",
                r["stored_by"].as_str().unwrap_or_default(),
                r["stored_at"].as_str().unwrap_or_default()
            );
            let list = |k: &str| {
                r["access"][k]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let (opened, refused) = (list("opened"), list("refused"));
            println!(
                "  inputs it read: {}",
                if opened.is_empty() { "(none)" } else { &opened }
            );
            if !refused.is_empty() {
                println!("  it tried undeclared paths: {refused}");
            }
        }
        _ if !r["has_history"].as_bool().unwrap_or(false) => {
            println!("  miss: this task has stored no entry in this cache yet")
        }
        _ => {
            let changes = r["changes"].as_array().cloned().unwrap_or_default();
            if changes.is_empty() {
                println!(
                    "  miss: the parts equal those of its last entry, which is no longer in the cache"
                );
            } else {
                println!("  miss: since its last entry");
                for c in changes {
                    println!("    - {}", c.as_str().unwrap_or_default());
                }
            }
        }
    }
}
