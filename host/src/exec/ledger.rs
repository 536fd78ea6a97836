//! The output ledger, `.wask/outputs`: which task last wrote each output path.
//!
//! A task may replace a file in the workspace only if it wrote that file itself (the
//! ledger says so) or the file already holds exactly the bytes it would write. So an
//! output pattern that happens to cover a source file, a `Makefile` or a tool's
//! configuration never lets a module overwrite it, and two tasks never take turns
//! overwriting each other's files. After `.wask/` is removed, a task's old outputs are
//! unknown to the ledger: wask says so and names the file instead of replacing it.
//!
//! The file is a log of lines `TASK<tab>PATH`, appended by each run in one write per
//! task (paths obey the path rule, so neither holds a tab or a newline); a later line
//! wins. It lives in `.wask/`, which no task can write.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The ledger of one workspace, read once per run.
pub struct Ledger {
    path: PathBuf,
    owners: Mutex<HashMap<String, String>>,
}

impl Ledger {
    /// Reads `<wask_dir>/outputs`; a missing or unreadable ledger is an empty one.
    pub fn open(wask_dir: &Path) -> Ledger {
        let path = wask_dir.join("outputs");
        let mut owners = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Some((task, output)) = line.split_once('\t') {
                    owners.insert(output.to_string(), task.to_string());
                }
            }
        }
        Ledger {
            path,
            owners: Mutex::new(owners),
        }
    }

    /// Whether `task` (`project:task`) is the last writer of `path` on record.
    pub fn owns(&self, task: &str, path: &str) -> bool {
        self.owners
            .lock()
            .unwrap()
            .get(path)
            .is_some_and(|t| t == task)
    }

    /// Records that `task` wrote `paths`. Best effort: a ledger that cannot be written
    /// costs a question at the next run, never a wrong byte.
    pub fn record(&self, task: &str, paths: &[String]) {
        let mut owners = self.owners.lock().unwrap();
        let mut lines = String::new();
        for p in paths {
            if owners.get(p).is_none_or(|t| t != task) {
                owners.insert(p.clone(), task.to_string());
                lines.push_str(&format!("{task}\t{p}\n"));
            }
        }
        if lines.is_empty() {
            return;
        }
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // One write to a file opened for appending: concurrent runs never interleave
        // inside a line.
        let _ = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(lines.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_writer_on_record_owns_a_path_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ledger::open(dir.path());
        assert!(!first.owns("p:a", "/out/x"));
        first.record("p:a", &["/out/x".into(), "/out/y".into()]);
        first.record("p:b", &["/out/y".into()]);
        assert!(first.owns("p:a", "/out/x") && first.owns("p:b", "/out/y"));
        let later = Ledger::open(dir.path());
        assert!(later.owns("p:a", "/out/x"));
        assert!(later.owns("p:b", "/out/y") && !later.owns("p:a", "/out/y"));
        // Nothing new: nothing appended.
        let size = std::fs::metadata(dir.path().join("outputs")).unwrap().len();
        later.record("p:a", &["/out/x".into()]);
        assert_eq!(
            std::fs::metadata(dir.path().join("outputs")).unwrap().len(),
            size
        );
    }
}
