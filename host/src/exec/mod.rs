//! Running a run set: tasks in dependency order, independent ones in parallel up to the
//! job limit and the per-tag caps (EXEC-001, 004, 005), failures skipping their
//! dependents (EXEC-010).

mod inputs;
pub mod keys;
pub mod ledger;
pub mod observer;
pub mod place;
pub mod plan;
pub mod record;
pub mod scratch;
pub mod task;

use crate::key::Digest;
use crate::refs::TaskId;
use crate::workspace::{MutexMode, MutexScope};
pub use keys::KeyContext;
use observer::Observer;
use record::{TaskRecord, TaskState};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use wask_runtime::Sandbox;

/// What every task of a run shares: what deriving keys needs ([`KeyContext`]), and the
/// sandbox, the rules of what a task may write, the output ledger and the scratch.
pub struct RunContext<'a> {
    pub keys: KeyContext<'a>,
    pub sandbox: Sandbox,
    pub observer: &'a dyn Observer,
    /// Where no output may land (`docs/security.md`, "What a task may write").
    pub rules: crate::protect::WriteRules,
    /// Which task wrote each output path (`.wask/outputs`).
    pub ledger: ledger::Ledger,
    /// Where this run stages sandboxes and restored outputs: on the workspace's
    /// filesystem, claimed when first needed.
    scratch_root: PathBuf,
    scratch: std::sync::OnceLock<Result<scratch::Scratch, String>>,
}

impl<'a> RunContext<'a> {
    /// A context whose modules compile as `compile_in` says: [`compile_in_child`] from
    /// the `wask` binary, [`wask_runtime::CompileIn::Thread`] from anywhere else.
    pub fn new(
        keys: KeyContext<'a>,
        observer: &'a dyn Observer,
        compile_in: wask_runtime::CompileIn,
    ) -> anyhow::Result<Self> {
        let sandbox = Sandbox::with_options(wask_runtime::SandboxOptions {
            compiled_dir: keys.cache.compiled_dir(),
            compile_in,
            key: keys.key.clone(),
        })?;
        let (ws, graph) = (keys.ws, keys.graph);
        Ok(RunContext {
            sandbox,
            observer,
            rules: crate::protect::WriteRules::new(ws, graph, crate::protect::reserved_paths(ws)),
            ledger: ledger::Ledger::open(&keys.wask_dir),
            scratch_root: keys.wask_dir.join("tmp"),
            scratch: std::sync::OnceLock::new(),
            keys,
        })
    }

    /// This run's scratch directory (see [`scratch`]), claimed on first use.
    pub fn scratch_dir(&self) -> Result<&Path, String> {
        self.scratch
            .get_or_init(|| {
                scratch::Scratch::claim(&self.scratch_root).map_err(|e| {
                    format!(
                        "cannot make a scratch directory in {}: {e}",
                        self.scratch_root.display()
                    )
                })
            })
            .as_ref()
            .map(|s| s.path())
            .map_err(Clone::clone)
    }
}

/// The subcommand of the `wask` binary that compiles one module (see
/// [`wask_runtime::compile`]): hidden from `--help`.
pub const COMPILE_SUBCOMMAND: &str = "__compile-module";

/// For the `wask` binary only: modules are compiled in a child `wask` process, killed
/// when its task's timeout passes or the run is cancelled; on a thread when this
/// executable cannot be found.
pub fn compile_in_child() -> wask_runtime::CompileIn {
    match std::env::current_exe() {
        Ok(program) => wask_runtime::CompileIn::Process {
            program,
            args: vec![COMPILE_SUBCOMMAND.into()],
        },
        Err(_) => wask_runtime::CompileIn::Thread,
    }
}

/// A mutex as the scheduler tracks it: (scope key, mode).
type MutexClaim = (String, MutexMode);

fn mutex_claim(ctx: &RunContext<'_>, n: usize) -> Option<MutexClaim> {
    let def = ctx.keys.graph.task(ctx.keys.ws, n);
    let m = def.mutex.as_ref()?;
    let key = match m.scope {
        MutexScope::Workspace => m.name.clone(),
        MutexScope::Project => format!("{}/{}", ctx.keys.graph.nodes[n].id.project, m.name),
    };
    Some((key, m.mode))
}

/// How a run set is run.
pub struct RunOptions<'a> {
    /// The global cap on tasks in flight (EXEC-004).
    pub jobs: usize,
    /// Stop admitting tasks after the first failure (EXEC-010).
    pub fail_fast: bool,
    /// Polled while tasks run: once it returns true, nothing more is admitted and running
    /// modules are interrupted (EXEC-012).
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

/// Why the scheduler stopped admitting tasks before the run set was done.
enum Halt {
    FailFast(TaskId),
    Cancelled,
}

/// What a worker sends back.
#[allow(clippy::large_enum_variant, reason = "one per task, moved once")]
enum Report {
    Finished(usize, TaskRecord),
    NeedsMutex(usize, Box<task::Miss>),
}

/// Runs `run_set` (sorted node indices) under `options`. Returns one record per task of
/// the run set, in canonical order.
///
/// Ready tasks are admitted in canonical order under the global cap and the per-tag
/// caps (EXEC-004/005). A task starts by deriving its key and looking it up without its
/// mutex; only a miss asks for the mutex, and if it is busy the task goes back to the
/// queue without holding a job slot (EXEC-006, EXEC-007). Bookkeeping is linear in the
/// size of the run set plus its edges.
pub fn run(ctx: &RunContext<'_>, run_set: &[usize], options: &RunOptions<'_>) -> Vec<TaskRecord> {
    let g = ctx.keys.graph;
    let total = g.nodes.len();
    let mut in_set = vec![false; total];
    for &n in run_set {
        in_set[n] = true;
    }
    // Successor lists and counts of unfinished in-set predecessors.
    let mut hard_succ: Vec<Vec<usize>> = vec![Vec::new(); total];
    let mut soft_succ: Vec<Vec<usize>> = vec![Vec::new(); total];
    let mut waiting_on = vec![0usize; total];
    for &n in run_set {
        for &p in g.nodes[n].hard.iter().filter(|p| in_set[**p]) {
            hard_succ[p].push(n);
            waiting_on[n] += 1;
        }
        for &p in g.nodes[n].soft.iter().filter(|p| in_set[**p]) {
            soft_succ[p].push(n);
            waiting_on[n] += 1;
        }
    }
    let mut ready: BTreeSet<usize> = run_set
        .iter()
        .copied()
        .filter(|&n| waiting_on[n] == 0)
        .collect();
    let claims: Vec<Option<MutexClaim>> = (0..total)
        .map(|n| if in_set[n] { mutex_claim(ctx, n) } else { None })
        .collect();

    let mut records: Vec<Option<TaskRecord>> = vec![None; total];
    let mut misses: HashMap<usize, Box<task::Miss>> = HashMap::new();
    let mut in_flight = 0usize;
    let mut per_tag: HashMap<&str, usize> = HashMap::new();
    let mut holders: HashMap<&str, (usize, usize)> = HashMap::new(); // (exclusive, shared)
    let mut granted: BTreeSet<usize> = BTreeSet::new();
    let mut halt: Option<Halt> = None;
    let (tx, rx) = mpsc::channel::<Report>();
    let tags_of = |n: usize| &ctx.keys.ws.projects[g.nodes[n].project].tags;

    std::thread::scope(|scope| {
        loop {
            if halt.is_none() && (options.cancelled)() {
                halt = Some(Halt::Cancelled);
                ctx.sandbox.cancel();
            }
            if halt.is_none() {
                let mut admitted = Vec::new();
                for &n in &ready {
                    if in_flight + admitted.len() >= options.jobs.max(1) {
                        break;
                    }
                    let capped = ctx.keys.ws.settings.tag_caps.iter().any(|(tag, cap)| {
                        tags_of(n).contains(tag)
                            && per_tag.get(tag.as_str()).copied().unwrap_or(0)
                                + admitted
                                    .iter()
                                    .filter(|m| tags_of(**m).contains(tag))
                                    .count()
                                >= *cap
                    });
                    if capped {
                        continue;
                    }
                    // Only a missed task waiting for its mutex needs the mutex now.
                    if misses.contains_key(&n) {
                        let (name, mode) = claims[n].as_ref().expect("only mutex tasks wait");
                        let (exclusive, shared) =
                            holders.get(name.as_str()).copied().unwrap_or((0, 0));
                        let busy = exclusive > 0 || (*mode == MutexMode::Exclusive && shared > 0);
                        if busy {
                            continue;
                        }
                        granted.insert(n);
                        let h = holders.entry(name.as_str()).or_insert((0, 0));
                        match mode {
                            MutexMode::Exclusive => h.0 += 1,
                            MutexMode::Shared => h.1 += 1,
                        }
                    }
                    admitted.push(n);
                }
                for n in admitted {
                    ready.remove(&n);
                    in_flight += 1;
                    for tag in tags_of(n) {
                        *per_tag.entry(tag.as_str()).or_insert(0) += 1;
                    }
                    let tx = tx.clone();
                    let project_dir = ctx.keys.ws.projects[g.nodes[n].project].dir.clone();
                    let def = g.task(ctx.keys.ws, n);
                    let id = &g.nodes[n].id;
                    if let Some(miss) = misses.remove(&n) {
                        scope.spawn(move || {
                            let record = task::run_miss(ctx, id, def, &project_dir, *miss);
                            let _ = tx.send(Report::Finished(n, record));
                        });
                    } else {
                        let preds: Vec<(Digest, Digest)> = g.nodes[n]
                            .hard
                            .iter()
                            .map(|p| {
                                records[*p]
                                    .as_ref()
                                    .and_then(|r| r.streams)
                                    .expect("succeeded predecessors have streams")
                            })
                            .collect();
                        let has_mutex = claims[n].is_some();
                        scope.spawn(move || {
                            let report =
                                match task::start(ctx, id, def, &project_dir, preds, has_mutex) {
                                    task::Started::Finished(r) => Report::Finished(n, r),
                                    task::Started::NeedsMutex(m) => Report::NeedsMutex(n, m),
                                };
                            let _ = tx.send(report);
                        });
                    }
                }
            }
            if in_flight == 0 {
                break;
            }
            // Wake up now and then to notice cancellation while tasks run.
            let report = match rx.recv_timeout(std::time::Duration::from_millis(25)) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("the scheduler holds a sender")
                }
            };
            let n = match &report {
                Report::Finished(n, _) | Report::NeedsMutex(n, _) => *n,
            };
            in_flight -= 1;
            for tag in tags_of(n) {
                *per_tag.get_mut(tag.as_str()).expect("counted at admission") -= 1;
            }
            match report {
                Report::NeedsMutex(n, miss) => {
                    // Back to the queue, holding no job slot, until the mutex is free.
                    misses.insert(n, miss);
                    ready.insert(n);
                }
                Report::Finished(n, record) => {
                    if granted.remove(&n)
                        && let Some((name, mode)) = &claims[n]
                        && let Some(h) = holders.get_mut(name.as_str())
                    {
                        match mode {
                            MutexMode::Exclusive => h.0 -= 1,
                            MutexMode::Shared => h.1 -= 1,
                        }
                    }
                    let succeeded = record.state == TaskState::Succeeded;
                    if !succeeded && options.fail_fast && halt.is_none() {
                        halt = Some(Halt::FailFast(record.id.clone()));
                    }
                    records[n] = Some(record);
                    if succeeded {
                        release(
                            n,
                            &hard_succ,
                            &soft_succ,
                            &mut waiting_on,
                            &records,
                            &mut ready,
                        );
                    } else {
                        skip_dependents(
                            ctx,
                            n,
                            &hard_succ,
                            &soft_succ,
                            &mut waiting_on,
                            &mut records,
                            &mut ready,
                        );
                    }
                }
            }
        }
    });

    // Whatever never started: the run stopped admitting (fail-fast, cancellation).
    let reason = match &halt {
        Some(Halt::FailFast(cause)) => {
            format!("not started: --fail-fast stopped the run after {cause} failed")
        }
        Some(Halt::Cancelled) => "not started: the run was cancelled".to_string(),
        None => "never became ready".to_string(),
    };
    run_set
        .iter()
        .map(|&n| {
            records[n].take().unwrap_or_else(|| {
                let mut r = TaskRecord::new(g.nodes[n].id.clone());
                r.state = TaskState::Skipped;
                r.error = Some(reason.clone());
                r
            })
        })
        .collect()
}

/// A task finished successfully: its successors wait for one task fewer.
fn release(
    n: usize,
    hard_succ: &[Vec<usize>],
    soft_succ: &[Vec<usize>],
    waiting_on: &mut [usize],
    records: &[Option<TaskRecord>],
    ready: &mut BTreeSet<usize>,
) {
    for &s in hard_succ[n].iter().chain(&soft_succ[n]) {
        waiting_on[s] -= 1;
        if waiting_on[s] == 0 && records[s].is_none() {
            ready.insert(s);
        }
    }
}

/// Marks every task that depends on `failed` through hard edges as skipped, naming the
/// root cause (EXEC-010). Soft successors only stop waiting (DAG-002).
fn skip_dependents(
    ctx: &RunContext<'_>,
    failed: usize,
    hard_succ: &[Vec<usize>],
    soft_succ: &[Vec<usize>],
    waiting_on: &mut [usize],
    records: &mut [Option<TaskRecord>],
    ready: &mut BTreeSet<usize>,
) {
    let g = ctx.keys.graph;
    let cause = g.nodes[failed].id.clone();
    let mut frontier = vec![failed];
    while let Some(f) = frontier.pop() {
        for &s in &soft_succ[f] {
            waiting_on[s] -= 1;
            if waiting_on[s] == 0 && records[s].is_none() {
                ready.insert(s);
            }
        }
        for &s in &hard_succ[f] {
            if records[s].is_some() {
                continue;
            }
            ready.remove(&s);
            let mut r = TaskRecord::new(g.nodes[s].id.clone());
            r.state = TaskState::Skipped;
            r.skipped_because = Some(cause.clone());
            ctx.observer.on_task_skipped(&r.id, &cause);
            records[s] = Some(r);
            frontier.push(s);
        }
    }
}
