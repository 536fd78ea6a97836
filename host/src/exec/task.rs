//! The lifecycle of one task (EXEC-007): derive the key, look it up, restore on a hit;
//! on a miss run the module in the sandbox, collect its outputs, store, and place them.

use super::RunContext;
use super::keys::{Prepared, prepare};
use super::place::Placer;
use super::record::{Source, TaskRecord, TaskState};
use crate::cache::{AccessRecord, ProducedOutput, RestoreError};
use crate::key::{Digest, KeyParts, hash_bytes, hash_file, hash_reader};
use crate::refs::TaskId;
use crate::workspace::TaskDef;
use std::time::SystemTime;
use wask_runtime::determinism::ClockMode;
use wask_runtime::view::{OUTPUT_MODE, StageError, StagedView, ViewSpec};
use wask_runtime::{RunSpec, Stream};

/// How far [`start`] took a task.
#[allow(clippy::large_enum_variant, reason = "one per task, moved once")]
pub enum Started {
    /// Done: a hit, a fresh run, or a failure. Already reported to the observer.
    Finished(TaskRecord),
    /// A miss that must hold its mutex to run (EXEC-006, EXEC-007 step 3). The
    /// scheduler grants the mutex and then calls [`run_miss`].
    NeedsMutex(Box<Miss>),
}

/// A task whose key missed the cache, waiting to run.
pub struct Miss {
    record: TaskRecord,
    prepared: Prepared,
}

/// Steps 1 and 2 of EXEC-007, holding no mutex: derive the key, look it up, restore a
/// hit. A miss runs at once when `has_mutex` is false.
pub fn start(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    project_dir: &str,
    preds: Vec<(Digest, Digest)>,
    has_mutex: bool,
) -> Started {
    ctx.observer.on_task_started(id);
    let mut record = TaskRecord::new(id.clone());
    let prepared = match record.timed("key", || prepare(&ctx.keys, def, project_dir, preds)) {
        Ok(p) => p,
        Err(e) => return Started::Finished(finish(ctx, record, Err(e.to_string()))),
    };
    record.key = Some(prepared.key);
    match restore_hit(ctx, id, &prepared, &mut record) {
        Ok(true) => return Started::Finished(finish(ctx, record, Ok(()))),
        Ok(false) => {}
        Err(message) => return Started::Finished(finish(ctx, record, Err(message))),
    }
    let miss = Miss { record, prepared };
    if has_mutex {
        Started::NeedsMutex(Box::new(miss))
    } else {
        Started::Finished(run_miss(ctx, id, def, project_dir, miss))
    }
}

/// Steps 3 to 5 of EXEC-007: run a missed task in the sandbox, store, report.
pub fn run_miss(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    project_dir: &str,
    miss: Miss,
) -> TaskRecord {
    let Miss {
        mut record,
        prepared,
    } = miss;
    let result = run_fresh(ctx, id, def, project_dir, &prepared, &mut record);
    finish(ctx, record, result)
}

fn finish(ctx: &RunContext<'_>, mut record: TaskRecord, result: Result<(), String>) -> TaskRecord {
    record.finished_at = SystemTime::now();
    if let Err(message) = result {
        record.state = if record.state == TaskState::Cancelled {
            TaskState::Cancelled
        } else {
            TaskState::Failed
        };
        record.error = Some(message);
    }
    ctx.observer.on_task_finished(&record);
    record
}

/// Restores a hit; `Ok(false)` is a miss (including a corrupt entry, which is reported).
fn restore_hit(
    ctx: &RunContext<'_>,
    id: &TaskId,
    prepared: &Prepared,
    record: &mut TaskRecord,
) -> Result<bool, String> {
    let hash = ctx.keys.ws.settings.hash;
    let entry = match record.timed("lookup", || ctx.keys.cache.lookup(&prepared.key)) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Ok(false),
        Err(what) => {
            // CACHE-019: a broken entry is a miss with a report, and goes, so the
            // fresh run can store a good one.
            ctx.keys.cache.discard_key(&prepared.key);
            let e = RestoreError::Corrupt {
                entry: prepared.key.hex(),
                what,
            };
            ctx.observer.on_warning(id, &e.to_string());
            return Ok(false);
        }
    };
    // Only what the task declares may be restored, whatever the entry says.
    let declared = wask_runtime::paths::glob_set(&prepared.parts.outputs)
        .map_err(|e| format!("invalid output pattern: {e}"))?;
    // A restore writes only what a fresh run of this task could have written.
    let node = ctx.keys.graph.find(id).expect("a task of the graph");
    let inputs: std::collections::HashSet<&str> = prepared
        .inputs
        .iter()
        .map(|i| i.guest_path.as_str())
        .collect();
    let allowed = |p: &str| -> Result<(), String> {
        if !declared.is_match(p) {
            Err("the task does not declare".into())
        } else if inputs.contains(p) {
            Err("is a declared input of the task".into())
        } else if let Some(r) = ctx.rules.refusal(node, p) {
            Err(r.to_string())
        } else {
            Ok(())
        }
    };
    let staging = ctx.scratch_dir()?;
    let placer = Placer::new(&ctx.keys.ws.root, &ctx.ledger, id.to_string(), hash)
        .map_err(|e| format!("cannot open the workspace: {e}"))?;
    let restore = || ctx.keys.cache.restore(&entry, &placer, staging, &allowed);
    match record.timed("restore", restore) {
        Ok(restored) => {
            let all: Vec<String> = entry
                .manifest
                .outputs
                .iter()
                .map(|o| o.path.clone())
                .collect();
            placer.finish(&all);
            emit_streams(ctx, id, &restored.stdout, &restored.stderr);
            record.state = TaskState::Succeeded;
            record.source = Some(Source::Cache);
            record.outputs = entry
                .manifest
                .outputs
                .iter()
                .map(|o| o.path.clone())
                .collect();
            record.streams = Some((
                hash_bytes(hash, &restored.stdout),
                hash_bytes(hash, &restored.stderr),
            ));
            Ok(true)
        }
        Err(e @ (RestoreError::Corrupt { .. } | RestoreError::Unreadable { .. })) => {
            ctx.observer.on_warning(id, &e.to_string());
            Ok(false)
        }
        Err(RestoreError::Vanished { .. }) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

fn run_fresh(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    project_dir: &str,
    prepared: &Prepared,
    record: &mut TaskRecord,
) -> Result<(), String> {
    let hash = ctx.keys.ws.settings.hash;
    // One timeout covers compiling the module (when its code is not cached) and running it.
    let deadline = std::time::Instant::now() + def.limits.timeout;
    let module = record
        .timed("compile", || {
            ctx.sandbox
                .load(&prepared.module.bytes, &def.limits, deadline)
        })
        .map_err(|f| {
            if f == wask_runtime::Failure::Cancelled {
                record.state = TaskState::Cancelled;
            }
            format!("module {}: {f}", def.module.value)
        })?;
    if module.source == wask_runtime::CodeSource::RecompiledAfterTamper {
        ctx.observer.on_warning(
            id,
            "the cached compiled module failed verification; it was discarded and the module recompiled",
        );
    }
    let task_json = serde_json::to_vec(&serde_json::json!({
        "wask_task": 1,
        "project_dir": project_dir,
        "inputs": prepared.inputs.iter().map(|i| &i.guest_path).collect::<Vec<_>>(),
        "outputs": prepared.parts.outputs,
    }))
    .expect("task description serialises");
    let hasher = |r: &mut dyn std::io::Read| hash_reader(hash, r).map(|d| d.0);
    let view = StagedView::stage(
        &ViewSpec {
            inputs: &prepared.inputs,
            outputs: &prepared.parts.outputs,
            task_json: &task_json,
            hash: &hasher,
        },
        ctx.scratch_dir()?,
    )
    .map_err(|e| match e {
        StageError::InputChanged(_) => {
            format!("{e}; nothing was run: run again once it is written")
        }
        StageError::Io(e) => format!("could not prepare the sandbox: {e}"),
    })?;
    let clock = match prepared.parts.fixed_clock_epoch {
        Some(epoch_seconds) => ClockMode::Fixed {
            epoch_seconds,
            seed: KeyParts::seed(&prepared.key),
        },
        None => ClockMode::Host,
    };
    // EXEC-016: the guest's output reaches the observer as it is written; the outcome
    // still holds both streams whole, for the cache.
    let live = |stream: Stream, bytes: &[u8]| match stream {
        Stream::Stdout => ctx.observer.on_stdout(id, bytes),
        Stream::Stderr => ctx.observer.on_stderr(id, bytes),
    };
    let outcome = record.timed("run", || {
        ctx.sandbox.run_with_output(
            &module,
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
    });
    let declared: std::collections::HashSet<&str> = prepared
        .inputs
        .iter()
        .map(|i| i.guest_path.as_str())
        .collect();
    record.undeclared = outcome
        .access
        .refused
        .iter()
        .filter(|(p, _)| !declared.contains(p.as_str()))
        .map(|(p, _)| p.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if outcome.result == Err(wask_runtime::Failure::Cancelled) {
        record.state = TaskState::Cancelled;
        return Err("cancelled: the run was interrupted; nothing was stored".into());
    }
    if let Err(failure) = outcome.result {
        let mut message = failure.to_string();
        if !record.undeclared.is_empty() {
            message.push_str(&format!(
                "\n  it tried to reach paths it did not declare (they do not exist in its sandbox): {}\n  hint: add them to the task's `inputs` if it needs them",
                record.undeclared.join(", ")
            ));
        }
        return Err(message);
    }
    // The key must describe what the guest read (the inputs' bytes as hashed).
    let changed = view.changed_inputs(&hasher);
    if !changed.is_empty() {
        return Err(format!(
            "input {} changed while the task ran, so its result may not match its key; nothing was stored: run again",
            changed.join(", ")
        ));
    }
    let collected = view.collect(&def.limits, &hasher).map_err(|violations| {
        let list: Vec<String> = violations
            .iter()
            .map(|v| format!("  - the task {v}"))
            .collect();
        format!("the task broke its declarations:\n{}", list.join("\n"))
    })?;
    // Whatever its patterns match, a task never writes where another program would act
    // on its bytes, nor where another task writes (`crate::protect`).
    let node = ctx.keys.graph.find(id).expect("a task of the graph");
    let refused: Vec<String> = collected
        .iter()
        .filter_map(|c| {
            ctx.rules
                .refusal(node, &c.guest_path)
                .map(|r| format!("  - {} {r}", c.guest_path))
        })
        .collect();
    if !refused.is_empty() {
        return Err(format!(
            "the task wrote where no task may write; nothing was stored:\n{}",
            refused.join("\n")
        ));
    }

    let mut produced = Vec::with_capacity(collected.len());
    for c in &collected {
        let size = c.size;
        let digest = hash_file(hash, &c.host_path)
            .map_err(|e| format!("cannot read output {}: {e}", c.guest_path))?;
        produced.push(ProducedOutput {
            path: c.guest_path.clone(),
            file: c.host_path.clone(),
            hash: digest,
            size,
            mode: OUTPUT_MODE,
        });
    }
    // SANDBOX-009: which declared inputs the run really read, and what it reached for
    // outside its declarations.
    let access = AccessRecord {
        opened: outcome
            .access
            .opened
            .iter()
            .filter(|p| declared.contains(p.as_str()))
            .cloned()
            .collect(),
        refused: record.undeclared.clone(),
    };
    // Only successful runs are stored (CACHE-018); a failed store costs only a rerun.
    record.timed("store", || {
        if let Err(e) = ctx.keys.cache.store(
            &prepared.key,
            &produced,
            &outcome.stdout,
            &outcome.stderr,
            &id.to_string(),
            access,
        ) {
            ctx.observer
                .on_warning(id, &format!("could not store the result in the cache: {e}"));
        } else {
            // Only informs `wask why`; losing it costs an explanation, not a result.
            let explained = crate::explain::Explained::new(&prepared.parts, &ctx.keys.key);
            let _ = crate::explain::ExplainStore::new(&ctx.keys.wask_dir).record(id, &explained);
        }
        let placer = Placer::new(&ctx.keys.ws.root, &ctx.ledger, id.to_string(), hash)
            .map_err(|e| format!("cannot open the workspace: {e}"))?;
        let placed = produced
            .iter()
            .try_for_each(|p| placer.place(&p.file, &p.path, &p.hash))
            .map_err(|e| format!("cannot write an output: {e}"));
        // What was placed before a refusal is this task's, refusal or not.
        placer.finish(&[]);
        placed
    })?;
    record.state = TaskState::Succeeded;
    record.source = Some(Source::Fresh);
    record.outputs = produced.iter().map(|p| p.path.clone()).collect();
    record.streams = Some((
        hash_bytes(hash, &outcome.stdout),
        hash_bytes(hash, &outcome.stderr),
    ));
    Ok(())
}

/// Replays stored streams (a cache hit), the same calls a fresh run makes as it goes.
fn emit_streams(ctx: &RunContext<'_>, id: &TaskId, stdout: &[u8], stderr: &[u8]) {
    if !stdout.is_empty() {
        ctx.observer.on_stdout(id, stdout);
    }
    if !stderr.is_empty() {
        ctx.observer.on_stderr(id, stderr);
    }
}
