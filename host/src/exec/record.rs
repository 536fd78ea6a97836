//! The record of one task in a run (EXEC-009), as reported and written to `--summary`.

use crate::key::Digest;
use crate::refs::TaskId;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl TaskState {
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
        }
    }
}

/// Where a successful task's results came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Fresh,
    Cache,
}

/// Which cache a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Local,
    /// The remote cache: downloaded into the local cache, then restored from it.
    Remote,
}

#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: TaskId,
    pub state: TaskState,
    pub source: Option<Source>,
    pub key: Option<Digest>,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
    /// Workspace-absolute output paths.
    pub outputs: Vec<String>,
    /// (stdout hash, stderr hash), passed to hard successors (CACHE-007).
    pub streams: Option<(Digest, Digest)>,
    pub error: Option<String>,
    /// Paths the task tried to reach outside its declarations (SANDBOX-009).
    pub undeclared: Vec<String>,
    /// For a skipped task, the failed task that caused it.
    pub skipped_because: Option<TaskId>,
    /// What the task spent its time on, in order (for `--profile` and the summary).
    pub phases: Vec<Phase>,
    /// For a hit, which cache it came from.
    pub hit: Option<Hit>,
    /// Bytes downloaded from the remote cache (a remote hit), and uploaded to it (a
    /// fresh result, known when the run's uploads are done).
    pub bytes_down: u64,
    pub bytes_up: u64,
}

/// One timed step of a task's lifecycle (EXEC-007).
#[derive(Debug, Clone)]
pub struct Phase {
    /// `key`, `lookup`, `remote`, `restore`, `compile`, `run` or `store`.
    pub name: &'static str,
    pub start: SystemTime,
    pub duration: Duration,
}

impl Phase {
    pub fn end(&self) -> SystemTime {
        self.start + self.duration
    }
}

impl TaskRecord {
    pub fn new(id: TaskId) -> TaskRecord {
        let now = SystemTime::now();
        TaskRecord {
            id,
            state: TaskState::Failed,
            source: None,
            key: None,
            started_at: now,
            finished_at: now,
            outputs: Vec::new(),
            streams: None,
            error: None,
            undeclared: Vec::new(),
            skipped_because: None,
            phases: Vec::new(),
            hit: None,
            bytes_down: 0,
            bytes_up: 0,
        }
    }

    /// Runs `f` as phase `name` of this task, recording when it started and how long
    /// it took.
    pub fn timed<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let start = SystemTime::now();
        let clock = std::time::Instant::now();
        let out = f();
        self.phases.push(Phase {
            name,
            start,
            duration: clock.elapsed(),
        });
        out
    }

    pub fn duration(&self) -> Duration {
        self.finished_at
            .duration_since(self.started_at)
            .unwrap_or_default()
    }

    /// The JSON form used by `--summary`.
    pub fn to_json(&self) -> serde_json::Value {
        let time = |t: SystemTime| humantime::format_rfc3339_micros(t).to_string();
        serde_json::json!({
            "id": self.id.to_string(),
            "state": self.state.name(),
            "source": self.source.map(|s| match s { Source::Fresh => "fresh", Source::Cache => "cache" }),
            "hit": self.hit.map(|h| match h { Hit::Local => "local", Hit::Remote => "remote" }),
            "remote_bytes_down": self.bytes_down,
            "remote_bytes_up": self.bytes_up,
            "key": self.key.map(|k| k.hex()),
            "started_at": time(self.started_at),
            "finished_at": time(self.finished_at),
            "duration_ms": self.duration().as_secs_f64() * 1000.0,
            "outputs": self.outputs,
            "error": self.error,
            "undeclared_paths": self.undeclared,
            "skipped_because": self.skipped_because.as_ref().map(|c| c.to_string()),
            "phases": self.phases.iter().map(|p| serde_json::json!({
                "name": p.name,
                "started_at": time(p.start),
                "finished_at": time(p.end()),
            })).collect::<Vec<_>>(),
        })
    }
}
