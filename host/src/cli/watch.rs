//! `wask watch [REFS...]`: runs the tasks, then again whenever files they read change:
//! only the tasks a change affects (`crate::affected`) and their dependents. A change
//! that arrives while a run is going stops that run (its tasks are stale) and starts the
//! next with everything changed since. File system events are debounced, and what wask
//! writes itself (task outputs, `.wask/`) is not a change.

use super::{CliError, EXIT_OK};
use crate::cancel::Cancel;
use clap::Args;
use notify::{Event, EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

#[derive(Args)]
pub struct WatchArgs {
    /// The tasks to keep up to date (`project:task`, `~:task`, ...) [default: every task
    /// of the workspace].
    #[arg(value_name = "REFS")]
    refs: Vec<String>,
    /// How many tasks may run at once [default: the number of logical CPUs].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
}

/// How long the file system must be quiet before a batch of changes is taken.
const DEBOUNCE: Duration = Duration::from_millis(150);

pub fn watch(directory: Option<PathBuf>, args: WatchArgs) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    let root = ws.root.clone();
    let watched: BTreeSet<String> = if args.refs.is_empty() {
        graph.nodes.iter().map(|n| n.id.to_string()).collect()
    } else {
        let selected = super::run::resolve_refs(&ws, &graph, &dir, &args.refs)?;
        selected
            .iter()
            .map(|n| graph.nodes[*n].id.to_string())
            .collect()
    };
    drop((ws, graph));
    let signals = Cancel::on_signals()
        .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
    let (tx, events) = std::sync::mpsc::channel::<notify::Result<Event>>();
    let mut watcher = notify::recommended_watcher(tx)
        .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", root.display()))?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", root.display()))?;

    let mut next: BTreeSet<String> = watched.clone();
    loop {
        if !next.is_empty() {
            let round = signals.for_one_run();
            let refs: Vec<String> = std::mem::take(&mut next).into_iter().collect();
            let changed = run_round(&dir, &watched, refs, args.jobs, &round, &events, &root);
            if let Some(signal) = signals.signal() {
                return Ok(128 + signal);
            }
            next = affected_tasks(&dir, &watched, &changed);
            if !next.is_empty() {
                continue;
            }
        }
        eprintln!("watching for changes (Ctrl-C to stop)");
        // Waits for a batch that touches a watched task; a signal ends the watch.
        loop {
            match batch(&events, &root, Duration::from_millis(100)) {
                Ok(changed) => {
                    next = affected_tasks(&dir, &watched, &changed);
                    if !next.is_empty() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(EXIT_OK),
            }
            if let Some(signal) = signals.signal() {
                return Ok(128 + signal);
            }
        }
    }
}

/// Runs `refs` until they finish or a change that affects a watched task stops them;
/// returns the paths that changed meanwhile.
fn run_round(
    dir: &Path,
    watched: &BTreeSet<String>,
    refs: Vec<String>,
    jobs: Option<usize>,
    round: &Cancel,
    events: &Receiver<notify::Result<Event>>,
    root: &Path,
) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    std::thread::scope(|scope| {
        let args = super::run::watch_round(refs, jobs);
        let running = scope
            .spawn(move || super::run::run_until(Some(dir.to_path_buf()), args, round.clone()));
        while !running.is_finished() {
            if let Ok(paths) = batch(events, root, Duration::from_millis(50)) {
                // Only a change to what a watched task reads makes the run stale; the
                // run's own outputs do not.
                let stale = !round.is_set() && !affected_tasks(dir, watched, &paths).is_empty();
                if stale {
                    eprintln!("files changed during the run: stopping it to start again");
                    round.supersede();
                }
                changed.extend(paths);
            }
        }
        // A load error (a wask.toml being edited) is shown, and the watch goes on.
        if let Ok(Err(e)) = running.join() {
            super::report(e);
        }
    });
    changed
}

/// The paths of the next batch of changes: the first event within `wait`, then every
/// one until the file system has been quiet for [`DEBOUNCE`].
fn batch(
    events: &Receiver<notify::Result<Event>>,
    root: &Path,
    wait: Duration,
) -> Result<BTreeSet<String>, RecvTimeoutError> {
    let mut paths = BTreeSet::new();
    let first = events.recv_timeout(wait)?;
    add_paths(root, first, &mut paths);
    loop {
        match events.recv_timeout(DEBOUNCE) {
            Ok(event) => add_paths(root, event, &mut paths),
            Err(RecvTimeoutError::Timeout) => return Ok(paths),
            Err(RecvTimeoutError::Disconnected) => return Ok(paths),
        }
    }
}

/// The workspace paths an event changed. Reads and metadata changes are no change (a
/// run stages its inputs by hard links, which touches their link count), and neither is
/// anything in wask's own directory nor the temporary files wask writes beside outputs.
fn add_paths(root: &Path, event: notify::Result<Event>, into: &mut BTreeSet<String>) {
    let Ok(event) = event else {
        return;
    };
    if matches!(
        event.kind,
        EventKind::Access(_) | EventKind::Modify(notify::event::ModifyKind::Metadata(_))
    ) {
        return;
    }
    for path in event.paths {
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        if rel
            .components()
            .next()
            .is_some_and(|c| c.as_os_str() == ".wask")
        {
            continue;
        }
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(".wask-restore-") || name.starts_with(".tmp-") {
            continue;
        }
        if let Some(text) = rel.to_str() {
            into.insert(format!("/{text}"));
        }
    }
}

/// The watched tasks that `changed` affects, loaded afresh (a `wask.toml` may be what
/// changed). What a task writes is left out: the run that wrote it is not a change.
fn affected_tasks(
    dir: &Path,
    watched: &BTreeSet<String>,
    changed: &BTreeSet<String>,
) -> BTreeSet<String> {
    if changed.is_empty() {
        return BTreeSet::new();
    }
    let Ok((ws, graph)) = super::load(dir) else {
        // Broken: run the watched tasks, so the load error is shown.
        return if changed.iter().any(|p| p.ends_with("/wask.toml")) {
            watched.clone()
        } else {
            BTreeSet::new()
        };
    };
    let written = crate::graph::PathPatterns::outputs_of(&ws);
    let sources: BTreeSet<String> = changed
        .iter()
        .filter(|p| !written.matches(p))
        .cloned()
        .collect();
    crate::affected::affected(&ws, &graph, &sources)
        .into_iter()
        .map(|n| graph.nodes[n].id.to_string())
        .filter(|id| watched.contains(id))
        .collect()
}
