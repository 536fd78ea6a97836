//! A remote lookup: the action result, its seal, the trust check, then every blob,
//! each checked twice (against the digest the server names it by, and against the
//! signed manifest), into the local cache.

use super::Inner;
use crate::cache::manifest::{self, Manifest};
use crate::cache::{Contents, LocalCache, NewEntry, ProducedOutput, ResultStore};
use crate::key::{Digest, hash_reader};
use crate::signing::{CACHE_MANIFEST, Envelope, verified_payload};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use wask_remote::entry::{RemoteEntry, action_digest};
use wask_remote::{RemoteError, fetch_blob};

/// A seal is a few kilobytes: a cap so a hostile server cannot make it large.
const MAX_SEAL: u64 = 1 << 20;

/// How many bytes of one entry's outputs are downloaded into memory rather than into
/// staged files: REAPI's usual batch limit.
const IN_MEMORY: u64 = 4 << 20;

/// What a remote lookup gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A trusted entry, now in the local cache; the bytes downloaded.
    Stored { bytes: u64 },
    /// No entry there, or none to believe, or no server to ask.
    Miss,
}

/// Why a remote entry was not taken.
enum NotTaken {
    /// The server failed: counts towards giving up.
    Server(RemoteError),
    /// The entry is not one to believe or to use: said each time, with why.
    Refused(String),
    /// Nothing to say (not there).
    Absent,
}

impl From<RemoteError> for NotTaken {
    fn from(e: RemoteError) -> Self {
        match e {
            // Bytes that are not what they claim are the entry's fault, not a sign
            // the server is down.
            RemoteError::WrongBytes { .. } => NotTaken::Refused(e.to_string()),
            // The run was cancelled: nothing to say, nothing counted.
            RemoteError::Cancelled => NotTaken::Absent,
            e => NotTaken::Server(e),
        }
    }
}

pub(super) fn fetch(
    inner: &Inner,
    key: &Digest,
    limits: &wask_runtime::Limits,
    local: &LocalCache,
    staging: &Path,
    warn: &dyn Fn(&str),
) -> Fetched {
    if !inner.read || !inner.usable() {
        return Fetched::Miss;
    }
    let asked = std::time::Instant::now();
    let taken = take(inner, key, limits, local, staging);
    // A server that takes half the timeout to say it has nothing is failing too: else
    // each miss could cost a timeout, and the run would never stop asking.
    let taken = match taken {
        Err(NotTaken::Absent) if asked.elapsed() > inner.timeout / 2 && !inner.cancel.is_set() => {
            Err(NotTaken::Server(RemoteError::Timeout {
                url: inner.store.url().into(),
                seconds: inner.timeout.as_secs() / 2,
            }))
        }
        other => other,
    };
    match taken {
        Ok(bytes) => {
            inner.stats.hits.fetch_add(1, Ordering::Relaxed);
            inner.stats.bytes_down.fetch_add(bytes, Ordering::Relaxed);
            Fetched::Stored { bytes }
        }
        Err(NotTaken::Absent) => Fetched::Miss,
        Err(NotTaken::Refused(why)) => {
            warn(&format!(
                "the remote cache's entry for this task was not used: {}; the task runs fresh",
                super::printable(&why)
            ));
            Fetched::Miss
        }
        Err(NotTaken::Server(e)) => {
            if let Some(message) = inner.failed(&e) {
                warn(&message);
            }
            Fetched::Miss
        }
    }
}

/// The bytes downloaded for a trusted entry, now stored in `local`.
fn take(
    inner: &Inner,
    key: &Digest,
    limits: &wask_runtime::Limits,
    local: &LocalCache,
    staging: &Path,
) -> Result<u64, NotTaken> {
    let caps = inner.capabilities().map_err(NotTaken::Server)?;
    let function = caps.digest;
    let action = action_digest(function, inner.hash.name(), &key.hex());
    // One entry's requests together get one timeout: a server that answers each just
    // in time is as slow as one that does not answer, and counts as failing.
    let deadline = std::time::Instant::now() + inner.timeout;
    // Before a request and after each: past the deadline (a request that ended after
    // it included) is a failure, and a cancelled run asks nothing more.
    let in_time = || -> Result<(), NotTaken> {
        if inner.cancel.is_set() {
            return Err(NotTaken::Absent);
        }
        if std::time::Instant::now() > deadline {
            return Err(NotTaken::Server(RemoteError::Timeout {
                url: inner.store.url().into(),
                seconds: inner.timeout.as_secs(),
            }));
        }
        Ok(())
    };
    let count = |n: u64| -> Result<(), NotTaken> {
        in_time()?;
        inner.stats.requests.fetch_add(n, Ordering::Relaxed);
        Ok(())
    };
    count(1)?;
    let result = inner.store.get_action_result(&action);
    in_time()?;
    let Some(result) = result? else {
        return Err(NotTaken::Absent);
    };
    let entry = RemoteEntry::from_action_result(&result)
        .map_err(|why| NotTaken::Refused(format!("it is not an entry of wask's layout: {why}")))?;
    if entry.seal.size > MAX_SEAL {
        return Err(NotTaken::Refused(format!(
            "its seal is {} bytes",
            entry.seal.size
        )));
    }
    // The seal, the streams and the outputs that fit come in one batch (REAPI): two
    // requests for a small entry. Nothing of it is used before the seal is checked.
    let mut wanted: Vec<wask_remote::Digest> = entry
        .blobs()
        .into_iter()
        .filter(|d| d.size > 0 && !entry.inline.contains_key(d))
        .collect();
    let mut room = caps.max_batch_bytes;
    wanted.retain(|d| {
        let cost = d.size + 256;
        let fits = cost <= room;
        if fits {
            room -= cost;
        }
        fits
    });
    let batch = if wanted.is_empty() {
        Vec::new()
    } else {
        count(1)?;
        let read = inner.store.read_small_blobs(&wanted);
        in_time()?;
        read?
    };
    // Bytes the result carried or the batch brought (`Some(None)`: the batch had none).
    let batched = |d: &wask_remote::Digest| match entry.inline.get(d) {
        Some(bytes) => Some(Some(bytes.clone())),
        None => wanted.iter().position(|w| w == d).map(|i| batch[i].clone()),
    };
    let got = |d: &wask_remote::Digest| -> Result<Vec<u8>, NotTaken> {
        // The empty blob is never asked for (servers need not store it).
        let bytes = match batched(d) {
            _ if d.size == 0 => Some(Vec::new()),
            Some(bytes) => bytes,
            None => {
                count(1)?;
                let mut bytes = Vec::new();
                let found = fetch_blob(&*inner.store, function, d, &mut bytes);
                in_time()?;
                found?.then_some(bytes)
            }
        };
        let bytes =
            bytes.ok_or_else(|| NotTaken::Refused(format!("the server lacks its blob {d}")))?;
        wask_remote::check_blob(&*inner.store, function, d, &bytes)?;
        Ok(bytes)
    };
    let seal = got(&entry.seal)?;
    let (manifest, signer) = trusted_manifest(inner, key, &seal)?;
    if let Some(why) = crate::cache::unfit(&manifest, limits) {
        return Err(NotTaken::Refused(format!(
            "it does not fit this task's limits: {why}"
        )));
    }
    let files = matching_files(&entry, &manifest)?;
    matching_streams(&entry, &manifest)?;
    let mut bytes = seal.len() as u64;
    let stdout = got(&entry.stdout)?;
    let stderr = got(&entry.stderr)?;
    for (bytes, recorded) in [(&stdout, &manifest.stdout), (&stderr, &manifest.stderr)] {
        let digest = crate::key::hash_bytes(inner.hash, bytes);
        if bytes.len() as u64 != recorded.size || digest.hex() != recorded.hash {
            return Err(NotTaken::Refused(
                "a stream is not what its signed manifest records".into(),
            ));
        }
    }
    bytes += (stdout.len() + stderr.len()) as u64;
    // Outputs come into memory while they fit a budget (sizes are the signed ones,
    // checked above), the rest into staged files: a small entry then costs no file to
    // make and delete before it is stored.
    let mut in_memory = IN_MEMORY;
    let mut staged_dir = None;
    let mut outputs = Vec::new();
    for (i, (record, remote)) in files.into_iter().enumerate() {
        if remote.size == 0 && remote != wask_remote::Digest::of(function, &[]) {
            return Err(NotTaken::Refused(format!(
                "the digest of {} is not the empty blob's",
                record.path
            )));
        }
        let lacks = || NotTaken::Refused(format!("the server lacks the blob of {}", record.path));
        let contents = if remote.size <= in_memory {
            in_memory -= remote.size;
            let bytes = match batched(&remote) {
                _ if remote.size == 0 => Vec::new(),
                Some(Some(bytes)) => bytes,
                Some(None) => return Err(lacks()),
                None => {
                    count(1)?;
                    let mut bytes = Vec::new();
                    let found = fetch_blob(&*inner.store, function, &remote, &mut bytes);
                    in_time()?;
                    if !found? {
                        return Err(lacks());
                    }
                    bytes
                }
            };
            wask_remote::check_blob(&*inner.store, function, &remote, &bytes)?;
            Contents::Memory(bytes)
        } else {
            let dir = match &mut staged_dir {
                Some(dir) => dir,
                None => staged_dir.insert(
                    tempfile::Builder::new()
                        .prefix(".wask-remote-")
                        .tempdir_in(staging)
                        .map_err(|e| {
                            NotTaken::Refused(format!(
                                "cannot stage its files in {}: {e}",
                                staging.display()
                            ))
                        })?,
                ),
            };
            let path = dir.path().join(i.to_string());
            let mut file = std::fs::File::create(&path)
                .map_err(|e| NotTaken::Refused(format!("cannot stage {}: {e}", record.path)))?;
            count(1)?;
            let found = fetch_blob(&*inner.store, function, &remote, &mut file);
            in_time()?;
            if !found? {
                return Err(lacks());
            }
            file.flush().map_err(|e| NotTaken::Refused(e.to_string()))?;
            Contents::File(path)
        };
        let local_digest = contents
            .reader()
            .and_then(|mut r| hash_reader(inner.hash, &mut r))
            .map_err(|e| NotTaken::Refused(e.to_string()))?;
        if local_digest.hex() != record.hash {
            return Err(NotTaken::Refused(format!(
                "{} is not what its signed manifest records",
                record.path
            )));
        }
        bytes += record.size;
        outputs.push(ProducedOutput {
            path: record.path.clone(),
            contents,
            hash: local_digest,
            size: record.size,
            mode: record.mode,
        });
    }
    // Nothing is stored after the run was cancelled.
    in_time()?;
    let order = manifest::write_order(&manifest);
    local
        .store(
            key,
            &NewEntry {
                outputs: &outputs,
                stdout: &stdout,
                stderr: &stderr,
                // Informational, for `wask why`: where this local copy came from.
                stored_by: &format!(
                    "{} (downloaded from {}, signed by key {})",
                    manifest.stored_by,
                    inner.store.url(),
                    signer.keyid()
                ),
                access: manifest.access.clone(),
                memory: manifest.memory,
                write_order: &order,
                durable: false,
            },
        )
        .map_err(|e| NotTaken::Refused(format!("cannot store it in the local cache: {e}")))?;
    Ok(bytes)
}

/// What the server holds for `key`, without downloading the result: `Ok(Some(signer))`
/// for an entry a trusted key signed, `Ok(None)` for none, `Err` for one that would not
/// be used (and why), or for a server that cannot be asked.
pub(super) fn probe(inner: &Inner, key: &Digest) -> Result<Option<String>, String> {
    let caps = inner.capabilities().map_err(|e| e.to_string())?;
    let action = action_digest(caps.digest, inner.hash.name(), &key.hex());
    let result = inner
        .store
        .get_action_result(&action)
        .map_err(|e| e.to_string())?;
    let Some(result) = result else {
        return Ok(None);
    };
    let entry = RemoteEntry::from_action_result(&result)
        .map_err(|why| format!("an entry not of wask's layout: {why}"))?;
    let mut seal = Vec::new();
    if entry.seal.size > MAX_SEAL
        || !fetch_blob(&*inner.store, caps.digest, &entry.seal, &mut seal)
            .map_err(|e| e.to_string())?
    {
        return Err("an entry whose seal is missing".into());
    }
    let envelope: Envelope =
        serde_json::from_slice(&seal).map_err(|e| format!("a seal that is not one: {e}"))?;
    let (_, signer) = verified_payload(&envelope, CACHE_MANIFEST, &inner.trusted)
        .map_err(|why| format!("an entry that would not be used: {why}"))?;
    let words = |e: NotTaken| match e {
        NotTaken::Refused(why) => why,
        NotTaken::Server(e) => e.to_string(),
        NotTaken::Absent => "an entry of another revision".into(),
    };
    let (m, _) = trusted_manifest(inner, key, &seal).map_err(words)?;
    matching_files(&entry, &m).map_err(words)?;
    matching_streams(&entry, &m).map_err(words)?;
    Ok(Some(signer.keyid()))
}

/// The manifest the seal signs, if a trusted key signed it and it is the entry of
/// `key`.
fn trusted_manifest(
    inner: &Inner,
    key: &Digest,
    seal: &[u8],
) -> Result<(Manifest, crate::signing::PublicKey), NotTaken> {
    let envelope: Envelope = serde_json::from_slice(seal)
        .map_err(|e| NotTaken::Refused(format!("its seal is not a DSSE envelope: {e}")))?;
    let (payload, signer) = verified_payload(&envelope, CACHE_MANIFEST, &inner.trusted)
        .map_err(|why| NotTaken::Refused(format!("its seal is not to be trusted: {why}")))?;
    let m = manifest::decode(&payload)
        .map_err(|why| NotTaken::Refused(format!("its signed manifest is not one: {why}")))?;
    if m.revision != manifest::MANIFEST_REVISION || m.hash != inner.hash.name() {
        return Err(NotTaken::Absent);
    }
    if m.key != key.hex() {
        return Err(NotTaken::Refused(format!(
            "it is signed for another key ({})",
            m.key
        )));
    }
    Ok((m, signer))
}

/// The entry's streams must have the signed sizes: checked before a byte of them is
/// downloaded, so a server cannot make a reader take a stream of any size it likes.
fn matching_streams(entry: &RemoteEntry, m: &Manifest) -> Result<(), NotTaken> {
    if entry.stdout.size != m.stdout.size || entry.stderr.size != m.stderr.size {
        return Err(NotTaken::Refused(
            "its streams have other sizes than its signed manifest records".into(),
        ));
    }
    Ok(())
}

/// Each output the manifest records, with the remote digest the entry names its blob
/// by: the entry must list exactly the manifest's outputs.
fn matching_files<'m>(
    entry: &RemoteEntry,
    m: &'m Manifest,
) -> Result<Vec<(&'m crate::cache::OutputRecord, wask_remote::Digest)>, NotTaken> {
    let mut out = Vec::new();
    if entry.files.len() != m.outputs.len() {
        return Err(NotTaken::Refused(
            "it lists other outputs than its signed manifest".into(),
        ));
    }
    for record in &m.outputs {
        let remote = entry
            .files
            .iter()
            .find(|f| f.path == record.path)
            .ok_or_else(|| NotTaken::Refused(format!("it does not list {}", record.path)))?;
        if remote.digest.size != record.size {
            return Err(NotTaken::Refused(format!(
                "it gives {} another size than its signed manifest",
                record.path
            )));
        }
        out.push((record, remote.digest.clone()));
    }
    Ok(out)
}
