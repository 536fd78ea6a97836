//! What a task may write while it runs: the bytes its writes add to files, the entries
//! (files, directories, links) it creates, and the descriptors it holds open.
//!
//! The counts are conservative: bytes are counted as a file grows and never given back
//! (truncating and rewriting a file counts again), entries are counted when created and
//! never given back. A limit passed stops the guest at once, before its output is
//! collected, stored or moved anywhere.

/// How many descriptors a task may hold open at once. Each is a host descriptor, so an
/// unbounded number would exhaust the process's table for every other task; a guest past
/// it is told `EMFILE`, as an operating system would.
pub(crate) const MAX_OPEN_FILES: usize = 1024;

/// A limit the guest passed while it ran (SANDBOX-006).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("its writes to files passed its outputs size limit of {0} bytes")]
    OutputsSize(u64),
    #[error("it created more than its outputs count limit of {0} files, directories and links")]
    OutputsCount(u64),
}

pub(crate) struct Budget {
    max_bytes: u64,
    max_entries: u64,
    bytes: u64,
    entries: u64,
    /// Descriptors opened by the guest and not yet closed.
    pub open: usize,
}

impl Budget {
    pub fn new(max_bytes: u64, max_entries: u64) -> Self {
        Budget {
            max_bytes,
            max_entries,
            bytes: 0,
            entries: 0,
            open: 0,
        }
    }

    /// Whether `n` more entries fit; refused before the entry is made.
    pub fn may_create(&self, n: u64) -> Result<(), LimitExceeded> {
        if self.entries.saturating_add(n) > self.max_entries {
            Err(LimitExceeded::OutputsCount(self.max_entries))
        } else {
            Ok(())
        }
    }

    pub fn created(&mut self, n: u64) {
        self.entries = self.entries.saturating_add(n);
    }

    /// Whether a file may grow by `bytes`; refused before the growth where it is known
    /// in advance (`fd_filestat_set_size`).
    pub fn may_grow(&self, bytes: u64) -> Result<(), LimitExceeded> {
        if self.bytes.saturating_add(bytes) > self.max_bytes {
            Err(LimitExceeded::OutputsSize(self.max_bytes))
        } else {
            Ok(())
        }
    }

    /// A file grew from `before` to `after` bytes (a write, a link to it).
    pub fn grew(&mut self, before: u64, after: u64) -> Result<(), LimitExceeded> {
        self.bytes = self.bytes.saturating_add(after.saturating_sub(before));
        if self.bytes > self.max_bytes {
            Err(LimitExceeded::OutputsSize(self.max_bytes))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_counted_and_never_given_back() {
        let mut b = Budget::new(100, 2);
        b.grew(0, 60).unwrap();
        b.grew(60, 10).unwrap();
        assert_eq!(b.grew(10, 51), Err(LimitExceeded::OutputsSize(100)));
        assert!(b.may_grow(0).is_err());
        b.created(2);
        assert_eq!(b.may_create(1), Err(LimitExceeded::OutputsCount(2)));
    }
}
