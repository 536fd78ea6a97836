//! The limits of one task run (SANDBOX-006) and the wasmtime resource limiter that
//! holds every memory and table of the task to one budget.

use std::time::Duration;

/// Resource limits of one task run (SANDBOX-006).
///
/// Exceeding a limit fails only that task, with a message naming the limit. Every limit
/// is enforced while the task runs, never only after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most memory the task may hold: every linear memory and table of its
    /// instances together, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time for compiling the module (when its compiled form is not cached)
    /// and running it; blocking calls (a sleep) end at it too.
    pub timeout: Duration,
    /// Maximum bytes captured from each of stdout and stderr.
    pub output_bytes: usize,
    /// The most bytes the task's writes may add to files, counted as it writes.
    pub outputs_size: u64,
    /// The most files, directories and links the task may create.
    pub outputs_count: u64,
    /// The largest module the task may load, in bytes: compilation time grows with it.
    pub module_bytes: u64,
}

/// The longest timeout a workspace may set: a year is far past any task, and an
/// `Instant` cannot be pushed past the machine's range of them.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 3600);

impl Limits {
    /// When a run that starts now must end: now plus the timeout, which is at most
    /// [`MAX_TIMEOUT`] (a larger one, from a caller that did not check, is cut to it).
    pub fn deadline_from_now(&self) -> std::time::Instant {
        let now = std::time::Instant::now();
        now.checked_add(self.timeout.min(MAX_TIMEOUT))
            .unwrap_or(now)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(300),
            output_bytes: 16 << 20,
            outputs_size: 4 << 30,
            outputs_count: 100_000,
            module_bytes: 256 << 20,
        }
    }
}

/// How many linear memories, tables and instances one task may have. A core module
/// from a Rust or C toolchain has one of each; the counts only stop a module from
/// declaring thousands of them, each of which reserves address space.
pub(crate) const MAX_MEMORIES: usize = 8;
pub(crate) const MAX_TABLES: usize = 8;
pub(crate) const MAX_INSTANCES: usize = 4;

/// What one table element is charged against the memory limit.
const TABLE_ELEMENT_BYTES: usize = 16;

/// Enforces the memory limit over the whole task: every memory and table it grows draws
/// on one budget, so sixteen memories cannot each take the limit. A growth past the
/// limit traps rather than returning -1 to the guest: the limit is not part of the key,
/// so a guest that could see where it lies (grow until refused, print how far it got)
/// would give a result that depends on it. A task either fits its limit, and runs the
/// same under any limit it fits, or fails.
pub(crate) struct StoreLimiter {
    max_bytes: usize,
    used: usize,
    pub exceeded: bool,
}

impl StoreLimiter {
    pub fn new(max_bytes: u64) -> Self {
        StoreLimiter {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            used: 0,
            exceeded: false,
        }
    }

    /// The memory held now, which is the most held: memories and tables never shrink.
    pub fn held(&self) -> u64 {
        self.used as u64
    }

    fn grow(&mut self, by: usize) -> bool {
        match self.used.checked_add(by) {
            Some(total) if total <= self.max_bytes => {
                self.used = total;
                true
            }
            _ => {
                self.exceeded = true;
                false
            }
        }
    }
}

impl StoreLimiter {
    fn grow_or_trap(&mut self, by: usize) -> wasmtime::Result<bool> {
        if self.grow(by) {
            Ok(true)
        } else {
            Err(wasmtime::format_err!("the task's memory limit was reached"))
        }
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow_or_trap(desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current);
        self.grow_or_trap(elements.saturating_mul(TABLE_ELEMENT_BYTES))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn growth_of_every_memory_and_table_draws_on_one_budget() {
        let mut l = StoreLimiter::new(64 << 20);
        for _ in 0..3 {
            assert!(l.memory_growing(0, 16 << 20, None).unwrap());
        }
        assert!(!l.exceeded);
        // A fourth memory of 16 MiB fits exactly; any more traps (the guest never
        // learns where the limit lies).
        assert!(l.memory_growing(0, 16 << 20, None).unwrap());
        assert!(l.memory_growing(0, 1, None).is_err());
        assert!(l.exceeded);
        let mut t = StoreLimiter::new(1 << 20);
        assert!(
            t.table_growing(0, 1 << 20, None).is_err(),
            "1M elements cost 16 MiB"
        );
    }
}
