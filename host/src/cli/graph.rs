//! `wask graph`: print the task graph as Graphviz dot, Mermaid or JSON.
//!
//! With references, the graph shown is their run set (the tasks and their transitive
//! hard predecessors, EXEC-001); without, every task. Edges point the way work flows:
//! from a predecessor to the task that waits for it. Hard edges (`deps`, DAG-001) are
//! solid; soft edges (`weak_deps`, DAG-002) are dashed and shown only when both ends are
//! in the graph shown, which is when they order anything. Tasks are grouped by project
//! and listed in canonical (project, task) order (ID-002).

use super::{CliError, EXIT_OK};
use crate::graph::Graph;
use crate::workspace::Workspace;
use clap::{Args, ValueEnum};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args)]
pub struct GraphArgs {
    /// Show only these tasks and what they need (their run set): `project:task`,
    /// `~:task`, `^:task`, `[tag]:task` or a bare `task`. Without: every task.
    #[arg(value_name = "REFS")]
    refs: Vec<String>,
    /// `dot` (Graphviz), `mermaid` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Dot)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Dot,
    Mermaid,
    Json,
}

pub fn graph(directory: Option<PathBuf>, args: GraphArgs) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    let shown = if args.refs.is_empty() {
        (0..graph.nodes.len()).collect()
    } else {
        graph.run_set(&super::run::resolve_refs(&ws, &graph, &dir, &args.refs)?)
    };
    let view = View::new(&graph, &shown);
    let text = match args.format {
        Format::Dot => view.dot(&ws),
        Format::Mermaid => view.mermaid(&ws),
        Format::Json => view.json(),
    };
    print!("{text}");
    Ok(EXIT_OK)
}

/// The part of the graph to print: nodes in canonical order, and their edges within it.
struct View<'g> {
    graph: &'g Graph,
    /// Node indices, sorted.
    nodes: Vec<usize>,
    /// Per shown node (same order as `nodes`): hard and soft predecessors in the view.
    edges: Vec<(Vec<usize>, Vec<usize>)>,
}

impl<'g> View<'g> {
    fn new(graph: &'g Graph, shown: &[usize]) -> View<'g> {
        let mut nodes = shown.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        let in_view = |p: &&usize| nodes.binary_search(p).is_ok();
        let edges = nodes
            .iter()
            .map(|&n| {
                let node = &graph.nodes[n];
                (
                    node.hard.iter().filter(in_view).copied().collect(),
                    node.soft.iter().filter(in_view).copied().collect(),
                )
            })
            .collect();
        View {
            graph,
            nodes,
            edges,
        }
    }

    fn id(&self, n: usize) -> String {
        self.graph.nodes[n].id.to_string()
    }

    /// Runs of consecutive shown nodes of one project (canonical order groups them).
    fn by_project(&self) -> Vec<(usize, &[usize])> {
        self.nodes
            .chunk_by(|a, b| self.graph.nodes[*a].project == self.graph.nodes[*b].project)
            .map(|run| (self.graph.nodes[run[0]].project, run))
            .collect()
    }

    /// Every edge as (predecessor, successor, soft), in canonical order of successor
    /// then predecessor.
    fn all_edges(&self) -> Vec<(usize, usize, bool)> {
        let mut out = Vec::new();
        for (&n, (hard, soft)) in self.nodes.iter().zip(&self.edges) {
            let mut preds: Vec<(usize, bool)> = hard.iter().map(|&p| (p, false)).collect();
            preds.extend(soft.iter().map(|&p| (p, true)));
            preds.sort_unstable();
            out.extend(preds.into_iter().map(|(p, s)| (p, n, s)));
        }
        out
    }

    fn dot(&self, ws: &Workspace) -> String {
        let mut s = String::from("digraph wask {\n  rankdir=LR;\n  node [shape=box];\n");
        for (p, tasks) in self.by_project() {
            let name = &ws.projects[p].name;
            let _ = writeln!(s, "  subgraph {} {{", quote(&format!("cluster_{name}")));
            let _ = writeln!(s, "    label={};", quote(name));
            for &n in tasks {
                let _ = writeln!(s, "    {};", quote(&self.id(n)));
            }
            s.push_str("  }\n");
        }
        for (p, n, soft) in self.all_edges() {
            let _ = writeln!(
                s,
                "  {} -> {}{};",
                quote(&self.id(p)),
                quote(&self.id(n)),
                if soft { " [style=dashed]" } else { "" }
            );
        }
        s.push_str("}\n");
        s
    }

    fn mermaid(&self, ws: &Workspace) -> String {
        // Mermaid ids cannot hold `:`; number the tasks and label them with their ids.
        let key = |n: usize| format!("t{}", self.nodes.binary_search(&n).unwrap());
        let mut s = String::from("graph LR\n");
        for (i, (p, tasks)) in self.by_project().into_iter().enumerate() {
            let _ = writeln!(s, "  subgraph p{i} [\"{}\"]", ws.projects[p].name);
            for &n in tasks {
                let _ = writeln!(s, "    {}[\"{}\"]", key(n), self.id(n));
            }
            s.push_str("  end\n");
        }
        for (p, n, soft) in self.all_edges() {
            let arrow = if soft { "-.->" } else { "-->" };
            let _ = writeln!(s, "  {} {arrow} {}", key(p), key(n));
        }
        s
    }

    fn json(&self) -> String {
        let ids = |v: &[usize]| v.iter().map(|&p| self.id(p)).collect::<Vec<_>>();
        let tasks: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .zip(&self.edges)
            .map(|(&n, (hard, soft))| {
                let node = &self.graph.nodes[n];
                serde_json::json!({
                    "id": node.id.to_string(),
                    "project": node.id.project,
                    "task": node.id.task,
                    "deps": ids(hard),
                    "weak_deps": ids(soft),
                })
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&serde_json::json!({ "tasks": tasks }))
            .expect("graph serialises");
        s.push('\n');
        s
    }
}

/// A Graphviz quoted id. Names are ID-001 (no quotes or backslashes), but be safe.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
