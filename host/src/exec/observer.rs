//! What a run reports while it goes: the observer trait (EXEC-007) and the console
//! observer behind `wask run` (EXEC-016 output modes, section 9 progress display).
//!
//! The console observer:
//!
//! * in `live` mode prints each complete line of a task's stdout (to stdout) and stderr
//!   (to stderr) as soon as it arrives, prefixed `[project:task] `. Bytes after the last
//!   newline wait for the rest of their line; a last line without a newline is printed
//!   when the task finishes. Every write happens under one lock, so lines of different
//!   tasks never mix;
//! * in `buffered` mode keeps each task's streams and prints its stdout block, then its
//!   stderr block, when it finishes;
//! * replays a cache hit's stored streams through the same calls, so a hit prints what
//!   the fresh run printed;
//! * colours each prefix with a colour derived from the task id, only on a terminal and
//!   only when `NO_COLOR` is unset or empty;
//! * when stderr is a terminal and `CI` is not set, keeps a progress line at the bottom
//!   (tasks finished of the total, cached, failed, and the running tasks), printing task
//!   lines above it. Otherwise, plain lines only.

use super::record::{Hit, Source, TaskRecord, TaskState};
use crate::refs::TaskId;
use crate::workspace::OutputMode;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

/// Receives the events of a run. Called from worker threads.
pub trait Observer: Sync {
    fn on_task_started(&self, id: &TaskId);
    /// Output of a task: a fresh run calls these as the guest writes, in pieces that
    /// need not end at a line break; a cache hit replays each whole stored stream once.
    fn on_stdout(&self, id: &TaskId, bytes: &[u8]);
    fn on_stderr(&self, id: &TaskId, bytes: &[u8]);
    fn on_task_finished(&self, record: &TaskRecord);
    /// `cause` is the failed task at the root of the skip (EXEC-010).
    fn on_task_skipped(&self, id: &TaskId, cause: &TaskId);
    /// Something the user should know that does not change the task's state, such as a
    /// corrupt cache entry that was ignored.
    fn on_warning(&self, id: &TaskId, message: &str) {
        let _ = (id, message);
    }
}

/// An observer that shows nothing: for runs whose report is made afterwards (`wask
/// audit`) and for benchmarks.
pub struct Silent;

impl Observer for Silent {
    fn on_task_started(&self, _: &TaskId) {}
    fn on_stdout(&self, _: &TaskId, _: &[u8]) {}
    fn on_stderr(&self, _: &TaskId, _: &[u8]) {}
    fn on_task_finished(&self, _: &TaskRecord) {}
    fn on_task_skipped(&self, _: &TaskId, _: &TaskId) {}
}

/// Writes task output to stdout and stderr (prefixed lines in live mode, whole blocks in
/// buffered mode) and status lines to stderr; see the module documentation.
pub struct ConsoleObserver {
    mode: OutputMode,
    /// Colour the prefixes of lines written to stdout / stderr.
    colour_out: bool,
    colour_err: bool,
    /// The number of tasks of the run, when a progress line is shown.
    progress_total: Option<usize>,
    /// Where tasks' stdout goes: stderr when stdout carries `--summary -`.
    task_stdout: Target,
    state: Mutex<State>,
}

/// Everything the observer keeps, behind its one lock.
#[derive(Default)]
struct State {
    /// Per task: the unfinished last line of each stream (live) or the whole streams
    /// (buffered).
    pending: HashMap<TaskId, Pending>,
    /// Running tasks, in the order they started.
    running: Vec<TaskId>,
    finished: usize,
    cached: usize,
    /// Of the cached, those from the remote cache.
    remote: usize,
    failed: usize,
    /// Shown only while a task runs: the line disappears before anything that follows
    /// the run (the summary line) is printed.
    bar: Option<ProgressBar>,
}

#[derive(Default)]
struct Pending {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Target {
    Stdout,
    Stderr,
}

/// When output is coloured: `--color auto|always|never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColourWhen {
    /// On a terminal, unless `NO_COLOR` is set (no-color.org).
    #[default]
    Auto,
    Always,
    Never,
}

impl ColourWhen {
    /// Whether a stream that is (or is not) a terminal gets colour.
    pub fn for_stream(self, is_terminal: bool) -> bool {
        match self {
            ColourWhen::Always => true,
            ColourWhen::Never => false,
            ColourWhen::Auto => {
                is_terminal && colour_allowed(std::env::var_os("NO_COLOR").as_deref())
            }
        }
    }
}

impl ConsoleObserver {
    /// Plain lines, no progress display.
    pub fn new(mode: OutputMode, colour: ColourWhen) -> Self {
        ConsoleObserver {
            mode,
            colour_out: colour.for_stream(std::io::stdout().is_terminal()),
            colour_err: colour.for_stream(std::io::stderr().is_terminal()),
            progress_total: None,
            task_stdout: Target::Stdout,
            state: Mutex::new(State::default()),
        }
    }

    /// Sends the tasks' stdout to stderr, keeping stdout for what wask itself prints
    /// there (the `--summary -` JSON).
    pub fn task_stdout_on_stderr(mut self) -> Self {
        self.task_stdout = Target::Stderr;
        self
    }

    /// For a run of `total` tasks: as [`ConsoleObserver::new`], with a progress display
    /// when stderr is a terminal and `CI` is not set.
    pub fn for_run(mode: OutputMode, colour: ColourWhen, total: usize) -> Self {
        let mut observer = Self::new(mode, colour);
        observer.progress_total = progress_wanted().then_some(total);
        observer
    }

    /// Runs `write` with the progress line out of the way.
    fn emit(state: &State, write: impl FnOnce()) {
        match &state.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    fn write_to(target: Target, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(bytes);
                let _ = out.flush();
            }
            Target::Stderr => {
                // Whatever went to stdout before goes out first.
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().lock().write_all(bytes);
            }
        }
    }

    fn prefix(&self, id: &TaskId, target: Target) -> Vec<u8> {
        let colour = match target {
            Target::Stdout => self.colour_out,
            Target::Stderr => self.colour_err,
        };
        if colour {
            format!("\x1b[{}m[{id}]\x1b[0m ", task_colour(id)).into_bytes()
        } else {
            format!("[{id}] ").into_bytes()
        }
    }

    fn output(&self, id: &TaskId, bytes: &[u8], target: Target) {
        let mut state = self.state.lock().unwrap();
        let pending = state.pending.entry(id.clone()).or_default();
        let buffer = match target {
            Target::Stdout => &mut pending.stdout,
            Target::Stderr => &mut pending.stderr,
        };
        match self.mode {
            OutputMode::Buffered => buffer.extend_from_slice(bytes),
            OutputMode::Live => {
                let mut out = Vec::new();
                complete_lines(buffer, bytes, &self.prefix(id, target), &mut out);
                if !out.is_empty() {
                    Self::emit(&state, || Self::write_to(target, &out));
                }
            }
        }
    }

    /// Prints what a finished task still has pending: its last unterminated lines (live)
    /// or its whole blocks (buffered).
    fn flush_task(&self, state: &mut State, id: &TaskId) {
        let Some(pending) = state.pending.remove(id) else {
            return;
        };
        for (bytes, target) in [
            (pending.stdout, Target::Stdout),
            (pending.stderr, Target::Stderr),
        ] {
            if bytes.is_empty() {
                continue;
            }
            let mut out = Vec::new();
            match self.mode {
                OutputMode::Live => out.extend_from_slice(&self.prefix(id, target)),
                // A block is headed by its task, so blocks of tasks run side by side
                // can be told apart.
                OutputMode::Buffered => {
                    out.extend_from_slice(self.prefix(id, target).trim_ascii_end());
                    out.push(b'\n');
                }
            }
            out.extend_from_slice(&bytes);
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            Self::emit(state, || Self::write_to(target, &out));
        }
    }

    /// Shows the progress line, creating it if no task was running.
    fn update_progress(&self, state: &mut State) {
        let Some(total) = self.progress_total else {
            return;
        };
        if state.running.is_empty() {
            if let Some(bar) = state.bar.take() {
                bar.disable_steady_tick();
                bar.finish_and_clear();
            }
            return;
        }
        let bar = state.bar.get_or_insert_with(|| {
            let template = if self.colour_err {
                "{spinner:.cyan} [{bar:20.cyan/blue}] {pos}/{len} {wide_msg}"
            } else {
                "{spinner} [{bar:20}] {pos}/{len} {wide_msg}"
            };
            let style = ProgressStyle::with_template(template)
                .expect("the progress template is valid")
                .progress_chars("=> ");
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr())
                    .with_style(style);
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        bar.set_position(state.finished as u64);
        let names: Vec<String> = state.running.iter().map(ToString::to_string).collect();
        let remote = if state.remote > 0 {
            format!(" ({} remote)", state.remote)
        } else {
            String::new()
        };
        bar.set_message(format!(
            "{} cached{remote}, {} failed | running: {}",
            state.cached,
            state.failed,
            names.join(", ")
        ));
    }
}

impl Observer for ConsoleObserver {
    fn on_task_started(&self, id: &TaskId) {
        let mut state = self.state.lock().unwrap();
        state.running.push(id.clone());
        self.update_progress(&mut state);
    }

    fn on_stdout(&self, id: &TaskId, bytes: &[u8]) {
        self.output(id, bytes, self.task_stdout);
    }

    fn on_stderr(&self, id: &TaskId, bytes: &[u8]) {
        self.output(id, bytes, Target::Stderr);
    }

    fn on_task_finished(&self, r: &TaskRecord) {
        let mut state = self.state.lock().unwrap();
        self.flush_task(&mut state, &r.id);
        state.running.retain(|id| *id != r.id);
        state.finished += 1;
        if r.source == Some(Source::Cache) {
            state.cached += 1;
            if r.hit == Some(Hit::Remote) {
                state.remote += 1;
            }
        }
        if r.state == TaskState::Failed {
            state.failed += 1;
        }
        let ms = r.duration().as_millis();
        let line = match (&r.state, &r.source) {
            (TaskState::Succeeded, Some(Source::Cache)) if r.hit == Some(Hit::Remote) => Some(
                format!("    cached {} (from the remote cache, {ms} ms)", r.id),
            ),
            (TaskState::Succeeded, Some(Source::Cache)) => {
                Some(format!("    cached {} ({ms} ms)", r.id))
            }
            (TaskState::Succeeded, _) => Some(format!("      done {} ({ms} ms)", r.id)),
            (TaskState::Failed, _) => Some(format!(
                "    {} {}: {}",
                if self.colour_err {
                    "\x1b[31mFAILED\x1b[0m"
                } else {
                    "FAILED"
                },
                r.id,
                r.error.as_deref().unwrap_or("failed")
            )),
            (TaskState::Cancelled, _) => Some(format!(" cancelled {}", r.id)),
            (TaskState::Skipped, _) => None,
        };
        if let Some(line) = line {
            Self::emit(&state, || {
                Self::write_to(Target::Stderr, format!("{line}\n").as_bytes())
            });
        }
        self.update_progress(&mut state);
    }

    fn on_task_skipped(&self, id: &TaskId, cause: &TaskId) {
        let mut state = self.state.lock().unwrap();
        state.finished += 1;
        let line = format!("   skipped {id} (because {cause} failed)\n");
        Self::emit(&state, || Self::write_to(Target::Stderr, line.as_bytes()));
        self.update_progress(&mut state);
    }

    fn on_warning(&self, id: &TaskId, message: &str) {
        let state = self.state.lock().unwrap();
        let line = format!("   warning {id}: {message}\n");
        Self::emit(&state, || Self::write_to(Target::Stderr, line.as_bytes()));
    }
}

impl Drop for ConsoleObserver {
    /// Nothing is lost if a task was never reported finished: its pending output is
    /// printed and the progress line removed.
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = state.bar.take() {
            bar.disable_steady_tick();
            bar.finish_and_clear();
        }
        let mut ids: Vec<TaskId> = state.pending.keys().cloned().collect();
        ids.sort();
        for id in ids {
            self.flush_task(&mut state, &id);
        }
    }
}

/// Whether a command shows a progress line: only on a terminal (stderr), and never
/// under `CI`, whose logs would keep every redraw.
pub fn progress_wanted() -> bool {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !ci
}

/// `NO_COLOR` set to anything but the empty string turns colour off (no-color.org).
fn colour_allowed(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(|v| v.is_empty())
}

/// The SGR colour of a task's prefix: the same for a task id in every run.
fn task_colour(id: &TaskId) -> u8 {
    const PALETTE: [u8; 12] = [36, 33, 35, 32, 34, 31, 96, 93, 95, 92, 94, 91];
    // FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
    let hash = id
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    PALETTE[(hash % PALETTE.len() as u64) as usize]
}

/// Appends to `out` every line that `bytes` completes, each after `prefix`, and keeps the
/// unterminated rest in `pending`.
fn complete_lines(pending: &mut Vec<u8>, bytes: &[u8], prefix: &[u8], out: &mut Vec<u8>) {
    let Some(last) = bytes.iter().rposition(|b| *b == b'\n') else {
        pending.extend_from_slice(bytes);
        return;
    };
    let (done, rest) = bytes.split_at(last + 1);
    let mut lines = done.split_inclusive(|b| *b == b'\n');
    if let Some(first) = lines.next() {
        out.extend_from_slice(prefix);
        out.append(pending);
        out.extend_from_slice(first);
    }
    for line in lines {
        out.extend_from_slice(prefix);
        out.extend_from_slice(line);
    }
    pending.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&str]) -> (String, String) {
        let (mut pending, mut out) = (Vec::new(), Vec::new());
        for c in chunks {
            complete_lines(&mut pending, c.as_bytes(), b"[p:t] ", &mut out);
        }
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(pending).unwrap(),
        )
    }

    #[test]
    fn lines_are_printed_whole_once_complete() {
        assert_eq!(feed(&["a\nb\n"]), ("[p:t] a\n[p:t] b\n".into(), "".into()));
        assert_eq!(feed(&["ab", "c"]), ("".into(), "abc".into()));
        assert_eq!(
            feed(&["one ", "1\ntwo", " 2\nthr"]),
            ("[p:t] one 1\n[p:t] two 2\n".into(), "thr".into())
        );
        assert_eq!(feed(&["\n\n"]), ("[p:t] \n[p:t] \n".into(), "".into()));
    }

    #[test]
    fn colours_are_stable_and_no_color_is_honoured() {
        let id = |p: &str, t: &str| TaskId {
            project: p.into(),
            task: t.into(),
        };
        assert_eq!(
            task_colour(&id("a", "build")),
            task_colour(&id("a", "build"))
        );
        let distinct: std::collections::HashSet<u8> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|p| task_colour(&id(p, "build")))
            .collect();
        assert!(distinct.len() > 1, "tasks get different colours");
        assert!(colour_allowed(None));
        assert!(colour_allowed(Some(std::ffi::OsStr::new(""))));
        assert!(!colour_allowed(Some(std::ffi::OsStr::new("1"))));
    }
}
