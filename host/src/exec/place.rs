//! Putting a task's outputs into the workspace, fresh or restored (CACHE-019).
//!
//! Each output is moved from the run's scratch directory with one `rename`, so its path
//! holds the old bytes or the new, never a part. The way there is walked from a handle
//! on the workspace root one directory at a time without following links, and the
//! rename is made between directory handles: a link planted among the output's parents
//! (now, or swapped in between a check and the rename) is refused, never written
//! through. And a file already at the path is replaced only if this task wrote it (the
//! [`Ledger`] says so) or it already holds the same bytes.

use super::ledger::Ledger;
use crate::fs::{open_ambient, open_dirs, open_dirs_with_mode, open_regular};
use crate::key::{Digest, hash_reader};
use crate::workspace::HashKind;
use cap_std::fs::Dir;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

/// The mode of every directory wask makes for outputs (files are `0644`).
const OUTPUT_DIR_MODE: u32 = 0o755;

/// Why an output could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error(
        "{path} exists and was not written by {task}; wask never replaces a file a task did not create (a source, a tool's configuration, another task's output)\n  hint: if it is an old output of {task}, delete it and run again; if not, change the task's `outputs` so they do not cover it"
    )]
    NotOwned { path: String, task: String },
    #[error("{path} is a directory")]
    Directory { path: String },
    #[error("{dir} is not a directory (a symbolic link or a file); wask does not write through it")]
    Parent { dir: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

impl crate::cache::Destination for Placer<'_> {
    fn holds(&self, path: &str, digest: &Digest) -> bool {
        Placer::holds(self, path, digest)
    }

    fn place(&self, staged: &Path, path: &str, digest: &Digest) -> Result<(), String> {
        Placer::place(self, staged, path, digest).map_err(|e| e.to_string())
    }
}

/// Places one task's outputs.
pub struct Placer<'a> {
    root: Dir,
    ledger: &'a Ledger,
    task: String,
    hash: HashKind,
    placed: Mutex<Vec<String>>,
}

impl<'a> Placer<'a> {
    pub fn new(
        workspace: &Path,
        ledger: &'a Ledger,
        task: String,
        hash: HashKind,
    ) -> io::Result<Self> {
        Ok(Placer {
            root: open_ambient(workspace)?,
            ledger,
            task,
            hash,
            placed: Mutex::new(Vec::new()),
        })
    }

    /// The parent directory of workspace path `path` and the name in it, made where
    /// missing, without following a link.
    fn parent(&self, path: &str, create: bool) -> Result<(Dir, String), PlaceError> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (name, dirs) = segments.split_last().expect("a path has a name");
        // Walk one name at a time so the error names the directory that is not one.
        let mut dir = self.root.try_clone().map_err(|source| PlaceError::Io {
            path: path.to_string(),
            source,
        })?;
        for (i, d) in dirs.iter().enumerate() {
            let opened = if create {
                open_dirs_with_mode(&dir, &[d], OUTPUT_DIR_MODE)
            } else {
                open_dirs(&dir, &[d], false)
            };
            dir = opened.map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => PlaceError::Io {
                    path: path.to_string(),
                    source: e,
                },
                _ => PlaceError::Parent {
                    dir: format!("/{}", dirs[..=i].join("/")),
                },
            })?;
        }
        Ok((dir, name.to_string()))
    }

    /// Whether `path` is already what placing an output with `digest` would make it: a
    /// regular file of mode 0644 holding those bytes.
    pub fn holds(&self, path: &str, digest: &Digest) -> bool {
        use cap_std::fs::PermissionsExt;
        let Ok((dir, name)) = self.parent(path, false) else {
            return false;
        };
        let mode_ok = dir.symlink_metadata(&name).is_ok_and(|m| {
            m.is_file() && m.permissions().mode() & 0o7777 == wask_runtime::view::OUTPUT_MODE
        });
        mode_ok && same_bytes(&dir, &name, digest, self.hash)
    }

    /// Moves `staged` (a file in this run's scratch directory) to workspace path
    /// `path`, whose bytes hash to `digest`.
    pub fn place(&self, staged: &Path, path: &str, digest: &Digest) -> Result<(), PlaceError> {
        let io_err = |source| PlaceError::Io {
            path: path.to_string(),
            source,
        };
        let (dir, name) = self.parent(path, true)?;
        match dir.symlink_metadata(&name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
            Ok(m) if m.is_dir() => {
                return Err(PlaceError::Directory {
                    path: path.to_string(),
                });
            }
            Ok(_) => {
                let mine = self.ledger.owns(&self.task, path);
                if !mine && !same_bytes(&dir, &name, digest, self.hash) {
                    return Err(PlaceError::NotOwned {
                        path: path.to_string(),
                        task: self.task.clone(),
                    });
                }
            }
        }
        std::fs::set_permissions(
            staged,
            std::fs::Permissions::from_mode(wask_runtime::view::OUTPUT_MODE),
        )
        .map_err(io_err)?;
        let from_dir = open_ambient(staged.parent().expect("a staged file has a directory"))
            .map_err(io_err)?;
        let from_name = staged.file_name().expect("a staged file has a name");
        match from_dir.rename(from_name, &dir, &name) {
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                // An output directory on another file system: copy next to the path,
                // then rename there, so the last step is still atomic.
                let mut src = from_dir.open(from_name).map_err(io_err)?;
                write_near(&dir, &name, &mut src).map_err(io_err)?;
                let _ = from_dir.remove_file(from_name);
            }
            r => r.map_err(io_err)?,
        }
        self.placed.lock().unwrap().push(path.to_string());
        Ok(())
    }

    /// Records in the ledger that this task wrote what it placed, and what was already
    /// in place with its bytes.
    pub fn finish(self, also: &[String]) {
        let mut placed = self.placed.into_inner().unwrap();
        placed.extend(also.iter().cloned());
        self.ledger.record(&self.task, &placed);
    }
}

/// Writes `src` to a new file beside `name` in `dir`, synced, then renames it to
/// `name`: the path holds the old bytes or the new, never a part.
fn write_near(dir: &Dir, name: &str, src: &mut dyn io::Read) -> io::Result<()> {
    let near = crate::fs::unique_name(".wask-restore-");
    let copied = (|| {
        let mut dst = dir.create(&near)?;
        io::copy(src, &mut dst)?;
        dst.sync_all()?;
        dir.set_permissions(
            &near,
            cap_std::fs::Permissions::from_std(std::fs::Permissions::from_mode(
                wask_runtime::view::OUTPUT_MODE,
            )),
        )?;
        dir.rename(&near, dir, name)
    })();
    if copied.is_err() {
        let _ = dir.remove_file(&near);
    }
    copied
}

fn same_bytes(dir: &Dir, name: &str, digest: &Digest, hash: HashKind) -> bool {
    open_regular(dir, name)
        .and_then(|f| hash_reader(hash, &mut f.into_std()))
        .is_ok_and(|d| &d == digest)
}
