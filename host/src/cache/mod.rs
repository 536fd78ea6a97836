//! The local cache (CACHE-010..019).
//!
//! Layout: `<dir>/<first two hex digits of key>/<key>/` holds `manifest.json`, `stdout`,
//! `stderr` and `blobs/<content hash>` (an output stored once however many paths share
//! its bytes). An entry is written into a temporary directory in the same shard and
//! renamed into place only when complete, so readers never see half an entry; a
//! restore verifies every byte before any output is replaced.

pub mod manifest;

use crate::key::{Digest, hash_bytes, hash_file};
use crate::workspace::HashKind;
pub use manifest::{AccessRecord, Manifest, OutputRecord, StreamRecord};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A local cache directory.
pub struct LocalCache {
    dir: PathBuf,
    hash: HashKind,
}

/// A found entry, not yet verified byte for byte.
pub struct Entry {
    pub dir: PathBuf,
    pub manifest: Manifest,
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

/// Why a found entry could not be restored: it is treated as a miss (CACHE-019).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cache entry {entry} is corrupt: {what}; it was removed and the task runs fresh")]
    Corrupt { entry: String, what: String },
    #[error("could not write output {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
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

    /// Looks a key up (CACHE-014): a hit needs a manifest that parses, matches the
    /// revision, hash function and key, and whose files all exist at their recorded
    /// sizes. Anything else is a miss, never an error.
    pub fn lookup(&self, key: &Digest) -> Option<Entry> {
        let dir = self.entry_dir(key);
        let text = fs::read(dir.join("manifest.json")).ok()?;
        let manifest: Manifest = serde_json::from_slice(&text).ok()?;
        if manifest.revision != manifest::MANIFEST_REVISION
            || manifest.hash != self.hash.name()
            || manifest.key != key.hex()
        {
            return None;
        }
        let size_is =
            |p: PathBuf, size: u64| fs::metadata(p).map(|m| m.len() == size).unwrap_or(false);
        let complete = size_is(dir.join("stdout"), manifest.stdout.size)
            && size_is(dir.join("stderr"), manifest.stderr.size)
            && manifest.outputs.iter().all(|o| {
                Digest::from_hex(&o.hash).is_some()
                    && size_is(dir.join("blobs").join(&o.hash), o.size)
            });
        complete.then_some(Entry { dir, manifest })
    }

    /// Removes an entry found corrupt, so a fresh run can store a good one.
    fn discard(&self, entry: &Entry) {
        let parent = entry.dir.parent().unwrap_or(&self.dir);
        if let Ok(grave) = tempfile::Builder::new()
            .prefix(".corrupt-")
            .tempdir_in(parent)
        {
            let target = grave.path().join("entry");
            if fs::rename(&entry.dir, &target).is_ok() {
                return; // `grave` removes it on drop.
            }
        }
        let _ = fs::remove_dir_all(&entry.dir);
    }

    /// Restores an entry (CACHE-019): every output is copied next to its destination
    /// while its hash is checked, and only when all are verified are they renamed into
    /// place. A mismatch anywhere restores nothing, removes the entry and is reported.
    pub fn restore(&self, entry: &Entry, workspace_root: &Path) -> Result<Restored, RestoreError> {
        let corrupt = |what: String| {
            self.discard(entry);
            RestoreError::Corrupt {
                entry: entry.manifest.key.clone(),
                what,
            }
        };
        let read_stream = |name: &str, rec: &StreamRecord| -> Result<Vec<u8>, String> {
            let bytes =
                fs::read(entry.dir.join(name)).map_err(|e| format!("cannot read {name}: {e}"))?;
            if hash_bytes(self.hash, &bytes).hex() != rec.hash {
                return Err(format!("{name} does not match its recorded hash"));
            }
            Ok(bytes)
        };
        let stdout = read_stream("stdout", &entry.manifest.stdout).map_err(corrupt)?;
        let stderr = read_stream("stderr", &entry.manifest.stderr).map_err(corrupt)?;

        let mut staged: Vec<(tempfile::TempPath, PathBuf)> = Vec::new();
        for out in &entry.manifest.outputs {
            let dest = workspace_root.join(out.path.trim_start_matches('/'));
            // Outputs already in place with the right bytes and mode are left alone.
            if unchanged(&dest, out, self.hash) {
                continue;
            }
            let parent =
                safe_parent(workspace_root, &out.path).map_err(|source| RestoreError::Write {
                    path: out.path.clone(),
                    source,
                })?;
            let blob = entry.dir.join("blobs").join(&out.hash);
            let tmp = copy_verified(&blob, &parent, out, self.hash).map_err(|e| match e {
                CopyError::Mismatch => corrupt(format!(
                    "the blob of {} does not match its recorded hash",
                    out.path
                )),
                CopyError::Io(source) => RestoreError::Write {
                    path: out.path.clone(),
                    source,
                },
            })?;
            staged.push((tmp, dest));
        }
        for (tmp, dest) in staged {
            tmp.persist(&dest).map_err(|e| RestoreError::Write {
                path: dest.display().to_string(),
                source: e.error,
            })?;
        }
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
        };
        // The manifest is written last: an entry without one is never a hit.
        write_synced(
            &tmp.path().join("manifest.json"),
            &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
        )?;
        fs::File::open(tmp.path())?.sync_all()?;
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &final_dir) {
            Ok(()) => {
                let _ = fs::File::open(shard).and_then(|d| d.sync_all());
                Ok(())
            }
            Err(_) if final_dir.join("manifest.json").exists() => {
                let _ = fs::remove_dir_all(&tmp_path);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp_path);
                Err(e)
            }
        }
    }

    /// Counts entries and bytes.
    pub fn info(&self) -> CacheInfo {
        let mut info = CacheInfo::default();
        for shard in read_dir_names(&self.dir) {
            let path = self.dir.join(&shard);
            if shard == "compiled" {
                info.compiled_modules = walkdir::WalkDir::new(&path)
                    .into_iter()
                    .flatten()
                    .filter(|e| e.file_type().is_file())
                    .count() as u64;
                continue;
            }
            for entry in read_dir_names(&path) {
                if entry.starts_with(".tmp-") || entry.starts_with(".corrupt-") {
                    info.temporary += 1;
                    continue;
                }
                info.entries += 1;
                info.bytes += walkdir::WalkDir::new(path.join(&entry))
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum::<u64>();
            }
        }
        info
    }

    /// Removes every entry and compiled module.
    pub fn clear(&self) -> std::io::Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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

fn unchanged(dest: &Path, out: &OutputRecord, hash: HashKind) -> bool {
    use std::os::unix::fs::PermissionsExt;
    match fs::symlink_metadata(dest) {
        Ok(m)
            if m.is_file() && m.len() == out.size && m.permissions().mode() & 0o777 == out.mode =>
        {
            hash_file(hash, dest)
                .map(|d| d.hex() == out.hash)
                .unwrap_or(false)
        }
        _ => false,
    }
}

/// Creates the parent directories of a workspace path, refusing to go through a
/// symbolic link: an output is never written outside the workspace by way of a link.
pub fn safe_parent(root: &Path, workspace_path: &str) -> std::io::Result<PathBuf> {
    let mut dir = root.to_path_buf();
    let segments: Vec<&str> = workspace_path.trim_start_matches('/').split('/').collect();
    for seg in &segments[..segments.len().saturating_sub(1)] {
        dir.push(seg);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory (a symbolic link or file); wask does not write through it",
                    dir.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(&dir)?,
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

enum CopyError {
    Mismatch,
    Io(std::io::Error),
}

fn copy_verified(
    blob: &Path,
    dir: &Path,
    out: &OutputRecord,
    hash: HashKind,
) -> Result<tempfile::TempPath, CopyError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut src = fs::File::open(blob).map_err(|_| CopyError::Mismatch)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".wask-restore-")
        .tempfile_in(dir)
        .map_err(CopyError::Io)?;
    let mut h = crate::key::Hasher::new(hash);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = src.read(&mut buf).map_err(CopyError::Io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(CopyError::Io)?;
    }
    if h.finish().hex() != out.hash {
        return Err(CopyError::Mismatch);
    }
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(out.mode))
        .map_err(CopyError::Io)?;
    tmp.as_file().sync_all().map_err(CopyError::Io)?;
    Ok(tmp.into_temp_path())
}
