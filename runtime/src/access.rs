//! The access record (SANDBOX-009): which paths a guest opened, and which it reached for
//! and was refused.
//!
//! The policy layer ([`crate::guard`]) sees every WASI call that names a path, with its
//! typed arguments and its typed result, and reports it here. The tracker follows the
//! descriptors the guest holds (opened, renumbered, closed), so a path relative to a
//! descriptor is named by where that descriptor points. The record is bounded: at most
//! [`MAX_ENTRIES`] paths of each kind and [`crate::paths::MAX_PATH_BYTES`] per path;
//! past that it says it was truncated, so a guest opening paths without end costs the
//! host a bounded amount of memory.

use crate::paths::{MAX_PATH_BYTES, join_lexically};
use std::collections::{BTreeSet, HashMap};
use wasmtime_wasi::p1::types::Errno;

/// How many paths the record keeps of each kind.
pub const MAX_ENTRIES: usize = 10_000;

/// What a guest tried to do with the paths it named.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GuestAccess {
    /// Files and directories the guest opened successfully (workspace-absolute).
    pub opened: BTreeSet<String>,
    /// Paths the guest tried to open, stat or change and was refused or told do not
    /// exist (workspace-absolute), with what it was told.
    pub refused: BTreeSet<(String, &'static str)>,
    /// More paths were named than the record keeps, or a path was longer than any the
    /// record keeps: the record is the first of them, not all.
    pub truncated: bool,
}

/// Follows descriptors and collects the record of one guest run.
pub(crate) struct AccessTracker {
    /// Where each descriptor the guest holds points, workspace-absolute; `None` when the
    /// path was too long to keep.
    fds: HashMap<u32, Option<String>>,
    record: GuestAccess,
}

impl AccessTracker {
    /// `preopens` in the order they were given to the WASI context: wasmtime-wasi
    /// numbers them from descriptor 3 on, after stdin, stdout and stderr.
    pub fn new(preopens: impl IntoIterator<Item = String>) -> Self {
        let fds = preopens
            .into_iter()
            .enumerate()
            .map(|(i, p)| (3 + i as u32, Some(p)))
            .collect();
        AccessTracker {
            fds,
            record: GuestAccess::default(),
        }
    }

    /// The path `relative` names from descriptor `fd`, if it can be kept.
    fn resolve(&mut self, fd: u32, relative: &[u8]) -> Option<String> {
        let base = match self.fds.get(&fd) {
            Some(Some(base)) => base.as_str(),
            Some(None) => {
                self.record.truncated = true;
                return None;
            }
            None => "/?",
        };
        if relative.len() > MAX_PATH_BYTES {
            self.record.truncated = true;
            return None;
        }
        let path = join_lexically(base, &String::from_utf8_lossy(relative));
        if path.len() > MAX_PATH_BYTES {
            self.record.truncated = true;
            return None;
        }
        Some(path)
    }

    /// The guest opened `relative` from `dirfd` and now holds it as `new_fd`.
    pub fn opened(&mut self, dirfd: u32, relative: &[u8], new_fd: u32) {
        let path = self.resolve(dirfd, relative);
        if let Some(p) = &path {
            if self.record.opened.len() < MAX_ENTRIES {
                self.record.opened.insert(p.clone());
            } else if !self.record.opened.contains(p) {
                self.record.truncated = true;
            }
        }
        self.fds.insert(new_fd, path);
    }

    /// A call on `relative` from `dirfd` failed with `errno`.
    pub fn refused(&mut self, dirfd: u32, relative: &[u8], errno: Errno) {
        // "Already exists" (a `create_dir_all` on a directory that is there) refuses
        // nothing; everything else is an attempt that failed.
        if errno == Errno::Exist {
            return;
        }
        let Some(path) = self.resolve(dirfd, relative) else {
            return;
        };
        if self.record.refused.len() < MAX_ENTRIES {
            self.record.refused.insert((path, describe(errno)));
        } else {
            self.record.truncated = true;
        }
    }

    /// Descriptor `fd` was closed.
    pub fn closed(&mut self, fd: u32) {
        self.fds.remove(&fd);
    }

    /// Descriptor `from` now sits at `to` (whatever was at `to` is closed).
    pub fn renumbered(&mut self, from: u32, to: u32) {
        if let Some(path) = self.fds.remove(&from) {
            self.fds.insert(to, path);
        }
    }

    pub fn finish(self) -> GuestAccess {
        self.record
    }
}

/// What a refused call was told, in words.
pub fn describe(errno: Errno) -> &'static str {
    match errno {
        Errno::Noent => "no such file or directory",
        Errno::Perm => "operation not permitted",
        Errno::Acces => "permission denied",
        Errno::Notcapable => "not capable",
        Errno::Rofs => "read-only file system",
        Errno::Notdir => "not a directory",
        Errno::Isdir => "is a directory",
        Errno::Exist => "file exists",
        Errno::Loop => "too many symbolic links",
        Errno::Mfile => "too many open files",
        Errno::Nametoolong => "name too long",
        Errno::Notempty => "directory not empty",
        Errno::Inval => "invalid argument",
        Errno::Badf => "bad file descriptor",
        Errno::Xdev => "cross-device link",
        _ => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_followed_through_opens_renumbers_and_closes() {
        let mut t = AccessTracker::new(["/".to_string(), "/out".to_string()]);
        t.opened(3, b"docs", 10);
        t.opened(10, b"a.md", 11);
        t.renumbered(10, 20);
        t.refused(20, b"secret.md", Errno::Noent);
        t.closed(20);
        t.refused(20, b"x", Errno::Perm);
        t.refused(4, b"made", Errno::Exist);
        let r = t.finish();
        assert!(r.opened.contains("/docs") && r.opened.contains("/docs/a.md"));
        assert!(
            r.refused
                .contains(&("/docs/secret.md".into(), "no such file or directory"))
        );
        assert!(r.refused.iter().any(|(p, _)| p == "/?/x"), "{r:?}");
        assert!(!r.refused.iter().any(|(p, _)| p == "/out/made"));
        assert!(!r.truncated);
    }

    #[test]
    fn the_record_is_bounded() {
        let mut t = AccessTracker::new(["/".to_string()]);
        for i in 0..MAX_ENTRIES + 5 {
            t.refused(3, format!("f{i}").as_bytes(), Errno::Noent);
        }
        // A chain of nested opens whose path outgrows the limit.
        let mut fd = 3;
        for i in 0..3000u32 {
            t.opened(fd, b"deeper", 100 + i);
            fd = 100 + i;
        }
        let r = t.finish();
        assert_eq!(r.refused.len(), MAX_ENTRIES);
        assert!(r.truncated);
        assert!(r.opened.iter().all(|p| p.len() <= MAX_PATH_BYTES));
    }
}
