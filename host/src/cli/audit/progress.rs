//! What a long audit shows while it goes (issue 11: "shows progress on a terminal"):
//! each task's table row as soon as its runs are compared, and, on a terminal outside
//! CI, a line at the bottom naming the task and run under way and how many tasks are
//! done. The rows are the report itself, so a pipe or a CI log gets them too, without
//! the redraws.

use crate::exec::observer::progress_wanted;
use crate::refs::TaskId;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

pub(super) struct Progress {
    /// `None` when no progress line is shown.
    bar: Option<ProgressBar>,
}

impl Progress {
    /// For an audit of `tasks` tasks.
    pub fn new(tasks: usize) -> Progress {
        let bar = progress_wanted().then(|| {
            let style = ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} {wide_msg}")
                .expect("the progress template is valid")
                .progress_chars("=> ");
            let bar =
                ProgressBar::with_draw_target(Some(tasks as u64), ProgressDrawTarget::stderr())
                    .with_style(style);
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress { bar }
    }

    /// Something done before the audited tasks run, such as their predecessors.
    pub fn step(&self, what: &str) {
        self.say(what.to_string());
    }

    /// Run `run` (from 1) of `runs` of `task` is starting.
    pub fn run(&self, task: &TaskId, run: usize, runs: usize) {
        self.say(format!("auditing {task}: run {run} of {runs}"));
    }

    /// A task's audit is over; `row` is its part of the report, printed to stdout.
    pub fn task_done(&self, row: &str) {
        let print = || print!("{row}");
        match &self.bar {
            Some(bar) => {
                bar.suspend(print);
                bar.inc(1);
            }
            None => print(),
        }
    }

    fn say(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
            // Drawn now, not at the next tick: a run may be shorter than a tick.
            bar.tick();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.disable_steady_tick();
            bar.finish_and_clear();
        }
    }
}
