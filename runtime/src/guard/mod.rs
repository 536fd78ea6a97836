//! The policy layer over WASI preview 1: the calls whose plain behaviour would let a
//! guest outlast its limits, observe the host, or write without bound.
//!
//! wasmtime-wasi implements every call; wask adds its rules around a few of them by
//! shadowing them in the linker with functions that call wasmtime-wasi's own
//! implementation (the generated `wasi_snapshot_preview1` ABI functions and trait) and
//! look at the typed arguments and results:
//!
//! | call | rule |
//! |---|---|
//! | `poll_oneoff` (a sleep) | ends at the deadline and on cancel; virtual under the fixed clock ([`poll`]) |
//! | `fd_filestat_get`, `path_filestat_get`, `fd_readdir` | metadata and listing order are a function of the key ([`meta`]) |
//! | `fd_write`, `fd_pwrite`, `fd_filestat_set_size`, `path_link` | bytes added to files count against `outputs_size` ([`budget`]) |
//! | `path_open` (creating), `path_create_directory`, `path_symlink`, `path_link` | entries count against `outputs_count` |
//! | `path_open`, `fd_close`, `fd_renumber` | at most [`budget::MAX_OPEN_FILES`] open descriptors |
//! | every call that names a path | the access record (SANDBOX-009, [`crate::access`]) |
//!
//! Path resolution, permissions and every other call stay wasmtime-wasi's: this layer
//! only ever refuses or observes, it never opens anything itself.

pub(crate) mod budget;
mod fds;
mod meta;
mod paths;
mod time;
mod writes;

use crate::access::AccessTracker;
use crate::determinism::VirtualClock;
use crate::sandbox::TaskState;
use budget::{Budget, LimitExceeded};
use meta::MetaView;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{AsContextMut, Caller, Extern, Linker, Trap};
use wasmtime_wasi::p1::types::Errno;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wiggle::{GuestMemory, GuestPtr};

const MODULE: &str = "wasi_snapshot_preview1";

/// How often a host-clock sleep looks at the deadline and the cancel flag.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

/// When the guest must stop: its deadline, and the sandbox's cancel flag (EXEC-012).
pub(crate) struct Stop {
    pub deadline: Instant,
    pub cancelled: Arc<AtomicBool>,
}

impl Stop {
    /// Sleeps for `duration`, stopping the guest (a trap that the sandbox reports as
    /// the timeout, or as cancelled) when the deadline passes or the run is cancelled.
    pub fn sleep(&self, duration: Duration) -> Result<(), Trap> {
        let until = Instant::now().checked_add(duration);
        loop {
            let now = Instant::now();
            if self.cancelled.load(Ordering::Relaxed) || now >= self.deadline {
                return Err(Trap::Interrupt);
            }
            let Some(until) = until.filter(|u| *u > now) else {
                return Ok(());
            };
            std::thread::sleep(
                until
                    .min(self.deadline)
                    .saturating_duration_since(now)
                    .min(SLEEP_SLICE),
            );
        }
    }
}

/// The guest's clocks as this layer needs them.
pub(crate) enum Time {
    /// `clock = "fixed"`: the wall clock at `wall_ns`, the virtual monotonic `clock`.
    Fixed {
        wall_ns: u64,
        clock: VirtualClock,
    },
    Host,
}

/// Per-run state of the policy layer.
pub(crate) struct Guard {
    pub access: AccessTracker,
    budget: Budget,
    meta: MetaView,
    time: Time,
    stop: Stop,
}

impl Guard {
    pub fn new(
        access: AccessTracker,
        max_bytes: u64,
        max_entries: u64,
        time: Time,
        stop: Stop,
    ) -> Self {
        let fixed = match &time {
            Time::Fixed { wall_ns, .. } => Some(*wall_ns),
            Time::Host => None,
        };
        Guard {
            access,
            budget: Budget::new(max_bytes, max_entries),
            meta: MetaView::new(fixed),
            time,
            stop,
        }
    }
}

/// Runs `f` with the guest's memory and the task state, as wiggle's generated glue does
/// for every call (the same memory export, the same host-call fuel).
fn enter<R>(
    caller: &mut Caller<'_, TaskState>,
    f: impl FnOnce(&mut GuestMemory<'_>, &mut TaskState) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let fuel = caller.as_context_mut().hostcall_fuel();
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        wasmtime::bail!("missing required memory export");
    };
    let (bytes, state) = memory.data_and_store_mut(caller);
    state.wasi.set_hostcall_fuel(fuel);
    f(&mut GuestMemory::Unshared(bytes), state)
}

/// wasmtime-wasi's calls are async; with blocking allowed they complete at once.
fn block<F: std::future::Future>(f: F) -> F::Output {
    wasmtime_wasi::runtime::in_tokio(f)
}

/// A limit passed: stops the guest; the sandbox reports the limit.
fn stop(e: LimitExceeded) -> wasmtime::Error {
    wasmtime::Error::new(e)
}

fn errno_of(code: i32) -> Option<Errno> {
    u16::try_from(code)
        .ok()
        .and_then(|c| Errno::try_from(c).ok())
}

/// The path argument of a call, for the record (at most one byte over the longest path
/// kept, which tells the record it is too long).
fn path_bytes(mem: &GuestMemory<'_>, ptr: i32, len: i32) -> Vec<u8> {
    let len = (len as u32).min(crate::paths::MAX_PATH_BYTES as u32 + 1);
    mem.as_cow(GuestPtr::<[u8]>::new((ptr as u32, len)))
        .map(|c| c.into_owned())
        .unwrap_or_default()
}

/// Records a path call's result: a refusal goes into the record, any success may have
/// changed a directory.
fn after_path_call(st: &mut TaskState, dirfd: i32, path: &[u8], code: i32) {
    if code == 0 {
        st.guard.meta.invalidate();
    } else if let Some(errno) = errno_of(code) {
        st.guard.access.refused(dirfd as u32, path, errno);
    }
}

/// Shadows the calls of the table above in `linker`, which already holds wasmtime-wasi.
pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    time::add(linker)?;
    meta::add(linker)?;
    writes::add(linker)?;
    paths::add(linker)?;
    fds::add(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}
