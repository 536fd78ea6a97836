//! `wask run`: run tasks and their dependencies, from the cache where possible.

use super::{CliError, EXIT_OK, EXIT_TASK_FAILED};
use crate::exec::observer::ConsoleObserver;
use crate::exec::plan::{Planned, plan};
use crate::exec::record::{Source, TaskRecord, TaskState};
use crate::exec::{self, KeyContext, RunContext};
use crate::graph::Graph;
use crate::refs::TaskRef;
use crate::workspace::{OutputMode, Workspace};
use clap::{Args, ValueEnum};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct RunArgs {
    /// Tasks to run: `project:task`, `~:task`, `^:task`, `[tag]:task`, or a bare `task`
    /// (in the current project, or in every project outside one).
    #[arg(value_name = "REFS")]
    refs: Vec<String>,
    /// Run every task of the workspace.
    #[arg(long, visible_alias = "all")]
    workspace: bool,
    /// Stop starting tasks after the first failure; running tasks finish.
    #[arg(long)]
    fail_fast: bool,
    /// How many tasks may run at once [default: the number of logical CPUs].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Print the run set in order with hit or miss for each, and run nothing.
    #[arg(long)]
    dry_run: bool,
    /// `live`: each line as `[project:task] line`; `buffered`: each task's output in one
    /// block when it ends.
    #[arg(long, value_enum, value_name = "MODE")]
    output_mode: Option<ModeArg>,
    /// Write a JSON record of every task of the run to FILE (`-`: to stdout).
    #[arg(long, value_name = "FILE.json")]
    summary: Option<PathBuf>,
    /// Run this fraction (0 < F <= 1) of cache hits fresh again after restoring them,
    /// and fail a task whose entry a fresh run does not reproduce (a suspect entry).
    #[arg(long, value_name = "F")]
    audit_sample: Option<f64>,
    /// Write a trace of every task's phases (key, lookup, restore, compile, run, store)
    /// to FILE in Chrome trace event format; open it in Perfetto or chrome://tracing.
    #[arg(long, value_name = "FILE.json")]
    profile: Option<PathBuf>,
    /// Use this remote cache (grpc://, grpcs://, http://, https://) instead of the one
    /// `[cache.remote]` or WASK_REMOTE_CACHE names.
    #[arg(long, value_name = "URL", conflicts_with = "no_remote_cache")]
    remote_cache: Option<String>,
    /// Use no remote cache this run.
    #[arg(long)]
    no_remote_cache: bool,
    /// Only the tasks (of REFS, or of the whole workspace) whose inputs, module or
    /// wask.toml changed since a git commit, and the tasks that depend on them.
    #[arg(long)]
    affected: bool,
    /// The commit `--affected` compares with [default: the merge base with the default
    /// branch, or HEAD when on it: the uncommitted changes].
    #[arg(long, value_name = "REF", requires = "affected")]
    base: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Live,
    Buffered,
}

pub fn run(directory: Option<PathBuf>, args: RunArgs) -> Result<i32, CliError> {
    // Before anything that may take long: a guest crate build is interrupted too.
    let cancel = crate::cancel::Cancel::on_signals()
        .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
    run_until(directory, args, cancel)
}

/// The arguments of one round of `wask watch`: the tasks `refs`, with `jobs`.
pub(super) fn watch_round(refs: Vec<String>, jobs: Option<usize>) -> RunArgs {
    RunArgs {
        refs,
        workspace: false,
        fail_fast: false,
        jobs,
        dry_run: false,
        output_mode: None,
        summary: None,
        audit_sample: None,
        profile: None,
        remote_cache: None,
        no_remote_cache: false,
        affected: false,
        base: None,
    }
}

/// [`run`], stopped when `cancel` is set (a signal, or a newer change under `watch`).
pub(super) fn run_until(
    directory: Option<PathBuf>,
    args: RunArgs,
    cancel: crate::cancel::Cancel,
) -> Result<i32, CliError> {
    let started = Instant::now();
    if let Some(f) = args.audit_sample
        && !(f > 0.0 && f <= 1.0)
    {
        return Err(CliError::Usage(format!(
            "--audit-sample must be more than 0 and at most 1, not {f}"
        )));
    }
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    let selected = select(&ws, &graph, &dir, &args)?;
    let run_set = graph.run_set(&selected);
    let mode = match args.output_mode {
        Some(ModeArg::Live) => OutputMode::Live,
        Some(ModeArg::Buffered) => OutputMode::Buffered,
        None => ws.settings.output_mode,
    };
    let jobs = match args.jobs.or(ws.settings.jobs) {
        Some(0) => return Err(CliError::Usage("--jobs must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let mut observer = ConsoleObserver::for_run(mode, super::colour(), run_set.len());
    if args.summary.as_deref() == Some(std::path::Path::new("-")) {
        observer = observer.task_stdout_on_stderr();
    }
    let keys = KeyContext::new(&ws, &graph, cancel.clone())?;
    if args.dry_run {
        // Keys only: no engine is started.
        dry_run(&keys, &run_set);
        return Ok(EXIT_OK);
    }
    if let Err(e) = keys.prepare_modules(&run_set) {
        if let Some(signal) = cancel.signal() {
            eprintln!("interrupted while building guest crates; nothing was run");
            return Ok(128 + signal);
        }
        return Err(CliError::Modules(e));
    }
    let mut ctx = RunContext::new(keys, &observer, crate::exec::compile_in_child())?;
    ctx.audit_sample = match args.audit_sample {
        Some(f) => Some(crate::exec::task::AuditSample::new(f).map_err(|e| {
            anyhow::anyhow!("--audit-sample: cannot read the system's randomness: {e}")
        })?),
        None => None,
    };
    ctx.remote = remote_cache(&ws, &args, &cancel)?;
    let mut records = exec::run(
        &ctx,
        &run_set,
        &exec::RunOptions {
            jobs,
            fail_fast: args.fail_fast,
            cancelled: &|| cancel.is_set(),
        },
    );
    let remote = ctx.remote.as_ref().map(|r| finish_uploads(r, &mut records));
    let mut tally = Tally::of(&records, started.elapsed());
    tally.remote = remote;
    if let Some(list) = failed_list(&records) {
        eprintln!("{list}");
    }
    eprintln!("{}", tally.line());
    match &args.summary {
        Some(path) if path.as_os_str() == "-" => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&tally.summary(&records));
            let _ = out.write_all(b"\n");
        }
        Some(path) => super::write_file(path, &tally.summary(&records))
            .map_err(|e| anyhow::anyhow!("cannot write the summary to {}: {e}", path.display()))?,
        None => {}
    }
    if let Some(path) = &args.profile {
        super::write_file(path, &super::profile::chrome_trace(&records))
            .map_err(|e| anyhow::anyhow!("cannot write the profile to {}: {e}", path.display()))?;
    }
    Ok(if let Some(signal) = cancel.signal() {
        128 + signal
    } else if tally.completed == records.len() {
        EXIT_OK
    } else {
        EXIT_TASK_FAILED
    })
}

/// The remote cache the run uses: `--remote-cache URL` or `--no-remote-cache`, else
/// the workspace's (`[cache.remote]`, `WASK_REMOTE_CACHE`).
fn remote_cache(
    ws: &Workspace,
    args: &RunArgs,
    cancel: &crate::cancel::Cancel,
) -> Result<Option<crate::cache::remote::RemoteCache>, CliError> {
    if args.no_remote_cache {
        return Ok(None);
    }
    let settings = match (&args.remote_cache, &ws.settings.remote) {
        (Some(url), from_workspace) => {
            crate::workspace::lower::remote::check_url(url)
                .map_err(|e| CliError::Usage(format!("--remote-cache: {e}")))?;
            let mut s = match from_workspace {
                Some(s) => s.clone(),
                // No `[cache.remote]`: the environment still says whether to upload.
                None => {
                    let mut s = crate::workspace::RemoteSettings::at(url.clone());
                    crate::workspace::lower::remote::write_from_environment(&mut s)
                        .map_err(CliError::Usage)?;
                    s
                }
            };
            s.url = url.clone();
            s
        }
        (None, Some(s)) => s.clone(),
        (None, None) => return Ok(None),
    };
    crate::cache::remote::RemoteCache::open(&settings, ws.settings.hash, cancel)
        .map(Some)
        .map_err(|e| CliError::Other(e.into()))
}

/// Waits for the run's uploads; puts what each task sent in its record, says what did
/// not make it, and sums up what the run did with the remote.
fn finish_uploads(
    remote: &crate::cache::remote::RemoteCache,
    records: &mut [TaskRecord],
) -> serde_json::Value {
    let report = remote.finish();
    for r in records.iter_mut() {
        r.bytes_up = report.bytes_up.get(&r.id).copied().unwrap_or(0);
    }
    for (task, why) in &report.failed {
        eprintln!(
            "   warning {task}: its result was not uploaded to the remote cache: {}",
            crate::cache::remote::printable(why)
        );
    }
    if report.not_sent > 0 {
        eprintln!(
            "   warning: {} result(s) were not uploaded: the run had stopped asking the remote cache",
            report.not_sent
        );
    }
    let stats = remote.stats();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    serde_json::json!({
        "url": remote.url(),
        "read": remote.reads(),
        "write": remote.writes(),
        "hits": n(&stats.hits),
        "bytes_down": n(&stats.bytes_down),
        "bytes_up": n(&stats.bytes_up),
        "requests": n(&stats.requests),
        "uploaded": report.uploaded,
        "uploads_failed": report.failed.len() + report.not_sent,
        "last_error": remote.last_error(),
    })
}

/// The failed tasks, each with the first line of its error, to end a run with (the
/// errors themselves scrolled by among the tasks' output); `None` if none failed.
fn failed_list(records: &[TaskRecord]) -> Option<String> {
    let failed: Vec<String> = records
        .iter()
        .filter(|r| r.state == TaskState::Failed)
        .map(|r| {
            // The first line, and the one after it when the first only introduces it
            // ("the task broke its declarations:").
            let mut lines = r.error.as_deref().unwrap_or("failed").lines();
            let mut first = lines.next().unwrap_or("failed").to_string();
            if first.ends_with(':')
                && let Some(next) = lines.next()
            {
                first = format!("{first} {}", next.trim().trim_start_matches("- "));
            }
            format!("  {}: {}", r.id, super::clip(&first))
        })
        .collect();
    (!failed.is_empty()).then(|| {
        let s = if failed.len() == 1 { "" } else { "s" };
        format!("Failed task{s}:\n{}", failed.join("\n"))
    })
}

/// How a run's tasks ended: the closing line and the `--summary` file.
struct Tally {
    completed: usize,
    cached: usize,
    /// Of the cached, those that came from the remote cache.
    remote_hits: usize,
    failed: usize,
    skipped: usize,
    cancelled: usize,
    elapsed: std::time::Duration,
    /// What the run did with the remote cache, when it had one.
    remote: Option<serde_json::Value>,
}

impl Tally {
    fn of(records: &[TaskRecord], elapsed: std::time::Duration) -> Tally {
        let count = |f: &dyn Fn(&TaskRecord) -> bool| records.iter().filter(|r| f(r)).count();
        Tally {
            completed: count(&|r| r.state == TaskState::Succeeded),
            cached: count(&|r| r.source == Some(Source::Cache)),
            remote_hits: count(&|r| {
                r.source == Some(Source::Cache) && r.hit == Some(crate::exec::record::Hit::Remote)
            }),
            failed: count(&|r| r.state == TaskState::Failed),
            skipped: count(&|r| r.state == TaskState::Skipped),
            cancelled: count(&|r| r.state == TaskState::Cancelled),
            elapsed,
            remote: None,
        }
    }

    /// `Tasks: N completed (M cached), F failed, S skipped in T`.
    fn line(&self) -> String {
        let cancelled = if self.cancelled > 0 {
            format!(", {} cancelled", self.cancelled)
        } else {
            String::new()
        };
        let remote = if self.remote.is_some() {
            format!(", {} from the remote", self.remote_hits)
        } else {
            String::new()
        };
        format!(
            "Tasks: {} completed ({} cached{remote}), {} failed, {} skipped{cancelled} in {:.2}s",
            self.completed,
            self.cached,
            self.failed,
            self.skipped,
            self.elapsed.as_secs_f64()
        )
    }

    /// The `--summary` JSON: one record per task and the counts.
    fn summary(&self, records: &[TaskRecord]) -> Vec<u8> {
        let summary = serde_json::json!({
            "tasks": records.iter().map(TaskRecord::to_json).collect::<Vec<_>>(),
            "completed": self.completed,
            "cached": self.cached,
            "failed": self.failed,
            "skipped": self.skipped,
            "cancelled": self.cancelled,
            "remote_hits": self.remote_hits,
            "remote": self.remote,
            "duration_ms": self.elapsed.as_secs_f64() * 1000.0,
        });
        serde_json::to_vec_pretty(&summary).expect("summary serialises")
    }
}

/// Turns the command line's references into graph nodes.
fn select(
    ws: &Workspace,
    graph: &Graph,
    dir: &std::path::Path,
    args: &RunArgs,
) -> Result<Vec<usize>, CliError> {
    if args.affected {
        let candidates = if args.refs.is_empty() {
            (0..graph.nodes.len()).collect()
        } else {
            resolve_refs(ws, graph, dir, &args.refs)?
        };
        let (base, changed) = crate::affected::changed_since(&ws.root, args.base.as_deref())
            .map_err(CliError::Usage)?;
        let affected = crate::affected::affected(ws, graph, &changed);
        let selected: Vec<usize> = candidates
            .into_iter()
            .filter(|n| affected.contains(n))
            .collect();
        let s = |n: usize| if n == 1 { "" } else { "s" };
        eprintln!(
            "affected since {base}: {} changed file{}, {} task{}",
            changed.len(),
            s(changed.len()),
            selected.len(),
            s(selected.len())
        );
        return Ok(selected);
    }
    if args.workspace {
        return Ok((0..graph.nodes.len()).collect());
    }
    if args.refs.is_empty() {
        return Err(CliError::Usage(
            "name the tasks to run (for example `wask run site:build`), or pass --workspace to run them all".into(),
        ));
    }
    resolve_refs(ws, graph, dir, &args.refs)
}

/// Resolves command-line task references (section 3) from `dir` to graph nodes, sorted.
pub(super) fn resolve_refs(
    ws: &Workspace,
    graph: &Graph,
    dir: &std::path::Path,
    refs: &[String],
) -> Result<Vec<usize>, CliError> {
    let here = ws.project_containing(dir).map(|p| p.name.clone());
    let mut selected = BTreeSet::new();
    for text in refs {
        let r = TaskRef::parse_cli(text)
            .map_err(|e| CliError::Usage(format!("invalid task reference `{text}`: {e}")))?;
        let ids = r.resolve(ws, here.as_deref());
        if ids.is_empty() {
            return Err(CliError::Usage(format!(
                "no task matches `{text}`{}; `wask query` lists the tasks",
                here.as_ref()
                    .map(|p| format!(" (from project {p})"))
                    .unwrap_or_default()
            )));
        }
        selected.extend(
            ids.iter()
                .map(|id| graph.find(id).expect("resolved ids exist")),
        );
    }
    Ok(selected.into_iter().collect())
}

/// EXEC-030: the run set in order, with hit or miss for each; nothing runs.
fn dry_run(ctx: &KeyContext<'_>, run_set: &[usize]) {
    for (n, planned) in plan(ctx, run_set) {
        let id = &ctx.graph.nodes[n].id;
        match planned {
            Planned::AfterRunning(preds) => {
                let names: Vec<String> = preds.iter().map(ToString::to_string).collect();
                println!(
                    "miss  {id}  (runs after {} which will run)",
                    names.join(", ")
                );
            }
            Planned::Error(e) => println!("miss  {id}  ({e})"),
            Planned::Known {
                prepared, entry, ..
            } => {
                let word = if entry.is_some() { "hit " } else { "miss" };
                println!("{word}  {id}  {}", prepared.key);
            }
        }
    }
}
