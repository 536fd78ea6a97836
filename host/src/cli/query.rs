//! `wask query`: list the workspace's tasks, filtered by project tags, project names and
//! task names.
//!
//! Each filter uses the grammar of overlay tag filters (WS-006, [`crate::filter`]):
//! names, `!`, `&`, `|` and parentheses. In `--tags` a name holds for a project that
//! has that tag; in `--projects` for the project of that name; in `--tasks` for the
//! task of that name. A task is listed when every given filter holds; output is in
//! canonical (project, task) order (ID-002).

use super::{CliError, EXIT_OK};
use crate::filter::Filter;
use crate::workspace::Workspace;
use clap::Args;
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Args)]
pub struct QueryArgs {
    /// Keep the projects whose tags match FILTER, e.g. `docs & !slow | web`.
    #[arg(long, value_name = "FILTER")]
    tags: Option<String>,
    /// Keep the projects whose names match FILTER, e.g. `site | content`, `!legacy`.
    #[arg(long, value_name = "FILTER")]
    projects: Option<String>,
    /// Keep the tasks whose names match FILTER, e.g. `build | test`.
    #[arg(long, value_name = "FILTER")]
    tasks: Option<String>,
    /// Print JSON: `{"tasks": [{"id", "project", "task", "tags", "module", "inputs",
    /// "outputs"}]}`.
    #[arg(long)]
    json: bool,
}

pub fn query(directory: Option<PathBuf>, args: QueryArgs) -> Result<i32, CliError> {
    // Check the filters before loading, so a typo is reported even in a broken workspace.
    let tags = parse("--tags", args.tags.as_deref())?;
    let projects = parse("--projects", args.projects.as_deref())?;
    let tasks = parse("--tasks", args.tasks.as_deref())?;
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    warn_unknown(&ws, tags.as_ref(), projects.as_ref(), tasks.as_ref());

    let holds =
        |f: &Option<Filter>, has: &dyn Fn(&str) -> bool| f.as_ref().is_none_or(|f| f.matches(has));
    let listed: Vec<usize> = (0..graph.nodes.len())
        .filter(|&n| {
            let node = &graph.nodes[n];
            let project = &ws.projects[node.project];
            holds(&tags, &|t| project.tags.iter().any(|x| x == t))
                && holds(&projects, &|p| p == project.name)
                && holds(&tasks, &|t| t == node.id.task)
        })
        .collect();

    if args.json {
        let strings = |v: &[crate::workspace::Located<String>]| {
            v.iter().map(|l| l.value.clone()).collect::<Vec<_>>()
        };
        let out: Vec<serde_json::Value> = listed
            .iter()
            .map(|&n| {
                let node = &graph.nodes[n];
                let def = graph.task(&ws, n);
                serde_json::json!({
                    "id": node.id.to_string(),
                    "project": node.id.project,
                    "task": node.id.task,
                    "tags": ws.projects[node.project].tags,
                    "module": def.module.value,
                    "inputs": strings(&def.inputs),
                    "outputs": strings(&def.outputs),
                    "description": def.description,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "tasks": out }))
                .expect("query serialises")
        );
    } else {
        // `project:task`, and its description beside it, aligned.
        let width = listed
            .iter()
            .map(|&n| graph.nodes[n].id.to_string().len())
            .max()
            .unwrap_or(0);
        for &n in &listed {
            let id = graph.nodes[n].id.to_string();
            match &graph.task(&ws, n).description {
                Some(d) => println!("{id:<width$}  {d}"),
                None => println!("{id}"),
            }
        }
        if listed.is_empty() {
            eprintln!("no task matches");
        }
    }
    Ok(EXIT_OK)
}

/// Parses one option's filter; a syntax error is a usage error with a caret under it.
fn parse(option: &str, text: Option<&str>) -> Result<Option<Filter>, CliError> {
    let Some(text) = text else { return Ok(None) };
    Filter::parse(text).map(Some).map_err(|e| {
        CliError::Usage(format!(
            "invalid {option} filter: {}\n{}",
            e.message,
            e.caret(text, "    ")
        ))
    })
}

/// A name no project or task has is likely a typo: say so (the query still runs).
fn warn_unknown(
    ws: &Workspace,
    tags: Option<&Filter>,
    projects: Option<&Filter>,
    tasks: Option<&Filter>,
) {
    let known_tags: BTreeSet<&str> = ws
        .projects
        .iter()
        .flat_map(|p| p.tags.iter().map(String::as_str))
        .collect();
    let known_tasks: BTreeSet<&str> = ws
        .projects
        .iter()
        .flat_map(|p| p.tasks.keys().map(String::as_str))
        .collect();
    let warn = |f: Option<&Filter>, known: &dyn Fn(&str) -> bool, what: &str| {
        for name in f.map(Filter::names).unwrap_or_default() {
            if !known(name) {
                eprintln!("warning: {what} `{name}`");
            }
        }
    };
    warn(tags, &|t| known_tags.contains(t), "no project has the tag");
    warn(
        projects,
        &|p| ws.project(p).is_some(),
        "there is no project",
    );
    warn(tasks, &|t| known_tasks.contains(t), "no project has a task");
}
