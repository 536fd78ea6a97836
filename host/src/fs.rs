//! File-system operations on directory handles (`cap-std`): what wask reads, writes and
//! removes under a directory it does not fully trust (the cache, the workspace) is
//! reached one component at a time from a handle, never through a symbolic link and
//! never by `..`, so a link planted anywhere on the way cannot redirect it, and a
//! directory swapped for a link between a check and a use is refused, not followed.

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

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

/// Whether `path` is `dir` or lies below it, as written or with links resolved (as far
/// as the paths exist).
pub fn is_within(path: &Path, dir: &Path) -> bool {
    let resolved = |p: &Path| {
        // The deepest part that exists, resolved, with the rest put back.
        let mut base = p.to_path_buf();
        let mut rest = Vec::new();
        loop {
            if let Ok(c) = base.canonicalize() {
                return rest
                    .iter()
                    .rev()
                    .fold(c, |acc: std::path::PathBuf, n| acc.join(n));
            }
            match (base.parent(), base.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    base = parent.to_path_buf();
                }
                _ => return p.to_path_buf(),
            }
        }
    };
    path.starts_with(dir) || resolved(path).starts_with(resolved(dir))
}

/// A name no other writer uses at the same moment: `prefix`, this process's id, a count.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}
