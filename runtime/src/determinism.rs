//! Deterministic clocks and randomness for the guest (SANDBOX-005).
//!
//! With the default `clock = "fixed"`, the wall clock always reads the configured epoch,
//! the monotonic clock advances by one microsecond per reading (so loops that wait for
//! time to pass still end), and both random sources are a blake3 extendable output seeded
//! from the task's cache key: two fresh runs of the same task see the same bytes.

use std::convert::Infallible;
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

/// A monotonic clock that moves forward one microsecond each time it is read.
pub(crate) struct VirtualMonotonicClock(std::sync::atomic::AtomicU64);

impl VirtualMonotonicClock {
    pub fn new() -> Self {
        VirtualMonotonicClock(std::sync::atomic::AtomicU64::new(0))
    }
}

impl HostMonotonicClock for VirtualMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.0
            .fetch_add(1_000, std::sync::atomic::Ordering::Relaxed)
            + 1_000
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
