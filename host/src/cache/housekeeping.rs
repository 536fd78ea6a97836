//! Housekeeping (CACHE-021): `wask cache info|clean|verify|clear`.
//!
//! An entry's age is the modification time of its `manifest.json`, set when it is
//! stored and refreshed by every restore, so `clean` evicts the least recently used
//! entries first. Names in a shard that start with `.` are temporary (an interrupted
//! store's `.tmp-*`, a removal in progress); `clean` removes those untouched for
//! [`ORPHAN_AGE`]. Entries are removed by renaming them into a temporary directory of
//! their shard first, so no reader sees half an entry.
//!
//! Nothing is removed from a directory that does not carry wask's tag ([`super::marker`]),
//! and inside one only what wask makes is removed, by name; anything else is left and
//! named in the report. Every step goes through directory handles and never follows a
//! link, so a shard that is a link to your home directory is not the cache's.

use super::layout::{self, BUILT, COMPILED, names};
use super::marker::{self, MarkerError};
use super::{Check, LocalCache, check_entry, remove_entry};
use crate::fs::remove_tree;
use cap_fs_ext::DirExt;
use cap_std::fs::Dir;
use std::io;
use std::time::{Duration, SystemTime};

/// A temporary directory in a shard untouched (no file in it modified) for this long
/// belongs to no store still running, and `clean` removes it.
pub const ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);

/// Summary numbers for `wask cache info`.
#[derive(Debug, Default)]
pub struct CacheInfo {
    pub entries: u64,
    pub bytes: u64,
    pub temporary: u64,
    pub compiled_modules: u64,
    /// Bytes of compiled code.
    pub compiled_bytes: u64,
    pub built_modules: u64,
    /// Bytes of built modules.
    pub built_bytes: u64,
    /// The directory carries wask's tag.
    pub tagged: bool,
    /// Names wask did not make (it leaves them alone).
    pub foreign: Vec<String>,
}

/// An entry or temporary directory found by [`LocalCache::scan`].
#[derive(Debug, Clone)]
pub struct Found {
    /// `<shard>/<name>`, relative to the cache dir.
    pub name: String,
    /// The sum of its files' sizes.
    pub bytes: u64,
    /// For an entry, when it was stored or last restored (its manifest's modification
    /// time); for a temporary directory, the newest modification time in it.
    pub modified: SystemTime,
}

impl Found {
    fn split(&self) -> (&str, &str) {
        self.name.split_once('/').expect("a shard and a name")
    }
}

/// The contents of the cache dir, as `clean` and `verify` see it.
#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<Found>,
    pub temporary: Vec<Found>,
    /// Names (relative to the cache dir) wask did not make.
    pub foreign: Vec<String>,
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

/// What `clear` removed and what it left.
#[derive(Debug, Default)]
pub struct ClearReport {
    pub entries: u64,
    pub bytes: u64,
    pub compiled_modules: u64,
    pub built_modules: u64,
    /// Names wask did not make: left where they are.
    pub left: Vec<String>,
    pub errors: Vec<String>,
}

/// The total size of the files under `dir` and the newest modification time of
/// anything in it (the directory included), without following links; a few levels are
/// all an entry has, and deeper trees are not wask's.
fn tree_size_and_newest(dir: &Dir, depth: usize) -> (u64, SystemTime) {
    let mut bytes = 0;
    let mut newest = dir
        .dir_metadata()
        .and_then(|m| m.modified())
        .map(|t| t.into_std())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for e in dir.entries().into_iter().flatten().flatten() {
        let name = e.file_name();
        let Ok(m) = dir.symlink_metadata(&name) else {
            continue;
        };
        if let Ok(t) = m.modified() {
            newest = newest.max(t.into_std());
        }
        if m.is_file() {
            bytes += m.len();
        } else if m.is_dir()
            && depth < 4
            && let Ok(sub) = dir.open_dir_nofollow(&name)
        {
            let (b, t) = tree_size_and_newest(&sub, depth + 1);
            bytes += b;
            newest = newest.max(t);
        }
    }
    (bytes, newest)
}

impl LocalCache {
    fn open_dir(&self) -> Option<Dir> {
        crate::fs::open_ambient(self.dir()).ok()
    }

    /// Every entry and temporary directory, sorted by name, and every name wask did not
    /// make. Shards are the two-hex-digit directories; `compiled` and `built` are
    /// wask's too, but hold no entries.
    pub fn scan(&self) -> Scan {
        let mut scan = Scan::default();
        let Some(cache) = self.open_dir() else {
            return scan;
        };
        scan.foreign = layout::foreign_names(&cache);
        for shard in names(&cache) {
            if !layout::is_shard(&shard) {
                continue;
            }
            // A shard that is a link is not the cache's: never scanned, so `clean` and
            // `verify` never remove anything it leads to.
            let Ok(shard_dir) = cache.open_dir_nofollow(&shard) else {
                continue;
            };
            for name in names(&shard_dir) {
                let Ok(meta) = shard_dir.symlink_metadata(&name) else {
                    continue;
                };
                let temporary = layout::is_temporary(&name);
                let entry = layout::is_entry(&shard, &name);
                if !meta.is_dir() || !(temporary || entry) {
                    continue;
                }
                let Ok(dir) = shard_dir.open_dir_nofollow(&name) else {
                    continue;
                };
                let (bytes, newest) = tree_size_and_newest(&dir, 0);
                let modified = if temporary {
                    newest
                } else {
                    // The manifest's time: stored or last restored.
                    dir.symlink_metadata("manifest.json")
                        .and_then(|m| m.modified())
                        .map(|t| t.into_std())
                        .or_else(|_| meta.modified().map(|t| t.into_std()))
                        .unwrap_or(SystemTime::UNIX_EPOCH)
                };
                let found = Found {
                    name: format!("{shard}/{name}"),
                    bytes,
                    modified,
                };
                if temporary {
                    scan.temporary.push(found);
                } else {
                    scan.entries.push(found);
                }
            }
        }
        scan
    }

    /// Counts entries and bytes.
    pub fn info(&self) -> CacheInfo {
        let scan = self.scan();
        let cache = self.open_dir();
        CacheInfo {
            entries: scan.entries.len() as u64,
            bytes: scan.entries.iter().map(|e| e.bytes).sum(),
            temporary: scan.temporary.len() as u64,
            compiled_modules: cache.as_ref().map(|c| compiled_modules(c).0).unwrap_or(0),
            compiled_bytes: cache.as_ref().map(|c| compiled_modules(c).1).unwrap_or(0),
            built_modules: cache.as_ref().map(|c| built_modules(c).0).unwrap_or(0),
            built_bytes: cache.as_ref().map(|c| built_modules(c).1).unwrap_or(0),
            tagged: cache.as_ref().is_some_and(marker::is_tagged),
            foreign: scan.foreign,
        }
    }

    /// Opens a shard for removing things in it, after checking the tag.
    fn shard(&self, name: &str) -> io::Result<Dir> {
        crate::fs::open_ambient(self.dir())?.open_dir_nofollow(name)
    }

    /// Works out what `clean` removes under `policy` and, unless `dry_run`, removes it
    /// (CACHE-021): temporary directories untouched for `policy.orphan_age`, then every
    /// entry older than `max_age`, then the oldest entries until the rest fit in
    /// `max_size`. Refused (nothing removed) where the directory is not wask's.
    pub fn clean(&self, policy: &CleanPolicy, dry_run: bool) -> Result<CleanReport, MarkerError> {
        if marker::open_tagged(self.dir())?.is_none() {
            return Ok(CleanReport::default());
        }
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
                let (shard, name) = found.split();
                let result = self.shard(shard).and_then(|s| {
                    if reason == Reason::Orphan {
                        match remove_tree(&s, name) {
                            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                            _ => Ok(()),
                        }
                    } else {
                        remove_entry(&s, name, ".evict-")
                    }
                });
                if let Err(e) = result {
                    report
                        .errors
                        .push(format!("cannot remove {}: {e}", found.name));
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
        Ok(report)
    }

    /// Re-hashes every file of every entry (CACHE-021): the streams and each output
    /// blob against the hashes and sizes in the manifest. A corrupt entry (including
    /// one without a readable manifest) is removed atomically; an entry written by a
    /// different manifest revision is skipped, not judged. Refused where the directory is
    /// not wask's.
    pub fn verify(&self) -> Result<VerifyReport, MarkerError> {
        let mut report = VerifyReport::default();
        if marker::open_tagged(self.dir())?.is_none() {
            return Ok(report);
        }
        for found in self.scan().entries {
            let (shard_name, name) = found.split();
            let Ok(shard) = self.shard(shard_name) else {
                continue;
            };
            let Ok(dir) = shard.open_dir_nofollow(name) else {
                continue;
            };
            match check_entry(&dir, name, true) {
                Check::Intact(_) | Check::Gone => report.intact += 1,
                Check::OtherRevision(rev) => report.skipped.push((
                    found.name,
                    format!(
                        "manifest revision {rev} (this wask reads revision {})",
                        super::manifest::MANIFEST_REVISION
                    ),
                )),
                Check::Corrupt(what) => {
                    if let Err(e) = remove_entry(&shard, name, ".corrupt-") {
                        report
                            .errors
                            .push(format!("cannot remove {}: {e}", found.name));
                    }
                    report.corrupt.push((found.name, what));
                }
            }
        }
        Ok(report)
    }

    /// Removes every entry, compiled and built module, and wask's temporary files,
    /// keeping the directory and its tag; everything else is left and named. Refused
    /// (nothing removed) where the directory is not wask's.
    pub fn clear(&self) -> Result<ClearReport, MarkerError> {
        let mut report = ClearReport::default();
        let Some(cache) = marker::open_tagged(self.dir())? else {
            return Ok(report);
        };
        let scan = self.scan();
        report.left = scan.foreign;
        for found in scan.entries.iter().chain(&scan.temporary) {
            let (shard, name) = found.split();
            let is_entry = !layout::is_temporary(name);
            match self.shard(shard).and_then(|s| remove_tree(&s, name)) {
                Ok(()) if is_entry => {
                    report.entries += 1;
                    report.bytes += found.bytes;
                }
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => report
                    .errors
                    .push(format!("cannot remove {}: {e}", found.name)),
            }
        }
        report.compiled_modules = clear_compiled(&cache, &mut report.errors);
        report.built_modules = clear_built(&cache, &mut report.errors);
        for name in names(&cache) {
            let result = if layout::is_shard(&name) {
                // A shard left empty goes; one holding foreign names stays.
                remove_if_empty(&cache, &name)
            } else if name.starts_with(".tmp-")
                && cache.symlink_metadata(&name).is_ok_and(|m| m.is_file())
            {
                cache.remove_file(&name)
            } else {
                Ok(())
            };
            if let Err(e) = result {
                report.errors.push(format!("cannot remove {name}: {e}"));
            }
        }
        Ok(report)
    }
}

/// The compiled modules under `cache`: files of wask's shape in engine directories.
fn compiled_modules(cache: &Dir) -> (u64, u64) {
    let Ok(compiled) = cache.open_dir_nofollow(COMPILED) else {
        return (0, 0);
    };
    names(&compiled)
        .iter()
        .filter(|e| layout::is_engine_dir(e))
        .filter_map(|e| compiled.open_dir_nofollow(e).ok())
        .map(|dir| {
            let sizes: Vec<u64> = names(&dir)
                .iter()
                .filter(|n| layout::is_compiled_module(n))
                .filter_map(|n| file_size(&dir, n))
                .collect();
            (sizes.len() as u64, sizes.iter().sum::<u64>())
        })
        .fold((0, 0), |(c, b), (c2, b2)| (c + c2, b + b2))
}

/// The built modules under `cache`: how many, and their bytes.
fn built_modules(cache: &Dir) -> (u64, u64) {
    let Ok(built) = cache.open_dir_nofollow(BUILT) else {
        return (0, 0);
    };
    let sizes: Vec<u64> = names(&built)
        .iter()
        .filter(|n| layout::is_built_module(n))
        .filter_map(|n| file_size(&built, n))
        .collect();
    (sizes.len() as u64, sizes.iter().sum())
}

/// The size of regular file `name` in `dir`, if it is one.
fn file_size(dir: &Dir, name: &str) -> Option<u64> {
    dir.symlink_metadata(name)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

fn is_file(dir: &Dir, name: &str) -> bool {
    dir.symlink_metadata(name).is_ok_and(|m| m.is_file())
}

/// Removes the files of wask's shape in `dir` (`ours` says which), returning how many
/// of them `counted` says to count; anything else stays (the scan named it).
fn remove_files(
    dir: &Dir,
    shown: &str,
    ours: fn(&str) -> bool,
    counted: fn(&str) -> bool,
    errors: &mut Vec<String>,
) -> u64 {
    let mut removed = 0;
    for name in names(dir) {
        if !(ours(&name) && is_file(dir, &name)) {
            continue;
        }
        match dir.remove_file(&name) {
            Ok(()) => removed += u64::from(counted(&name)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("cannot remove {shown}/{name}: {e}")),
        }
    }
    removed
}

/// Removes every compiled module and wask's temporary files under `compiled/`, then
/// each directory left empty.
fn clear_compiled(cache: &Dir, errors: &mut Vec<String>) -> u64 {
    let Ok(compiled) = cache.open_dir_nofollow(COMPILED) else {
        return 0;
    };
    let mut removed = remove_files(&compiled, COMPILED, layout::is_temporary, |_| false, errors);
    for engine in names(&compiled) {
        if !layout::is_engine_dir(&engine) {
            continue;
        }
        let Ok(dir) = compiled.open_dir_nofollow(&engine) else {
            continue;
        };
        let ours = |n: &str| layout::is_compiled_module(n) || layout::is_temporary(n);
        removed += remove_files(
            &dir,
            &format!("{COMPILED}/{engine}"),
            ours,
            layout::is_compiled_module,
            errors,
        );
        if let Err(e) = remove_if_empty(&compiled, &engine) {
            errors.push(format!("cannot remove {COMPILED}/{engine}: {e}"));
        }
    }
    if let Err(e) = remove_if_empty(cache, COMPILED) {
        errors.push(format!("cannot remove {COMPILED}: {e}"));
    }
    removed
}

/// Removes every built module, build record and temporary file under `built/`, then
/// the directory if that left it empty.
fn clear_built(cache: &Dir, errors: &mut Vec<String>) -> u64 {
    let Ok(built) = cache.open_dir_nofollow(BUILT) else {
        return 0;
    };
    let ours = |n: &str| layout::is_built_file(n) || layout::is_temporary(n);
    let removed = remove_files(&built, BUILT, ours, layout::is_built_module, errors);
    if let Err(e) = remove_if_empty(cache, BUILT) {
        errors.push(format!("cannot remove {BUILT}: {e}"));
    }
    removed
}

/// Removes the directory `name` if it is empty; one still holding something stays.
fn remove_if_empty(dir: &Dir, name: &str) -> io::Result<()> {
    match dir.remove_dir(name) {
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}
