//! Uploads in the background: a fresh result is stored locally at once, and a few
//! threads send it to the server while the run goes on, skipping blobs the server has.
//! Every byte sent is read back from the local entry and checked against its manifest
//! on the way; the run waits for the uploads at its end, bounded by the timeout.

use super::Inner;
use crate::cache::{LocalCache, ResultStore, manifest};
use crate::key::Digest;
use crate::refs::TaskId;
use crate::signing::CACHE_MANIFEST;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use wask_remote::entry::{RemoteEntry, RemoteFile, action_digest};

/// Uploads at once: enough to hide round trips, few enough for a shared server.
const WORKERS: usize = 4;
/// Blobs up to this size are read into memory and sent in batches.
const SMALL: u64 = 1 << 20;
/// Blobs up to this size, up to this much in all, also go inside an action result
/// where the layout keeps them (HTTP): far below the 4 MiB a reader takes.
const INLINE_EACH: u64 = 64 << 10;
const INLINE_TOTAL: u64 = 1 << 20;

/// What the uploads of a run came to.
#[derive(Debug, Default)]
pub struct UploadReport {
    pub uploaded: usize,
    /// Bytes sent, by task.
    pub bytes_up: BTreeMap<TaskId, u64>,
    /// Each upload that failed or did not finish, with why.
    pub failed: Vec<(TaskId, String)>,
    /// Results not sent at all: the run had stopped asking a failing remote, which it
    /// said once (no line per task).
    pub not_sent: usize,
}

struct Job {
    key: Digest,
    task: TaskId,
    local: LocalCache,
    staging: PathBuf,
}

pub(super) struct Uploader {
    inner: Arc<Inner>,
    timeout: Duration,
    queue: Mutex<Option<SyncSender<Job>>>,
    state: Arc<(Mutex<State>, Condvar)>,
}

#[derive(Default)]
struct State {
    pending: std::collections::BTreeSet<TaskId>,
    report: UploadReport,
    last_start: Option<Instant>,
}

impl Uploader {
    pub(super) fn new(inner: Arc<Inner>, timeout: Duration) -> Uploader {
        Uploader {
            inner,
            timeout,
            queue: Mutex::new(None),
            state: Arc::default(),
        }
    }

    pub(super) fn queue(&self, key: Digest, task: TaskId, local: LocalCache, staging: PathBuf) {
        let mut queue = self.queue.lock().unwrap();
        let sender = queue.get_or_insert_with(|| {
            let (send, receive) = sync_channel::<Job>(WORKERS * 4);
            let receive = Arc::new(Mutex::new(receive));
            for _ in 0..WORKERS {
                let (inner, state, receive) =
                    (self.inner.clone(), self.state.clone(), receive.clone());
                std::thread::spawn(move || work(&inner, &state, &receive));
            }
            send
        });
        self.state.0.lock().unwrap().pending.insert(task.clone());
        let job = Job {
            key,
            task,
            local,
            staging,
        };
        // A full queue makes the run wait: uploads are bounded, not dropped.
        let _ = sender.send(job);
    }

    /// Waits until every queued upload is done, or the timeout has passed since the
    /// last one started.
    pub(super) fn finish(&self) -> UploadReport {
        drop(self.queue.lock().unwrap().take());
        let (lock, done) = &*self.state;
        let mut state = lock.lock().unwrap();
        loop {
            if state.pending.is_empty() {
                break;
            }
            // A cancelled run does not wait: what is not sent is named, not waited for.
            if self.inner.cancel.is_set() {
                let late: Vec<TaskId> = state.pending.iter().cloned().collect();
                for task in late {
                    state
                        .report
                        .failed
                        .push((task, "the run was cancelled".into()));
                }
                state.pending.clear();
                break;
            }
            let since = state.last_start.unwrap_or_else(Instant::now);
            let left = (since + self.timeout).saturating_duration_since(Instant::now());
            if left.is_zero() {
                let late: Vec<TaskId> = state.pending.iter().cloned().collect();
                for task in late {
                    let why = format!("did not finish within {} s", self.timeout.as_secs());
                    state.report.failed.push((task, why));
                }
                state.pending.clear();
                break;
            }
            // Woken by each upload's end, and now and then to notice a cancel.
            let wait = left.min(std::time::Duration::from_millis(50));
            state = done.wait_timeout(state, wait).unwrap().0;
        }
        std::mem::take(&mut state.report)
    }
}

fn work(inner: &Inner, state: &(Mutex<State>, Condvar), receive: &Mutex<Receiver<Job>>) {
    loop {
        let job = match receive.lock().unwrap().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        state.0.lock().unwrap().last_start = Some(Instant::now());
        // None: not sent, the run having stopped asking the remote (and said so once).
        let result = inner.usable().then(|| upload(inner, &job));
        let mut s = state.0.lock().unwrap();
        // Already reported as late: nothing more to say.
        if s.pending.remove(&job.task) {
            match result {
                None => s.report.not_sent += 1,
                Some(Ok(bytes)) => {
                    s.report.uploaded += 1;
                    *s.report.bytes_up.entry(job.task.clone()).or_default() += bytes;
                    inner.stats.bytes_up.fetch_add(bytes, Ordering::Relaxed);
                }
                Some(Err(why)) => s.report.failed.push((job.task.clone(), why)),
            }
        }
        state.1.notify_all();
    }
}

/// A blob to send: in memory, or staged in a file, with its remote digest.
enum Blob {
    Memory(Vec<u8>),
    File(tempfile::TempPath),
}

/// Uploads one local entry; the bytes sent.
fn upload(inner: &Inner, job: &Job) -> Result<u64, String> {
    let fail = |e: wask_remote::RemoteError| {
        inner.failed(&e);
        e.to_string()
    };
    let Some(signer) = &inner.signer else {
        return Err("no signing key".into());
    };
    let entry = match job.local.lookup(&job.key) {
        Ok(Some(entry)) => entry,
        _ => return Err("its local entry is gone".into()),
    };
    let caps = inner.capabilities().map_err(|e| e.to_string())?;
    let function = caps.digest;
    let m = &entry.manifest;
    let mut blobs: Vec<(wask_remote::Digest, Blob)> = Vec::new();
    let mut files = Vec::new();
    for o in &m.outputs {
        let (digest, blob) = read_checked(
            inner,
            entry.open_file(&format!("blobs/{}", o.hash)),
            &o.hash,
            o.size,
            function,
            &job.staging,
        )?;
        files.push(RemoteFile {
            path: o.path.clone(),
            digest: digest.clone(),
        });
        blobs.push((digest, blob));
    }
    let mut streams = Vec::new();
    for (name, record) in [("stdout", &m.stdout), ("stderr", &m.stderr)] {
        let (digest, blob) = read_checked(
            inner,
            entry.open_file(name),
            &record.hash,
            record.size,
            function,
            &job.staging,
        )?;
        streams.push(digest.clone());
        blobs.push((digest, blob));
    }
    let payload = manifest::encode(m, inner.hash);
    let seal = serde_json::to_vec(&signer.envelope(CACHE_MANIFEST, &payload)).expect("JSON");
    let seal_digest = wask_remote::Digest::of(function, &seal);
    blobs.push((seal_digest.clone(), Blob::Memory(seal)));
    // Where the layout stores action results as they come (HTTP), small blobs go in
    // the result too, so a reader's hit is one request. They are stored by digest as
    // well, for readers that look there.
    let mut inline = std::collections::BTreeMap::new();
    if caps.inline_in_results {
        let mut room = INLINE_TOTAL;
        for (digest, blob) in &blobs {
            if let Blob::Memory(bytes) = blob
                && digest.size > 0
                && digest.size <= INLINE_EACH
                && digest.size <= room
                && !inline.contains_key(digest)
            {
                room -= digest.size;
                inline.insert(digest.clone(), bytes.clone());
            }
        }
    }
    let remote = RemoteEntry {
        files,
        stdout: streams[0].clone(),
        stderr: streams[1].clone(),
        seal: seal_digest,
        inline,
    };
    // The empty blob is never sent: every server has it.
    let mut all: Vec<wask_remote::Digest> = blobs
        .iter()
        .map(|(d, _)| d.clone())
        .filter(|d| d.size > 0)
        .collect();
    all.sort();
    all.dedup();
    let count = |n: u64| inner.stats.requests.fetch_add(n, Ordering::Relaxed);
    count(1);
    let missing = inner.store.find_missing(&all).map_err(fail)?;
    let mut sent = 0u64;
    // Small blobs in one call (batched where the protocol can), large ones streamed.
    let mut batch = Vec::new();
    for digest in &missing {
        let Some((_, blob)) = blobs.iter().find(|(d, _)| d == digest) else {
            continue;
        };
        match blob {
            Blob::Memory(bytes) => batch.push((digest.clone(), bytes.clone())),
            Blob::File(path) => {
                count(1);
                inner.store.write_blob(digest, path).map_err(fail)?;
            }
        }
        sent += digest.size;
    }
    if !batch.is_empty() {
        // One request where batches exist, one a blob where they do not.
        count(if caps.max_batch_bytes > 0 {
            1
        } else {
            batch.len() as u64
        });
        inner.store.write_small_blobs(&batch).map_err(fail)?;
    }
    let action = action_digest(function, inner.hash.name(), &job.key.hex());
    count(1);
    inner
        .store
        .update_action_result(&action, &remote.to_action_result())
        .map_err(fail)?;
    Ok(sent)
}

/// Reads one file of a local entry, checking it against the manifest's `hash` and
/// `size` as it goes; its remote digest, and its bytes (in memory when small, else
/// staged in a file of `staging`).
fn read_checked(
    inner: &Inner,
    file: std::io::Result<cap_std::fs::File>,
    hash: &str,
    size: u64,
    function: wask_remote::DigestFunction,
    staging: &Path,
) -> Result<(wask_remote::Digest, Blob), String> {
    let bad = |e: std::io::Error| format!("cannot read its local entry: {e}");
    let mut file = file.map_err(bad)?.into_std().take(size + 1);
    let mut local = crate::key::Hasher::new(inner.hash);
    let mut remote = function.hasher();
    let mut kept: Option<Vec<u8>> = (size <= SMALL).then(Vec::new);
    let mut staged = if size > SMALL {
        Some(tempfile::NamedTempFile::new_in(staging).map_err(bad)?)
    } else {
        None
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(bad)?;
        if n == 0 {
            break;
        }
        let piece = &buf[..n];
        local.update(piece);
        remote.update(piece);
        total += n as u64;
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(piece);
        }
        if let Some(s) = staged.as_mut() {
            std::io::Write::write_all(s, piece).map_err(bad)?;
        }
    }
    if total != size || local.finish().hex() != hash {
        return Err("its local entry does not match its manifest (it is not uploaded)".into());
    }
    let digest = wask_remote::Digest {
        hash: remote.finish(),
        size,
    };
    let blob = match (kept, staged) {
        (Some(bytes), _) => Blob::Memory(bytes),
        (None, Some(file)) => Blob::File(file.into_temp_path()),
        (None, None) => unreachable!("one of the two is kept"),
    };
    Ok((digest, blob))
}
