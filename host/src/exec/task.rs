//! The lifecycle of one task (EXEC-007): derive the key, look it up, restore on a hit;
//! on a miss run the module in the sandbox, collect its outputs, store, and place them.

use super::RunContext;
use super::keys::{Prepared, prepare};
use super::place::Placer;
use super::record::{Source, TaskRecord, TaskState};
use crate::cache::{Damaged, Entry, FoundEntry, ResultStore};
use crate::cache::{RestoreError, Restored};
use crate::key::{Digest, hash_bytes};
use crate::refs::TaskId;
use crate::workspace::TaskDef;
use std::time::SystemTime;
use wask_runtime::Stream;

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
        Err(e) => {
            if e.is_cancelled() {
                record.state = TaskState::Cancelled;
            }
            return Started::Finished(finish(ctx, record, Err(e.to_string())));
        }
    };
    record.key = Some(prepared.key);
    if ctx.keys.cancel.is_set() {
        record.state = TaskState::Cancelled;
        let message = "cancelled: the run was interrupted; nothing was restored or run";
        return Started::Finished(finish(ctx, record, Err(message.into())));
    }
    match restore_hit(ctx, id, def, project_dir, &prepared, &mut record) {
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
    let result = super::fresh::run(ctx, id, def, project_dir, &prepared, &mut record);
    if result.as_ref().is_err_and(|e| e.is_cancelled()) {
        record.state = TaskState::Cancelled;
    }
    finish(ctx, record, result.map_err(|e| e.to_string()))
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
    def: &TaskDef,
    project_dir: &str,
    prepared: &Prepared,
    record: &mut TaskRecord,
) -> Result<bool, String> {
    let hash = ctx.keys.ws.settings.hash;
    let Some(entry) = find_hit(ctx, id, def, prepared, record) else {
        return Ok(false);
    };
    let allowed = restore_rule(ctx, id, prepared)?;
    let staging = ctx.scratch_dir()?;
    let placer = Placer::new(&ctx.keys.ws.root, &ctx.ledger, id.to_string(), hash)
        .map_err(|e| format!("cannot open the workspace: {e}"))?;
    let restore = || ctx.keys.cache.restore(&entry, &placer, staging, &*allowed);
    match record.timed("restore", restore) {
        Ok(restored) => {
            let all: Vec<String> = entry
                .manifest
                .outputs
                .iter()
                .map(|o| o.path.clone())
                .collect();
            placer.finish(&all);
            emit_streams(ctx, id, &restored);
            if sampled(ctx.audit_sample, &prepared.key) {
                audit_hit(ctx, id, def, project_dir, prepared, &entry)?;
            }
            record.state = TaskState::Succeeded;
            record.source = Some(Source::Cache);
            record.outputs = all;
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
        Err(e @ RestoreError::Cancelled) => {
            record.state = TaskState::Cancelled;
            Err(e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The entry to restore for `prepared`'s key, if there is one that fits the task; a
/// broken one is reported and discarded, one that does not fit is reported.
fn find_hit(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    prepared: &Prepared,
    record: &mut TaskRecord,
) -> Option<Entry> {
    let entry = match record.timed("lookup", || ctx.keys.cache.lookup(&prepared.key)) {
        Ok(found) => found?,
        Err(Damaged(what)) => {
            // CACHE-019: a broken entry is a miss with a report, and goes, so the
            // fresh run can store a good one.
            ctx.keys.cache.discard(&prepared.key);
            let e = RestoreError::Corrupt {
                entry: prepared.key.hex(),
                what,
            };
            ctx.observer.on_warning(id, &e.to_string());
            return None;
        }
    };
    if let Some(why) = entry.unfit(&def.limits) {
        let note = format!(
            "the cached result does not fit this task's limits: {why}; the task runs fresh"
        );
        ctx.observer.on_warning(id, &note);
        return None;
    }
    Some(entry)
}

/// Accepts a path a restore may write, or says why not.
type RestoreRule<'c> = Box<dyn Fn(&str) -> Result<(), String> + 'c>;

/// Which paths a restore of the task may write, whatever the entry says: only what a
/// fresh run of it could have written (declared, not one of its inputs, not a path the
/// write rules refuse).
fn restore_rule<'c>(
    ctx: &'c RunContext<'_>,
    id: &TaskId,
    prepared: &'c Prepared,
) -> Result<RestoreRule<'c>, String> {
    let declared = wask_runtime::paths::glob_set(&prepared.parts.outputs)
        .map_err(|e| format!("invalid output pattern: {e}"))?;
    let node = ctx.keys.graph.find(id).expect("a task of the graph");
    let inputs: std::collections::HashSet<&str> = prepared
        .inputs
        .iter()
        .map(|i| i.guest_path.as_str())
        .collect();
    Ok(Box::new(move |p: &str| {
        if !declared.is_match(p) {
            Err("the task does not declare".into())
        } else if inputs.contains(p) {
            Err("is a declared input of the task".into())
        } else if let Some(r) = ctx.rules.refusal(node, p) {
            Err(r.to_string())
        } else {
            Ok(())
        }
    }))
}

/// Replays stored streams (a cache hit), the same calls a fresh run makes as it goes.
/// Whether the hit of `key` is one `--audit-sample F` checks: a fixed choice by key, so
/// the same entries are checked on every run with the same F.
fn sampled(fraction: Option<f64>, key: &Digest) -> bool {
    let Some(f) = fraction else { return false };
    let at = u64::from_le_bytes(key.0[..8].try_into().expect("8 bytes")) as f64;
    at < f * u64::MAX as f64 || f >= 1.0
}

/// Runs a restored hit fresh again and compares its outputs and streams with the
/// entry: a difference fails the task, naming the entry (a suspect cache entry).
fn audit_hit(
    ctx: &RunContext<'_>,
    id: &TaskId,
    def: &TaskDef,
    project_dir: &str,
    prepared: &Prepared,
    entry: &crate::cache::Entry,
) -> Result<(), String> {
    let mut scratch_record = TaskRecord::new(id.clone());
    let run = super::fresh::execute(ctx, id, def, project_dir, prepared, &mut scratch_record)
        .map_err(|e| format!("--audit-sample: the fresh run of this hit failed: {e}"))?;
    let hash = ctx.keys.ws.settings.hash;
    let mut fresh: Vec<(String, String)> = run
        .produced
        .iter()
        .map(|p| (p.path.clone(), p.hash.hex()))
        .collect();
    fresh.push((
        "<stdout>".into(),
        hash_bytes(hash, &run.outcome.stdout).hex(),
    ));
    fresh.push((
        "<stderr>".into(),
        hash_bytes(hash, &run.outcome.stderr).hex(),
    ));
    fresh.sort();
    let m = &entry.manifest;
    let mut stored: Vec<(String, String)> = m
        .outputs
        .iter()
        .map(|o| (o.path.clone(), o.hash.clone()))
        .collect();
    stored.push(("<stdout>".into(), m.stdout.hash.clone()));
    stored.push(("<stderr>".into(), m.stderr.hash.clone()));
    stored.sort();
    if fresh == stored {
        return Ok(());
    }
    let differ: Vec<String> = stored
        .iter()
        .filter(|s| !fresh.contains(s))
        .map(|(path, _)| path.clone())
        .chain(
            fresh
                .iter()
                .filter(|f| !stored.iter().any(|s| s.0 == f.0))
                .map(|f| f.0.clone()),
        )
        .collect();
    Err(format!(
        "--audit-sample: suspect cache entry {}: a fresh run does not give what it restored ({}); `wask audit {id}` shows the bytes",
        m.key,
        differ.join(", ")
    ))
}

fn emit_streams(ctx: &RunContext<'_>, id: &TaskId, restored: &Restored) {
    let (mut out, mut err) = (&restored.stdout[..], &restored.stderr[..]);
    for (stream, len) in &restored.write_order {
        let from = match stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        // Checked against the streams' sizes when the manifest was read.
        let n = usize::try_from(*len).unwrap_or(usize::MAX).min(from.len());
        let (run, rest) = from.split_at(n);
        *from = rest;
        match stream {
            Stream::Stdout => ctx.observer.on_stdout(id, run),
            Stream::Stderr => ctx.observer.on_stderr(id, run),
        }
    }
}
