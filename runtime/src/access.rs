//! The access record (SANDBOX-009): which paths a guest tried to open or stat.
//!
//! wasmtime-wasi implements the WASI preview 1 calls internally and gives an embedder
//! no hook around them, but its generated bindings (wiggle, pinned at 48.0.8) emit one
//! `tracing` event with each call's arguments and one with its result. A process-wide
//! subscriber turns those events into raw records on the calling thread (the guest runs
//! synchronously on the thread that called it), and a store call hook, which fires when
//! the host call returns, reads each path out of guest memory and resolves it against
//! the directory descriptor it was relative to. The sandbox test that an undeclared
//! read is named in the report fails if a wasmtime upgrade changes this event format.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber, subscriber::Interest};

/// What a guest tried to do with the paths it named.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// Files and directories the guest opened successfully (workspace-absolute).
    pub opened: BTreeSet<String>,
    /// Paths the guest tried to open, stat or change and was refused or told do not
    /// exist (workspace-absolute), with the WASI error it got.
    pub refused: BTreeSet<(String, String)>,
    /// False when the recorder could not be installed (another global `tracing`
    /// subscriber owns the process); the record is then empty, not complete.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Open,
    Other,
}

#[derive(Debug, Default)]
struct PendingCall {
    fd: Option<u32>,
    path: Option<(u32, u32)>,
    kind: Option<CallKind>,
}

struct RawAccess {
    fd: u32,
    path: (u32, u32),
    kind: CallKind,
    /// `Ok(new fd)` for a successful open, `Ok(None)` for other successes.
    result: Result<Option<u32>, String>,
}

#[derive(Default)]
struct ThreadState {
    active: bool,
    pending: Option<PendingCall>,
    finished: Vec<RawAccess>,
}

thread_local! {
    static STATE: RefCell<ThreadState> = RefCell::new(ThreadState::default());
}

static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs the process-wide recorder once; returns whether it is in place.
pub(crate) fn install() -> bool {
    *INSTALLED.get_or_init(|| tracing::subscriber::set_global_default(Recorder).is_ok())
}

/// Tracks descriptors and turns raw records into paths for one guest run.
pub(crate) struct AccessTracker {
    dirs: HashMap<u32, String>,
    record: AccessRecord,
}

impl AccessTracker {
    /// `preopens` in the order they were given to the WASI context: wasmtime-wasi
    /// numbers them from descriptor 3 on, after stdin, stdout and stderr.
    pub fn new(preopens: impl IntoIterator<Item = String>) -> Self {
        let dirs = preopens
            .into_iter()
            .enumerate()
            .map(|(i, p)| (3 + i as u32, p))
            .collect();
        AccessTracker {
            dirs,
            record: AccessRecord {
                complete: install(),
                ..AccessRecord::default()
            },
        }
    }

    /// Starts recording the calls made on this thread.
    pub fn begin() {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.active = true;
            s.pending = None;
            s.finished.clear();
        });
    }

    /// Stops recording on this thread.
    pub fn end() {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.active = false;
            s.pending = None;
            s.finished.clear();
        });
    }

    /// Resolves the calls finished since the last drain, reading paths from `memory`.
    pub fn drain(&mut self, memory: &[u8]) {
        let raw = STATE.with(|s| std::mem::take(&mut s.borrow_mut().finished));
        for call in raw {
            let (ptr, len) = (call.path.0 as usize, call.path.1 as usize);
            let Some(bytes) = memory.get(ptr..ptr.saturating_add(len)) else {
                continue;
            };
            let relative = String::from_utf8_lossy(bytes);
            let base = self.dirs.get(&call.fd).map(String::as_str).unwrap_or("/?");
            let path = join_lexically(base, &relative);
            match call.result {
                Ok(new_fd) => {
                    if let Some(fd) = new_fd {
                        self.dirs.insert(fd, path.clone());
                    }
                    if call.kind == CallKind::Open {
                        self.record.opened.insert(path);
                    }
                }
                // "Already exists" (a `create_dir_all` on a directory that is there)
                // refuses nothing; everything else is an attempt that failed.
                Err(errno) if errno == "file exists" => {}
                Err(errno) => {
                    self.record.refused.insert((path, errno));
                }
            }
        }
    }

    pub fn finish(self) -> AccessRecord {
        self.record
    }
}

/// Joins a guest-relative path onto a workspace-absolute base, resolving `.` and `..`
/// as text (the guest was refused anything that left its view, so this is only for
/// naming what it asked for).
pub fn join_lexically(base: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = if relative.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|s| !s.is_empty()).collect()
    };
    for seg in relative.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

struct Recorder;

struct FieldVisitor<'a> {
    call: &'a mut PendingCall,
    result: Option<String>,
}

fn parse_fd(text: &str) -> Option<u32> {
    text.strip_prefix("Fd(")?.strip_suffix(')')?.parse().ok()
}

fn parse_guest_ptr(text: &str) -> Option<(u32, u32)> {
    let (ptr, len) = text.strip_prefix("*guest 0x")?.split_once('/')?;
    Some((u32::from_str_radix(ptr, 16).ok()?, len.parse().ok()?))
}

impl Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "fd" | "dirfd" => self.call.fd = parse_fd(&text),
            "path" => self.call.path = parse_guest_ptr(&text),
            "oflags" => self.call.kind = Some(CallKind::Open),
            "result" => self.result = Some(text),
            _ => {}
        }
    }
}

impl Subscriber for Recorder {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_event() && meta.target().starts_with("wasmtime_wasi::p1") {
            Interest::always()
        } else {
            Interest::never()
        }
    }
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event() && meta.target().starts_with("wasmtime_wasi::p1")
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        STATE.with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return;
            };
            if !s.active {
                return;
            }
            let mut call = PendingCall::default();
            let mut visitor = FieldVisitor {
                call: &mut call,
                result: None,
            };
            event.record(&mut visitor);
            let result = visitor.result;
            match result {
                None => {
                    // An arguments event: keep it if the call names a path.
                    s.pending = (call.path.is_some() && call.fd.is_some()).then_some(call);
                }
                Some(result) => {
                    let Some(call) = s.pending.take() else { return };
                    let kind = call.kind.unwrap_or(CallKind::Other);
                    let result = if let Some(ok) = result.strip_prefix("Ok(") {
                        Ok(ok.strip_suffix(')').and_then(parse_fd))
                    } else {
                        Err(errno_name(&result))
                    };
                    s.finished.push(RawAccess {
                        fd: call.fd.unwrap_or(u32::MAX),
                        path: call.path.unwrap_or((0, 0)),
                        kind,
                        result,
                    });
                }
            }
        });
    }
}

/// Pulls the errno name (`Noent`, `Perm`, ...) out of the debug text of a WASI error.
fn errno_name(text: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("Noent", "no such file or directory"),
        ("Perm", "operation not permitted"),
        ("Acces", "permission denied"),
        ("Notcapable", "not capable"),
        ("Rofs", "read-only file system"),
        ("Notdir", "not a directory"),
        ("Isdir", "is a directory"),
        ("Exist", "file exists"),
        ("Loop", "too many symbolic links"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| text.contains(n))
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| "refused".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_relative_paths_onto_their_directory() {
        assert_eq!(join_lexically("/", "docs/a.md"), "/docs/a.md");
        assert_eq!(
            join_lexically("/docs/dist", "x/../y.html"),
            "/docs/dist/y.html"
        );
        assert_eq!(join_lexically("/docs", "../../etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn parses_the_wiggle_argument_formats() {
        assert_eq!(parse_fd("Fd(3)"), Some(3));
        assert_eq!(parse_guest_ptr("*guest 0x1f40/12"), Some((0x1f40, 12)));
    }
}
