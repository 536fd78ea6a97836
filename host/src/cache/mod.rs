//! The local cache (CACHE-010..019): store and lookup here, [`restore`],
//! [`housekeeping`] (info, clean, verify, clear), the [`manifest`] format and the
//! directory's [`marker`].
//!
//! Layout: `<dir>/<first two hex digits of key>/<key>/` holds `manifest.json`, `stdout`,
//! `stderr` and `blobs/<content hash>` (an output stored once however many paths share
//! its bytes). An entry is written into a temporary directory in the same shard and
//! renamed into place only when complete, so readers never see half an entry; a
//! restore verifies every byte before any output is replaced.
//!
//! The cache directory is not trusted. Everything in it is reached from a handle on the
//! directory, one name at a time, never through a symbolic link: a shard, an entry or a
//! file that is a link is not the cache's and is never followed, read, written or
//! removed through. Files are read no further than their recorded size. Every file of
//! an entry is checked against the manifest, and the manifest against its checksum,
//! which catches accidents; a writer of the directory can recompute the checksum, and
//! what such a writer can and cannot do is in `docs/security.md`.

pub mod housekeeping;
pub mod layout;
pub mod manifest;
pub mod marker;
pub mod remote;
mod restore;

use crate::fs::{open_ambient, open_dirs, open_regular, read_at_most, unique_name};
use crate::key::{Digest, hash_bytes, hash_reader};
use crate::workspace::HashKind;
use cap_fs_ext::{DirExt, FollowSymlinks, MetadataExt, OpenOptionsFollowExt};
use cap_std::fs::{Dir, OpenOptions};
pub use housekeeping::{
    CacheInfo, CleanPolicy, CleanReport, ClearReport, Found, ORPHAN_AGE, Reason, Removal, Scan,
    VerifyReport,
};
pub use manifest::{AccessRecord, Manifest, OutputRecord, StreamRecord};
pub use restore::{Destination, RestoreError, Restored};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// What keeps the results of tasks. The local cache directory is one; the remote cache
/// will be another, and a store in front of both (local first, then remote) a third.
/// The scheduler finds, restores and stores results only through this.
pub trait ResultStore {
    /// What a lookup finds: its manifest, and what the store needs to restore it.
    type Entry: FoundEntry;

    /// The entry stored under `key`, if there is one to restore. An entry that is
    /// there but broken is `Err`: a miss, to report and [`discard`](Self::discard).
    fn lookup(&self, key: &Digest) -> Result<Option<Self::Entry>, Damaged>;

    /// Puts `entry`'s outputs in place through `dest` (only paths `allowed` accepts),
    /// every byte verified first, staging in `staging`; returns the recorded streams.
    fn restore(
        &self,
        entry: &Self::Entry,
        dest: &dyn Destination,
        staging: &Path,
        allowed: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<Restored, RestoreError>;

    /// Stores a successful run under `key`, whole or not at all.
    fn store(&self, key: &Digest, new: &NewEntry<'_>) -> io::Result<()>;

    /// Removes what is stored under `key` (found damaged), so a good entry can replace it.
    fn discard(&self, key: &Digest);
}

/// An entry a [`ResultStore`] found.
pub trait FoundEntry {
    fn manifest(&self) -> &Manifest;

    /// Why this entry is no result a run under `limits` could have given, if it is not:
    /// a stream over the output cap, outputs over their size or count, more memory than
    /// the memory limit. Limits are not part of the key (changing one must not discard
    /// every result), so an entry stored under looser limits is found under tighter
    /// ones; it is a miss there, and the fresh run fails as it would have. An entry
    /// forged to be huge is refused here too, before a byte of it is read. (A timeout
    /// cannot be checked: time is not part of a result.)
    fn unfit(&self, limits: &wask_runtime::Limits) -> Option<String> {
        unfit(self.manifest(), limits)
    }
}

/// What is wrong with an entry that is there but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Damaged(pub String);

/// A local cache directory.
#[derive(Clone)]
pub struct LocalCache {
    dir: PathBuf,
    hash: HashKind,
    /// Stores and restores stop within one read of a Ctrl-C (their partial work is
    /// never an entry or an output).
    cancel: crate::cancel::Cancel,
}

/// A found entry, not yet verified byte for byte.
pub struct Entry {
    shard: Dir,
    name: String,
    dir: Dir,
    pub manifest: Manifest,
    /// The directory's (device, inode) when it was looked up: an entry found corrupt
    /// is removed only if it is still the same directory, not a good one another
    /// process has put in its place since.
    identity: (u64, u64),
}

/// A produced output, ready to store.
pub struct ProducedOutput {
    pub path: String,
    /// Where its bytes are now.
    pub contents: Contents,
    pub hash: Digest,
    pub size: u64,
    pub mode: u32,
}

/// Where the bytes of one file are: staged on disk (a fresh run's output), or in
/// memory (a small download, which then costs no file to stage and delete).
#[derive(Clone)]
pub enum Contents {
    File(PathBuf),
    Memory(Vec<u8>),
}

impl Contents {
    /// A reader of the bytes, from the start.
    pub fn reader(&self) -> io::Result<Box<dyn io::Read + Send + '_>> {
        Ok(match self {
            Contents::File(path) => Box::new(std::fs::File::open(path)?),
            Contents::Memory(bytes) => Box::new(&bytes[..]),
        })
    }
}

impl FoundEntry for Entry {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

impl Entry {
    /// Opens one of the entry's files (`stdout`, `stderr` or `blobs/<hash>`) for
    /// reading, never through a link and never a FIFO. Its bytes are not checked here.
    pub fn open_file(&self, name: &str) -> io::Result<cap_std::fs::File> {
        match name.split_once('/') {
            Some(("blobs", blob)) => open_regular(&open_dirs(&self.dir, &["blobs"], false)?, blob),
            _ => open_regular(&self.dir, name),
        }
    }
}

/// See [`FoundEntry::unfit`].
pub(crate) fn unfit(m: &Manifest, limits: &wask_runtime::Limits) -> Option<String> {
    let cap = limits.output_bytes as u64;
    let total = m.outputs.iter().fold(0u64, |t, o| t.saturating_add(o.size));
    let count = m.outputs.len() as u64;
    if m.stdout.size > cap || m.stderr.size > cap {
        let (name, size) = if m.stdout.size > cap {
            ("stdout", m.stdout.size)
        } else {
            ("stderr", m.stderr.size)
        };
        Some(format!(
            "its {name} is {size} bytes, over the task's output limit of {cap} bytes"
        ))
    } else if total > limits.outputs_size {
        Some(format!(
            "its outputs are {total} bytes, over the task's outputs size limit of {} bytes",
            limits.outputs_size
        ))
    } else if count > limits.outputs_count {
        Some(format!(
            "it has {count} outputs, over the task's outputs count limit of {}",
            limits.outputs_count
        ))
    } else if m.memory > limits.memory_bytes {
        Some(format!(
            "its run held {} bytes of memory, over the task's memory limit of {} bytes",
            m.memory, limits.memory_bytes
        ))
    } else {
        None
    }
}

/// What a successful run leaves to store (CACHE-017).
pub struct NewEntry<'a> {
    pub outputs: &'a [ProducedOutput],
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    /// The task that ran (informational).
    pub stored_by: &'a str,
    pub access: AccessRecord,
    /// The most memory the run held, in bytes.
    pub memory: u64,
    /// How the run's writes to its two streams interleaved.
    pub write_order: &'a [(wask_runtime::Stream, u64)],
    /// Whether the entry must survive a crash (`fsync` of every file and directory,
    /// CACHE-017): a fresh result must, or the run that made it would be lost. A copy
    /// of a remote entry need not: after a crash it is at worst found damaged (every
    /// byte is checked before a restore) and downloaded again.
    pub durable: bool,
}

/// Far above any real manifest (a few hundred bytes per output); a cap so a hostile
/// cache cannot make a lookup read without end.
const MAX_MANIFEST: u64 = 256 << 20;

/// What an entry's files say, checked the way a lookup checks (every file there, a
/// regular file of its recorded size) or, `deep`, the way `verify` does (every byte
/// hashed too). One function for both, so they never disagree.
pub(crate) enum Check {
    Intact(Box<Manifest>),
    /// A manifest of another revision: another wask's entry, neither a hit nor corrupt.
    OtherRevision(u64),
    /// What makes the entry corrupt.
    Corrupt(String),
    /// The entry went while it was read.
    Gone,
}

impl LocalCache {
    pub fn new(dir: PathBuf, hash: HashKind) -> LocalCache {
        LocalCache {
            dir,
            hash,
            cancel: crate::cancel::Cancel::never(),
        }
    }

    /// This cache, its stores and restores stopped by `cancel`.
    pub fn stopped_by(self, cancel: crate::cancel::Cancel) -> LocalCache {
        LocalCache { cancel, ..self }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where compiled modules are kept (SANDBOX-008).
    pub fn compiled_dir(&self) -> PathBuf {
        self.dir.join("compiled")
    }

    /// Makes sure the cache directory exists and is wask's (see [`marker`]).
    pub fn claim(&self) -> Result<(), marker::MarkerError> {
        marker::open_for_writing(&self.dir).map(|_| ())
    }

    fn shard_name(key: &Digest) -> (String, String) {
        let hex = key.hex();
        (hex[..2].to_string(), hex)
    }

    /// Removes `entry` if it is still the directory that was looked up.
    fn discard_entry(&self, entry: &Entry) {
        let same = entry
            .shard
            .symlink_metadata(&entry.name)
            .is_ok_and(|m| m.is_dir() && (m.dev(), m.ino()) == entry.identity);
        if same {
            discard(&entry.shard, &entry.name);
        }
    }

    fn write_entry(
        &self,
        shard: &Dir,
        tmp_name: &str,
        key: &Digest,
        new: &NewEntry<'_>,
    ) -> io::Result<()> {
        let (stdout, stderr) = (new.stdout, new.stderr);
        let tmp = shard.open_dir_nofollow(tmp_name)?;
        let blobs = open_dirs(&tmp, &["blobs"], true)?;
        let mut records = Vec::new();
        for out in new.outputs {
            let blob = out.hash.hex();
            if blobs.symlink_metadata(&blob).is_err() {
                let mut dst = create_new(&blobs, &blob)?;
                match &out.contents {
                    Contents::Memory(bytes) => dst.write_all(bytes)?,
                    Contents::File(path) => {
                        // Read through a buffer of its own: `io::copy` then copies in
                        // 1 MiB pieces, each after a look at the cancel flag.
                        let mut src = io::BufReader::with_capacity(
                            1 << 20,
                            crate::key::UntilCancelled {
                                inner: std::fs::File::open(path)?,
                                cancel: &self.cancel,
                            },
                        );
                        io::copy(&mut src, &mut dst)?;
                    }
                }
                if new.durable {
                    dst.sync_all()?;
                }
            }
            records.push(OutputRecord {
                path: out.path.clone(),
                hash: blob,
                size: out.size,
                mode: out.mode,
            });
        }
        records.sort_by(|a, b| a.path.cmp(&b.path));
        let durable = new.durable;
        write_synced(&tmp, "stdout", stdout, durable)?;
        write_synced(&tmp, "stderr", stderr, durable)?;
        let manifest = Manifest {
            revision: manifest::MANIFEST_REVISION,
            hash: self.hash.name().into(),
            key: key.hex(),
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            stored_by: new.stored_by.into(),
            outputs: records,
            stdout: StreamRecord {
                hash: hash_bytes(self.hash, stdout).hex(),
                size: stdout.len() as u64,
            },
            stderr: StreamRecord {
                hash: hash_bytes(self.hash, stderr).hex(),
                size: stderr.len() as u64,
            },
            write_order: manifest::write_order_record(new.write_order),
            access: new.access.clone(),
            memory: new.memory,
            checksum: String::new(),
        };
        // The manifest is written last: an entry without one is never a hit.
        write_synced(
            &tmp,
            "manifest.json",
            &manifest::encode(&manifest, self.hash),
            durable,
        )?;
        if !durable {
            return Ok(());
        }
        sync_dir(&blobs)?;
        sync_dir(&tmp)
    }
}

impl ResultStore for LocalCache {
    type Entry = Entry;

    /// Looks a key up (CACHE-014): a hit needs a manifest that is intact (its checksum
    /// holds), matches the revision, hash function and key, and whose files all exist
    /// at their recorded sizes. No entry, or one of another revision or hash function,
    /// is `Ok(None)`. An entry that is there but broken is `Err` with what is wrong: a
    /// miss too, never an error, but one to report and [`discard`](ResultStore::discard).
    fn lookup(&self, key: &Digest) -> Result<Option<Entry>, Damaged> {
        let (shard_name, name) = Self::shard_name(key);
        // A missing cache, or a shard that is a link (which would take wask outside the
        // cache): never a hit; `store` refuses it too.
        let Ok(shard) = open_ambient(&self.dir).and_then(|c| c.open_dir_nofollow(&shard_name))
        else {
            return Ok(None);
        };
        let meta = match shard.symlink_metadata(&name) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => return Err(Damaged("the entry is not a directory".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Damaged(format!("cannot read the entry: {e}"))),
        };
        let identity = (meta.dev(), meta.ino());
        let dir = match shard.open_dir_nofollow(&name) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Damaged(format!("cannot open the entry: {e}"))),
        };
        let manifest = match check_entry(&dir, &name, false) {
            Check::Intact(m) => *m,
            Check::OtherRevision(_) | Check::Gone => return Ok(None),
            Check::Corrupt(what) => return Err(Damaged(what)),
        };
        if manifest.hash != self.hash.name() {
            return Ok(None);
        }
        Ok(Some(Entry {
            shard,
            name,
            dir,
            manifest,
            identity,
        }))
    }

    fn restore(
        &self,
        entry: &Entry,
        dest: &dyn Destination,
        staging: &Path,
        allowed: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<Restored, RestoreError> {
        self.restore_entry(entry, dest, staging, allowed)
    }

    /// Stores a successful run atomically (CACHE-017). Two processes storing the same
    /// key at once both succeed: the second finds the entry in place and drops its copy.
    fn store(&self, key: &Digest, new: &NewEntry<'_>) -> io::Result<()> {
        let cache = marker::open_for_writing(&self.dir).map_err(io::Error::other)?;
        let (shard_name, name) = Self::shard_name(key);
        let shard = open_dirs(&cache, &[&shard_name], true).map_err(|e| {
            io::Error::other(format!(
                "{}/{shard_name} is not a directory of the cache (a symbolic link?); nothing is stored through it: {e}",
                self.dir.display()
            ))
        })?;
        let tmp_name = unique_name(".tmp-");
        shard.create_dir(&tmp_name)?;
        let written = self.write_entry(&shard, &tmp_name, key, new);
        let result = written.and_then(|()| match shard.rename(&tmp_name, &shard, &name) {
            Err(_) if shard.symlink_metadata(&name).is_ok() => match self.lookup(key) {
                // Another process stored the same key first (CACHE-017): keep theirs.
                Ok(Some(_)) => Ok(()),
                // What is there is broken or of another revision: replace it, or no
                // later run could ever hit this key.
                _ => remove_entry(&shard, &name, ".stale-")
                    .and_then(|()| shard.rename(&tmp_name, &shard, &name))
                    .or_else(|e| match self.lookup(key) {
                        Ok(Some(_)) => Ok(()),
                        _ => Err(e),
                    }),
            },
            r => r,
        });
        if result.is_ok() && new.durable {
            let _ = sync_dir(&shard);
        }
        // Gone if it was renamed into place; otherwise not needed.
        let _ = crate::fs::remove_tree(&shard, &tmp_name);
        result
    }

    /// Removes the entry of `key`, found corrupt, so a fresh run can store a good one.
    fn discard(&self, key: &Digest) {
        let (shard_name, name) = Self::shard_name(key);
        if let Ok(shard) = open_ambient(&self.dir).and_then(|c| c.open_dir_nofollow(&shard_name)) {
            discard(&shard, &name);
        }
    }
}

/// Creates `name` in `dir` for writing; it must not exist, and a link there is refused.
fn create_new(dir: &Dir, name: &str) -> io::Result<cap_std::fs::File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true).follow(FollowSymlinks::No);
    dir.open_with(name, &opts)
}

fn write_synced(dir: &Dir, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
    let mut f = create_new(dir, name)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    Ok(())
}

fn sync_dir(dir: &Dir) -> io::Result<()> {
    // Directory handles are `O_PATH`; syncing needs the directory opened for reading.
    dir.open(".")?.sync_all()
}

/// Checks the entry open at `dir` (named `name`) as [`Check`] describes.
pub(crate) fn check_entry(dir: &Dir, name: &str, deep: bool) -> Check {
    let manifest = match read_manifest(dir) {
        Ok(Stored::Ours(m)) => *m,
        Ok(Stored::OtherRevision(rev)) => return Check::OtherRevision(rev),
        Err(None) => return Check::Gone,
        Err(Some(what)) => return Check::Corrupt(what),
    };
    if manifest.key != name {
        return Check::Corrupt(format!("its manifest records key {}", manifest.key));
    }
    let Some(kind) = manifest.hash_kind() else {
        return Check::Corrupt(format!("unknown hash function `{}`", manifest.hash));
    };
    let blobs = match dir.open_dir_nofollow("blobs") {
        Ok(b) => Some(b),
        Err(_) if manifest.outputs.is_empty() => None,
        Err(e) => return Check::Corrupt(format!("cannot open its blobs: {e}")),
    };
    let mut files: Vec<(&Dir, String, String, u64, &str)> = vec![
        (
            dir,
            "stdout".into(),
            "stdout".into(),
            manifest.stdout.size,
            &manifest.stdout.hash,
        ),
        (
            dir,
            "stderr".into(),
            "stderr".into(),
            manifest.stderr.size,
            &manifest.stderr.hash,
        ),
    ];
    for o in &manifest.outputs {
        if Digest::from_hex(&o.hash).is_none() {
            return Check::Corrupt(format!("the output {} has a malformed hash", o.path));
        }
        let blobs = blobs.as_ref().expect("opened when there are outputs");
        files.push((
            blobs,
            o.hash.clone(),
            format!("the blob of {}", o.path),
            o.size,
            &o.hash,
        ));
    }
    for (in_dir, file, what, size, hash) in files {
        match in_dir.symlink_metadata(&file) {
            Ok(m) if m.is_file() && m.len() == size => {}
            Ok(m) if m.is_file() => {
                return Check::Corrupt(format!("{what} is {} bytes, {size} recorded", m.len()));
            }
            Ok(_) => return Check::Corrupt(format!("{what} is not a regular file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Check::Corrupt(format!("cannot read {what}: it is missing"));
            }
            Err(e) => return Check::Corrupt(format!("cannot read {what}: {e}")),
        }
        if deep {
            let digest = open_regular(in_dir, &file)
                .and_then(|f| hash_reader(kind, &mut f.into_std().take(size + 1)));
            match digest {
                Ok(d) if d.hex() == hash => {}
                Ok(_) => return Check::Corrupt(format!("{what} does not match its recorded hash")),
                Err(e) => return Check::Corrupt(format!("cannot read {what}: {e}")),
            }
        }
    }
    Check::Intact(Box::new(manifest))
}

/// What an entry's `manifest.json` holds.
enum Stored {
    Ours(Box<Manifest>),
    OtherRevision(u64),
}

/// Reads and decodes an entry's manifest, which must be a regular file. `Err(None)`:
/// the manifest is gone (the entry is being removed); `Err(Some(what))`: what makes the
/// entry corrupt.
fn read_manifest(entry: &Dir) -> Result<Stored, Option<String>> {
    let text = read_at_most(entry, "manifest.json", MAX_MANIFEST).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Some("manifest.json is missing".to_string()),
        io::ErrorKind::InvalidData => Some("manifest.json is not a regular file".to_string()),
        _ if e.raw_os_error() == Some(libc::ELOOP) => {
            Some("manifest.json is not a regular file".to_string())
        }
        _ => Some(format!("cannot read manifest.json: {e}")),
    })?;
    if text.len() as u64 > MAX_MANIFEST {
        return Err(Some(
            "manifest.json is larger than any manifest wask writes".into(),
        ));
    }
    match manifest::decode(&text) {
        Ok(m) if m.revision == manifest::MANIFEST_REVISION => Ok(Stored::Ours(Box::new(m))),
        Ok(m) => Ok(Stored::OtherRevision(m.revision.into())),
        // Only when it is not ours: another revision may have other fields.
        Err(what) => match other_revision(&text) {
            Some(rev) => Ok(Stored::OtherRevision(rev)),
            None => Err(Some(what)),
        },
    }
}

/// The revision of a manifest that parses as JSON with a revision other than ours.
fn other_revision(text: &[u8]) -> Option<u64> {
    let loose: serde_json::Value = serde_json::from_slice(text).ok()?;
    let rev = loose.get("revision")?.as_u64()?;
    (rev != manifest::MANIFEST_REVISION as u64).then_some(rev)
}

/// Removes an entry found corrupt, atomically if it can, else in place.
fn discard(shard: &Dir, name: &str) {
    if remove_entry(shard, name, ".corrupt-").is_err() {
        let _ = crate::fs::remove_tree(shard, name);
    }
}

/// Removes entry `name` of `shard` atomically: it is renamed into a new temporary
/// directory of the shard (from then on no lookup finds it), which is then deleted. An
/// entry already gone (another process removed it) is not an error. If the deletion
/// stops half-way, what is left is a temporary directory that a later `clean` removes.
fn remove_entry(shard: &Dir, name: &str, prefix: &str) -> io::Result<()> {
    let grave = unique_name(prefix);
    shard.create_dir(&grave)?;
    match shard.rename(name, shard, format!("{grave}/entry")) {
        Ok(()) => crate::fs::remove_tree(shard, &grave),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let _ = shard.remove_dir(&grave);
            Ok(())
        }
        Err(e) => {
            let _ = shard.remove_dir(&grave);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;
