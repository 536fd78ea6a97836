//! `wask audit REF... | --workspace [--runs N] [--json]`: run each task fresh N times
//! in the sandbox, ignoring the cache for lookup, storing nothing and writing none of
//! the workspace's outputs, and compare the runs with each other and with the task's
//! cache entry (AUDIT-001, AUDIT-003). Hard predecessors run first as `wask run` would
//! run them (from the cache where they can), so their outputs are the audited task's
//! inputs.

mod progress;
mod verify;

use super::{CliError, EXIT_OK, EXIT_TASK_FAILED};
use crate::audit::provenance::{self, Made};
use crate::audit::{
    Difference, NeverRead, Observed, compare_entry, compare_runs, entry_files, forget_needless,
    never_read, never_read_text, observe,
};
use crate::cache::{Entry, FoundEntry, ResultStore};
use crate::exec::fresh::FreshRun;
use crate::exec::keys::Prepared;
use crate::exec::observer::Silent;
use crate::exec::plan::{Planned, plan};
use crate::exec::record::{TaskRecord, TaskState};
use crate::exec::{self, KeyContext, RunContext};
use crate::refs::TaskId;
use crate::signing::{self, SigningKeyFile};
use crate::workspace::ClockSetting;
use clap::Args;
use progress::Progress;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Tasks to audit, named as for `wask run`.
    #[arg(value_name = "REFS")]
    refs: Vec<String>,
    /// Audit every task of the workspace.
    #[arg(long, visible_alias = "all")]
    workspace: bool,
    /// How many fresh runs of each task to compare.
    #[arg(long, value_name = "N", default_value_t = 2)]
    runs: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write, for each reproducible task, its provenance (an in-toto statement with a
    /// SLSA provenance predicate, in a DSSE envelope signed with the signing key) to
    /// DIR/<project>.<task>.intoto.jsonl.
    #[arg(long, value_name = "DIR")]
    provenance: Option<PathBuf>,
    /// With --provenance: write the bare statements (DIR/<project>.<task>.intoto.json),
    /// unsigned.
    #[arg(long, requires = "provenance")]
    unsigned: bool,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Print the public key that signs provenance, as PEM (SubjectPublicKeyInfo). The
    /// key is WASK_SIGNING_KEY's (a PKCS#8 PEM Ed25519 key), else this user's, made on
    /// first use beside the user key.
    Key,
    /// Check provenance: each envelope's signature, then run its task again here from
    /// what the statement records (its inputs must hash as recorded) and check that
    /// every subject comes out bit for bit.
    Verify {
        /// `.intoto.jsonl` files written by `wask audit --provenance`.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// The public key (PEM) the envelopes must be signed with [default: this
        /// user's signing key].
        #[arg(long, value_name = "PUB.pem")]
        key: Option<PathBuf>,
    },
}

/// What the audit of one task found.
#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    /// Every run gave the same bytes, and so does the cache entry if there is one.
    Reproducible,
    /// The runs gave different bytes.
    Differs,
    /// The runs agree with each other, not with the cache entry: the entry holds bytes
    /// no run of the task gives.
    SuspectEntry,
    /// A run failed, or the task could not be run.
    Failed,
}

#[derive(Debug, Serialize)]
struct TaskAudit {
    task: String,
    verdict: Verdict,
    runs: usize,
    seconds: f64,
    /// Whether the task has a cache entry the runs were compared with.
    compared_with_cache: bool,
    /// What is wrong with the task's cache entry, when it is there but broken: it is
    /// never restored (a run removes it), so the runs are not compared with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    damaged_entry: Option<String>,
    differences: Vec<Difference>,
    /// Declared inputs the first run never opened (`None`: its record was cut short).
    #[serde(skip_serializing_if = "Option::is_none")]
    never_read: Option<Vec<NeverRead>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

pub fn audit(directory: Option<PathBuf>, args: AuditArgs) -> Result<i32, CliError> {
    match &args.command {
        Some(AuditCommand::Key) => {
            let key = SigningKeyFile::load().map_err(anyhow::Error::from)?;
            print!("{}", key.public_pem());
            Ok(EXIT_OK)
        }
        Some(AuditCommand::Verify { files, key }) => {
            verify::verify(directory, files, key.as_deref())
        }
        None => audit_tasks(directory, &args),
    }
}

/// `wask audit REF... | --workspace`: the audit itself.
fn audit_tasks(directory: Option<PathBuf>, args: &AuditArgs) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    if args.runs < 2 {
        return Err(CliError::Usage(
            "--runs must be at least 2: one run has nothing to be compared with".into(),
        ));
    }
    let audited: Vec<usize> = if args.workspace {
        (0..graph.nodes.len()).collect()
    } else if args.refs.is_empty() {
        return Err(CliError::Usage(
            "name the tasks to audit (for example `wask audit site:build`), or pass --workspace to audit them all".into(),
        ));
    } else {
        super::run::resolve_refs(&ws, &graph, &dir, &args.refs)?
    };
    let cancel = crate::cancel::Cancel::on_signals()
        .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
    let keys = KeyContext::new(&ws, &graph, cancel.clone())?;
    let run_set = graph.run_set(&audited);
    keys.prepare_modules(&run_set).map_err(CliError::Modules)?;
    let writer = match &args.provenance {
        Some(dir) => Some(ProvenanceWriter::new(dir.clone(), args.unsigned)?),
        None => None,
    };
    let mut ctx = RunContext::new(keys, &Silent, exec::compile_in_child())?;
    // An audit trusts the sandbox, not the cache: a predecessor restored from it is run
    // fresh too, and a suspect one fails, with every task that needs it.
    ctx.audit_sample = Some(exec::task::AuditSample::all());
    let progress = Progress::new(audited.len());
    progress.step("running the predecessors of the audited tasks");
    let failed_before = run_predecessors(&ctx, &audited, &cancel);
    let audited_set: BTreeSet<usize> = audited.iter().copied().collect();
    let mut report = Vec::new();
    for (n, planned) in plan(&ctx.keys, &run_set) {
        if !audited_set.contains(&n) {
            continue;
        }
        if let Some(signal) = cancel.signal() {
            return Ok(128 + signal);
        }
        let id = graph.nodes[n].id.clone();
        let audit = match planned {
            Planned::Known {
                prepared,
                entry,
                damaged,
                ..
            } => {
                let mut audit = audit_task(
                    &ctx,
                    n,
                    &prepared,
                    entry.as_ref(),
                    args.runs,
                    writer.as_ref(),
                    &progress,
                );
                audit.damaged_entry = damaged;
                audit
            }
            Planned::AfterRunning(preds) => failed(
                &id,
                format!(
                    "its predecessors {} did not succeed{}",
                    preds
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    failed_before
                        .as_deref()
                        .map(|f| format!(": {f}"))
                        .unwrap_or_default()
                ),
            ),
            Planned::Error(e) => failed(&id, e),
        };
        if !args.json {
            progress.task_done(&row(&audit));
        }
        report.push(audit);
    }
    drop(progress);
    if let Some(signal) = cancel.signal() {
        return Ok(128 + signal);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serialises")
        );
    }
    eprintln!("{}", summary(&report));
    let clean = report.iter().all(|t| t.verdict == Verdict::Reproducible);
    Ok(if clean { EXIT_OK } else { EXIT_TASK_FAILED })
}

/// Runs the hard predecessors of the audited tasks as `wask run` would; says which
/// failed, if any.
pub(super) fn run_predecessors(
    ctx: &RunContext<'_>,
    audited: &[usize],
    cancel: &crate::cancel::Cancel,
) -> Option<String> {
    let graph = ctx.keys.graph;
    let preds: Vec<usize> = audited
        .iter()
        .flat_map(|n| graph.nodes[*n].hard.iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if preds.is_empty() {
        return None;
    }
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let records = exec::run(
        ctx,
        &graph.run_set(&preds),
        &exec::RunOptions {
            jobs,
            fail_fast: false,
            cancelled: &|| cancel.is_set(),
        },
    );
    let failed: Vec<String> = records
        .iter()
        .filter(|r| r.state != TaskState::Succeeded)
        .map(|r| format!("{} ({})", r.id, r.error.as_deref().unwrap_or("did not run")))
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

fn failed(id: &TaskId, error: String) -> TaskAudit {
    TaskAudit {
        task: id.to_string(),
        verdict: Verdict::Failed,
        runs: 0,
        seconds: 0.0,
        compared_with_cache: false,
        damaged_entry: None,
        differences: Vec::new(),
        never_read: None,
        error: Some(error),
        hint: None,
    }
}

/// Runs task `n` fresh `runs` times and compares the runs and the entry.
fn audit_task(
    ctx: &RunContext<'_>,
    n: usize,
    prepared: &Prepared,
    entry: Option<&Entry>,
    runs: usize,
    writer: Option<&ProvenanceWriter>,
    progress: &Progress,
) -> TaskAudit {
    let graph = ctx.keys.graph;
    let id = &graph.nodes[n].id;
    let def = graph.task(ctx.keys.ws, n);
    let started = Instant::now();
    let Runs {
        fresh,
        observed,
        started: started_on,
        finished: finished_on,
    } = match fresh_runs(ctx, n, prepared, runs, progress) {
        Ok(done) => done,
        Err(e) => return failed(id, e),
    };
    let hash = ctx.keys.ws.settings.hash;
    let mut differences = compare_runs(&observed);
    let mut verdict = if differences.is_empty() {
        Verdict::Reproducible
    } else {
        Verdict::Differs
    };
    let mut hint = None;
    if let (Verdict::Reproducible, Some(entry)) = (verdict, entry) {
        differences = compare_entry(&observed[0], &entry_files(entry.manifest(), hash));
        if !differences.is_empty() {
            verdict = Verdict::SuspectEntry;
            // As `--audit-sample` does: an entry no run gives is not kept for a hit.
            ctx.keys.cache.discard(&prepared.key);
            hint = Some("the suspect entry was removed from the cache".to_string());
        }
    }
    let mut error = None;
    let host_clock = def.clock == ClockSetting::Host;
    if let (Verdict::Reproducible, Some(_), true) = (verdict, writer, host_clock) {
        hint = Some("not signed: the task reads the host clock (`clock = \"host\"`), so runs that agree now prove nothing of a run later".into());
    } else if let (Verdict::Reproducible, Some(writer)) = (verdict, writer) {
        let first = &fresh[0];
        let made = Made {
            id,
            def,
            prepared,
            outputs: &first.produced,
            access: &first.access,
            stdout: &first.outcome.stdout,
            stderr: &first.outcome.stderr,
            started: started_on,
            finished: finished_on,
        };
        if let Err(e) = writer.write(&made) {
            verdict = Verdict::Failed;
            error = Some(format!("cannot write its provenance: {e}"));
        }
    }
    if verdict == Verdict::Differs && host_clock {
        hint = Some("the task reads the host clock (`clock = \"host\"`); with the default fixed clock its time and randomness are the same on every run".to_string());
    }
    TaskAudit {
        task: id.to_string(),
        verdict,
        runs,
        seconds: started.elapsed().as_secs_f64(),
        compared_with_cache: entry.is_some(),
        damaged_entry: None,
        differences,
        never_read: never_read(
            def,
            prepared,
            fresh[0]
                .outcome
                .access
                .opened
                .iter()
                .map(String::as_str)
                .collect(),
        ),
        error,
        hint,
    }
}

/// Where provenance goes, and the key that signs it.
struct ProvenanceWriter {
    dir: PathBuf,
    /// `None`: write bare statements (`--unsigned`).
    key: Option<SigningKeyFile>,
}

impl ProvenanceWriter {
    fn new(dir: PathBuf, unsigned: bool) -> Result<ProvenanceWriter, CliError> {
        let key = if unsigned {
            None
        } else {
            Some(SigningKeyFile::load().map_err(anyhow::Error::from)?)
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot make {}: {e}", dir.display()))?;
        Ok(ProvenanceWriter { dir, key })
    }

    /// Writes `made`'s statement, signed unless `--unsigned`, whole or not at all.
    fn write(&self, made: &Made<'_>) -> std::io::Result<()> {
        let statement = serde_json::to_vec(&provenance::statement(made)?).expect("JSON");
        let stem = format!("{}.{}", made.id.project, made.id.task);
        let (name, mut bytes) = match &self.key {
            Some(key) => (
                format!("{stem}.intoto.jsonl"),
                serde_json::to_vec(&key.envelope(signing::IN_TOTO, &statement)).expect("JSON"),
            ),
            None => (format!("{stem}.intoto.json"), statement),
        };
        bytes.push(b'\n');
        let path = self.dir.join(name);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The fresh runs of one task, each as the comparison sees it.
struct Runs {
    /// Each run's view holds its outputs until every run is compared. Only the first
    /// keeps its streams (for provenance); later runs' are in `observed`, and only
    /// where they differ from the first's.
    fresh: Vec<FreshRun>,
    observed: Vec<Observed>,
    /// When the first run began and ended.
    started: SystemTime,
    finished: SystemTime,
}

/// Task `n` run fresh `runs` times.
fn fresh_runs(
    ctx: &RunContext<'_>,
    n: usize,
    prepared: &Prepared,
    runs: usize,
    progress: &Progress,
) -> Result<Runs, String> {
    let graph = ctx.keys.graph;
    let id = &graph.nodes[n].id;
    let def = graph.task(ctx.keys.ws, n);
    let project_dir = &ctx.keys.ws.projects[graph.nodes[n].project].dir;
    let hash = ctx.keys.ws.settings.hash;
    let started = SystemTime::now();
    let mut all = Runs {
        fresh: Vec::new(),
        observed: Vec::new(),
        started,
        finished: started,
    };
    let mut differing = BTreeSet::new();
    for run in 1..=runs {
        progress.run(id, run, runs);
        let mut record = TaskRecord::new(id.clone());
        let mut fresh = exec::fresh::execute(ctx, id, def, project_dir, prepared, &mut record)
            .map_err(|e| e.to_string())?;
        let mut seen = observe(&fresh, hash);
        if let Some(first) = all.observed.first() {
            forget_needless(&mut seen, first, &mut differing);
            fresh.outcome.stdout = Vec::new();
            fresh.outcome.stderr = Vec::new();
        } else {
            all.finished = SystemTime::now();
        }
        all.fresh.push(fresh);
        all.observed.push(seen);
    }
    Ok(all)
}

/// A task's part of the table: its row, then what explains the verdict.
fn row(t: &TaskAudit) -> String {
    use std::fmt::Write;
    let verdict = match t.verdict {
        Verdict::Reproducible => "reproducible",
        Verdict::Differs => "differs",
        Verdict::SuspectEntry => "suspect cache entry",
        Verdict::Failed => "failed",
    };
    let mut out = format!(
        "{:<24} {:<20} {} runs  {:.2} s\n",
        t.task, verdict, t.runs, t.seconds
    );
    if let Some(e) = &t.error {
        let _ = writeln!(out, "  {e}");
    }
    if let Some(d) = &t.damaged_entry {
        let _ = writeln!(
            out,
            "  its cache entry is damaged ({d}): never restored, and not compared"
        );
    }
    for d in &t.differences {
        write_difference(&mut out, d);
    }
    if let Some(never) = never_read_text(t.never_read.as_deref()) {
        let _ = writeln!(out, "  declared, never read: {never}");
    }
    if let Some(h) = &t.hint {
        let _ = writeln!(out, "  hint: {h}");
    }
    out
}

fn summary(report: &[TaskAudit]) -> String {
    let count = |v: Verdict| report.iter().filter(|t| t.verdict == v).count();
    format!(
        "Audited {} tasks: {} reproducible, {} differ, {} suspect cache entries, {} failed",
        report.len(),
        count(Verdict::Reproducible),
        count(Verdict::Differs),
        count(Verdict::SuspectEntry),
        count(Verdict::Failed)
    )
}

fn write_difference(out: &mut String, d: &Difference) {
    use std::fmt::Write;
    let versions: Vec<String> = d
        .versions
        .iter()
        .map(|v| match (v.size, &v.digest) {
            (Some(size), Some(digest)) => format!("{}: {size} bytes, {}", v.from, &digest[..16]),
            _ => format!("{}: absent", v.from),
        })
        .collect();
    let _ = writeln!(out, "  {}: {}", d.file, versions.join("; "));
    if let Some(at) = d.first_differing_byte {
        let _ = writeln!(out, "    first difference at byte {at}");
    }
    if let Some(diff) = &d.diff {
        for line in diff.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
}
