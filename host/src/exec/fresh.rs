//! Steps 3 and 4 of EXEC-007 for a task whose key missed: compile (or load) its module,
//! stage its view, run it in the sandbox, check what it did, collect its outputs, store
//! them and put them in place. Each step is a function; each way it can fail is a
//! [`FreshError`] variant, turned into the task's message only at the end.

use super::RunContext;
use super::keys::Prepared;
use super::place::{PlaceError, Placer};
use super::record::{Source, TaskRecord};
use crate::cache::{AccessRecord, Contents, NewEntry, ProducedOutput, ResultStore};
use crate::key::{KeyParts, UntilCancelled, hash_bytes, hash_reader};
use crate::protect::Refusal;
use crate::refs::TaskId;
use crate::workspace::TaskDef;
use std::collections::{BTreeSet, HashSet};
use std::time::Instant;
use wask_runtime::determinism::ClockMode;
use wask_runtime::view::{
    CollectedOutput, OUTPUT_MODE, StageError, StagedView, ViewSpec, Violation,
};
use wask_runtime::{Failure, LoadedModule, RunOutcome, RunSpec, Stream};

/// Why a fresh run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum FreshError {
    #[error("module {module}: {failure}")]
    Module { module: String, failure: Failure },
    #[error("{0}")]
    Scratch(String),
    #[error("{0}; nothing was run: run again once it is written")]
    InputChangedBefore(StageError),
    #[error("could not prepare the sandbox: {0}")]
    Stage(StageError),
    #[error("cancelled: the run was interrupted; nothing was stored")]
    Cancelled,
    #[error("{failure}{}", .undeclared.hint())]
    Guest {
        failure: Failure,
        undeclared: Undeclared,
    },
    #[error("the task broke its declarations:\n{}", list(.0.iter().map(|v| format!("the task {v}"))))]
    Violations(Vec<Violation>),
    #[error(
        "the task wrote where no task may write; nothing was stored:\n{}",
        list(.0.iter().map(|(p, r)| format!("{p} {r}")))
    )]
    Refused(Vec<(String, Refusal)>),
    #[error("cannot read output {path}: {source}")]
    ReadOutput {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the workspace: {0}")]
    Workspace(std::io::Error),
    #[error("cannot write an output: {0}")]
    Place(PlaceError),
}

impl FreshError {
    /// The run was stopped by wask (EXEC-009): the task is Cancelled, not Failed.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            FreshError::Cancelled
                | FreshError::Module {
                    failure: Failure::Cancelled,
                    ..
                }
        )
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    items
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a guest reached for outside its declarations (SANDBOX-009), each list sorted.
#[derive(Debug, Clone, Default)]
pub struct Undeclared {
    /// Paths it looked for that its view does not hold.
    pub reads: Vec<String>,
    /// Paths it tried to create or change where it may not write.
    pub writes: Vec<String>,
}

impl Undeclared {
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.writes.is_empty()
    }

    /// Every path, sorted.
    pub fn all(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self.reads.iter().chain(&self.writes).collect();
        all.into_iter().cloned().collect()
    }

    /// What a message says of them: each kind with the declaration that would allow it.
    pub fn hint(&self) -> String {
        let mut text = String::new();
        if !self.reads.is_empty() {
            text.push_str(&format!(
                "\n  it looked for paths it did not declare (they do not exist in its sandbox): {}\n  hint: add them to the task's `inputs` if it needs them",
                self.reads.join(", ")
            ));
        }
        if !self.writes.is_empty() {
            text.push_str(&format!(
                "\n  it tried to write (or to leave its view) where it may not: {}\n  hint: declare them in the task's `outputs` if it should write them",
                self.writes.join(", ")
            ));
        }
        text
    }
}

/// A fresh run that succeeded, not yet stored or placed: its outputs lie in its view.
pub struct FreshRun {
    /// Holds the outputs' files; dropping it removes them.
    pub view: StagedView,
    pub produced: Vec<ProducedOutput>,
    pub outcome: RunOutcome,
    /// What an entry of this run records of its reads.
    pub access: AccessRecord,
    /// What it reached for outside its declarations.
    pub reached: Undeclared,
}

/// Runs a missed task fresh; on success `record` says so and carries its outputs and
/// stream hashes.
pub fn run(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    project_dir: &str,
    prepared: &Prepared,
    record: &mut TaskRecord,
) -> Result<(), FreshError> {
    let fresh = run_in_sandbox(ctx, id, def, project_dir, prepared, record, Echo::Live)?;
    let (produced, outcome) = (&fresh.produced, &fresh.outcome);
    store_and_place(ctx, id, prepared, &fresh, record)?;
    // A task that works without what it reached for is still told: it may be reading a
    // file it meant to, and getting nothing (issue 13).
    if !fresh.reached.is_empty() {
        let message = format!(
            "succeeded, but reached outside its declarations:{}",
            fresh.reached.hint().replace("\n  ", "\n    ")
        );
        ctx.observer.on_warning(id, &message);
    }
    let hash = ctx.keys.ws.settings.hash;
    record.state = super::record::TaskState::Succeeded;
    record.source = Some(Source::Fresh);
    record.outputs = produced.iter().map(|p| p.path.clone()).collect();
    record.streams = Some((
        hash_bytes(hash, &outcome.stdout),
        hash_bytes(hash, &outcome.stderr),
    ));
    Ok(())
}

/// Whether a run's output reaches the observer as the guest writes it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Echo {
    Live,
    Silent,
}

/// Runs a task in the sandbox and checks and hashes what it wrote, storing and placing
/// nothing, and showing nothing of its output: what `wask audit` and `--audit-sample`
/// repeat to check a result (the run being checked is the one the user sees).
pub fn execute(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    project_dir: &str,
    prepared: &Prepared,
    record: &mut TaskRecord,
) -> Result<FreshRun, FreshError> {
    run_in_sandbox(ctx, id, def, project_dir, prepared, record, Echo::Silent)
}

/// What `run` does before the cache and the workspace, and [`execute`] is.
fn run_in_sandbox(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    project_dir: &str,
    prepared: &Prepared,
    record: &mut TaskRecord,
    echo: Echo,
) -> Result<FreshRun, FreshError> {
    // Of the tasks in flight, only `--jobs` compile or run a module at once.
    let position = ctx.keys.graph.find(id).unwrap_or(usize::MAX);
    let _slot = record.timed("wait", || ctx.module_slots.acquire(position));
    // One timeout covers compiling the module (when its code is not cached) and running it.
    let deadline = def.limits.deadline_from_now();
    let module = compile(ctx, id, def, prepared, record, deadline)?;
    let hash = ctx.keys.ws.settings.hash;
    let cancel = &ctx.keys.cancel;
    let hasher = |r: &mut dyn std::io::Read| {
        hash_reader(hash, &mut UntilCancelled { inner: r, cancel }).map(|d| d.0)
    };
    let view = stage(ctx, project_dir, prepared, &hasher);
    // A guest is never started once the user asked to stop, however fast it would be.
    if cancel.is_set() {
        return Err(FreshError::Cancelled);
    }
    let view = view?;
    let outcome = run_guest(
        ctx, id, def, prepared, &module, &view, deadline, record, echo,
    );
    let reached = undeclared(&outcome, prepared);
    record.undeclared = reached.all();
    match &outcome.result {
        Err(Failure::Cancelled) => return Err(FreshError::Cancelled),
        Err(failure) => {
            return Err(FreshError::Guest {
                failure: failure.clone(),
                undeclared: reached,
            });
        }
        Ok(()) => {}
    }
    let collected = view.collect(&def.limits, &hasher);
    if cancel.is_set() {
        return Err(FreshError::Cancelled);
    }
    let collected = collected.map_err(FreshError::Violations)?;
    // What the task's `!` output exclusions match is dropped here, before any check:
    // a scratch file nobody keeps (issue 13).
    let dropped = wask_runtime::paths::glob_set(&prepared.parts.output_exclusions())
        .expect("exclusions are checked at load");
    let collected = collected
        .into_iter()
        .filter(|c| !dropped.is_match(&c.guest_path))
        .collect();
    let produced = produced(ctx, id, collected)?;
    let access = access_record(prepared, &outcome, &record.undeclared);
    Ok(FreshRun {
        view,
        produced,
        outcome,
        access,
        reached,
    })
}

/// SANDBOX-009: which declared inputs the run really read, and what it reached for
/// outside its declarations, as an entry records it.
fn access_record(prepared: &Prepared, outcome: &RunOutcome, undeclared: &[String]) -> AccessRecord {
    let declared: HashSet<&str> = prepared
        .inputs
        .iter()
        .map(|i| i.guest_path.as_str())
        .collect();
    AccessRecord {
        opened: outcome
            .access
            .opened
            .iter()
            .filter(|p| declared.contains(p.as_str()))
            .cloned()
            .collect(),
        refused: undeclared.to_vec(),
    }
}

fn compile(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    prepared: &Prepared,
    record: &mut TaskRecord,
    deadline: Instant,
) -> Result<LoadedModule, FreshError> {
    let module = record
        .timed("compile", || {
            ctx.sandbox
                .load(&prepared.module.bytes, &def.limits, deadline)
        })
        .map_err(|failure| FreshError::Module {
            module: def.module.value.clone(),
            failure,
        })?;
    if module.source == wask_runtime::CodeSource::RecompiledAfterTamper {
        ctx.observer.on_warning(
            id,
            "the cached compiled module failed verification; it was discarded and the module recompiled",
        );
    }
    Ok(module)
}

fn stage(
    ctx: &RunContext<'_>,
    project_dir: &str,
    prepared: &Prepared,
    hasher: wask_runtime::view::HashFn<'_>,
) -> Result<StagedView, FreshError> {
    let outputs = prepared.parts.output_patterns();
    let task_json = serde_json::to_vec(&serde_json::json!({
        "wask_task": 1,
        "project_dir": project_dir,
        "inputs": prepared.inputs.iter().map(|i| &i.guest_path).collect::<Vec<_>>(),
        "outputs": outputs,
    }))
    .expect("task description serialises");
    let scratch = ctx.scratch_dir().map_err(FreshError::Scratch)?;
    StagedView::stage(
        &ViewSpec {
            inputs: &prepared.inputs,
            outputs: &outputs,
            task_json: &task_json,
            hash: hasher,
        },
        scratch,
    )
    .map_err(|e| match e {
        StageError::InputChanged(_) => FreshError::InputChangedBefore(e),
        e => FreshError::Stage(e),
    })
}

#[allow(clippy::too_many_arguments, reason = "the parts of one run, borrowed")]
fn run_guest(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    prepared: &Prepared,
    module: &LoadedModule,
    view: &StagedView,
    deadline: Instant,
    record: &mut TaskRecord,
    echo: Echo,
) -> RunOutcome {
    let clock = match prepared.parts.fixed_clock_epoch {
        Some(epoch_seconds) => ClockMode::Fixed {
            epoch_seconds,
            seed: KeyParts::seed(&prepared.key),
        },
        None => ClockMode::Host,
    };
    // EXEC-016: the guest's output reaches the observer as it is written; the outcome
    // still holds both streams whole, for the cache.
    let live = |stream: Stream, bytes: &[u8]| match (echo, stream) {
        (Echo::Silent, _) => {}
        (Echo::Live, Stream::Stdout) => ctx.observer.on_stdout(id, bytes),
        (Echo::Live, Stream::Stderr) => ctx.observer.on_stderr(id, bytes),
    };
    record.timed("run", || {
        ctx.sandbox.run_with_output(
            module,
            &RunSpec {
                args: &def.args,
                env: &prepared.env,
                mounts: view.mounts(),
                limits: def.limits,
                clock,
                deadline: Some(deadline),
            },
            &live,
        )
    })
}

/// The paths the guest reached for that it did not declare (SANDBOX-009): a call told
/// the path does not exist looked for it; one refused otherwise tried to write.
fn undeclared(outcome: &RunOutcome, prepared: &Prepared) -> Undeclared {
    let declared: HashSet<&str> = prepared
        .inputs
        .iter()
        .map(|i| i.guest_path.as_str())
        .collect();
    let (mut reads, mut writes) = (BTreeSet::new(), BTreeSet::new());
    for (path, told) in &outcome.access.refused {
        if declared.contains(path.as_str()) {
            continue;
        }
        match *told {
            "no such file or directory" | "not a directory" => reads.insert(path.clone()),
            _ => writes.insert(path.clone()),
        };
    }
    Undeclared {
        reads: reads.into_iter().collect(),
        writes: writes.into_iter().collect(),
    }
}

/// The collected outputs, once every one is a path this task may write, hashed.
fn produced(
    ctx: &RunContext<'_>,
    id: &TaskId,
    collected: Vec<CollectedOutput>,
) -> Result<Vec<ProducedOutput>, FreshError> {
    // Whatever its patterns match, a task never writes where another program would act
    // on its bytes, nor where another task writes (`crate::protect`).
    let node = ctx.keys.graph.find(id).expect("a task of the graph");
    let root = &ctx.keys.ws.root;
    let refused: Vec<(String, Refusal)> = collected
        .iter()
        .filter_map(|c| {
            let refusal = ctx
                .rules
                .refusal(node, &c.guest_path)
                .or_else(|| ctx.rules.foreign_ground(root, &c.guest_path))?;
            Some((c.guest_path.clone(), refusal))
        })
        .collect();
    if !refused.is_empty() {
        return Err(FreshError::Refused(refused));
    }
    let hash = ctx.keys.ws.settings.hash;
    let cancel = &ctx.keys.cancel;
    collected
        .into_iter()
        .map(|c| {
            let read = std::fs::File::open(&c.host_path)
                .and_then(|inner| hash_reader(hash, &mut UntilCancelled { inner, cancel }));
            let digest = match read {
                Ok(d) => d,
                Err(_) if cancel.is_set() => return Err(FreshError::Cancelled),
                Err(source) => {
                    return Err(FreshError::ReadOutput {
                        path: c.guest_path.clone(),
                        source,
                    });
                }
            };
            Ok(ProducedOutput {
                path: c.guest_path,
                contents: Contents::File(c.host_path),
                hash: digest,
                size: c.size,
                mode: OUTPUT_MODE,
            })
        })
        .collect()
}

/// Stores the result (CACHE-018: only successful runs; a failed store costs only a
/// rerun) and puts the outputs in place.
fn store_and_place(
    ctx: &RunContext<'_>,
    id: &TaskId,
    prepared: &Prepared,
    fresh: &FreshRun,
    record: &mut TaskRecord,
) -> Result<(), FreshError> {
    let (produced, outcome) = (&fresh.produced, &fresh.outcome);
    let access = fresh.access.clone();
    record.timed("store", || {
        let stored = ctx.keys.cache.store(
            &prepared.key,
            &NewEntry {
                outputs: produced,
                stdout: &outcome.stdout,
                stderr: &outcome.stderr,
                stored_by: &id.to_string(),
                access,
                memory: outcome.memory,
                write_order: &outcome.write_order,
                durable: true,
            },
        );
        match stored {
            // Stopped part way: nothing was stored, and nothing is placed.
            Err(_) if ctx.keys.cancel.is_set() => return Err(FreshError::Cancelled),
            Err(e) => ctx
                .observer
                .on_warning(id, &format!("could not store the result in the cache: {e}")),
            Ok(()) => {
                // Sent in the background; the run waits for it at its end.
                if let (Some(remote), Ok(staging)) = (&ctx.remote, ctx.scratch_dir()) {
                    remote.upload(prepared.key, id, &ctx.keys.cache, staging);
                }
                // Only informs `wask why`; losing it costs an explanation, not a result.
                let explained = crate::explain::Explained::new(&prepared.parts, &ctx.keys.key);
                let _ =
                    crate::explain::ExplainStore::new(&ctx.keys.wask_dir).record(id, &explained);
            }
        }
        // Looked at again just before placing: storing may take seconds, during which
        // what lies above an output on the host can change (a nested workspace's first
        // run making its cache).
        let root = &ctx.keys.ws.root;
        let refused: Vec<(String, Refusal)> = produced
            .iter()
            .filter_map(|p| Some((p.path.clone(), ctx.rules.foreign_ground(root, &p.path)?)))
            .collect();
        if !refused.is_empty() {
            return Err(FreshError::Refused(refused));
        }
        let hash = ctx.keys.ws.settings.hash;
        let placer = Placer::new(&ctx.keys.ws.root, &ctx.keys.ledger, id.to_string(), hash)
            .map_err(FreshError::Workspace)?;
        let placed = produced
            .iter()
            .try_for_each(|p| match &p.contents {
                Contents::File(staged) => placer.place(staged, &p.path, &p.hash),
                // A fresh run's outputs are the files it wrote, staged in its scratch.
                Contents::Memory(_) => unreachable!("a fresh output held in memory"),
            })
            .map_err(FreshError::Place);
        // What was placed before a refusal is this task's, refusal or not.
        placer.finish(&[]);
        placed
    })
}
