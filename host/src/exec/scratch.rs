//! Each run's own scratch directory under `<workspace>/.wask/tmp`, and the sweep of
//! those left behind by runs that were killed.
//!
//! Sandboxes are staged and restored outputs are written here before they are renamed
//! into the workspace, so nothing half-written ever appears at an output path. A run
//! killed with SIGKILL cannot clean up after itself, and several runs may share one
//! workspace, so age is no test of whether a directory is still in use. Instead each
//! run holds an exclusive lock on `<name>.lock` for as long as it lives; the kernel
//! drops the lock when the process dies, however it dies. A directory whose lock can
//! be taken belongs to nobody and is removed by the next run.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// A run's scratch directory; removed when dropped.
pub struct Scratch {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

/// A lock file being set up: not yet under its final name, so the sweep never sees it
/// unlocked.
const NEW_PREFIX: &str = ".new-";

impl Scratch {
    /// Removes what dead runs left in `tmp_root`, then claims a new directory there.
    pub fn claim(tmp_root: &Path) -> io::Result<Scratch> {
        fs::create_dir_all(tmp_root)?;
        sweep(tmp_root);
        // Another run's sweep may take a just-made lock file before it is locked and
        // remove it; then try again with a new one.
        let mut attempts = 0;
        loop {
            match Scratch::try_claim(tmp_root) {
                Err(_) if attempts < 3 => attempts += 1,
                r => return r,
            }
        }
    }

    fn try_claim(tmp_root: &Path) -> io::Result<Scratch> {
        // Lock first, under a name the sweep treats with care, then give it its real
        // name: there is no moment when a live run's named lock is free.
        let new = tempfile::Builder::new()
            .prefix(NEW_PREFIX)
            .tempfile_in(tmp_root)?;
        new.as_file().try_lock().map_err(io::Error::other)?;
        let name = format!(
            "run-{}-{}",
            std::process::id(),
            new.path()
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(NEW_PREFIX))
                .unwrap_or("x")
        );
        let lock_path = tmp_root.join(format!("{name}.lock"));
        let dir = tmp_root.join(&name);
        let lock = new.persist_noclobber(&lock_path).map_err(|e| e.error)?;
        fs::create_dir(&dir)?;
        Ok(Scratch {
            dir,
            lock_path,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Removes every scratch directory whose owner is gone: those whose lock file can be
/// locked, and those with no lock file at all (their owner removed it, or died before
/// making the directory... which it makes only after the lock). Best effort: what
/// cannot be removed now is tried again by the next run.
pub fn sweep(tmp_root: &Path) {
    let Ok(read) = fs::read_dir(tmp_root) else {
        return;
    };
    let names: Vec<String> = read
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    for name in &names {
        if name.starts_with(NEW_PREFIX) {
            // A lock file not yet named: its run died before naming it, or is naming
            // it now and then holds its lock. Free means dead (or so new that its run
            // will notice the loss and make another).
            let path = tmp_root.join(name);
            if let Ok(file) = File::options().write(true).open(&path)
                && file.try_lock().is_ok()
            {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        if let Some(stem) = name.strip_suffix(".lock") {
            let lock_path = tmp_root.join(name);
            let Ok(file) = File::options().write(true).open(&lock_path) else {
                continue;
            };
            if file.try_lock().is_ok() {
                // Directory first: a directory without its lock counts as abandoned.
                if remove(&tmp_root.join(stem)).is_ok() {
                    let _ = fs::remove_file(&lock_path);
                }
            }
        } else if !names.contains(&format!("{name}.lock"))
            // The listing is no snapshot: a run may have made its lock and then its
            // directory since the listing passed. The lock comes first and goes last,
            // so looking again now is exact.
            && !tmp_root.join(format!("{name}.lock")).exists()
        {
            let _ = remove(&tmp_root.join(name));
        }
    }
}

/// Removes `path` and what is under it, however deep (a guest decides how deep its
/// scratch is): through its parent's handle, without recursion.
fn remove(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Ok(());
    };
    match crate::fs::remove_tree(&File::open(parent)?, name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_runs_directory_survives_the_sweep_and_a_dead_ones_does_not() {
        let root = tempfile::tempdir().unwrap();
        let live = Scratch::claim(root.path()).unwrap();
        fs::write(live.path().join("staged"), b"x").unwrap();
        // What a killed run leaves: a directory and a lock file nobody holds.
        fs::create_dir(root.path().join("run-1-dead")).unwrap();
        fs::write(root.path().join("run-1-dead/half"), b"x").unwrap();
        fs::write(root.path().join("run-1-dead.lock"), b"").unwrap();
        // And an older layout's directory with no lock at all.
        fs::create_dir(root.path().join("run-old")).unwrap();
        // And a lock file a run made but died before naming.
        fs::write(root.path().join(".new-dead"), b"").unwrap();

        let other = Scratch::claim(root.path()).unwrap();
        assert!(
            live.path().join("staged").exists(),
            "a live run's files were swept"
        );
        assert!(!root.path().join("run-1-dead").exists());
        assert!(!root.path().join("run-1-dead.lock").exists());
        assert!(!root.path().join("run-old").exists());
        assert!(!root.path().join(".new-dead").exists());

        let (a, b) = (live.path().to_path_buf(), other.path().to_path_buf());
        drop(live);
        drop(other);
        assert!(!a.exists() && !b.exists());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
