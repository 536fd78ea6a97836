//! Deterministic clocks and randomness for the guest (SANDBOX-005).
//!
//! With the default `clock = "fixed"`, the wall clock always reads the configured epoch,
//! the monotonic clock is virtual: it advances by one microsecond per reading (so loops
//! that wait for time to pass still end) and by exactly the requested time when the
//! guest sleeps, which returns at once. Both random sources are a blake3 extendable
//! output seeded from the task's cache key: two fresh runs of the same task see the same
//! bytes.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// How a task sees time and randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// Wall clock fixed at `epoch_seconds`, virtual monotonic clock, seeded randomness.
    Fixed { epoch_seconds: u64, seed: [u8; 32] },
    /// The host's clocks and randomness: the task opts out of determinism.
    Host,
}

/// Default epoch for the fixed clock: 1980-01-01T00:00:00Z, the earliest time a ZIP
/// archive can record, so archives built by tasks stay valid.
pub const DEFAULT_EPOCH_SECONDS: u64 = 315_532_800;

pub(crate) struct FixedWallClock(pub Duration);

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// The virtual monotonic clock, in nanoseconds. Cloning shares it: the WASI context
/// reads it, the policy layer advances it when the guest sleeps.
#[derive(Clone, Default)]
pub(crate) struct VirtualClock(Arc<AtomicU64>);

/// How far one reading moves the virtual clock.
const TICK_NS: u64 = 1_000;

impl VirtualClock {
    /// The current reading, without moving the clock.
    pub fn peek(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves the clock forward by `ns` (a sleep), saturating at the end of time.
    pub fn advance(&self, ns: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(ns))
            });
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        TICK_NS
    }
    fn now(&self) -> u64 {
        self.advance(TICK_NS);
        self.peek()
    }
}

/// Random bytes from a blake3 extendable output: portable and stable across versions,
/// unlike the `StdRng` of the `rand` crate.
pub(crate) struct SeededRandom(blake3::OutputReader);

impl SeededRandom {
    pub fn new(seed: &[u8; 32], purpose: &str) -> Self {
        let mut hasher = blake3::Hasher::new_keyed(seed);
        hasher.update(purpose.as_bytes());
        SeededRandom(hasher.finalize_xof())
    }
}

impl rand_core::TryRng for SeededRandom {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}
