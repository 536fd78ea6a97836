//! File-system operations on directory handles (`cap-std`): what wask reads, writes and
//! removes under a directory it does not fully trust (the cache, the workspace) is
//! reached one component at a time from a handle, never through a symbolic link and
//! never by `..`, so a link planted anywhere on the way cannot redirect it, and a
//! directory swapped for a link between a check and a use is refused, not followed.

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Opens `path` (a directory the user named: the cache, the workspace) as a handle.
pub fn open_ambient(path: &Path) -> io::Result<Dir> {
    Dir::open_ambient_dir(path, cap_std::ambient_authority())
}

/// Opens the directory `names` under `base`, one name at a time without following a
/// link; with `create`, makes each one that is missing (its mode as the umask says).
pub fn open_dirs(base: &Dir, names: &[&str], create: bool) -> io::Result<Dir> {
    walk_dirs(base, names, create, None)
}

/// [`open_dirs`], making each missing directory with exactly `mode` whatever the umask:
/// directories of outputs are `0755` as every output file is `0644`, after a fresh run
/// and a restore alike (a umask of 0 would make them writable by everyone).
pub fn open_dirs_with_mode(base: &Dir, names: &[&str], mode: u32) -> io::Result<Dir> {
    walk_dirs(base, names, true, Some(mode))
}

fn walk_dirs(base: &Dir, names: &[&str], create: bool, mode: Option<u32>) -> io::Result<Dir> {
    let mut dir = base.try_clone()?;
    for name in names {
        let made = create
            && match dir.create_dir(name) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            };
        dir = dir.open_dir_nofollow(name)?;
        if let (true, Some(mode)) = (made, mode) {
            // On the directory opened without following a link, so a link swapped in
            // since it was made is never what changes mode.
            let fd = rustix::fs::openat(
                &dir,
                ".",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )?;
            rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(mode))?;
        }
    }
    Ok(dir)
}

/// Opens the file `name` in `dir` for reading, without following a link and without
/// blocking on a FIFO, and checks on the open file that it is a regular file.
pub fn open_regular(dir: &Dir, name: &str) -> io::Result<File> {
    use cap_std::fs::OpenOptionsExt;
    let mut opts = OpenOptions::new();
    opts.read(true)
        .follow(FollowSymlinks::No)
        .custom_flags(libc::O_NONBLOCK);
    let file = dir.open_with(name, &opts)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name} is not a regular file"),
        ));
    }
    Ok(file)
}

/// Reads the regular file `name` in `dir` (see [`open_regular`]), stopping after
/// `limit + 1` bytes: the caller learns the file is too long without reading all of it.
pub fn read_at_most(dir: &Dir, name: &str, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(dir, name)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The text of a file a person named (a provenance file, a key), following links as
/// they meant, but never from a FIFO or a device, and no further than `limit` bytes.
/// The error says what is wrong, to follow the file's name.
pub fn read_named_text(path: &Path, limit: u64) -> Result<String, String> {
    String::from_utf8(read_named(path, limit)?).map_err(|_| "it is not UTF-8 text".into())
}

/// The bytes of a file a person named, as [`read_named_text`] reads it.
pub fn read_named(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("it is over {limit} bytes"));
    }
    Ok(bytes)
}

/// Writes `name` in `dir` whole or not at all: a temporary file, synced, renamed over.
pub fn write_atomic(dir: &Dir, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = unique_name(".tmp-");
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true).follow(FollowSymlinks::No);
    let written = (|| {
        let mut f = dir.open_with(&tmp, &opts)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        dir.rename(&tmp, dir, name)
    })();
    if written.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    written
}

pub use wask_runtime::tree::remove_tree;

/// `path` with its links resolved as far as it exists: the deepest existing ancestor
/// canonicalized, the rest put back. A directory that does not exist yet (a cache or a
/// key directory on first use) is then still compared by where it will really be, a
/// link to where it will be made included.
pub fn resolved(path: &Path) -> PathBuf {
    resolved_within(path, 40)
}

fn resolved_within(path: &Path, hops: usize) -> PathBuf {
    let mut base = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        let put_back = |c: PathBuf| rest.iter().rev().fold(c, |acc: PathBuf, n| acc.join(n));
        if let Ok(c) = base.canonicalize() {
            return put_back(c);
        }
        // A link to what does not exist yet: follow it by hand.
        if let Ok(target) = std::fs::read_link(&base)
            && hops > 0
        {
            let target = match base.parent() {
                Some(parent) => parent.join(target),
                None => target,
            };
            return put_back(resolved_within(&target, hops - 1));
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                base = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Whether `path` is `dir` or lies below it, as written or with links resolved (as far
/// as the paths exist).
pub fn is_within(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir) || resolved(path).starts_with(resolved(dir))
}

/// A name no other writer uses at the same moment: `prefix`, this process's id, a count.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_resolved_through_links_to_what_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("ws")).unwrap();
        // A link to a directory not made yet, and a path below it.
        std::os::unix::fs::symlink(root.join("ws/cache"), root.join("link")).unwrap();
        assert_eq!(
            resolved(&root.join("link/entries")),
            root.join("ws/cache/entries")
        );
        // A relative link, through an existing link.
        std::os::unix::fs::symlink("ws", root.join("alias")).unwrap();
        std::os::unix::fs::symlink("../alias/keys", root.join("ws/k")).unwrap();
        assert_eq!(resolved(&root.join("ws/k")), root.join("ws/keys"));
        assert!(is_within(&root.join("link"), &root.join("ws")));
        // A loop of links ends.
        std::os::unix::fs::symlink("b", root.join("a")).unwrap();
        std::os::unix::fs::symlink("a", root.join("b")).unwrap();
        let _ = resolved(&root.join("a/x"));
    }
}
