//! File metadata and directory listings as a function of the key (SANDBOX-005).
//!
//! What the host file system says about a file beyond its name, type and bytes depends
//! on the machine and the moment: its times, its inode number, its link count (inputs
//! are staged as hard links, so other tasks staging the same file change it), the size
//! a directory reports, and the order a directory lists its names in (ext4 and tmpfs
//! differ for the same files). None of it is in the key, so none of it reaches the guest:
//!
//! * times read the fixed epoch (with `clock = "fixed"`);
//! * inode numbers are numbered in the order the guest first sees each file;
//! * link counts are 1, a directory's size is 0;
//! * listings are sorted by name, `.` and `..` first, with cookies that count entries.

use super::{block, enter, errno_of, path_bytes};
use crate::sandbox::TaskState;
use std::collections::HashMap;
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as abi, WasiSnapshotPreview1};
use wiggle::{GuestMemory, GuestPtr};

const MODULE: &str = super::MODULE;

/// One directory entry as wasmtime-wasi lists it, with its inode already renumbered.
#[derive(Debug, Clone)]
pub(crate) struct DirEntry {
    pub ino: u64,
    pub kind: u8,
    pub name: Vec<u8>,
}

/// The size of a `dirent` header in WASI preview 1.
pub(crate) const DIRENT_SIZE: usize = 24;

pub(crate) struct MetaView {
    /// The fixed wall clock in nanoseconds, or `None` for host times.
    fixed_time_ns: Option<u64>,
    /// wasmtime-wasi's inode value (a hash of the host's device and inode) to ours.
    inodes: HashMap<u64, u64>,
    /// The sorted listing last read, reused while the guest pages through it.
    listing: Option<(u32, Vec<DirEntry>)>,
}

impl MetaView {
    pub fn new(fixed_time_ns: Option<u64>) -> Self {
        MetaView {
            fixed_time_ns,
            inodes: HashMap::new(),
            listing: None,
        }
    }

    /// Our inode number for wasmtime-wasi's: 1, 2, 3... in order of first sight.
    pub fn inode(&mut self, host: u64) -> u64 {
        if host == 0 {
            return 0;
        }
        let next = self.inodes.len() as u64 + 1;
        *self.inodes.entry(host).or_insert(next)
    }

    /// The stat the guest sees.
    pub fn filestat(&mut self, mut s: types::Filestat) -> types::Filestat {
        let is_stdio = s.ino == 0 && s.nlink == 0;
        if is_stdio {
            return s;
        }
        s.dev = 1;
        s.ino = self.inode(s.ino);
        s.nlink = 1;
        if s.filetype == types::Filetype::Directory {
            s.size = 0;
        }
        if let Some(t) = self.fixed_time_ns {
            s.atim = t;
            s.mtim = t;
            s.ctim = t;
        }
        s
    }

    /// Anything that may change a directory forgets the listing kept.
    pub fn invalidate(&mut self) {
        self.listing = None;
    }

    /// The sorted listing of `fd`, from the one kept or read now by `read`.
    pub fn listing<E>(
        &mut self,
        fd: u32,
        fresh: bool,
        read: impl FnOnce() -> Result<Vec<DirEntry>, E>,
    ) -> Result<&[DirEntry], E> {
        let keep = !fresh && self.listing.as_ref().is_some_and(|(f, _)| *f == fd);
        if !keep {
            let mut entries = read()?;
            // `.` and `..` come first, as every listing has them; the rest by name.
            let dots = entries
                .iter()
                .take(2)
                .take_while(|e| e.name == b"." || e.name == b"..")
                .count();
            entries[dots..].sort_by(|a, b| a.name.cmp(&b.name));
            for e in &mut entries {
                e.ino = self.inode(e.ino);
            }
            self.listing = Some((fd, entries));
        }
        Ok(&self.listing.as_ref().expect("just set").1)
    }
}

/// Parses wasmtime-wasi's `fd_readdir` output: each complete entry with the cookie of
/// the entry after it. A last entry cut off by the end of the buffer is left out.
pub(crate) fn parse_dirents(buf: &[u8]) -> Vec<(u64, DirEntry)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + DIRENT_SIZE <= buf.len() {
        let word = |at: usize| u64::from_le_bytes(buf[pos + at..pos + at + 8].try_into().unwrap());
        let next = word(0);
        let ino = word(8);
        let len = u32::from_le_bytes(buf[pos + 16..pos + 20].try_into().unwrap()) as usize;
        let kind = buf[pos + 20];
        let start = pos + DIRENT_SIZE;
        let Some(name) = buf.get(start..start + len) else {
            break;
        };
        out.push((
            next,
            DirEntry {
                ino,
                kind,
                name: name.to_vec(),
            },
        ));
        pos = start + len;
    }
    out
}

/// The bytes `fd_readdir` gives the guest from `cookie` on, at most `cap` of them,
/// cut off mid-entry as WASI preview 1 does when the buffer is full.
pub(crate) fn render(entries: &[DirEntry], cookie: u64, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let skip = usize::try_from(cookie).unwrap_or(usize::MAX);
    for (i, e) in entries.iter().enumerate().skip(skip) {
        let mut dirent = [0u8; DIRENT_SIZE];
        dirent[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        dirent[8..16].copy_from_slice(&e.ino.to_le_bytes());
        dirent[16..20].copy_from_slice(&(e.name.len() as u32).to_le_bytes());
        dirent[20] = e.kind;
        for part in [&dirent[..], &e.name[..]] {
            let room = cap - out.len();
            out.extend_from_slice(&part[..room.min(part.len())]);
            if out.len() == cap {
                return out;
            }
        }
    }
    out
}

// ---- the shadows ----------------------------------------------------------------

pub(super) fn add(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_filestat_get",
        |mut c: Caller<'_, TaskState>, fd: i32, buf: i32| {
            enter(&mut c, |mem, st| {
                let code = block(abi::fd_filestat_get(&mut st.wasi, mem, fd, buf))?;
                if code == 0 {
                    patch_filestat(mem, st, buf)?;
                }
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_filestat_get",
        |mut c: Caller<'_, TaskState>, fd: i32, flags: i32, path: i32, len: i32, buf: i32| {
            enter(&mut c, |mem, st| {
                let name = path_bytes(mem, path, len);
                let code = block(abi::path_filestat_get(
                    &mut st.wasi,
                    mem,
                    fd,
                    flags,
                    path,
                    len,
                    buf,
                ))?;
                if code == 0 {
                    patch_filestat(mem, st, buf)?;
                } else if let Some(errno) = errno_of(code) {
                    st.guard.access.refused(fd as u32, &name, errno);
                }
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_readdir",
        |mut c: Caller<'_, TaskState>, fd: i32, buf: i32, len: i32, cookie: i64, used: i32| {
            enter(&mut c, |mem, st| {
                let TaskState { wasi, guard, .. } = st;
                let listed = guard
                    .meta
                    .listing(fd as u32, cookie == 0, || read_whole_dir(wasi, fd as u32));
                let entries = match listed {
                    Ok(entries) => entries,
                    Err(Ok(errno)) => return Ok(errno as i32),
                    Err(Err(trap)) => return Err(trap),
                };
                let bytes = render(entries, cookie as u64, len as u32 as usize);
                let dest = GuestPtr::<[u8]>::new((buf as u32, bytes.len() as u32));
                if mem.copy_from_slice(&bytes, dest).is_err() {
                    return Ok(Errno::Fault as i32);
                }
                mem.write(GuestPtr::<u32>::new(used as u32), bytes.len() as u32)?;
                Ok(Errno::Success as i32)
            })
        },
    )?;
    Ok(())
}

/// Rewrites the `filestat` wasmtime-wasi wrote at `buf` into the guest's view.
fn patch_filestat(mem: &mut GuestMemory<'_>, st: &mut TaskState, buf: i32) -> wasmtime::Result<()> {
    let ptr = GuestPtr::<types::Filestat>::new(buf as u32);
    let host = mem.read(ptr)?;
    mem.write(ptr, st.guard.meta.filestat(host))?;
    Ok(())
}

/// Every entry of directory `fd`, as wasmtime-wasi lists them: read into a buffer of the
/// host's (the trait takes any memory), page by page. `Err(Ok(errno))` is the guest's
/// error, `Err(Err(trap))` a trap.
fn read_whole_dir(
    wasi: &mut wasmtime_wasi::p1::WasiP1Ctx,
    fd: u32,
) -> Result<Vec<DirEntry>, Result<Errno, wasmtime::Error>> {
    let mut buf = vec![0u8; 64 << 10];
    let mut cookie = 0u64;
    let mut all = Vec::new();
    loop {
        let len = buf.len() as u32;
        let mut scratch = GuestMemory::Unshared(&mut buf);
        let used = match block(wasi.fd_readdir(
            &mut scratch,
            types::Fd::from(fd),
            GuestPtr::new(0),
            len,
            cookie,
        )) {
            Ok(n) => n as usize,
            Err(e) => return Err(e.downcast()),
        };
        let page = parse_dirents(&buf[..used]);
        let full = used == buf.len();
        match page.last() {
            Some((next, _)) => cookie = *next,
            // Not even one entry fits: a name this long cannot be, but double and retry.
            None if full => {
                buf.resize(buf.len() * 2, 0);
                continue;
            }
            None => {}
        }
        all.extend(page.into_iter().map(|(_, e)| e));
        if !full {
            return Ok(all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, ino: u64) -> DirEntry {
        DirEntry {
            ino,
            kind: 4,
            name: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn listings_are_sorted_renumbered_and_round_trip() {
        let mut m = MetaView::new(Some(5));
        let host = vec![
            entry(".", 900),
            entry("..", 901),
            entry("zeta", 77),
            entry("alpha", 78),
        ];
        let listed = m.listing(3, true, || Ok::<_, ()>(host)).unwrap().to_vec();
        let names: Vec<&[u8]> = listed.iter().map(|e| &e.name[..]).collect();
        assert_eq!(names, [&b"."[..], b"..", b"alpha", b"zeta"]);
        assert_eq!(
            listed.iter().map(|e| e.ino).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let bytes = render(&listed, 0, 4096);
        let back = parse_dirents(&bytes);
        assert_eq!(back.len(), 4);
        assert_eq!(back[2].0, 3, "cookies count entries");
        // A small buffer is filled to the brim, cutting the entry that does not fit.
        assert_eq!(render(&listed, 0, 30).len(), 30);
        assert_eq!(parse_dirents(&render(&listed, 0, 30)).len(), 1);
        assert_eq!(
            render(&listed, 2, 4096),
            bytes[bytes.len() - (24 * 2 + 9)..]
        );
    }

    #[test]
    fn stats_hide_the_host() {
        let mut m = MetaView::new(Some(315_532_800_000_000_000));
        let host = types::Filestat {
            dev: 1,
            ino: 0xdead_beef,
            filetype: types::Filetype::RegularFile,
            nlink: 7,
            size: 12,
            atim: 1,
            mtim: 2,
            ctim: 3,
        };
        let seen = m.filestat(host.clone());
        assert_eq!((seen.ino, seen.nlink, seen.size), (1, 1, 12));
        assert_eq!(
            (seen.atim, seen.mtim, seen.ctim),
            (
                315_532_800_000_000_000,
                315_532_800_000_000_000,
                315_532_800_000_000_000
            )
        );
        let dir = m.filestat(types::Filestat {
            filetype: types::Filetype::Directory,
            ino: 5,
            size: 4096,
            ..host.clone()
        });
        assert_eq!((dir.ino, dir.size), (2, 0));
        assert_eq!(m.filestat(host).ino, 1, "the same file keeps its number");
    }
}
