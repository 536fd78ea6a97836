//! Descriptors closed and renumbered: the access record and the open-descriptor count
//! follow them.

use super::{block, enter};
use crate::sandbox::TaskState;
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as abi};

const MODULE: &str = super::MODULE;

pub(super) fn add(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
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
