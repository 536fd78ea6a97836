//! The local cache (CACHE-010..019).
//!
//! Layout: `<dir>/<first two hex digits of key>/<key>/` holds `manifest.json`, `stdout`,
//! `stderr` and `blobs/<content hash>` (an output stored once however many paths share
//! its bytes). An entry is written into a temporary directory in the same shard and
//! renamed into place only when complete, so readers never see half an entry; a
//! restore verifies every byte before any output is replaced.
//!
//! Housekeeping (CACHE-021): an entry's age is the modification time of its
//! `manifest.json`, set when it is stored and refreshed by every restore, so `clean`
//! evicts the least recently used entries first. Names in a shard that start with `.`
//! are temporary (an interrupted store's `.tmp-*`, a removal in progress); `clean`
//! removes those untouched for [`ORPHAN_AGE`]. Entries are removed by renaming them
//! into a temporary directory of their shard first, so no reader sees half an entry.

pub mod manifest;

use crate::key::{Digest, hash_bytes, hash_file};
use crate::workspace::HashKind;
pub use manifest::{AccessRecord, Manifest, OutputRecord, StreamRecord};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A temporary directory in a shard untouched (no file in it modified) for this long
/// belongs to no store still running, and `clean` removes it.
pub const ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);

/// A local cache directory.
pub struct LocalCache {
    dir: PathBuf,
    hash: HashKind,
}

/// A found entry, not yet verified byte for byte.
pub struct Entry {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The directory's (device, inode) when it was looked up: an entry found corrupt
    /// is removed only if it is still the same directory, not a good one another
    /// process has put in its place since.
    identity: (u64, u64),
}

/// A restored entry: the outputs are in place and these are the recorded streams.
pub struct Restored {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A produced output, ready to store.
pub struct ProducedOutput {
    pub path: String,
    /// Where its bytes are now.
    pub file: PathBuf,
    pub hash: Digest,
    pub size: u64,
    pub mode: u32,
}

/// Where a restore puts outputs: the workspace, with its rules for replacing files.
pub trait Destination {
    /// Whether `path` already is the output with `digest` (nothing to restore).
    fn holds(&self, path: &str, digest: &Digest) -> bool;
    /// Moves the verified, staged file to `path`; the error says why it could not.
    fn place(&self, staged: &Path, path: &str, digest: &Digest) -> Result<(), String>;
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
        source: std::io::Error,
    },
    #[error("could not write output {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The workspace refused an output (see [`Destination::place`]).
    #[error("could not restore an output: {0}")]
    Refused(String),
}

/// Summary numbers for `wask cache info`.
#[derive(Debug, Default)]
pub struct CacheInfo {
    pub entries: u64,
    pub bytes: u64,
    pub temporary: u64,
    pub compiled_modules: u64,
}

impl LocalCache {
    pub fn new(dir: PathBuf, hash: HashKind) -> LocalCache {
        LocalCache { dir, hash }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where compiled modules are kept (SANDBOX-008).
    pub fn compiled_dir(&self) -> PathBuf {
        self.dir.join("compiled")
    }

    fn entry_dir(&self, key: &Digest) -> PathBuf {
        let hex = key.hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Looks a key up (CACHE-014): a hit needs a manifest that is intact (its checksum
    /// holds), matches the revision, hash function and key, and whose files all exist
    /// at their recorded sizes. No entry, or one of another revision or hash function,
    /// is `Ok(None)`. An entry that is there but broken is `Err` with what is wrong: a
    /// miss too, never an error, but one to report and [`discard`](Self::discard).
    pub fn lookup(&self, key: &Digest) -> Result<Option<Entry>, String> {
        let dir = self.entry_dir(key);
        // A shard that is a link would take wask outside the cache: never a hit, and
        // `store` refuses it too.
        if !is_real_dir(dir.parent().unwrap()) {
            return Ok(None);
        }
        let identity = match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => (m.dev(), m.ino()),
            Ok(_) => return Err("the entry is not a directory".into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read the entry: {e}")),
        };
        let manifest = match read_manifest(&dir)? {
            Stored::Ours(m) => *m,
            Stored::OtherRevision(_) => return Ok(None),
        };
        if manifest.hash != self.hash.name() {
            return Ok(None);
        }
        if manifest.key != key.hex() {
            return Err(format!("its manifest records key {}", manifest.key));
        }
        has_size(&dir.join("stdout"), "stdout", manifest.stdout.size)?;
        has_size(&dir.join("stderr"), "stderr", manifest.stderr.size)?;
        for o in &manifest.outputs {
            if Digest::from_hex(&o.hash).is_none() {
                return Err(format!("the output {} has a malformed hash", o.path));
            }
            has_size(
                &dir.join("blobs").join(&o.hash),
                &format!("the blob of {}", o.path),
                o.size,
            )?;
        }
        Ok(Some(Entry {
            dir,
            manifest,
            identity,
        }))
    }

    /// Removes the entry of `key`, found corrupt, so a fresh run can store a good one.
    pub fn discard_key(&self, key: &Digest) {
        let dir = self.entry_dir(key);
        if is_real_dir(dir.parent().unwrap()) {
            discard_dir(&dir);
        }
    }

    fn discard(&self, entry: &Entry) {
        let same = fs::symlink_metadata(&entry.dir)
            .is_ok_and(|m| m.is_dir() && (m.dev(), m.ino()) == entry.identity);
        if same {
            discard_dir(&entry.dir);
        }
    }

    /// Restores an entry (CACHE-019): every output is copied into `staging` (the run's
    /// scratch directory, on the workspace's filesystem) while its hash is checked, and
    /// only when all are verified are they renamed into place, so an output path holds
    /// the old bytes or the new, never a part. A mismatch anywhere restores nothing,
    /// removes the entry and is reported.
    ///
    /// The cache directory is not trusted to name where outputs go: every recorded
    /// output path must be a clean workspace path (no `..`, `.` or empty segments,
    /// outside `/.wask`) that `declared` accepts (the task's output patterns), or the
    /// entry is corrupt. A blob must be a regular file, never a link.
    pub fn restore(
        &self,
        entry: &Entry,
        dest: &dyn Destination,
        staging: &Path,
        allowed: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<Restored, RestoreError> {
        let corrupt = |what: String| {
            self.discard(entry);
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
        };
        let read_stream = |name: &str, rec: &StreamRecord| -> Result<Vec<u8>, CopyError> {
            let bytes = read_cache_file(&entry.dir.join(name), name, rec.size)?;
            if hash_bytes(self.hash, &bytes).hex() != rec.hash {
                return Err(CopyError::Mismatch(format!(
                    "{name} does not match its recorded hash"
                )));
            }
            Ok(bytes)
        };
        let stdout = read_stream("stdout", &entry.manifest.stdout).map_err(failed)?;
        let stderr = read_stream("stderr", &entry.manifest.stderr).map_err(failed)?;

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
                return Err(corrupt(format!(
                    "it lists the output {:?}, which {why}",
                    out.path
                )));
            }
            if out.mode != wask_runtime::view::OUTPUT_MODE {
                return Err(corrupt(format!(
                    "it records mode {:o} for {}, and every output has mode {:o}",
                    out.mode,
                    out.path,
                    wask_runtime::view::OUTPUT_MODE
                )));
            }
        }
        // Every blob is copied and verified before anything in the workspace changes,
        // parent directories included.
        let mut staged: Vec<(tempfile::TempPath, &OutputRecord, Digest)> = Vec::new();
        for out in &entry.manifest.outputs {
            let digest = Digest::from_hex(&out.hash).expect("checked at lookup");
            // Outputs already in place with the right bytes and mode are left alone.
            if dest.holds(&out.path, &digest) {
                continue;
            }
            let blob = entry.dir.join("blobs").join(&out.hash);
            let tmp = copy_verified(&blob, staging, out, self.hash).map_err(failed)?;
            staged.push((tmp, out, digest));
        }
        for (tmp, out, digest) in staged {
            dest.place(&tmp, &out.path, &digest)
                .map_err(RestoreError::Refused)?;
        }
        // A hit makes the entry young again: `clean` evicts the least recently used.
        // Best effort: a read-only cache still restores.
        let _ = fs::File::options()
            .write(true)
            .open(entry.dir.join("manifest.json"))
            .and_then(|f| f.set_modified(SystemTime::now()));
        Ok(Restored { stdout, stderr })
    }

    /// Stores a successful run atomically (CACHE-017). Two processes storing the same
    /// key at once both succeed: the second finds the entry in place and drops its copy.
    pub fn store(
        &self,
        key: &Digest,
        outputs: &[ProducedOutput],
        stdout: &[u8],
        stderr: &[u8],
        stored_by: &str,
        access: AccessRecord,
    ) -> std::io::Result<()> {
        let final_dir = self.entry_dir(key);
        let shard = final_dir.parent().unwrap();
        fs::create_dir_all(shard)?;
        if !is_real_dir(shard) {
            return Err(std::io::Error::other(format!(
                "{} is not a directory of the cache (a symbolic link?); nothing is stored through it",
                shard.display()
            )));
        }
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempdir_in(shard)?;
        let blobs = tmp.path().join("blobs");
        fs::create_dir(&blobs)?;
        let mut records = Vec::new();
        for out in outputs {
            let blob = blobs.join(out.hash.hex());
            if !blob.exists() {
                fs::copy(&out.file, &blob)?;
                fs::File::open(&blob)?.sync_all()?;
            }
            records.push(OutputRecord {
                path: out.path.clone(),
                hash: out.hash.hex(),
                size: out.size,
                mode: out.mode,
            });
        }
        records.sort_by(|a, b| a.path.cmp(&b.path));
        write_synced(&tmp.path().join("stdout"), stdout)?;
        write_synced(&tmp.path().join("stderr"), stderr)?;
        let manifest = Manifest {
            revision: manifest::MANIFEST_REVISION,
            hash: self.hash.name().into(),
            key: key.hex(),
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            stored_by: stored_by.into(),
            outputs: records,
            stdout: StreamRecord {
                hash: hash_bytes(self.hash, stdout).hex(),
                size: stdout.len() as u64,
            },
            stderr: StreamRecord {
                hash: hash_bytes(self.hash, stderr).hex(),
                size: stderr.len() as u64,
            },
            access,
            checksum: String::new(),
        };
        // The manifest is written last: an entry without one is never a hit.
        write_synced(
            &tmp.path().join("manifest.json"),
            &manifest::encode(&manifest, self.hash),
        )?;
        fs::File::open(tmp.path())?.sync_all()?;
        let tmp_path = tmp.keep();
        let result = match fs::rename(&tmp_path, &final_dir) {
            Err(_) if final_dir.exists() => match self.lookup(key) {
                // Another process stored the same key first (CACHE-017): keep theirs.
                Ok(Some(_)) => Ok(()),
                // What is there is broken or of another revision: replace it, or no
                // later run could ever hit this key.
                _ => remove_entry(&final_dir, ".stale-")
                    .and_then(|()| fs::rename(&tmp_path, &final_dir))
                    .or_else(|e| match self.lookup(key) {
                        Ok(Some(_)) => Ok(()),
                        _ => Err(e),
                    }),
            },
            r => r,
        };
        if result.is_ok() {
            let _ = fs::File::open(shard).and_then(|d| d.sync_all());
        }
        // Gone if it was renamed into place; otherwise not needed.
        let _ = fs::remove_dir_all(&tmp_path);
        result
    }

    /// Counts entries and bytes.
    pub fn info(&self) -> CacheInfo {
        let scan = self.scan();
        CacheInfo {
            entries: scan.entries.len() as u64,
            bytes: scan.entries.iter().map(|e| e.bytes).sum(),
            temporary: scan.temporary.len() as u64,
            compiled_modules: walkdir::WalkDir::new(self.compiled_dir())
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .count() as u64,
        }
    }

    /// Every entry and temporary directory, sorted by name. Shards are the
    /// two-hex-digit directories; anything else in the cache dir (`compiled`) is not
    /// an entry.
    pub fn scan(&self) -> Scan {
        let mut scan = Scan::default();
        for shard in read_dir_names(&self.dir) {
            if shard.len() != 2 || !shard.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let shard_dir = self.dir.join(&shard);
            // A shard that is a link is not the cache's: never scanned, so `clean` and
            // `verify` never remove anything it leads to.
            if !is_real_dir(&shard_dir) {
                continue;
            }
            for name in read_dir_names(&shard_dir) {
                let path = shard_dir.join(&name);
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if !meta.is_dir() {
                    continue;
                }
                let (bytes, newest) = tree_size_and_newest(&path);
                let found = Found {
                    name: format!("{shard}/{name}"),
                    dir: path.clone(),
                    bytes,
                    modified: if name.starts_with('.') {
                        newest
                    } else {
                        // The manifest's time: stored or last restored.
                        fs::metadata(path.join("manifest.json"))
                            .and_then(|m| m.modified())
                            .or_else(|_| meta.modified())
                            .unwrap_or(SystemTime::UNIX_EPOCH)
                    },
                };
                if name.starts_with('.') {
                    scan.temporary.push(found);
                } else {
                    scan.entries.push(found);
                }
            }
        }
        scan
    }

    /// Works out what `clean` removes under `policy` and, unless `dry_run`, removes it
    /// (CACHE-021): temporary directories untouched for `policy.orphan_age`, then every
    /// entry older than `max_age`, then the oldest entries until the rest fit in
    /// `max_size`.
    pub fn clean(&self, policy: &CleanPolicy, dry_run: bool) -> CleanReport {
        let scan = self.scan();
        let age = |f: &Found| policy.now.duration_since(f.modified).unwrap_or_default();
        let mut report = CleanReport::default();
        let mut plan: Vec<(Found, Reason)> = Vec::new();
        for t in scan.temporary {
            if age(&t) >= policy.orphan_age {
                plan.push((t, Reason::Orphan));
            }
        }
        let mut kept = Vec::new();
        for e in scan.entries {
            match policy.max_age {
                Some(max) if age(&e) > max => plan.push((e, Reason::Age)),
                _ => kept.push(e),
            }
        }
        // Oldest first; the name breaks ties so the order never depends on the disk.
        kept.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.name.cmp(&b.name)));
        let mut total: u64 = kept.iter().map(|e| e.bytes).sum();
        let mut kept = kept.into_iter();
        if let Some(max) = policy.max_size {
            while total > max {
                let Some(e) = kept.next() else { break };
                total -= e.bytes;
                plan.push((e, Reason::Size));
            }
        }
        let kept: Vec<Found> = kept.collect();
        report.kept_entries = kept.len() as u64;
        report.kept_bytes = total;
        for (found, reason) in plan {
            if !dry_run {
                let result = if reason == Reason::Orphan {
                    remove_tree(&found.dir)
                } else {
                    remove_entry(&found.dir, ".evict-")
                };
                if let Err(e) = result {
                    report
                        .errors
                        .push(format!("cannot remove {}: {e}", found.dir.display()));
                    continue;
                }
            }
            report.removed.push(Removal {
                age: age(&found),
                name: found.name,
                bytes: found.bytes,
                reason,
            });
        }
        report
    }

    /// Re-hashes every file of every entry (CACHE-021): the streams and each output
    /// blob against the hashes and sizes in the manifest. A corrupt entry (including
    /// one without a readable manifest) is removed atomically; an entry written by a
    /// different manifest revision is skipped, not judged.
    pub fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        for found in self.scan().entries {
            match check_entry(&found.dir) {
                Check::Intact => report.intact += 1,
                Check::Skipped(why) => report.skipped.push((found.name, why)),
                Check::Corrupt(what) => {
                    if let Err(e) = remove_entry(&found.dir, ".corrupt-") {
                        report
                            .errors
                            .push(format!("cannot remove {}: {e}", found.dir.display()));
                    }
                    report.corrupt.push((found.name, what));
                }
            }
        }
        report
    }

    /// Removes every entry and compiled module.
    pub fn clear(&self) -> std::io::Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// An entry or temporary directory found by [`LocalCache::scan`].
#[derive(Debug, Clone)]
pub struct Found {
    /// `<shard>/<name>`, relative to the cache dir.
    pub name: String,
    pub dir: PathBuf,
    /// The sum of its files' sizes.
    pub bytes: u64,
    /// For an entry, when it was stored or last restored (its manifest's modification
    /// time); for a temporary directory, the newest modification time in it.
    pub modified: SystemTime,
}

/// The contents of the cache dir, as `clean` and `verify` see it.
#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<Found>,
    pub temporary: Vec<Found>,
}

/// What `clean` keeps.
#[derive(Debug, Clone)]
pub struct CleanPolicy {
    /// Remove entries not stored or restored for longer than this.
    pub max_age: Option<Duration>,
    /// Then remove the oldest entries until the rest are at most this many bytes.
    pub max_size: Option<u64>,
    /// Temporary directories untouched for this long are orphans.
    pub orphan_age: Duration,
    /// The time ages are measured from.
    pub now: SystemTime,
}

/// Why `clean` removed something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A temporary directory left by an interrupted store or removal.
    Orphan,
    /// Older than `max_age`.
    Age,
    /// Among the oldest entries while the cache was over `max_size`.
    Size,
}

#[derive(Debug, Clone)]
pub struct Removal {
    /// `<shard>/<name>`, relative to the cache dir.
    pub name: String,
    pub bytes: u64,
    pub age: Duration,
    pub reason: Reason,
}

/// What `clean` removed (or would remove, in a dry run) and what is left.
#[derive(Debug, Default)]
pub struct CleanReport {
    /// In the order removed: orphans, then by age, then by size (oldest first).
    pub removed: Vec<Removal>,
    pub kept_entries: u64,
    pub kept_bytes: u64,
    /// Removals that failed; those items are not in `removed`.
    pub errors: Vec<String>,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub intact: u64,
    /// `(<shard>/<key>, what is wrong)`; each was removed unless listed in `errors`.
    pub corrupt: Vec<(String, String)>,
    /// `(<shard>/<key>, why)`: entries of another manifest revision.
    pub skipped: Vec<(String, String)>,
    pub errors: Vec<String>,
}

enum Check {
    Intact,
    Corrupt(String),
    Skipped(String),
}

fn check_entry(dir: &Path) -> Check {
    let manifest = match read_manifest(dir) {
        Ok(Stored::Ours(m)) => *m,
        Ok(Stored::OtherRevision(rev)) => {
            return Check::Skipped(format!(
                "manifest revision {rev} (this wask reads revision {})",
                manifest::MANIFEST_REVISION
            ));
        }
        Err(what) => return Check::Corrupt(what),
    };
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    if manifest.key != name {
        return Check::Corrupt(format!("its manifest records key {}", manifest.key));
    }
    let Some(kind) = manifest.hash_kind() else {
        return Check::Corrupt(format!("unknown hash function `{}`", manifest.hash));
    };
    let check = |path: PathBuf, what: &str, size: u64, hash: &str| -> Result<(), String> {
        has_size(&path, what, size)?;
        let digest = hash_file(kind, &path).map_err(|e| format!("cannot read {what}: {e}"))?;
        if digest.hex() != hash {
            return Err(format!("{what} does not match its recorded hash"));
        }
        Ok(())
    };
    let mut result = check(
        dir.join("stdout"),
        "stdout",
        manifest.stdout.size,
        &manifest.stdout.hash,
    )
    .and_then(|()| {
        check(
            dir.join("stderr"),
            "stderr",
            manifest.stderr.size,
            &manifest.stderr.hash,
        )
    });
    for out in &manifest.outputs {
        if result.is_err() {
            break;
        }
        result = if Digest::from_hex(&out.hash).is_none() {
            Err(format!("the output {} has a malformed hash", out.path))
        } else {
            check(
                dir.join("blobs").join(&out.hash),
                &format!("the blob of {}", out.path),
                out.size,
                &out.hash,
            )
        };
    }
    match result {
        Ok(()) => Check::Intact,
        Err(what) => Check::Corrupt(what),
    }
}

/// What an entry's `manifest.json` holds.
enum Stored {
    Ours(Box<Manifest>),
    /// A manifest of another revision: another wask's entry, neither a hit nor corrupt.
    OtherRevision(u64),
}

/// Reads and decodes an entry's manifest, which must be a regular file: the cache
/// never follows a link out of itself. `Err` says what makes the entry corrupt.
fn read_manifest(entry: &Path) -> Result<Stored, String> {
    let text = read_at_most(&entry.join("manifest.json"), MAX_MANIFEST).map_err(|e| match e {
        CopyError::Mismatch(what) => what,
        CopyError::Vanished => "manifest.json is missing".into(),
        CopyError::Cache(e) | CopyError::Staging(e) => format!("cannot read manifest.json: {e}"),
    })?;
    if text.len() as u64 > MAX_MANIFEST {
        return Err("manifest.json is larger than any manifest wask writes".into());
    }
    match manifest::decode(&text) {
        Ok(m) if m.revision == manifest::MANIFEST_REVISION => Ok(Stored::Ours(Box::new(m))),
        Ok(m) => Ok(Stored::OtherRevision(m.revision.into())),
        // Only when it is not ours: another revision may have other fields.
        Err(what) => match other_revision(&text) {
            Some(rev) => Ok(Stored::OtherRevision(rev)),
            None => Err(what),
        },
    }
}

/// Checks, without following a link, that `path` is a regular file of `size` bytes.
fn has_size(path: &Path, what: &str, size: u64) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() == size => Ok(()),
        Ok(m) if m.is_file() => Err(format!("{what} is {} bytes, {size} recorded", m.len())),
        Ok(_) => Err(format!("{what} is not a regular file")),
        Err(e) => Err(format!("cannot read {what}: {e}")),
    }
}

/// Far above any real manifest (a few hundred bytes per output); a cap so a hostile
/// cache cannot make a lookup read without end.
const MAX_MANIFEST: u64 = 256 << 20;

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Opens a file of an entry for reading without following a link at its last
/// component and without blocking on a FIFO, and checks on the open file that it is a
/// regular file: nothing can be swapped in between a check and the open.
fn open_cache_file(path: &Path) -> Result<fs::File, CopyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CopyError::Vanished,
            // ELOOP: the last component is a link.
            _ if e.raw_os_error() == Some(libc::ELOOP) => {
                CopyError::Mismatch(format!("{name} is not a regular file"))
            }
            _ => CopyError::Cache(e),
        })?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err(CopyError::Mismatch(format!("{name} is not a regular file"))),
        Err(e) => Err(CopyError::Cache(e)),
    }
}

/// Reads a file of an entry (see [`open_cache_file`]), stopping after `limit + 1`
/// bytes: the caller learns the file is too long without reading all of it.
fn read_at_most(path: &Path, limit: u64) -> Result<Vec<u8>, CopyError> {
    let mut bytes = Vec::new();
    open_cache_file(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(CopyError::Cache)?;
    Ok(bytes)
}

/// Reads a stream of an entry, which must be exactly `size` bytes.
fn read_cache_file(path: &Path, what: &str, size: u64) -> Result<Vec<u8>, CopyError> {
    let bytes = read_at_most(path, size)?;
    if bytes.len() as u64 != size {
        return Err(CopyError::Mismatch(format!(
            "{what} is not the {size} bytes recorded"
        )));
    }
    Ok(bytes)
}

/// The revision of a manifest that parses as JSON with a revision other than ours.
fn other_revision(text: &[u8]) -> Option<u64> {
    let loose: serde_json::Value = serde_json::from_slice(text).ok()?;
    let rev = loose.get("revision")?.as_u64()?;
    (rev != manifest::MANIFEST_REVISION as u64).then_some(rev)
}

/// The total size of the files under `dir` and the newest modification time of
/// anything in it (the directory included).
fn tree_size_and_newest(dir: &Path) -> (u64, SystemTime) {
    let mut bytes = 0;
    let mut newest = SystemTime::UNIX_EPOCH;
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if let Ok(m) = e.metadata() {
            if m.is_file() {
                bytes += m.len();
            }
            if let Ok(t) = m.modified() {
                newest = newest.max(t);
            }
        }
    }
    (bytes, newest)
}

/// Removes an entry found corrupt, atomically if it can, else in place.
fn discard_dir(dir: &Path) {
    if remove_entry(dir, ".corrupt-").is_err() {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Removes an entry atomically: it is renamed into a new temporary directory of its
/// shard (from then on no lookup finds it), which is then deleted. An entry already
/// gone (another process removed it) is not an error. If the deletion stops half-way,
/// what is left is a temporary directory that a later `clean` removes.
fn remove_entry(dir: &Path, prefix: &str) -> std::io::Result<()> {
    let shard = dir.parent().expect("an entry is inside a shard");
    let grave = tempfile::Builder::new().prefix(prefix).tempdir_in(shard)?;
    match fs::rename(dir, grave.path().join("entry")) {
        Ok(()) => grave.close(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn read_dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Why reading part of an entry failed.
enum CopyError {
    /// The bytes are not what the manifest records: the entry is corrupt.
    Mismatch(String),
    /// The file is gone: the entry was removed while it was read.
    Vanished,
    /// Reading the cache failed (permissions, resources): says nothing of its bytes.
    Cache(std::io::Error),
    /// Writing the staged copy failed.
    Staging(std::io::Error),
}

fn copy_verified(
    blob: &Path,
    dir: &Path,
    out: &OutputRecord,
    hash: HashKind,
) -> Result<tempfile::TempPath, CopyError> {
    use std::os::unix::fs::PermissionsExt;
    // A blob is a file the cache wrote; a link there points somewhere wask must not read.
    let src = open_cache_file(blob).map_err(|e| match e {
        CopyError::Mismatch(_) => {
            CopyError::Mismatch(format!("the blob of {} is not a regular file", out.path))
        }
        e => e,
    })?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".wask-restore-")
        .tempfile_in(dir)
        .map_err(CopyError::Staging)?;
    let mut h = crate::key::Hasher::new(hash);
    let mut buf = vec![0u8; 64 * 1024];
    // Never more than the recorded size (and one byte to notice more): a blob that
    // grows while it is read cannot fill the disk.
    let mut src = src.take(out.size + 1);
    let mut copied = 0u64;
    loop {
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
    tmp.as_file()
        // Permission bits only: a cache entry never makes a file setuid, setgid or sticky.
        .set_permissions(fs::Permissions::from_mode(out.mode & 0o777))
        .map_err(CopyError::Staging)?;
    tmp.as_file().sync_all().map_err(CopyError::Staging)?;
    Ok(tmp.into_temp_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(keys: &[(u8, &[u8])]) -> (tempfile::TempDir, LocalCache, Vec<Digest>) {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(dir.path().join("cache"), HashKind::Blake3);
        let mut digests = Vec::new();
        for (n, content) in keys {
            let key = Digest([*n; 32]);
            let file = dir.path().join(format!("out{n}"));
            fs::write(&file, content).unwrap();
            let out = ProducedOutput {
                path: format!("/out{n}"),
                file,
                hash: hash_bytes(HashKind::Blake3, content),
                size: content.len() as u64,
                mode: 0o644,
            };
            cache
                .store(&key, &[out], b"so", b"se", "p:t", AccessRecord::default())
                .unwrap();
            digests.push(key);
        }
        (dir, cache, digests)
    }

    fn set_age(path: &Path, age: Duration) {
        fs::File::open(path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
    }

    fn policy(max_age: Option<Duration>, max_size: Option<u64>) -> CleanPolicy {
        CleanPolicy {
            max_age,
            max_size,
            orphan_age: ORPHAN_AGE,
            now: SystemTime::now(),
        }
    }

    #[test]
    fn clean_removes_old_then_oldest_until_it_fits() {
        let (_d, cache, keys) = cache_with(&[(1, b"aaaa"), (2, b"bbbb"), (3, b"cccc")]);
        let day = Duration::from_secs(86400);
        for (key, days) in keys.iter().zip([10, 3, 2]) {
            let entry = cache.entry_dir(key);
            set_age(&entry.join("manifest.json"), day * days);
        }
        let per_entry = cache.scan().entries[0].bytes;
        let dry = cache.clean(&policy(Some(day * 5), Some(per_entry)), true);
        assert_eq!(dry.removed.len(), 2);
        assert_eq!(cache.info().entries, 3, "a dry run removes nothing");
        let report = cache.clean(&policy(Some(day * 5), Some(per_entry)), false);
        let got: Vec<(String, Reason)> = report
            .removed
            .iter()
            .map(|r| (r.name.clone(), r.reason))
            .collect();
        let name = |k: &Digest| format!("{}/{}", &k.hex()[..2], k.hex());
        assert_eq!(
            got,
            vec![
                (name(&keys[0]), Reason::Age),
                (name(&keys[1]), Reason::Size)
            ]
        );
        assert_eq!((report.kept_entries, report.kept_bytes), (1, per_entry));
        assert!(cache.lookup(&keys[2]).unwrap().is_some());
        assert!(cache.lookup(&keys[1]).unwrap().is_none());
        assert!(report.errors.is_empty());
    }

    #[test]
    fn clean_removes_only_stale_temporary_dirs() {
        let (_d, cache, keys) = cache_with(&[(7, b"x")]);
        let shard = cache.entry_dir(&keys[0]).parent().unwrap().to_path_buf();
        let stale = shard.join(".tmp-stale");
        let fresh = shard.join(".tmp-fresh");
        fs::create_dir_all(stale.join("blobs")).unwrap();
        fs::create_dir_all(&fresh).unwrap();
        set_age(&stale.join("blobs"), Duration::from_secs(7200));
        set_age(&stale, Duration::from_secs(7200));
        let report = cache.clean(&policy(None, None), false);
        assert_eq!(report.removed.len(), 1);
        assert_eq!(report.removed[0].reason, Reason::Orphan);
        assert!(!stale.exists() && fresh.exists());
        assert_eq!(cache.info().entries, 1);
    }

    #[test]
    fn verify_removes_corrupt_entries_and_keeps_intact_ones() {
        let (_d, cache, keys) = cache_with(&[(1, b"good"), (2, b"bad!"), (3, b"xx")]);
        let blob = |k: &Digest, c: &[u8]| {
            cache
                .entry_dir(k)
                .join("blobs")
                .join(hash_bytes(HashKind::Blake3, c).hex())
        };
        fs::write(blob(&keys[1], b"bad!"), b"BAD!").unwrap();
        fs::remove_file(cache.entry_dir(&keys[2]).join("manifest.json")).unwrap();
        let report = cache.verify();
        assert_eq!(report.intact, 1);
        assert_eq!(report.corrupt.len(), 2, "{:?}", report.corrupt);
        assert!(report.corrupt[0].1.contains("does not match"));
        assert!(report.errors.is_empty());
        assert!(cache.lookup(&keys[0]).unwrap().is_some());
        assert!(!cache.entry_dir(&keys[1]).exists());
        assert!(!cache.entry_dir(&keys[2]).exists());
        assert_eq!(cache.info().temporary, 0, "nothing left behind");
    }
}
