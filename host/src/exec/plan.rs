//! What a run would do, without running anything: each task's key and whether it is a
//! hit, in dependency order (EXEC-030, `wask why`).
//!
//! A task's key depends on its hard predecessors' streams, so it is known only when
//! every predecessor is a hit (its streams are in the cache); otherwise the task is
//! reported as waiting on the predecessors that would run.

use super::keys::{KeyContext, Prepared, prepare};
use crate::cache::Entry;
use crate::cache::{FoundEntry, ResultStore};
use crate::graph::Graph;
use crate::key::Digest;
use crate::refs::TaskId;
use std::collections::HashMap;

/// The plan for one task.
#[allow(clippy::large_enum_variant, reason = "one per task, moved once")]
pub enum Planned {
    /// The key is known; `entry` is the cache entry it would restore, if any, `unfit`
    /// why an entry with the key is no hit under the task's limits, and `damaged` what
    /// is wrong with one that is there but broken (a miss, never restored).
    Known {
        prepared: Box<Prepared>,
        entry: Option<Entry>,
        unfit: Option<String>,
        damaged: Option<String>,
    },
    /// Hard predecessors that would run first, so the key cannot be known yet.
    AfterRunning(Vec<TaskId>),
    /// The key cannot be derived (for example a literal input is missing).
    Error(String),
}

/// The run set in dependency order with canonical tie-breaks, each with its plan.
pub fn plan(ctx: &KeyContext<'_>, run_set: &[usize]) -> Vec<(usize, Planned)> {
    let g = ctx.graph;
    let mut streams: HashMap<usize, (Digest, Digest)> = HashMap::new();
    // What each known predecessor leaves: its entry's outputs.
    let mut outputs: HashMap<usize, Vec<String>> = HashMap::new();
    let mut out = Vec::with_capacity(run_set.len());
    for n in topological(g, run_set) {
        let node = &g.nodes[n];
        let unknown: Vec<TaskId> = node
            .hard
            .iter()
            .filter(|p| !streams.contains_key(p))
            .map(|p| g.nodes[*p].id.clone())
            .collect();
        if !unknown.is_empty() {
            out.push((n, Planned::AfterRunning(unknown)));
            continue;
        }
        let preds = super::keys::Predecessors {
            streams: node.hard.iter().map(|p| streams[p]).collect(),
            wrote: node
                .hard
                .iter()
                .flat_map(|p| outputs[p].iter().cloned())
                .collect(),
        };
        let project_dir = &ctx.ws.projects[node.project].dir;
        let def = g.task(ctx.ws, n);
        let planned = match prepare(ctx, node, def, project_dir, preds) {
            Err(e) => Planned::Error(e.to_string()),
            Ok(prepared) => {
                // A corrupt entry is a miss here; the run reports and removes it.
                let (mut entry, damaged) = match ctx.cache.lookup(&prepared.key) {
                    Ok(found) => (found, None),
                    Err(crate::cache::Damaged(what)) => (None, Some(what)),
                };
                let unfit = entry.as_ref().and_then(|e| e.unfit(&def.limits));
                if unfit.is_some() {
                    entry = None;
                }
                if let Some(e) = &entry {
                    let d = |h: &str| Digest::from_hex(h).unwrap_or(Digest([0; 32]));
                    streams.insert(n, (d(&e.manifest.stdout.hash), d(&e.manifest.stderr.hash)));
                    outputs.insert(
                        n,
                        e.manifest.outputs.iter().map(|o| o.path.clone()).collect(),
                    );
                }
                Planned::Known {
                    prepared: Box::new(prepared),
                    entry,
                    unfit,
                    damaged,
                }
            }
        };
        out.push((n, planned));
    }
    out
}

/// Dependency order (hard and in-set soft edges) with canonical tie-breaks: the order
/// the [`super::queue::Queue`] starts tasks in on one job when every task succeeds.
pub fn topological(graph: &Graph, run_set: &[usize]) -> Vec<usize> {
    let n = graph.nodes.len();
    let mut queue = super::queue::Queue::new(super::queue::QueueSpec {
        run_set,
        hard: graph.nodes.iter().map(|node| node.hard.clone()).collect(),
        soft: graph.nodes.iter().map(|node| node.soft.clone()).collect(),
        jobs: 1,
        capped_by: vec![Vec::new(); n],
        caps: Vec::new(),
        mutex: vec![None; n],
    });
    let mut order = Vec::with_capacity(run_set.len());
    loop {
        let started = queue.admit();
        let Some(start) = started.first() else {
            return order;
        };
        order.push(start.task);
        queue.complete(start.task, true);
    }
}
