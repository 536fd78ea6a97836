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
mod meta;
mod poll;

use crate::access::AccessTracker;
use crate::determinism::VirtualClock;
use crate::sandbox::TaskState;
use budget::{Budget, LimitExceeded, MAX_OPEN_FILES};
use meta::MetaView;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{AsContextMut, Caller, Extern, Linker, Trap};
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as abi, WasiSnapshotPreview1};
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

/// The size of the file open at `fd`, straight from wasmtime-wasi (not the guest's view).
fn size_of(st: &mut TaskState, mem: &mut GuestMemory<'_>, fd: i32) -> Option<u64> {
    block(st.wasi.fd_filestat_get(mem, types::Fd::from(fd as u32)))
        .ok()
        .filter(|s| s.filetype == types::Filetype::RegularFile)
        .map(|s| s.size)
}

/// The size of the regular file at `path` from `dirfd`, without following a link.
fn size_at(
    st: &mut TaskState,
    mem: &mut GuestMemory<'_>,
    dirfd: i32,
    path: i32,
    len: i32,
) -> Option<u64> {
    let ptr = GuestPtr::<str>::new((path as u32, len as u32));
    block(st.wasi.path_filestat_get(
        mem,
        types::Fd::from(dirfd as u32),
        types::Lookupflags::empty(),
        ptr,
    ))
    .ok()
    .filter(|s| s.filetype == types::Filetype::RegularFile)
    .map(|s| s.size)
}

/// Whether anything exists at `path` from `dirfd` (a link included).
fn exists_at(
    st: &mut TaskState,
    mem: &mut GuestMemory<'_>,
    dirfd: i32,
    path: i32,
    len: i32,
) -> bool {
    let ptr = GuestPtr::<str>::new((path as u32, len as u32));
    block(st.wasi.path_filestat_get(
        mem,
        types::Fd::from(dirfd as u32),
        types::Lookupflags::empty(),
        ptr,
    ))
    .is_ok()
}

/// Shadows the calls of the table above in `linker`, which already holds wasmtime-wasi.
pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    add_time(linker)?;
    add_metadata(linker)?;
    add_writes(linker)?;
    add_paths(linker)?;
    add_descriptors(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn add_time(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut c: Caller<'_, TaskState>, subs: i32, events: i32, n: i32, nevents: i32| {
            enter(&mut c, |mem, st| {
                let now = match &st.guard.time {
                    Time::Fixed { wall_ns, clock } => poll::Now::Fixed {
                        clock: clock.clone(),
                        wall_ns: *wall_ns,
                    },
                    Time::Host => {
                        let mut read = |id| st.wasi.clock_time_get(mem, id, 1).unwrap_or(0);
                        poll::Now::Host {
                            monotonic_ns: read(types::Clockid::Monotonic),
                            wall_ns: read(types::Clockid::Realtime),
                        }
                    }
                };
                let (s, e, k, out) = (subs as u32, events as u32, n as u32, nevents as u32);
                match poll::sleep(mem, now, &st.guard.stop, s, e, k, out)? {
                    Some(code) => Ok(code),
                    None => block(abi::poll_oneoff(
                        &mut st.wasi,
                        mem,
                        subs,
                        events,
                        n,
                        nevents,
                    )),
                }
            })
        },
    )?;
    Ok(())
}

fn add_metadata(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_filestat_get",
        |mut c: Caller<'_, TaskState>, fd: i32, buf: i32| {
            enter(&mut c, |mem, st| {
                let code = block(abi::fd_filestat_get(&mut st.wasi, mem, fd, buf))?;
                if code == 0 {
                    patch_filestat(mem, st, buf)?;
                }
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_filestat_get",
        |mut c: Caller<'_, TaskState>, fd: i32, flags: i32, path: i32, len: i32, buf: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, path, len);
                let code = block(abi::path_filestat_get(
                    &mut st.wasi,
                    mem,
                    fd,
                    flags,
                    path,
                    len,
                    buf,
                ))?;
                if code == 0 {
                    patch_filestat(mem, st, buf)?;
                } else if let Some(errno) = errno_of(code) {
                    st.guard.access.refused(fd as u32, &name, errno);
                }
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_readdir",
        |mut c: Caller<'_, TaskState>, fd: i32, buf: i32, len: i32, cookie: i64, used: i32| {
            enter(&mut c, |mem, st| {
                let TaskState { wasi, guard, .. } = st;
                let listed = guard
                    .meta
                    .listing(fd as u32, cookie == 0, || read_whole_dir(wasi, fd as u32));
                let entries = match listed {
                    Ok(entries) => entries,
                    Err(Ok(errno)) => return Ok(errno as i32),
                    Err(Err(trap)) => return Err(trap),
                };
                let bytes = meta::render(entries, cookie as u64, len as u32 as usize);
                let dest = GuestPtr::<[u8]>::new((buf as u32, bytes.len() as u32));
                if mem.copy_from_slice(&bytes, dest).is_err() {
                    return Ok(Errno::Fault as i32);
                }
                mem.write(GuestPtr::<u32>::new(used as u32), bytes.len() as u32)?;
                Ok(Errno::Success as i32)
            })
        },
    )?;
    Ok(())
}

/// Rewrites the `filestat` wasmtime-wasi wrote at `buf` into the guest's view.
fn patch_filestat(mem: &mut GuestMemory<'_>, st: &mut TaskState, buf: i32) -> wasmtime::Result<()> {
    let ptr = GuestPtr::<types::Filestat>::new(buf as u32);
    let host = mem.read(ptr)?;
    mem.write(ptr, st.guard.meta.filestat(host))?;
    Ok(())
}

/// Every entry of directory `fd`, as wasmtime-wasi lists them: read into a buffer of the
/// host's (the trait takes any memory), page by page. `Err(Ok(errno))` is the guest's
/// error, `Err(Err(trap))` a trap.
fn read_whole_dir(
    wasi: &mut wasmtime_wasi::p1::WasiP1Ctx,
    fd: u32,
) -> Result<Vec<meta::DirEntry>, Result<Errno, wasmtime::Error>> {
    let mut buf = vec![0u8; 64 << 10];
    let mut cookie = 0u64;
    let mut all = Vec::new();
    loop {
        let len = buf.len() as u32;
        let mut scratch = GuestMemory::Unshared(&mut buf);
        let used = match block(wasi.fd_readdir(
            &mut scratch,
            types::Fd::from(fd),
            GuestPtr::new(0),
            len,
            cookie,
        )) {
            Ok(n) => n as usize,
            Err(e) => return Err(e.downcast()),
        };
        let page = meta::parse_dirents(&buf[..used]);
        let full = used == buf.len();
        match page.last() {
            Some((next, _)) => cookie = *next,
            // Not even one entry fits: a name this long cannot be, but double and retry.
            None if full => {
                buf.resize(buf.len() * 2, 0);
                continue;
            }
            None => {}
        }
        all.extend(page.into_iter().map(|(_, e)| e));
        if !full {
            return Ok(all);
        }
    }
}

fn add_writes(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller<'_, TaskState>, fd: i32, iovs: i32, n: i32, written: i32| {
            enter(&mut c, |mem, st| {
                // stdout and stderr have their own cap (`limits.output`).
                if (0..=2).contains(&fd) {
                    return block(abi::fd_write(&mut st.wasi, mem, fd, iovs, n, written));
                }
                let before = size_of(st, mem, fd);
                let code = block(abi::fd_write(&mut st.wasi, mem, fd, iovs, n, written))?;
                count_growth(st, mem, fd, before)?;
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_pwrite",
        |mut c: Caller<'_, TaskState>, fd: i32, iovs: i32, n: i32, offset: i64, written: i32| {
            enter(&mut c, |mem, st| {
                let before = size_of(st, mem, fd);
                let code = block(abi::fd_pwrite(
                    &mut st.wasi,
                    mem,
                    fd,
                    iovs,
                    n,
                    offset,
                    written,
                ))?;
                count_growth(st, mem, fd, before)?;
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_set_size",
        |mut c: Caller<'_, TaskState>, fd: i32, size: i64| {
            enter(&mut c, |mem, st| {
                let before = size_of(st, mem, fd);
                if let Some(before) = before {
                    // Known in advance: a sparse terabyte is refused before it exists.
                    st.guard
                        .budget
                        .may_grow((size as u64).saturating_sub(before))
                        .map_err(stop)?;
                }
                let code = block(abi::fd_filestat_set_size(&mut st.wasi, mem, fd, size))?;
                count_growth(st, mem, fd, before)?;
                Ok(code)
            })
        },
    )?;
    Ok(())
}

/// Counts how much the file at `fd` grew since it was `before` bytes.
fn count_growth(
    st: &mut TaskState,
    mem: &mut GuestMemory<'_>,
    fd: i32,
    before: Option<u64>,
) -> wasmtime::Result<()> {
    if let (Some(before), Some(after)) = (before, size_of(st, mem, fd)) {
        st.guard.budget.grew(before, after).map_err(stop)?;
    }
    Ok(())
}

fn add_paths(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.func_wrap(
        MODULE,
        "path_open",
        |mut c: Caller<'_, TaskState>,
         fd: i32,
         dirflags: i32,
         path: i32,
         len: i32,
         oflags: i32,
         base: i64,
         inheriting: i64,
         fdflags: i32,
         opened: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, path, len);
                if st.guard.budget.open >= MAX_OPEN_FILES {
                    st.guard.access.refused(fd as u32, &name, Errno::Mfile);
                    return Ok(Errno::Mfile as i32);
                }
                let creates = oflags as u16 & types::Oflags::CREAT.bits() != 0
                    && !exists_at(st, mem, fd, path, len);
                if creates {
                    st.guard.budget.may_create(1).map_err(stop)?;
                }
                let code = block(abi::path_open(
                    &mut st.wasi,
                    mem,
                    fd,
                    dirflags,
                    path,
                    len,
                    oflags,
                    base,
                    inheriting,
                    fdflags,
                    opened,
                ))?;
                if code == 0 {
                    let new_fd = mem.read(GuestPtr::<u32>::new(opened as u32))?;
                    st.guard.access.opened(fd as u32, &name, new_fd);
                    st.guard.budget.open += 1;
                    if creates {
                        st.guard.budget.created(1);
                        st.guard.meta.invalidate();
                    }
                } else if let Some(errno) = errno_of(code) {
                    st.guard.access.refused(fd as u32, &name, errno);
                }
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_create_directory",
        |mut c: Caller<'_, TaskState>, fd: i32, path: i32, len: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, path, len);
                st.guard.budget.may_create(1).map_err(stop)?;
                let code = block(abi::path_create_directory(&mut st.wasi, mem, fd, path, len))?;
                if code == 0 {
                    st.guard.budget.created(1);
                }
                after_path_call(st, fd, &name, code);
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_symlink",
        |mut c: Caller<'_, TaskState>, old: i32, old_len: i32, fd: i32, path: i32, len: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, path, len);
                st.guard.budget.may_create(1).map_err(stop)?;
                let code = block(abi::path_symlink(
                    &mut st.wasi,
                    mem,
                    old,
                    old_len,
                    fd,
                    path,
                    len,
                ))?;
                if code == 0 {
                    st.guard.budget.created(1);
                }
                after_path_call(st, fd, &name, code);
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_link",
        |mut c: Caller<'_, TaskState>,
         old_fd: i32,
         flags: i32,
         old: i32,
         old_len: i32,
         new_fd: i32,
         path: i32,
         len: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, old, old_len);
                st.guard.budget.may_create(1).map_err(stop)?;
                let code = block(abi::path_link(
                    &mut st.wasi,
                    mem,
                    old_fd,
                    flags,
                    old,
                    old_len,
                    new_fd,
                    path,
                    len,
                ))?;
                if code == 0 {
                    st.guard.budget.created(1);
                    // A second name is a second output, copied out whole: its bytes count.
                    if let Some(size) = size_at(st, mem, new_fd, path, len) {
                        st.guard.budget.grew(0, size).map_err(stop)?;
                    }
                }
                after_path_call(st, old_fd, &name, code);
                Ok(code)
            })
        },
    )?;
    // Calls that only need their refusals recorded.
    linker.func_wrap(
        MODULE,
        "path_remove_directory",
        |mut c: Caller<'_, TaskState>, fd: i32, path: i32, len: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, path, len);
                let code = block(abi::path_remove_directory(&mut st.wasi, mem, fd, path, len))?;
                after_path_call(st, fd, &name, code);
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_unlink_file",
        |mut c: Caller<'_, TaskState>, fd: i32, path: i32, len: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, path, len);
                let code = block(abi::path_unlink_file(&mut st.wasi, mem, fd, path, len))?;
                after_path_call(st, fd, &name, code);
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_readlink",
        |mut c: Caller<'_, TaskState>,
         fd: i32,
         path: i32,
         len: i32,
         buf: i32,
         buf_len: i32,
         used: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, path, len);
                let code = block(abi::path_readlink(
                    &mut st.wasi,
                    mem,
                    fd,
                    path,
                    len,
                    buf,
                    buf_len,
                    used,
                ))?;
                if code != 0 {
                    after_path_call(st, fd, &name, code);
                }
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_filestat_set_times",
        |mut c: Caller<'_, TaskState>,
         fd: i32,
         flags: i32,
         path: i32,
         len: i32,
         atim: i64,
         mtim: i64,
         what: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, path, len);
                let code = block(abi::path_filestat_set_times(
                    &mut st.wasi,
                    mem,
                    fd,
                    flags,
                    path,
                    len,
                    atim,
                    mtim,
                    what,
                ))?;
                after_path_call(st, fd, &name, code);
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_rename",
        |mut c: Caller<'_, TaskState>,
         fd: i32,
         old: i32,
         old_len: i32,
         new_fd: i32,
         path: i32,
         len: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, old, old_len);
                let code = block(abi::path_rename(
                    &mut st.wasi,
                    mem,
                    fd,
                    old,
                    old_len,
                    new_fd,
                    path,
                    len,
                ))?;
                after_path_call(st, fd, &name, code);
                Ok(code)
            })
        },
    )?;
    Ok(())
}

fn add_descriptors(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_close",
        |mut c: Caller<'_, TaskState>, fd: i32| {
            enter(&mut c, |mem, st| {
                let code = block(abi::fd_close(&mut st.wasi, mem, fd))?;
                if code == 0 {
                    st.guard.access.closed(fd as u32);
                    st.guard.budget.open = st.guard.budget.open.saturating_sub(1);
                    st.guard.meta.invalidate();
                }
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_renumber",
        |mut c: Caller<'_, TaskState>, from: i32, to: i32| {
            enter(&mut c, |mem, st| {
                let code = block(abi::fd_renumber(&mut st.wasi, mem, from, to))?;
                if code == 0 && from != to {
                    // Whatever was at `to` is closed.
                    st.guard.access.renumbered(from as u32, to as u32);
                    st.guard.budget.open = st.guard.budget.open.saturating_sub(1);
                    st.guard.meta.invalidate();
                }
                Ok(code)
            })
        },
    )?;
    Ok(())
}
