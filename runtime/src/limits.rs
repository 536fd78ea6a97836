use std::time::Duration;

/// Resource limits of one task run (SANDBOX-006).
///
/// Exceeding a limit fails only that task, with a message naming the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of the guest's linear memory, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time the guest may run before it is interrupted.
    pub timeout: Duration,
    /// Maximum bytes captured from each of stdout and stderr.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(300),
            output_bytes: 16 << 20,
        }
    }
}

/// Enforces the memory limit and remembers that it refused a growth, so a trap that
/// follows (Rust guests abort on allocation failure) is reported as the limit.
pub(crate) struct MemoryLimiter {
    pub max_bytes: usize,
    pub exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
