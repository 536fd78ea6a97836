//! Running a run set: tasks in dependency order, independent ones in parallel up to the
//! job limit and the per-tag caps (EXEC-001, 004, 005), failures skipping their
//! dependents (EXEC-010).

mod inputs;
pub mod observer;
pub mod record;
pub mod task;

use crate::cache::LocalCache;
use crate::graph::Graph;
use crate::key::{Digest, hash_bytes};
use crate::workspace::{MutexMode, MutexScope, Workspace};
use observer::Observer;
use record::{TaskRecord, TaskState};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use wask_runtime::Sandbox;

/// A module's bytes, read once per run.
pub struct ModuleBytes {
    pub bytes: Vec<u8>,
    /// Content hash with the workspace's hash function (CACHE-005).
    pub key_digest: Digest,
}

/// What every task of a run shares.
pub struct RunContext<'a> {
    pub ws: &'a Workspace,
    pub graph: &'a Graph,
    pub cache: LocalCache,
    pub sandbox: Sandbox,
    pub observer: &'a dyn Observer,
    /// The host environment, read once per run (CACHE-008).
    pub host_env: HashMap<String, String>,
    /// Never inputs: the `.wask` directory and the cache.
    pub excluded: Vec<PathBuf>,
    /// Where sandboxes are staged: on the workspace's filesystem.
    pub scratch_dir: PathBuf,
    modules: Mutex<HashMap<String, Arc<ModuleBytes>>>,
}

impl<'a> RunContext<'a> {
    pub fn new(
        ws: &'a Workspace,
        graph: &'a Graph,
        observer: &'a dyn Observer,
    ) -> anyhow::Result<Self> {
        let cache = LocalCache::new(ws.settings.cache_dir.clone(), ws.settings.hash);
        let sandbox = Sandbox::new(&cache.compiled_dir())?;
        let wask_dir = ws.root.join(".wask");
        let mut excluded = vec![wask_dir.clone()];
        if let Ok(c) = ws.settings.cache_dir.canonicalize() {
            excluded.push(c);
        }
        excluded.push(ws.settings.cache_dir.clone());
        Ok(RunContext {
            ws,
            graph,
            cache,
            sandbox,
            observer,
            host_env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            excluded,
            scratch_dir: wask_dir.join("tmp"),
            modules: Mutex::new(HashMap::new()),
        })
    }

    /// Reads a module once per run.
    pub fn module(&self, path: &str) -> Result<Arc<ModuleBytes>, String> {
        if let Some(m) = self.modules.lock().unwrap().get(path) {
            return Ok(m.clone());
        }
        let host = self.ws.host_path(path);
        let meta = std::fs::symlink_metadata(&host);
        let bytes = match meta {
            Ok(m) if m.is_file() => {
                std::fs::read(&host).map_err(|e| format!("cannot read module {path}: {e}"))?
            }
            Ok(_) => return Err(format!("module {path} is not a regular file")),
            Err(e) => {
                return Err(format!(
                    "cannot read module {path}: {e}\n  hint: build the module first (for the examples: scripts/build-guests.sh)"
                ));
            }
        };
        let m = Arc::new(ModuleBytes {
            key_digest: hash_bytes(self.ws.settings.hash, &bytes),
            bytes,
        });
        self.modules
            .lock()
            .unwrap()
            .insert(path.to_string(), m.clone());
        Ok(m)
    }
}

/// A held mutex: (scope key, mode).
type Held = (String, MutexMode);

fn mutex_key(ctx: &RunContext<'_>, n: usize) -> Option<Held> {
    let def = ctx.graph.task(ctx.ws, n);
    let m = def.mutex.as_ref()?;
    let key = match m.scope {
        MutexScope::Workspace => m.name.clone(),
        MutexScope::Project => format!("{}/{}", ctx.graph.nodes[n].id.project, m.name),
    };
    Some((key, m.mode))
}

/// Runs `run_set` (sorted node indices) with up to `jobs` tasks at once. Returns one
/// record per task of the run set, in canonical order.
pub fn run(ctx: &RunContext<'_>, run_set: &[usize], jobs: usize) -> Vec<TaskRecord> {
    let g = ctx.graph;
    let in_set: std::collections::HashSet<usize> = run_set.iter().copied().collect();
    let mut records: HashMap<usize, TaskRecord> = HashMap::new();
    let mut running: HashMap<usize, Option<Held>> = HashMap::new();
    let mut pending: Vec<usize> = run_set.to_vec();
    let (tx, rx) = mpsc::channel::<(usize, TaskRecord)>();

    std::thread::scope(|scope| {
        loop {
            // Admit ready tasks in canonical order (EXEC-004).
            let mut admitted = Vec::new();
            for &n in &pending {
                if running.len() + admitted.len() >= jobs.max(1) {
                    break;
                }
                let node = &g.nodes[n];
                let hard_ok = node.hard.iter().all(|p| {
                    records
                        .get(p)
                        .is_some_and(|r| r.state == TaskState::Succeeded)
                });
                let soft_ok = node
                    .soft
                    .iter()
                    .filter(|p| in_set.contains(p))
                    .all(|p| records.contains_key(p));
                if !hard_ok || !soft_ok {
                    continue;
                }
                let tags = &ctx.ws.projects[node.project].tags;
                let capped = ctx.ws.settings.tag_caps.iter().any(|(tag, cap)| {
                    tags.contains(tag)
                        && running
                            .keys()
                            .chain(admitted.iter().map(|(m, _)| m))
                            .filter(|m| ctx.ws.projects[g.nodes[**m].project].tags.contains(tag))
                            .count()
                            >= *cap
                });
                let held = mutex_key(ctx, n);
                let blocked = held.as_ref().is_some_and(|(k, mode)| {
                    running
                        .values()
                        .chain(admitted.iter().map(|(_, h)| h))
                        .flatten()
                        .any(|(other, other_mode)| {
                            other == k
                                && (*mode == MutexMode::Exclusive
                                    || *other_mode == MutexMode::Exclusive)
                        })
                });
                if !capped && !blocked {
                    admitted.push((n, held));
                }
            }
            for (n, held) in admitted {
                pending.retain(|&m| m != n);
                running.insert(n, held);
                let preds: Vec<(Digest, Digest)> = g.nodes[n]
                    .hard
                    .iter()
                    .map(|p| {
                        records[p]
                            .streams
                            .expect("succeeded predecessors have streams")
                    })
                    .collect();
                let tx = tx.clone();
                let project_dir = ctx.ws.projects[g.nodes[n].project].dir.clone();
                scope.spawn(move || {
                    let def = g.task(ctx.ws, n);
                    let record = task::execute(ctx, &g.nodes[n].id, def, &project_dir, preds);
                    let _ = tx.send((n, record));
                });
            }
            if running.is_empty() {
                break;
            }
            let (n, record) = rx.recv().expect("a worker reports before it ends");
            running.remove(&n);
            let failed = record.state != TaskState::Succeeded;
            records.insert(n, record);
            if failed {
                skip_dependents(ctx, n, &in_set, &mut pending, &mut records);
            }
        }
    });
    // Nothing should be left pending; anything that is could never become ready.
    for n in pending {
        let mut r = TaskRecord::new(g.nodes[n].id.clone());
        r.state = TaskState::Skipped;
        r.error = Some("never became ready".into());
        records.insert(n, r);
    }
    let mut out: Vec<(usize, TaskRecord)> = records.into_iter().collect();
    out.sort_by_key(|(n, _)| *n);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Marks every task that depends on `failed` through hard edges as skipped (EXEC-010).
fn skip_dependents(
    ctx: &RunContext<'_>,
    failed: usize,
    in_set: &std::collections::HashSet<usize>,
    pending: &mut Vec<usize>,
    records: &mut HashMap<usize, TaskRecord>,
) {
    let g = ctx.graph;
    let cause = records[&failed]
        .skipped_because
        .clone()
        .unwrap_or_else(|| g.nodes[failed].id.clone());
    let mut frontier = vec![failed];
    while let Some(f) = frontier.pop() {
        let dependents: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&n| in_set.contains(&n) && g.nodes[n].hard.contains(&f))
            .collect();
        for n in dependents {
            pending.retain(|&m| m != n);
            let mut r = TaskRecord::new(g.nodes[n].id.clone());
            r.state = TaskState::Skipped;
            r.skipped_because = Some(cause.clone());
            ctx.observer.on_task_skipped(&r.id, &cause);
            records.insert(n, r);
            frontier.push(n);
        }
    }
}
