//! Removing a directory tree a guest made, however deep.
//!
//! A guest decides the shape of its scratch directory: with a descriptor on each new
//! directory it can nest one directory per entry its `outputs_count` allows, without
//! ever naming a long path. `std::fs::remove_dir_all`, `cap-std`'s and `tempfile`'s
//! recurse, taking a stack frame and a descriptor per level, and overflow the stack
//! (an abort no handler catches) long before that. [`remove_tree`] takes neither.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Removes `name` in `parent` and everything under it, without following a link and
/// without recursion: a tree as deep as a guest can make (one directory per entry of
/// its `outputs_count`) needs neither a stack frame nor a descriptor per level, where
/// `std` and `cap-std` use both and overflow the stack or run out of descriptors.
///
/// It goes down one directory at a time and back up by `..`, checking on the way up
/// that `..` is the directory it came down from (device and inode), so a tree moved
/// while it is being removed stops the removal rather than steering it elsewhere.
pub fn remove_tree(parent: &impl AsFd, name: &str) -> io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, openat, statat, unlinkat};
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let identity = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|st| (st.st_dev, st.st_ino));
    let top = statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(top.st_mode) != FileType::Directory {
        return Ok(unlinkat(parent, name, AtFlags::empty())?);
    }
    let mut current = openat(parent, name, dir_flags, Mode::empty())?;
    // For each level below the top: its name in the level above, and that level's
    // identity.
    let mut path: Vec<(std::ffi::CString, (u64, u64))> = Vec::new();
    loop {
        let mut non_empty = None;
        for entry in rustix::fs::Dir::read_from(&current)? {
            let entry = entry?;
            let child = entry.file_name();
            if child == c"." || child == c".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => FileType::from_raw_mode(
                    statat(&current, child, AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
                ),
                kind => kind,
            };
            if kind != FileType::Directory {
                unlinkat(&current, child, AtFlags::empty())?;
                continue;
            }
            match unlinkat(&current, child, AtFlags::REMOVEDIR) {
                Ok(()) => {}
                Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => {
                    non_empty = Some(child.to_owned());
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(child) = non_empty {
            let below = openat(&current, child.as_c_str(), dir_flags, Mode::empty())?;
            path.push((child, identity(&current)?));
            current = below;
            continue;
        }
        // `current` is empty now.
        let Some((child, expected)) = path.pop() else {
            drop(current);
            return Ok(unlinkat(parent, name, AtFlags::REMOVEDIR)?);
        };
        let up = openat(&current, c"..", dir_flags, Mode::empty())?;
        if identity(&up)? != expected {
            return Err(io::Error::other(format!(
                "{name} was moved while it was being removed; what is left stays"
            )));
        }
        unlinkat(&up, child.as_c_str(), AtFlags::REMOVEDIR)?;
        current = up;
    }
}

/// A scratch directory made under a parent, removed with [`remove_tree`] when dropped.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Makes a new directory named `prefix` and a random suffix under `parent`.
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<ScratchDir> {
        let made = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        Ok(ScratchDir { path: made.keep() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let (Some(parent), Some(name)) = (
            self.path.parent(),
            self.path.file_name().and_then(|n| n.to_str()),
        ) else {
            return;
        };
        if let Ok(parent) = std::fs::File::open(parent) {
            let _ = remove_tree(&parent, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_deeper_than_any_stack_is_removed_and_nothing_beside_it() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("beside.txt"), "kept").unwrap();
        // Made by descriptor, as a guest does: the path is far past PATH_MAX.
        let top = root.path().join("deep");
        std::fs::create_dir(&top).unwrap();
        let mut dir = std::fs::File::open(&top).unwrap();
        for i in 0..30_000 {
            rustix::fs::mkdirat(&dir, c"a", rustix::fs::Mode::RWXU).unwrap();
            if i % 1000 == 0 {
                let f = rustix::fs::openat(
                    &dir,
                    c"f",
                    rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY,
                    rustix::fs::Mode::RUSR,
                )
                .unwrap();
                drop(f);
            }
            let next = rustix::fs::openat(
                &dir,
                c"a",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            dir = std::fs::File::from(next);
        }
        drop(dir);
        remove_tree(&std::fs::File::open(root.path()).unwrap(), "deep").unwrap();
        assert!(!top.exists());
        assert_eq!(
            std::fs::read(root.path().join("beside.txt")).unwrap(),
            b"kept"
        );
    }

    #[test]
    fn a_link_is_removed_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("precious"), "x").unwrap();
        std::fs::create_dir(root.path().join("t")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("t/link")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("top-link")).unwrap();
        let parent = std::fs::File::open(root.path()).unwrap();
        remove_tree(&parent, "t").unwrap();
        remove_tree(&parent, "top-link").unwrap();
        assert!(elsewhere.path().join("precious").exists());
        assert!(!root.path().join("t").exists());
        assert!(!root.path().join("top-link").exists());
    }
}
