//! Running a run set: tasks in dependency order, independent ones in parallel up to the
//! job limit and the per-tag caps (EXEC-001, 004, 005), failures skipping their
//! dependents (EXEC-010).

pub mod fresh;
pub mod inputs;
pub mod keys;
pub mod ledger;
pub mod observer;
pub mod place;
pub mod plan;
pub mod queue;
pub mod record;
pub mod scratch;
pub mod slots;
pub mod task;

use crate::refs::TaskId;
use crate::workspace::{MutexMode, MutexScope};
pub use keys::KeyContext;
use observer::Observer;
use queue::{Hold, Queue, QueueSpec};
use record::{TaskRecord, TaskState};
use std::collections::HashMap;
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
    /// Where this run stages sandboxes and restored outputs: on the workspace's
    /// filesystem, claimed when first needed.
    scratch_root: PathBuf,
    scratch: std::sync::OnceLock<Result<scratch::Scratch, String>>,
    /// `wask run --audit-sample F`: which hits are run fresh again and compared with
    /// their entry before they are restored (AUDIT, issue 11).
    pub audit_sample: Option<task::AuditSample>,
    /// The remote cache behind the local one, when the run has one (issue 12).
    pub remote: Option<crate::cache::remote::RemoteCache>,
    /// How many modules compile or run at once ([`run`] sets `--jobs`).
    pub module_slots: slots::Slots,
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
            scratch_root: keys.wask_dir.join("tmp"),
            scratch: std::sync::OnceLock::new(),
            audit_sample: None,
            remote: None,
            module_slots: slots::Slots::unlimited(),
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

/// The queue's view of a run set: edges, tag caps and mutexes by index.
fn queue_spec<'r>(ctx: &RunContext<'_>, run_set: &'r [usize], jobs: usize) -> QueueSpec<'r> {
    let (ws, g) = (ctx.keys.ws, ctx.keys.graph);
    let caps = &ws.settings.tag_caps;
    let mut mutex_ids: HashMap<String, usize> = HashMap::new();
    let mutex = (0..g.nodes.len())
        .map(|n| {
            let m = g.task(ws, n).mutex.as_ref()?;
            let name = match m.scope {
                MutexScope::Workspace => m.name.clone(),
                MutexScope::Project => format!("{}/{}", g.nodes[n].id.project, m.name),
            };
            let next = mutex_ids.len();
            let id = *mutex_ids.entry(name).or_insert(next);
            let hold = match m.mode {
                MutexMode::Exclusive => Hold::Exclusive,
                MutexMode::Shared => Hold::Shared,
            };
            Some((id, hold))
        })
        .collect();
    QueueSpec {
        run_set,
        hard: g.nodes.iter().map(|n| n.hard.clone()).collect(),
        soft: g.nodes.iter().map(|n| n.soft.clone()).collect(),
        jobs,
        capped_by: g
            .nodes
            .iter()
            .map(|n| {
                let tags = &ws.projects[n.project].tags;
                (0..caps.len())
                    .filter(|c| tags.contains(&caps[*c].0))
                    .collect()
            })
            .collect(),
        caps: caps.iter().map(|(_, cap)| *cap).collect(),
        mutex,
    }
}

/// With a remote cache to read, how many tasks beyond `--jobs` may be in flight: each
/// waits on a lookup, or for one of the `--jobs` slots a module needs.
pub const REMOTE_LOOKUPS: usize = 16;

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

/// What a worker is given: a task to start, or a miss that now holds its mutex.
enum Job {
    Start(keys::Predecessors),
    Miss(Box<task::Miss>),
}

/// One task's work on its worker thread.
fn work(ctx: &RunContext<'_>, n: usize, job: Job) -> Report {
    let g = ctx.keys.graph;
    let project_dir = &ctx.keys.ws.projects[g.nodes[n].project].dir;
    let def = g.task(ctx.keys.ws, n);
    let id = &g.nodes[n].id;
    match job {
        Job::Miss(miss) => Report::Finished(n, task::run_miss(ctx, id, def, project_dir, *miss)),
        Job::Start(preds) => {
            match task::start(ctx, id, def, project_dir, preds, def.mutex.is_some()) {
                task::Started::Finished(r) => Report::Finished(n, r),
                task::Started::NeedsMutex(m) => Report::NeedsMutex(n, m),
            }
        }
    }
}

/// [`work`], with a panic turned into the failure of its task: a bug in wask fails the
/// task that met it, and the run ends as usual (a thread that died without reporting
/// would leave the scheduler waiting for it forever, deaf even to Ctrl-C).
fn work_or_bug(ctx: &RunContext<'_>, n: usize, job: Job) -> Report {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(ctx, n, job))).unwrap_or_else(
        |panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            let mut record = TaskRecord::new(ctx.keys.graph.nodes[n].id.clone());
            record.error = Some(format!(
                "wask hit a bug running this task ({what}); nothing was stored. \
                 Please report it with the task's definition"
            ));
            Report::Finished(n, record)
        },
    )
}

/// The scheduler's records of a run: what each task ended as, the misses waiting for
/// their mutex, and why admission stopped.
struct Progress {
    records: Vec<Option<TaskRecord>>,
    misses: HashMap<usize, Box<task::Miss>>,
    halt: Option<Halt>,
}

impl Progress {
    /// The job of a task the queue admitted.
    fn job(&mut self, ctx: &RunContext<'_>, start: queue::Start) -> Job {
        let n = start.task;
        if start.holds_mutex {
            let miss = self
                .misses
                .remove(&n)
                .expect("a task waiting for its mutex missed");
            return Job::Miss(miss);
        }
        let hard = &ctx.keys.graph.nodes[n].hard;
        let record = |p: &usize| {
            self.records[*p]
                .as_ref()
                .expect("a task starts after its predecessors succeeded")
        };
        Job::Start(keys::Predecessors {
            streams: hard
                .iter()
                .map(|p| {
                    record(p)
                        .streams
                        .expect("succeeded predecessors have streams")
                })
                .collect(),
            wrote: hard
                .iter()
                .flat_map(|p| record(p).outputs.iter().cloned())
                .collect(),
        })
    }

    fn on_report(
        &mut self,
        ctx: &RunContext<'_>,
        queue: &mut Queue,
        report: Report,
        fail_fast: bool,
    ) {
        let g = ctx.keys.graph;
        match report {
            Report::NeedsMutex(n, miss) => {
                // Back to the queue, holding no job slot, until the mutex is free.
                self.misses.insert(n, miss);
                queue.needs_mutex(n);
            }
            Report::Finished(n, record) => {
                let succeeded = record.state == TaskState::Succeeded;
                if !succeeded && fail_fast && self.halt.is_none() {
                    self.halt = Some(Halt::FailFast(record.id.clone()));
                    queue.halt();
                }
                self.records[n] = Some(record);
                // EXEC-010: hard dependents of a failure are skipped, naming it.
                let cause = &g.nodes[n].id;
                for s in queue.complete(n, succeeded) {
                    let mut r = TaskRecord::new(g.nodes[s].id.clone());
                    r.state = TaskState::Skipped;
                    r.skipped_because = Some(cause.clone());
                    ctx.observer.on_task_skipped(&r.id, cause);
                    self.records[s] = Some(r);
                }
            }
        }
    }

    /// One record per task of `run_set`, in canonical order; what never started is
    /// skipped, saying why.
    fn into_records(mut self, g: &crate::graph::Graph, run_set: &[usize]) -> Vec<TaskRecord> {
        let reason = match &self.halt {
            Some(Halt::FailFast(cause)) => {
                format!("not started: --fail-fast stopped the run after {cause} failed")
            }
            Some(Halt::Cancelled) => "not started: the run was cancelled".to_string(),
            None => "never became ready".to_string(),
        };
        run_set
            .iter()
            .map(|&n| {
                self.records[n].take().unwrap_or_else(|| {
                    let mut r = TaskRecord::new(g.nodes[n].id.clone());
                    r.state = TaskState::Skipped;
                    r.error = Some(reason.clone());
                    r
                })
            })
            .collect()
    }
}

/// Runs `run_set` (sorted node indices) under `options`. Returns one record per task of
/// the run set, in canonical order.
///
/// What may start when is the [`Queue`]'s; this drives it: each admitted task runs on a
/// thread of its own ([`work`]), reports back, and its record completes it in the queue.
pub fn run(ctx: &RunContext<'_>, run_set: &[usize], options: &RunOptions<'_>) -> Vec<TaskRecord> {
    let g = ctx.keys.graph;
    ctx.module_slots.set(options.jobs);
    // A remote lookup waits on the server: more tasks are in flight than modules run,
    // so the round trips of lookups overlap (as Bazel's `--jobs` does with a remote).
    let lookahead = match &ctx.remote {
        Some(remote) if remote.reads() => REMOTE_LOOKUPS,
        _ => 0,
    };
    let mut queue = Queue::new(queue_spec(ctx, run_set, options.jobs + lookahead));
    let mut progress = Progress {
        records: vec![None; g.nodes.len()],
        misses: HashMap::new(),
        halt: None,
    };
    let (tx, rx) = mpsc::channel::<Report>();
    std::thread::scope(|scope| {
        loop {
            if progress.halt.is_none() && (options.cancelled)() {
                progress.halt = Some(Halt::Cancelled);
                queue.halt();
                ctx.sandbox.cancel();
            }
            for start in queue.admit() {
                let job = progress.job(ctx, start);
                let tx = tx.clone();
                scope.spawn(move || {
                    let _ = tx.send(work_or_bug(ctx, start.task, job));
                });
            }
            if queue.running() == 0 {
                break;
            }
            // Wake up now and then to notice cancellation while tasks run.
            match rx.recv_timeout(std::time::Duration::from_millis(25)) {
                Ok(report) => progress.on_report(ctx, &mut queue, report, options.fail_fast),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("the scheduler holds a sender")
                }
            }
        }
    });
    progress.into_records(g, run_set)
}
