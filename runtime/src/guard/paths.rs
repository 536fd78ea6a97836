//! Calls that name a path: each one's refusal goes into the access record; those that
//! create an entry count against `outputs_count`, a link's bytes against
//! `outputs_size`, and an open against the descriptor bound.

use super::budget::MAX_OPEN_FILES;
use super::{after_path_call, block, enter, errno_of, path_bytes, stop};
use crate::sandbox::TaskState;
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as abi, WasiSnapshotPreview1};
use wiggle::{GuestMemory, GuestPtr};

const MODULE: &str = super::MODULE;

/// Shadows a call whose refusals only need recording: `$call` is wasmtime-wasi's ABI
/// function, called with the same arguments; `$dirfd`, `$path` and `$len` name the path.
macro_rules! recorded {
    ($linker:expr, $name:literal, $call:path, ($($arg:ident: $ty:ty),*), $dirfd:ident, $path:ident, $len:ident) => {
        $linker.func_wrap(MODULE, $name, |mut c: Caller<'_, TaskState>, $($arg: $ty),*| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, $path, $len);
                let code = block($call(&mut st.wasi, mem, $($arg),*))?;
                after_path_call(st, $dirfd, &name, code);
                Ok(code)
            })
        })?
    };
}

pub(super) fn add(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    add_open(linker)?;
    add_creating(linker)?;
    add_recorded(linker)
}

fn add_open(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
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
            let args = OpenArgs {
                fd,
                dirflags,
                path,
                len,
                oflags,
                base,
                inheriting,
                fdflags,
                opened,
            };
            enter(&mut c, |mem, st| path_open(mem, st, args))
        },
    )?;
    Ok(())
}

/// The calls that create entries.
fn add_creating(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.func_wrap(
        MODULE,
        "path_create_directory",
        |mut c: Caller<'_, TaskState>, fd: i32, path: i32, len: i32| {
            enter(&mut c, |mem, st| {
                let named = (fd, path_bytes(mem, path, len));
                creating(mem, st, named, |mem, st| {
                    block(abi::path_create_directory(&mut st.wasi, mem, fd, path, len))
                })
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_symlink",
        |mut c: Caller<'_, TaskState>, old: i32, old_len: i32, fd: i32, path: i32, len: i32| {
            enter(&mut c, |mem, st| {
                let named = (fd, path_bytes(mem, path, len));
                creating(mem, st, named, |mem, st| {
                    block(abi::path_symlink(
                        &mut st.wasi,
                        mem,
                        old,
                        old_len,
                        fd,
                        path,
                        len,
                    ))
                })
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
                // A refusal names what the guest tried to link.
                let named = (old_fd, path_bytes(mem, old, old_len));
                let code = creating(mem, st, named, |mem, st| {
                    let (wasi, args) = (&mut st.wasi, (old_fd, flags, old, old_len));
                    block(abi::path_link(
                        wasi, mem, args.0, args.1, args.2, args.3, new_fd, path, len,
                    ))
                })?;
                // A second name is a second output, copied out whole: its bytes count.
                if code == 0
                    && let Some(size) = size_at(st, mem, new_fd, path, len)
                {
                    st.guard.budget.grew(0, size).map_err(stop)?;
                }
                Ok(code)
            })
        },
    )?;
    Ok(())
}

/// The calls whose refusals are all there is to record.
fn add_recorded(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    recorded!(linker, "path_remove_directory", abi::path_remove_directory, (fd: i32, path: i32, len: i32), fd, path, len);
    recorded!(linker, "path_unlink_file", abi::path_unlink_file, (fd: i32, path: i32, len: i32), fd, path, len);
    recorded!(
        linker,
        "path_readlink",
        abi::path_readlink,
        (fd: i32, path: i32, len: i32, buf: i32, buf_len: i32, used: i32),
        fd,
        path,
        len
    );
    recorded!(
        linker,
        "path_filestat_set_times",
        abi::path_filestat_set_times,
        (fd: i32, flags: i32, path: i32, len: i32, atim: i64, mtim: i64, what: i32),
        fd,
        path,
        len
    );
    recorded!(
        linker,
        "path_rename",
        abi::path_rename,
        (fd: i32, old: i32, old_len: i32, new_fd: i32, new: i32, new_len: i32),
        fd,
        old,
        old_len
    );
    Ok(())
}

/// The arguments of `path_open`, as the guest passed them.
#[derive(Clone, Copy)]
struct OpenArgs {
    fd: i32,
    dirflags: i32,
    path: i32,
    len: i32,
    oflags: i32,
    base: i64,
    inheriting: i64,
    fdflags: i32,
    opened: i32,
}

/// `path_open` under the descriptor bound, counting a file it creates.
fn path_open(mem: &mut GuestMemory<'_>, st: &mut TaskState, a: OpenArgs) -> wasmtime::Result<i32> {
    let name = path_bytes(mem, a.path, a.len);
    if st.guard.budget.open >= MAX_OPEN_FILES {
        st.guard.access.refused(a.fd as u32, &name, Errno::Mfile);
        return Ok(Errno::Mfile as i32);
    }
    let creates = a.oflags as u16 & types::Oflags::CREAT.bits() != 0
        && !exists_at(st, mem, a.fd, a.path, a.len);
    if creates {
        st.guard.budget.may_create(1).map_err(stop)?;
    }
    let code = block(abi::path_open(
        &mut st.wasi,
        mem,
        a.fd,
        a.dirflags,
        a.path,
        a.len,
        a.oflags,
        a.base,
        a.inheriting,
        a.fdflags,
        a.opened,
    ))?;
    if code == 0 {
        let new_fd = mem.read(GuestPtr::<u32>::new(a.opened as u32))?;
        st.guard.access.opened(a.fd as u32, &name, new_fd);
        st.guard.budget.open += 1;
        if creates {
            st.guard.budget.created(1);
            st.guard.meta.invalidate();
        }
    } else if let Some(errno) = errno_of(code) {
        st.guard.access.refused(a.fd as u32, &name, errno);
    }
    Ok(code)
}

/// A call that creates one entry: refused before it happens when the entry count is
/// spent, counted when it succeeds, and, when refused, recorded as `named` (a directory
/// descriptor and a path from it).
fn creating(
    mem: &mut GuestMemory<'_>,
    st: &mut TaskState,
    named: (i32, Vec<u8>),
    call: impl FnOnce(&mut GuestMemory<'_>, &mut TaskState) -> wasmtime::Result<i32>,
) -> wasmtime::Result<i32> {
    let (fd, name) = named;
    st.guard.budget.may_create(1).map_err(stop)?;
    let code = call(mem, st)?;
    if code == 0 {
        st.guard.budget.created(1);
    }
    after_path_call(st, fd, &name, code);
    Ok(code)
}

/// What wasmtime-wasi says of `path` from `dirfd`, without following a link.
fn stat_at(
    st: &mut TaskState,
    mem: &mut GuestMemory<'_>,
    dirfd: i32,
    path: i32,
    len: i32,
) -> Option<types::Filestat> {
    let ptr = GuestPtr::<str>::new((path as u32, len as u32));
    block(st.wasi.path_filestat_get(
        mem,
        types::Fd::from(dirfd as u32),
        types::Lookupflags::empty(),
        ptr,
    ))
    .ok()
}

/// The size of the regular file at `path` from `dirfd`.
fn size_at(
    st: &mut TaskState,
    mem: &mut GuestMemory<'_>,
    dirfd: i32,
    path: i32,
    len: i32,
) -> Option<u64> {
    stat_at(st, mem, dirfd, path, len)
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
    stat_at(st, mem, dirfd, path, len).is_some()
}
