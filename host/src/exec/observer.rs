//! What a run reports while it goes: the observer trait (EXEC-007) and the console
//! observer behind `wask run` (EXEC-016 output modes).

use super::record::{Source, TaskRecord, TaskState};
use crate::refs::TaskId;
use crate::workspace::OutputMode;
use std::io::Write;
use std::sync::Mutex;

/// Receives the events of a run. Called from worker threads.
pub trait Observer: Sync {
    fn on_task_started(&self, id: &TaskId);
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

/// Writes task output to stdout (prefixed lines in live mode, whole blocks in
/// buffered mode) and status lines to stderr.
pub struct ConsoleObserver {
    mode: OutputMode,
    lock: Mutex<()>,
}

impl ConsoleObserver {
    pub fn new(mode: OutputMode) -> Self {
        ConsoleObserver {
            mode,
            lock: Mutex::new(()),
        }
    }

    fn lines(&self, id: &TaskId, bytes: &[u8], out: &mut dyn Write) {
        match self.mode {
            OutputMode::Buffered => {
                let _ = out.write_all(bytes);
            }
            OutputMode::Live => {
                for line in bytes.split_inclusive(|b| *b == b'\n') {
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    let _ = write!(out, "[{id}] ");
                    let _ = out.write_all(line);
                    let _ = out.write_all(b"\n");
                }
            }
        }
    }
}

impl Observer for ConsoleObserver {
    fn on_task_started(&self, _id: &TaskId) {}

    fn on_stdout(&self, id: &TaskId, bytes: &[u8]) {
        let _g = self.lock.lock().unwrap();
        self.lines(id, bytes, &mut std::io::stdout().lock());
    }

    fn on_stderr(&self, id: &TaskId, bytes: &[u8]) {
        let _g = self.lock.lock().unwrap();
        let _ = std::io::stdout().flush();
        self.lines(id, bytes, &mut std::io::stderr().lock());
    }

    fn on_task_finished(&self, r: &TaskRecord) {
        let _g = self.lock.lock().unwrap();
        let _ = std::io::stdout().flush();
        let mut err = std::io::stderr().lock();
        let ms = r.duration().as_millis();
        let _ = match (&r.state, &r.source) {
            (TaskState::Succeeded, Some(Source::Cache)) => {
                writeln!(err, "    cached {} ({ms} ms)", r.id)
            }
            (TaskState::Succeeded, _) => writeln!(err, "      done {} ({ms} ms)", r.id),
            (TaskState::Failed, _) => writeln!(
                err,
                "    FAILED {}: {}",
                r.id,
                r.error.as_deref().unwrap_or("failed")
            ),
            (TaskState::Cancelled, _) => writeln!(err, " cancelled {}", r.id),
            (TaskState::Skipped, _) => Ok(()),
        };
    }

    fn on_task_skipped(&self, id: &TaskId, cause: &TaskId) {
        let _g = self.lock.lock().unwrap();
        let _ = writeln!(
            std::io::stderr(),
            "   skipped {id} (because {cause} failed)"
        );
    }

    fn on_warning(&self, id: &TaskId, message: &str) {
        let _g = self.lock.lock().unwrap();
        let _ = writeln!(std::io::stderr(), "   warning {id}: {message}");
    }
}
