//! Writes that grow files: every byte they add counts against `outputs_size` as it is
//! written (see [`super::budget`]). stdout and stderr have their own cap.

use super::{block, enter, stop};
use crate::sandbox::TaskState;
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types::{self};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as abi, WasiSnapshotPreview1};
use wiggle::GuestMemory;

const MODULE: &str = super::MODULE;

pub(super) fn add(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
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

/// The size of the file open at `fd`, straight from wasmtime-wasi (not the guest's view).
fn size_of(st: &mut TaskState, mem: &mut GuestMemory<'_>, fd: i32) -> Option<u64> {
    block(st.wasi.fd_filestat_get(mem, types::Fd::from(fd as u32)))
        .ok()
        .filter(|s| s.filetype == types::Filetype::RegularFile)
        .map(|s| s.size)
}
