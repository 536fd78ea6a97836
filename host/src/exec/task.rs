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
    preds: super::keys::Predecessors,
    has_mutex: bool,
) -> Started {
    ctx.observer.on_task_started(id);
    let mut record = TaskRecord::new(id.clone());
    let node = &ctx.keys.graph.nodes[ctx.keys.graph.find(id).expect("a task of the graph")];
    let prepared = match record.timed("key", || prepare(&ctx.keys, node, def, project_dir, preds)) {
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
        record.hit = None;
        return Ok(false);
    };
    // Checked before a byte of it is restored: a suspect entry never reaches the
    // workspace, and goes from the cache.
    if ctx
        .audit_sample
        .as_ref()
        .is_some_and(|s| s.picks(&prepared.key))
        && let Err(suspect) = audit_hit(ctx, id, def, project_dir, prepared, &entry)
    {
        ctx.keys.cache.discard(&prepared.key);
        return Err(suspect);
    }
    let allowed = restore_rule(ctx, id, prepared)?;
    let staging = ctx.scratch_dir()?;
    let placer = Placer::new(&ctx.keys.ws.root, &ctx.keys.ledger, id.to_string(), hash)
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
            record.state = TaskState::Succeeded;
            record.source = Some(Source::Cache);
            record.hit.get_or_insert(super::record::Hit::Local);
            record.outputs = all;
            record.streams = Some((
                hash_bytes(hash, &restored.stdout),
                hash_bytes(hash, &restored.stderr),
            ));
            Ok(true)
        }
        Err(e @ (RestoreError::Corrupt { .. } | RestoreError::Unreadable { .. })) => {
            ctx.observer.on_warning(id, &e.to_string());
            record.hit = None;
            Ok(false)
        }
        Err(RestoreError::Vanished { .. }) => {
            record.hit = None;
            Ok(false)
        }
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
    let mut found = record.timed("lookup", || ctx.keys.cache.lookup(&prepared.key));
    if matches!(found, Ok(None))
        && let Some(remote) = &ctx.remote
        && let Ok(staging) = ctx.scratch_dir()
    {
        let warn = |message: &str| ctx.observer.on_warning(id, message);
        let cache = &ctx.keys.cache;
        let fetched = record.timed("remote", || {
            remote.fetch(&prepared.key, &def.limits, cache, staging, &warn)
        });
        if let crate::cache::remote::Fetched::Stored { bytes } = fetched {
            record.bytes_down = bytes;
            record.hit = Some(super::record::Hit::Remote);
            found = cache.lookup(&prepared.key);
        }
    }
    let entry = match found {
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
    let declared = wask_runtime::paths::glob_set(&prepared.parts.output_patterns())
        .map_err(|e| format!("invalid output pattern: {e}"))?;
    let dropped = wask_runtime::paths::glob_set(&prepared.parts.output_exclusions())
        .map_err(|e| format!("invalid output exclusion: {e}"))?;
    let node = ctx.keys.graph.find(id).expect("a task of the graph");
    let inputs: std::collections::HashSet<&str> = prepared
        .inputs
        .iter()
        .map(|i| i.guest_path.as_str())
        .collect();
    Ok(Box::new(move |p: &str| {
        if !declared.is_match(p) {
            Err("the task does not declare".into())
        } else if dropped.is_match(p) {
            Err("the task's `!` output exclusions leave out".into())
        } else if inputs.contains(p) {
            Err("is a declared input of the task".into())
        } else if let Some(r) = ctx.rules.refusal(node, p) {
            Err(r.to_string())
        } else if let Some(r) = ctx.rules.foreign_ground(&ctx.keys.ws.root, p) {
            Err(r.to_string())
        } else {
            Ok(())
        }
    }))
}

/// `wask run --audit-sample F`: which hits a run runs fresh again and compares with
/// their entries before restoring them (AUDIT, issue 11). Chosen afresh on every run,
/// from a seed a writer of the cache cannot know, so no entry can count on being left
/// out: each is checked with probability F on each run.
#[derive(Debug, Clone)]
pub struct AuditSample {
    fraction: f64,
    seed: [u8; 32],
}

impl AuditSample {
    /// `fraction` in (0, 1] of hits, chosen with a seed from the system's randomness.
    pub fn new(fraction: f64) -> std::io::Result<AuditSample> {
        let mut seed = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut seed)?;
        Ok(AuditSample { fraction, seed })
    }

    /// Every hit.
    pub fn all() -> AuditSample {
        AuditSample {
            fraction: 1.0,
            seed: [0; 32],
        }
    }

    fn picks(&self, key: &Digest) -> bool {
        if self.fraction >= 1.0 {
            return true;
        }
        let mut h = blake3::Hasher::new_keyed(&self.seed);
        h.update(&key.0);
        let at = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
        (at as f64) < self.fraction * u64::MAX as f64
    }
}

/// Runs a hit fresh and compares its outputs, streams and record with the entry's: a
/// difference is a suspect entry, named with the paths that differ.
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
    let m = &entry.manifest;
    let seen = crate::audit::observe(&run, hash);
    let differ: Vec<String> =
        crate::audit::compare_entry(&seen, &crate::audit::entry_files(m, hash))
            .into_iter()
            .map(|d| d.file)
            .collect();
    if differ.is_empty() {
        return Ok(());
    }
    Err(format!(
        "--audit-sample: suspect cache entry {}: a fresh run does not give what it records ({}); it was not restored and is removed from the cache; `wask audit {id}` shows the bytes",
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
