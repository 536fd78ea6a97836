//! The task graph: hard edges from `deps` (DAG-001) and implied by inputs that read
//! other tasks' outputs (DAG-003, [`implied`]), soft edges from `weak_deps` (DAG-002),
//! and the checks of DAG-004, all reported together.

mod implied;
pub use implied::{PathPatterns, can_meet};
mod meet;

use crate::protect::{self, WriteRules};
use crate::refs::{TaskId, TaskRef};
use crate::workspace::{LoadError, TaskDef, Workspace};
use std::collections::{BTreeSet, HashMap};

/// One task in the graph.
#[derive(Debug)]
pub struct Node {
    pub id: TaskId,
    /// Index into `Workspace::projects`.
    pub project: usize,
    /// Hard predecessors, sorted by index (canonical order): declared and implied.
    pub hard: Vec<usize>,
    /// The hard predecessors that only DAG-003 implies (not in `deps`), sorted.
    pub implied: Vec<usize>,
    /// Soft predecessors, sorted by index.
    pub soft: Vec<usize>,
    /// The output patterns of the tasks named in `deps`: readable inputs of this task
    /// without being listed again (see `docs/decisions.md`, "dependency outputs").
    pub dep_outputs: Vec<String>,
    /// The output patterns of every hard predecessor: what they write is read even
    /// where `.gitignore` ignores it.
    pub predecessor_outputs: Vec<String>,
}

/// Every task of a workspace, indexed in canonical (project, task) order.
pub struct Graph {
    pub nodes: Vec<Node>,
    index: HashMap<TaskId, usize>,
}

impl Graph {
    /// Builds the graph, or returns every DAG-004 error found.
    pub fn build(ws: &Workspace) -> Result<Graph, Vec<LoadError>> {
        let mut nodes = Vec::new();
        for (pi, p) in ws.projects.iter().enumerate() {
            for t in p.tasks.keys() {
                nodes.push(Node {
                    id: TaskId {
                        project: p.name.clone(),
                        task: t.clone(),
                    },
                    project: pi,
                    hard: Vec::new(),
                    implied: Vec::new(),
                    soft: Vec::new(),
                    dep_outputs: Vec::new(),
                    predecessor_outputs: Vec::new(),
                });
            }
        }
        let index: HashMap<TaskId, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let mut errors = Vec::new();
        for i in 0..nodes.len() {
            let (hard, soft) = declared_edges(ws, &nodes, &index, i, &mut errors);
            nodes[i].hard = hard;
            nodes[i].soft = soft;
        }
        add_implied_edges(ws, &mut nodes);
        add_dep_outputs(ws, &mut nodes);
        let graph = Graph { nodes, index };
        errors.extend(graph.cycles(ws));
        errors.extend(overlapping_outputs(ws, &graph));
        let rules = WriteRules::new(ws, &graph, protect::reserved_paths(ws));
        errors.extend(protect::check_declarations(ws, &graph, &rules));
        if errors.is_empty() {
            Ok(graph)
        } else {
            Err(errors)
        }
    }

    pub fn find(&self, id: &TaskId) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub fn task<'w>(&self, ws: &'w Workspace, n: usize) -> &'w TaskDef {
        &ws.projects[self.nodes[n].project].tasks[&self.nodes[n].id.task]
    }

    /// The selected tasks plus their transitive hard predecessors (EXEC-001), sorted.
    pub fn run_set(&self, selected: &[usize]) -> Vec<usize> {
        let mut in_set = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = selected.to_vec();
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut in_set[n], true) {
                stack.extend(&self.nodes[n].hard);
            }
        }
        (0..self.nodes.len()).filter(|&n| in_set[n]).collect()
    }

    /// Every cycle through hard or soft edges, each printed as its path.
    fn cycles(&self, ws: &Workspace) -> Vec<LoadError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut mark = vec![Mark::New; self.nodes.len()];
        let mut seen = BTreeSet::new();
        let mut errors = Vec::new();
        for start in 0..self.nodes.len() {
            if mark[start] != Mark::New {
                continue;
            }
            // Iterative depth-first search; `path` holds the nodes on the current path.
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::OnPath;
            while let Some(&mut (n, ref mut next)) = path.last_mut() {
                let preds: Vec<usize> = self.nodes[n]
                    .hard
                    .iter()
                    .chain(&self.nodes[n].soft)
                    .copied()
                    .collect();
                if *next < preds.len() {
                    let p = preds[*next];
                    *next += 1;
                    match mark[p] {
                        Mark::New => {
                            mark[p] = Mark::OnPath;
                            path.push((p, 0));
                        }
                        Mark::OnPath => {
                            let from = path.iter().position(|&(m, _)| m == p).unwrap();
                            let mut cycle: Vec<usize> =
                                path[from..].iter().map(|&(m, _)| m).collect();
                            // Edges point at predecessors; show the order tasks would run.
                            cycle.reverse();
                            let rot = cycle.iter().enumerate().min_by_key(|(_, m)| **m).unwrap().0;
                            cycle.rotate_left(rot);
                            if seen.insert(cycle.clone()) {
                                let names: Vec<String> = cycle
                                    .iter()
                                    .chain(std::iter::once(&cycle[0]))
                                    .map(|&m| self.nodes[m].id.to_string())
                                    .collect();
                                let first = self.task(ws, cycle[0]);
                                let mut error = LoadError::at(
                                    first.span.clone(),
                                    format!("dependency cycle: {}", names.join(" -> ")),
                                    "this task is part of the cycle",
                                )
                                .note("tasks run in dependency order, so a cycle can never start");
                                for k in 0..cycle.len() {
                                    let (from, to) = (cycle[k], cycle[(k + 1) % cycle.len()]);
                                    if self.nodes[to].implied.contains(&from) {
                                        error = error.note(format!(
                                            "{} reads files that {} declares as outputs, so it must run after it (DAG-003)",
                                            self.nodes[to].id, self.nodes[from].id
                                        ));
                                    }
                                }
                                errors.push(error);
                            }
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[n] = Mark::Done;
                    path.pop();
                }
            }
        }
        errors
    }
}

/// Task `i`'s declared predecessors, hard and soft (a task in both is reported), with
/// every reference that names no task or the task itself reported.
fn declared_edges(
    ws: &Workspace,
    nodes: &[Node],
    index: &HashMap<TaskId, usize>,
    i: usize,
    errors: &mut Vec<LoadError>,
) -> (Vec<usize>, Vec<usize>) {
    let project = &ws.projects[nodes[i].project];
    let def = &project.tasks[&nodes[i].id.task];
    let mut resolve = |refs: &[crate::workspace::Located<TaskRef>], kind: &str| {
        let mut out = BTreeSet::new();
        for r in refs {
            let targets = r.value.resolve(ws, Some(&project.name));
            if targets.is_empty() && r.value.is_direct() {
                let what = format!(
                    "unresolved reference `{}` in {kind} of {}",
                    r.value, nodes[i].id
                );
                let (label, hint) = unresolved(ws, &project.name, &r.value);
                let mut error = LoadError::at(r.span.clone(), what, label);
                if !hint.is_empty() {
                    error = error.note(hint);
                }
                errors.push(error);
            }
            for t in targets {
                let j = index[&t];
                if j == i {
                    let what = format!(
                        "task {} depends on itself through `{}`",
                        nodes[i].id, r.value
                    );
                    errors.push(LoadError::at(r.span.clone(), what, "self reference"));
                } else {
                    out.insert(j);
                }
            }
        }
        out
    };
    let hard = resolve(&def.deps, "deps");
    let soft = resolve(&def.weak_deps, "weak_deps");
    for both in hard.intersection(&soft) {
        let what = format!(
            "{} appears in both `deps` and `weak_deps` of {}",
            nodes[*both].id, nodes[i].id
        );
        errors.push(
            LoadError::at(def.span.clone(), what, "declared here")
                .note("a predecessor is either hard (`deps`) or soft (`weak_deps`), not both"),
        );
    }
    let soft = soft.difference(&hard).copied().collect();
    (hard.into_iter().collect(), soft)
}

/// Why a direct reference names nothing, said as the label and a "did you mean" note:
/// no such project, or a project without that task.
fn unresolved(ws: &Workspace, own: &str, r: &TaskRef) -> (String, String) {
    use crate::workspace::suggest::did_you_mean;
    let (project, task) = match r {
        TaskRef::SameProject(t) => (own, t.as_str()),
        TaskRef::Project(p, t) => (p.as_str(), t.as_str()),
        _ => return ("no such task".into(), String::new()),
    };
    match ws.project(project) {
        None => {
            let names = ws.projects.iter().map(|p| p.name.as_str());
            (
                format!("no such project `{project}`"),
                did_you_mean(project, names),
            )
        }
        Some(p) => {
            let tasks = p.tasks.keys().map(String::as_str);
            let hint = crate::workspace::suggest::closest(task, tasks)
                .map(|t| {
                    let shown = if matches!(r, TaskRef::SameProject(_)) {
                        "~"
                    } else {
                        project
                    };
                    format!("did you mean `{shown}:{t}`?")
                })
                .unwrap_or_default();
            (format!("project `{project}` has no task `{task}`"), hint)
        }
    }
}

/// DAG-003: reading another task's outputs makes it a hard predecessor (and no longer
/// a soft one).
fn add_implied_edges(ws: &Workspace, nodes: &mut [Node]) {
    let patterns = |nodes: &[Node], f: fn(&TaskDef) -> &Vec<crate::workspace::Located<String>>| {
        nodes
            .iter()
            .map(|n| {
                let def = &ws.projects[n.project].tasks[&n.id.task];
                // An input exclusion (`!PATTERN`) names no file to read.
                f(def)
                    .iter()
                    .map(|l| l.value.clone())
                    .filter(|v| !v.starts_with('!'))
                    .collect()
            })
            .collect::<Vec<Vec<String>>>()
    };
    let producers = implied::implied_producers(
        &patterns(nodes, |d| &d.inputs),
        &patterns(nodes, |d| &d.outputs),
    );
    for (node, producers) in nodes.iter_mut().zip(producers) {
        node.implied = producers
            .into_iter()
            .filter(|p| node.hard.binary_search(p).is_err())
            .collect();
        if !node.implied.is_empty() {
            node.hard.extend(&node.implied);
            node.hard.sort_unstable();
            node.soft.retain(|s| node.implied.binary_search(s).is_err());
        }
    }
}

/// Two tasks whose outputs can name the same file (DAG-004): they would race for it,
/// and a cache hit of one would overwrite the other's result. Literal against literal,
/// literal against glob, and glob against glob by the rules of [`implied`].
fn overlapping_outputs(ws: &Workspace, g: &Graph) -> Vec<LoadError> {
    let outputs: Vec<Vec<String>> = (0..g.nodes.len())
        .map(|n| {
            g.task(ws, n)
                .outputs
                .iter()
                .map(|o| o.value.clone())
                .collect()
        })
        .collect();
    let mut pairs = BTreeSet::new();
    for (i, meets) in implied::implied_producers(&outputs, &outputs)
        .into_iter()
        .enumerate()
    {
        pairs.extend(meets.into_iter().map(|j| (i.min(j), i.max(j))));
    }
    let mut errors = Vec::new();
    for (m, n) in pairs {
        let (first, second) = (&g.task(ws, m).outputs, &g.task(ws, n).outputs);
        let found = second.iter().find_map(|b| {
            first
                .iter()
                .find(|a| implied::can_meet(&a.value, &b.value))
                .map(|a| (a, b))
        });
        let Some((a, b)) = found else { continue };
        let message = if a.value == b.value {
            format!(
                "{} and {} both declare the output {}",
                g.nodes[m].id, g.nodes[n].id, b.value
            )
        } else {
            format!(
                "the outputs of {} (`{}`) and {} (`{}`) can name the same file; two tasks may not write one path",
                g.nodes[m].id, a.value, g.nodes[n].id, b.value
            )
        };
        errors.push(
            LoadError::at(b.span.clone(), message, "declared again here")
                .also(a.span.clone(), "first declared here"),
        );
    }
    errors
}

/// Gives each task the output patterns of its declared hard dependencies, which it may
/// read as inputs: `deps = ["~:html"]` with no `inputs` sees the pages `html` wrote.
/// Implied predecessors are left out: the inputs that imply them already name what is
/// read.
fn add_dep_outputs(ws: &Workspace, nodes: &mut [Node]) {
    let outputs: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let def = &ws.projects[n.project].tasks[&n.id.task];
            def.outputs.iter().map(|o| o.value.clone()).collect()
        })
        .collect();
    let of = |preds: &mut dyn Iterator<Item = &usize>| {
        let mut patterns: Vec<String> = preds.flat_map(|p| outputs[*p].iter().cloned()).collect();
        patterns.sort();
        patterns.dedup();
        patterns
    };
    for node in nodes.iter_mut() {
        node.dep_outputs = of(&mut node
            .hard
            .iter()
            .filter(|p| node.implied.binary_search(p).is_err()));
        node.predecessor_outputs = of(&mut node.hard.iter());
    }
}
