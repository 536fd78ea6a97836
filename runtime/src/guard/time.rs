//! `poll_oneoff` when the guest only waits for time: a sleep.
//!
//! wasmtime-wasi sleeps on the host thread for as long as the guest asks, and epoch
//! interruption only fires while wasm code runs, so a sleep would outlast the timeout and
//! Ctrl-C (a sleep of `u64::MAX` nanoseconds hung wask for good). Here a sleep never
//! outlasts either:
//!
//! * with `clock = "fixed"` time is virtual: the monotonic clock jumps forward by the
//!   time asked for and the call returns at once, so the result is the same bytes on
//!   every machine and a task that sleeps costs no wall time;
//! * with `clock = "host"` the thread sleeps in slices of at most one epoch tick and
//!   stops the guest (as a timeout, or as cancelled) the moment either passes.
//!
//! A poll that also waits on a descriptor goes to wasmtime-wasi: in a wask sandbox every
//! descriptor is ready at once (files, an empty stdin, captured streams; there are no
//! sockets), so it never waits on the clock.

use super::{Stop, Time, block, enter};
use crate::determinism::VirtualClock;
use crate::sandbox::TaskState;
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as abi, WasiSnapshotPreview1};
use wiggle::{GuestMemory, GuestPtr};

const MODULE: &str = super::MODULE;

/// The most subscriptions one call may name before it is left to wasmtime-wasi.
const MAX_SUBSCRIPTIONS: u32 = 4096;

/// How the guest's clocks read, for working out how long a sleep is.
pub(crate) enum Now {
    /// The virtual monotonic clock and the fixed wall clock (nanoseconds).
    Fixed { clock: VirtualClock, wall_ns: u64 },
    /// Readings of the host clocks the guest sees, taken now.
    Host { monotonic_ns: u64, wall_ns: u64 },
}

/// Handles a poll that only names clocks. `Ok(None)` leaves the call to wasmtime-wasi:
/// it names a descriptor, an unknown clock, or memory out of bounds.
pub(crate) fn sleep(
    mem: &mut GuestMemory<'_>,
    now: Now,
    stop: &Stop,
    subs: u32,
    events: u32,
    count: u32,
    nevents: u32,
) -> wasmtime::Result<Option<i32>> {
    if count == 0 || count > MAX_SUBSCRIPTIONS {
        return Ok(None);
    }
    let list = GuestPtr::<types::Subscription>::new(subs).as_array(count);
    let mut waits = Vec::with_capacity(count as usize);
    for i in 0..count {
        let Some(ptr) = list.get(i) else {
            return Ok(None);
        };
        let Ok(sub) = mem.read(ptr) else {
            return Ok(None);
        };
        let types::SubscriptionU::Clock(clock) = sub.u else {
            return Ok(None);
        };
        let absolute = clock
            .flags
            .contains(types::Subclockflags::SUBSCRIPTION_CLOCK_ABSTIME);
        let (monotonic_now, wall_now) = match &now {
            Now::Fixed { clock, wall_ns } => (clock.peek(), *wall_ns),
            Now::Host {
                monotonic_ns,
                wall_ns,
            } => (*monotonic_ns, *wall_ns),
        };
        let wait = match (clock.id, absolute) {
            (types::Clockid::Monotonic | types::Clockid::Realtime, false) => clock.timeout,
            (types::Clockid::Monotonic, true) => clock.timeout.saturating_sub(monotonic_now),
            (types::Clockid::Realtime, true) => clock.timeout.saturating_sub(wall_now),
            _ => return Ok(None),
        };
        waits.push((sub.userdata, wait));
    }
    let wait = waits.iter().map(|(_, w)| *w).min().unwrap_or(0);
    match &now {
        Now::Fixed { clock, .. } => clock.advance(wait),
        Now::Host { .. } => stop.sleep(std::time::Duration::from_nanos(wait))?,
    }
    let out = GuestPtr::<types::Event>::new(events).as_array(count);
    let mut fired = 0u32;
    for (userdata, w) in waits {
        if w > wait {
            continue;
        }
        let Some(ptr) = out.get(fired) else { break };
        mem.write(
            ptr,
            types::Event {
                userdata,
                error: types::Errno::Success,
                type_: types::Eventtype::Clock,
                fd_readwrite: types::EventFdReadwrite {
                    nbytes: 0,
                    flags: types::Eventrwflags::empty(),
                },
            },
        )?;
        fired += 1;
    }
    mem.write(GuestPtr::<u32>::new(nevents), fired)?;
    Ok(Some(types::Errno::Success as i32))
}

pub(super) fn add(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut c: Caller<'_, TaskState>, subs: i32, events: i32, n: i32, nevents: i32| {
            enter(&mut c, |mem, st| {
                let now = match &st.guard.time {
                    Time::Fixed { wall_ns, clock } => Now::Fixed {
                        clock: clock.clone(),
                        wall_ns: *wall_ns,
                    },
                    Time::Host => {
                        let mut read = |id| st.wasi.clock_time_get(mem, id, 1).unwrap_or(0);
                        Now::Host {
                            monotonic_ns: read(types::Clockid::Monotonic),
                            wall_ns: read(types::Clockid::Realtime),
                        }
                    }
                };
                let (s, e, k, out) = (subs as u32, events as u32, n as u32, nevents as u32);
                match sleep(mem, now, &st.guard.stop, s, e, k, out)? {
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
