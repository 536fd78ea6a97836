//! Restoring an entry (CACHE-019, CACHE-023): every blob is copied into the run's
//! scratch directory and checked against its recorded hash before anything in the
//! workspace changes; then the [`Destination`] (the workspace, with its rules for what
//! a task may write and replace) puts each output in place.

use super::{Entry, LocalCache, OutputRecord, StreamRecord};
use crate::fs::open_regular;
use crate::key::{Digest, hash_bytes};
use crate::workspace::HashKind;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::SystemTime;

/// Where a restore puts outputs: the workspace, with its rules for replacing files.
pub trait Destination {
    /// Whether `path` already is the output with `digest` (nothing to restore).
    fn holds(&self, path: &str, digest: &Digest) -> bool;
    /// Moves the verified, staged file to `path`; the error says why it could not.
    fn place(&self, staged: &Path, path: &str, digest: &Digest) -> Result<(), String>;
}

/// A restored entry: the outputs are in place and these are the recorded streams.
pub struct Restored {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// How the fresh run's writes to the two interleaved ([`super::manifest::write_order`]).
    pub write_order: Vec<(wask_runtime::Stream, u64)>,
}

/// Why a found entry could not be restored: it is treated as a miss (CACHE-019).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cache entry {entry} is corrupt: {what}; it was removed and the task runs fresh")]
    Corrupt { entry: String, what: String },
    /// The entry went while it was being read (another process's `clean`, `verify` or
    /// discard): a plain miss.
    #[error("cache entry {entry} was removed while it was being restored")]
    Vanished { entry: String },
    /// Reading the cache failed for a reason that says nothing about the entry's bytes
    /// (permissions, too many open files): a miss, and the entry is kept.
    #[error("cannot read cache entry {entry}: {source}; the task runs fresh")]
    Unreadable {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("could not write output {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The workspace refused an output (see [`Destination::place`]).
    #[error("could not restore an output: {0}")]
    Refused(String),
    /// The user asked wask to stop; nothing in the workspace changed.
    #[error("cancelled: the run was interrupted; nothing was restored")]
    Cancelled,
}

/// Why reading part of an entry failed.
enum CopyError {
    /// The bytes are not what the manifest records: the entry is corrupt.
    Mismatch(String),
    /// The file is gone: the entry was removed while it was read.
    Vanished,
    /// Reading the cache failed (permissions, resources): says nothing of its bytes.
    Cache(io::Error),
    /// Writing the staged copy failed.
    Staging(io::Error),
    /// The user asked wask to stop.
    Cancelled,
}

/// Opens a file of an entry, telling a link or special file (corrupt) from a missing
/// file (removed meanwhile) from any other failure.
fn open(dir: &cap_std::fs::Dir, name: &str, what: &str) -> Result<cap_std::fs::File, CopyError> {
    open_regular(dir, name).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => CopyError::Vanished,
        io::ErrorKind::InvalidData => CopyError::Mismatch(format!("{what} is not a regular file")),
        _ if e.raw_os_error() == Some(libc::ELOOP) => {
            CopyError::Mismatch(format!("{what} is not a regular file"))
        }
        _ => CopyError::Cache(e),
    })
}

impl LocalCache {
    /// Restores an entry (CACHE-019). Outputs are copied into `staging` (the run's
    /// scratch directory, on the workspace's filesystem) while their hashes are checked,
    /// and only when all are verified does `dest` put them in place, so an output path
    /// holds the old bytes or the new, never a part. A mismatch anywhere restores
    /// nothing, removes the entry and is reported.
    ///
    /// The cache directory is not trusted to name where outputs go: every recorded
    /// output path must meet the path rule, lie outside `/.wask`, and be one `allowed`
    /// accepts (the task's own rule: declared, not an input, not a protected path), and
    /// its mode must be the one every output has; or the entry is corrupt.
    pub(super) fn restore_entry(
        &self,
        entry: &Entry,
        dest: &dyn Destination,
        staging: &Path,
        allowed: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<Restored, RestoreError> {
        let corrupt = |what: String| {
            self.discard_entry(entry);
            RestoreError::Corrupt {
                entry: entry.manifest.key.clone(),
                what,
            }
        };
        let failed = |e: CopyError| match e {
            CopyError::Mismatch(what) => corrupt(what),
            CopyError::Vanished => RestoreError::Vanished {
                entry: entry.manifest.key.clone(),
            },
            CopyError::Cache(source) => RestoreError::Unreadable {
                entry: entry.manifest.key.clone(),
                source,
            },
            CopyError::Staging(source) => RestoreError::Write {
                path: staging.display().to_string(),
                source,
            },
            CopyError::Cancelled => RestoreError::Cancelled,
        };
        let stdout = self
            .read_stream(entry, "stdout", &entry.manifest.stdout)
            .map_err(failed)?;
        let stderr = self
            .read_stream(entry, "stderr", &entry.manifest.stderr)
            .map_err(failed)?;

        if let Err(what) = check_listed(entry, allowed) {
            return Err(corrupt(what));
        }
        // Every blob is copied and verified before anything in the workspace changes,
        // parent directories included.
        let blobs = blobs_dir(&entry.dir).map_err(failed)?;
        let mut staged: Vec<(tempfile::TempPath, &OutputRecord, Digest)> = Vec::new();
        for out in &entry.manifest.outputs {
            let digest = Digest::from_hex(&out.hash).expect("checked at lookup");
            // Outputs already in place with the right bytes and mode are left alone.
            if dest.holds(&out.path, &digest) {
                continue;
            }
            let blobs = blobs.as_ref().expect("outputs have blobs");
            let tmp =
                copy_verified(blobs, staging, out, self.hash, &self.cancel).map_err(failed)?;
            staged.push((tmp, out, digest));
        }
        for (tmp, out, digest) in staged {
            dest.place(&tmp, &out.path, &digest)
                .map_err(RestoreError::Refused)?;
        }
        // A hit makes the entry young again: `clean` evicts the least recently used.
        // Best effort: a read-only cache still restores.
        if let Ok(f) = open_regular(&entry.dir, "manifest.json") {
            let _ = f.into_std().set_modified(SystemTime::now());
        }
        Ok(Restored {
            stdout,
            stderr,
            write_order: super::manifest::write_order(&entry.manifest),
        })
    }

    /// The stream `name` of `entry`, exactly the size and hash `rec` records.
    fn read_stream(
        &self,
        entry: &Entry,
        name: &str,
        rec: &StreamRecord,
    ) -> Result<Vec<u8>, CopyError> {
        let mut bytes = Vec::new();
        open(&entry.dir, name, name)?
            .take(rec.size + 1)
            .read_to_end(&mut bytes)
            .map_err(CopyError::Cache)?;
        if bytes.len() as u64 != rec.size {
            return Err(CopyError::Mismatch(format!(
                "{name} is not the {} bytes recorded",
                rec.size
            )));
        }
        if hash_bytes(self.hash, &bytes).hex() != rec.hash {
            return Err(CopyError::Mismatch(format!(
                "{name} does not match its recorded hash"
            )));
        }
        Ok(bytes)
    }
}

/// What makes the outputs an entry lists something no run of the task could have
/// written, if anything: a path the path rule refuses, one in wask's own directory, one
/// `allowed` refuses (the task's rules), or a mode other than every output's.
fn check_listed(entry: &Entry, allowed: &dyn Fn(&str) -> Result<(), String>) -> Result<(), String> {
    for out in &entry.manifest.outputs {
        // The one path rule, then the task's own: declared, not an input, not a path
        // no task may write. An entry that breaks any was not written by a run.
        let why = match wask_runtime::paths::check_workspace_path(&out.path) {
            Err(e) => Err(format!("is no path wask accepts ({e})")),
            Ok(()) if wask_runtime::paths::is_reserved(&out.path) => {
                Err("lies in wask's own directory".to_string())
            }
            Ok(()) => allowed(&out.path),
        };
        if let Err(why) = why {
            return Err(format!("it lists the output {:?}, which {why}", out.path));
        }
        if out.mode != wask_runtime::view::OUTPUT_MODE {
            return Err(format!(
                "it records mode {:o} for {}, and every output has mode {:o}",
                out.mode,
                out.path,
                wask_runtime::view::OUTPUT_MODE
            ));
        }
    }
    Ok(())
}

/// The entry's `blobs` directory (opened without following a link), if it has one.
fn blobs_dir(entry: &cap_std::fs::Dir) -> Result<Option<cap_std::fs::Dir>, CopyError> {
    use cap_fs_ext::DirExt;
    match entry.open_dir_nofollow("blobs") {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            Err(CopyError::Mismatch("blobs is not a directory".into()))
        }
        Err(e) => Err(CopyError::Cache(e)),
    }
}

/// Copies the blob of `out` into a new file of `staging`, hashing as it goes, and checks
/// size and hash: a blob never makes wask read past its recorded size.
fn copy_verified(
    blobs: &cap_std::fs::Dir,
    staging: &Path,
    out: &OutputRecord,
    hash: HashKind,
    cancel: &crate::cancel::Cancel,
) -> Result<tempfile::TempPath, CopyError> {
    let src = open(blobs, &out.hash, &format!("the blob of {}", out.path))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".wask-restore-")
        .tempfile_in(staging)
        .map_err(CopyError::Staging)?;
    let mut h = crate::key::Hasher::new(hash);
    let mut buf = vec![0u8; 64 * 1024];
    // Never more than the recorded size (and one byte to notice more): a blob that
    // grows while it is read cannot fill the disk.
    let mut src = src.into_std().take(out.size + 1);
    let mut copied = 0u64;
    loop {
        if cancel.is_set() {
            return Err(CopyError::Cancelled);
        }
        let n = src.read(&mut buf).map_err(CopyError::Cache)?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        h.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(CopyError::Staging)?;
    }
    if copied != out.size || h.finish().hex() != out.hash {
        return Err(CopyError::Mismatch(format!(
            "the blob of {} does not match its recorded hash",
            out.path
        )));
    }
    tmp.as_file().sync_all().map_err(CopyError::Staging)?;
    Ok(tmp.into_temp_path())
}
