//! The hostile guest: a test task that tries to break out of wask's sandbox in the ways
//! its arguments name, and reports for each attack whether it got anywhere.
//!
//! `hostile ATTACK[:PARAMS]...` runs the attacks in order. Each prints exactly one line
//! per outcome on stdout:
//!
//! * `ESCAPED <attack> <detail>`: it did something a task must never be able to do
//!   (several lines if several routes worked);
//! * `held <attack> <why>`: every route was refused (or only touched the sandbox's own
//!   scratch copy, which wask must then judge).
//!
//! `hostile count-args ...` only prints how many arguments (and bytes) it got;
//! `hostile deep-recursion` recurses until the engine's stack is exhausted.
//!
//! The guest exits 0 whatever happened, so wask's verdict on the task is its own.
//!
//! Anything read is checked for secrets: the marker `TOPSECRET` (every undeclared file of
//! the tests' workspaces has it), a WebAssembly module (`\0asm`: the task's own module)
//! or a cache manifest (`"stored_by"`). Reading one is an escape even where the read
//! itself looked legitimate.
//!
//! Attacks run "from every preopen": the preopened directories are enumerated with
//! `fd_prestat_get` from fd 3 upward, and raw WASI calls are made against each fd, so
//! wasi-libc's path mapping is bypassed.
//!
//! PARAMS are comma-separated guest paths (or names, or numbers) where an attack needs
//! them (`put:PATH|TEXT` takes a path and the exact text to write); see [`attack`]
//! for the list.

use std::io::{Read, Write};

const MARKER: &[u8] = b"TOPSECRET";

// ---- raw WASI preview 1 ------------------------------------------------------------

mod wasi {
    #[repr(C)]
    pub struct Iovec {
        pub buf: *mut u8,
        pub len: usize,
    }
    #[repr(C)]
    pub struct Ciovec {
        pub buf: *const u8,
        pub len: usize,
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        #[link_name = "fd_prestat_get"]
        pub fn fd_prestat_get(fd: u32, buf: *mut u8) -> u16;
        #[link_name = "fd_prestat_dir_name"]
        pub fn fd_prestat_dir_name(fd: u32, path: *mut u8, len: usize) -> u16;
        #[link_name = "path_open"]
        pub fn path_open(
            fd: u32,
            dirflags: u32,
            path: *const u8,
            path_len: usize,
            oflags: u32,
            rights_base: u64,
            rights_inheriting: u64,
            fdflags: u32,
            out: *mut u32,
        ) -> u16;
        #[link_name = "fd_read"]
        pub fn fd_read(fd: u32, iovs: *const Iovec, n: usize, nread: *mut usize) -> u16;
        #[link_name = "fd_write"]
        pub fn fd_write(fd: u32, iovs: *const Ciovec, n: usize, nwritten: *mut usize) -> u16;
        #[link_name = "fd_pwrite"]
        pub fn fd_pwrite(
            fd: u32,
            iovs: *const Ciovec,
            n: usize,
            offset: u64,
            nwritten: *mut usize,
        ) -> u16;
        #[link_name = "fd_close"]
        pub fn fd_close(fd: u32) -> u16;
        #[link_name = "fd_readdir"]
        pub fn fd_readdir(fd: u32, buf: *mut u8, len: usize, cookie: u64, used: *mut usize) -> u16;
        #[link_name = "path_symlink"]
        pub fn path_symlink(
            old: *const u8,
            old_len: usize,
            fd: u32,
            new: *const u8,
            new_len: usize,
        ) -> u16;
        #[link_name = "path_link"]
        pub fn path_link(
            old_fd: u32,
            old_flags: u32,
            old: *const u8,
            old_len: usize,
            new_fd: u32,
            new: *const u8,
            new_len: usize,
        ) -> u16;
        #[link_name = "path_rename"]
        pub fn path_rename(
            fd: u32,
            old: *const u8,
            old_len: usize,
            new_fd: u32,
            new: *const u8,
            new_len: usize,
        ) -> u16;
        #[link_name = "path_unlink_file"]
        pub fn path_unlink_file(fd: u32, path: *const u8, len: usize) -> u16;
        #[link_name = "path_create_directory"]
        pub fn path_create_directory(fd: u32, path: *const u8, len: usize) -> u16;
        #[link_name = "path_filestat_get"]
        pub fn path_filestat_get(
            fd: u32,
            flags: u32,
            path: *const u8,
            len: usize,
            buf: *mut u8,
        ) -> u16;
        #[link_name = "path_filestat_set_times"]
        pub fn path_filestat_set_times(
            fd: u32,
            flags: u32,
            path: *const u8,
            len: usize,
            atim: u64,
            mtim: u64,
            fst_flags: u32,
        ) -> u16;
        #[link_name = "path_readlink"]
        pub fn path_readlink(
            fd: u32,
            path: *const u8,
            len: usize,
            buf: *mut u8,
            buf_len: usize,
            used: *mut usize,
        ) -> u16;
        #[link_name = "fd_filestat_set_size"]
        pub fn fd_filestat_set_size(fd: u32, size: u64) -> u16;
        #[link_name = "fd_filestat_set_times"]
        pub fn fd_filestat_set_times(fd: u32, atim: u64, mtim: u64, fst_flags: u32) -> u16;
        #[link_name = "fd_allocate"]
        pub fn fd_allocate(fd: u32, offset: u64, len: u64) -> u16;
        #[link_name = "fd_renumber"]
        pub fn fd_renumber(from: u32, to: u32) -> u16;
        #[link_name = "fd_fdstat_set_rights"]
        pub fn fd_fdstat_set_rights(fd: u32, base: u64, inheriting: u64) -> u16;
        #[link_name = "clock_time_get"]
        pub fn clock_time_get(id: u32, precision: u64, out: *mut u64) -> u16;
        #[link_name = "clock_res_get"]
        pub fn clock_res_get(id: u32, out: *mut u64) -> u16;
        #[link_name = "random_get"]
        pub fn random_get(buf: *mut u8, len: usize) -> u16;
        #[link_name = "sock_accept"]
        pub fn sock_accept(fd: u32, flags: u32, out: *mut u32) -> u16;
        #[link_name = "sock_recv"]
        pub fn sock_recv(
            fd: u32,
            iovs: *const Iovec,
            n: usize,
            flags: u32,
            datalen: *mut usize,
            oflags: *mut u16,
        ) -> u16;
        #[link_name = "sock_send"]
        pub fn sock_send(
            fd: u32,
            iovs: *const Ciovec,
            n: usize,
            flags: u32,
            datalen: *mut usize,
        ) -> u16;
        #[link_name = "sock_shutdown"]
        pub fn sock_shutdown(fd: u32, how: u32) -> u16;
        #[link_name = "environ_sizes_get"]
        pub fn environ_sizes_get(count: *mut usize, size: *mut usize) -> u16;
        #[link_name = "environ_get"]
        pub fn environ_get(environ: *mut *mut u8, buf: *mut u8) -> u16;
    }

    pub const RIGHTS_ALL: u64 = (1 << 30) - 1;
    pub const RIGHT_FD_READ: u64 = 1 << 1;
    pub const RIGHT_FD_WRITE: u64 = 1 << 6;
    pub const O_CREAT: u32 = 1;
    pub const O_DIRECTORY: u32 = 2;
    pub const O_TRUNC: u32 = 8;
    pub const FDFLAG_APPEND: u32 = 1;
    pub const LOOKUP_FOLLOW: u32 = 1;
    pub const FST_MTIM: u32 = 4;
    pub const FST_MTIM_NOW: u32 = 8;
    pub const FST_ATIM_NOW: u32 = 2;
    pub const CLOCK_REALTIME: u32 = 0;
    pub const CLOCK_MONOTONIC: u32 = 1;
    pub const CLOCK_PROCESS: u32 = 2;
    pub const CLOCK_THREAD: u32 = 3;
    pub const FILETYPE_SYMLINK: u8 = 7;
}

type Errno = u16;

#[derive(Clone, Debug)]
struct Preopen {
    fd: u32,
    name: String,
}

/// Every preopened directory, found by asking fd 3 upward until `EBADF`.
fn preopens() -> Vec<Preopen> {
    let mut out = Vec::new();
    for fd in 3..64u32 {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is the 8-byte prestat the call fills.
        if unsafe { wasi::fd_prestat_get(fd, buf.as_mut_ptr()) } != 0 {
            continue;
        }
        let len = u32::from_le_bytes(buf[4..8].try_into().unwrap()) as usize;
        let mut name = vec![0u8; len];
        // SAFETY: `name` has the length the prestat reported.
        unsafe { wasi::fd_prestat_dir_name(fd, name.as_mut_ptr(), len) };
        out.push(Preopen {
            fd,
            name: String::from_utf8_lossy(&name).into_owned(),
        });
    }
    out
}

fn open_raw(
    fd: u32,
    path: &str,
    oflags: u32,
    rights: u64,
    fdflags: u32,
    follow: bool,
) -> Result<u32, Errno> {
    let mut out = 0u32;
    // SAFETY: the path pointer and length describe `path`; `out` receives the fd.
    let e = unsafe {
        wasi::path_open(
            fd,
            if follow { wasi::LOOKUP_FOLLOW } else { 0 },
            path.as_ptr(),
            path.len(),
            oflags,
            rights,
            rights,
            fdflags,
            &mut out,
        )
    };
    if e == 0 { Ok(out) } else { Err(e) }
}

fn close(fd: u32) {
    // SAFETY: closing an fd we opened.
    unsafe { wasi::fd_close(fd) };
}

fn read_fd(fd: u32) -> Result<Vec<u8>, Errno> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let iov = wasi::Iovec {
            buf: buf.as_mut_ptr(),
            len: buf.len(),
        };
        let mut n = 0usize;
        // SAFETY: one iovec over `buf`.
        let e = unsafe { wasi::fd_read(fd, &iov, 1, &mut n) };
        if e != 0 {
            return Err(e);
        }
        if n == 0 {
            return Ok(all);
        }
        all.extend_from_slice(&buf[..n]);
        if all.len() > 64 << 20 {
            return Ok(all);
        }
    }
}

fn write_fd(fd: u32, bytes: &[u8]) -> Result<usize, Errno> {
    let iov = wasi::Ciovec {
        buf: bytes.as_ptr(),
        len: bytes.len(),
    };
    let mut n = 0usize;
    // SAFETY: one iovec over `bytes`.
    let e = unsafe { wasi::fd_write(fd, &iov, 1, &mut n) };
    if e == 0 { Ok(n) } else { Err(e) }
}

/// Opens `path` under `fd` for reading and reads it whole.
fn read_raw(fd: u32, path: &str, follow: bool) -> Result<Vec<u8>, Errno> {
    let f = open_raw(fd, path, 0, wasi::RIGHT_FD_READ, 0, follow)?;
    let r = read_fd(f);
    close(f);
    r
}

/// Directory entry names of an open directory, read with cookie `start`.
fn readdir_fd(fd: u32, start: u64) -> Result<Vec<String>, Errno> {
    let mut names = Vec::new();
    let mut cookie = start;
    loop {
        let mut buf = vec![0u8; 4096];
        let mut used = 0usize;
        // SAFETY: `buf` is the buffer the call fills, `used` its fill level.
        let e = unsafe { wasi::fd_readdir(fd, buf.as_mut_ptr(), buf.len(), cookie, &mut used) };
        if e != 0 {
            return Err(e);
        }
        let mut at = 0;
        let mut progressed = false;
        while at + 24 <= used {
            let next = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
            let namlen = u32::from_le_bytes(buf[at + 16..at + 20].try_into().unwrap()) as usize;
            if at + 24 + namlen > used {
                break;
            }
            names.push(String::from_utf8_lossy(&buf[at + 24..at + 24 + namlen]).into_owned());
            cookie = next;
            at += 24 + namlen;
            progressed = true;
        }
        if used < buf.len() || !progressed {
            return Ok(names);
        }
        if names.len() > 100_000 {
            return Ok(names);
        }
    }
}

fn filestat_type(fd: u32, path: &str, follow: bool) -> Result<u8, Errno> {
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is the 64-byte filestat the call fills.
    let e = unsafe {
        wasi::path_filestat_get(
            fd,
            if follow { wasi::LOOKUP_FOLLOW } else { 0 },
            path.as_ptr(),
            path.len(),
            buf.as_mut_ptr(),
        )
    };
    if e == 0 { Ok(buf[16]) } else { Err(e) }
}

fn symlink_raw(target: &str, fd: u32, link: &str) -> Result<(), Errno> {
    // SAFETY: both pointers and lengths describe live strings.
    let e =
        unsafe { wasi::path_symlink(target.as_ptr(), target.len(), fd, link.as_ptr(), link.len()) };
    if e == 0 { Ok(()) } else { Err(e) }
}

fn link_raw(old_fd: u32, old: &str, new_fd: u32, new: &str) -> Result<(), Errno> {
    // SAFETY: both pointers and lengths describe live strings.
    let e = unsafe {
        wasi::path_link(
            old_fd,
            0,
            old.as_ptr(),
            old.len(),
            new_fd,
            new.as_ptr(),
            new.len(),
        )
    };
    if e == 0 { Ok(()) } else { Err(e) }
}

fn rename_raw(fd: u32, old: &str, new_fd: u32, new: &str) -> Result<(), Errno> {
    // SAFETY: both pointers and lengths describe live strings.
    let e =
        unsafe { wasi::path_rename(fd, old.as_ptr(), old.len(), new_fd, new.as_ptr(), new.len()) };
    if e == 0 { Ok(()) } else { Err(e) }
}

fn unlink_raw(fd: u32, path: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `path`.
    let e = unsafe { wasi::path_unlink_file(fd, path.as_ptr(), path.len()) };
    if e == 0 { Ok(()) } else { Err(e) }
}

fn mkdir_raw(fd: u32, path: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `path`.
    let e = unsafe { wasi::path_create_directory(fd, path.as_ptr(), path.len()) };
    if e == 0 { Ok(()) } else { Err(e) }
}

fn clock(id: u32) -> Result<u64, Errno> {
    let mut t = 0u64;
    // SAFETY: `t` receives the time.
    let e = unsafe { wasi::clock_time_get(id, 1, &mut t) };
    if e == 0 { Ok(t) } else { Err(e) }
}

// ---- judging -----------------------------------------------------------------------

/// Whether bytes the guest got hold of are something it must never see.
fn secret_in(bytes: &[u8]) -> Option<&'static str> {
    if bytes.windows(MARKER.len()).any(|w| w == MARKER) {
        Some("an undeclared file's secret marker")
    } else if bytes.starts_with(b"\0asm") {
        Some("a WebAssembly module")
    } else if bytes.windows(11).any(|w| w == b"\"stored_by\"") {
        Some("a cache manifest")
    } else {
        None
    }
}

fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.contains("secret") || lower.ends_with(".wasm") || lower == "manifest.json"
}

/// What one attack found.
struct Report {
    attack: String,
    escapes: Vec<String>,
    notes: Vec<String>,
}

impl Report {
    fn new(attack: &str) -> Report {
        Report {
            attack: attack.to_string(),
            escapes: Vec::new(),
            notes: Vec::new(),
        }
    }
    fn escaped(&mut self, detail: impl Into<String>) {
        self.escapes.push(detail.into());
    }
    fn note(&mut self, detail: impl Into<String>) {
        self.notes.push(detail.into());
    }
    /// A route that must be refused: success is an escape.
    fn refused<T>(&mut self, what: &str, r: Result<T, Errno>) -> Option<T> {
        match r {
            Ok(v) => {
                self.escaped(format!("{what} succeeded"));
                Some(v)
            }
            Err(e) => {
                self.note(format!("{what}: errno {e}"));
                None
            }
        }
    }
    /// Bytes read by any route: a secret among them is an escape.
    fn inspect(&mut self, what: &str, bytes: &[u8]) {
        if let Some(kind) = secret_in(bytes) {
            self.escaped(format!("{what} revealed {kind}"));
        }
    }
    fn print(self) {
        let mut out = std::io::stdout().lock();
        if self.escapes.is_empty() {
            let mut why = self.notes.join("; ");
            if why.len() > 300 && self.attack != "ls" {
                let mut cut = 300;
                while !why.is_char_boundary(cut) {
                    cut -= 1;
                }
                why.truncate(cut);
                why.push_str("...");
            }
            if why.is_empty() {
                why.push_str("nothing reachable");
            }
            let _ = writeln!(out, "held {} {}", self.attack, why);
        } else {
            for e in &self.escapes {
                let _ = writeln!(out, "ESCAPED {} {}", self.attack, e);
            }
        }
        let _ = out.flush();
    }
}

fn io_err(e: std::io::Error) -> Errno {
    e.raw_os_error().map(|c| c as Errno).unwrap_or(u16::MAX)
}

fn list(params: &str) -> Vec<String> {
    params
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The preopen whose guest path is the longest prefix of `path`, and the rest.
fn owner<'a>(pre: &'a [Preopen], path: &str) -> Option<(&'a Preopen, String)> {
    pre.iter()
        .filter(|p| {
            p.name == "/"
                || path == p.name
                || path
                    .strip_prefix(&p.name)
                    .is_some_and(|r| r.starts_with('/'))
        })
        .max_by_key(|p| p.name.len())
        .map(|p| {
            let rest = path[p.name.len()..].trim_start_matches('/');
            (
                p,
                if rest.is_empty() {
                    ".".into()
                } else {
                    rest.to_string()
                },
            )
        })
}

fn writable(p: &Preopen) -> bool {
    // A directory we may create in: try and clean up.
    let probe = ".hostile-probe";
    if mkdir_raw(p.fd, probe).is_ok() {
        // SAFETY: the pointer and length describe `probe`.
        unsafe {
            let _ = remove_dir_raw(p.fd, probe);
        }
        true
    } else {
        false
    }
}

unsafe fn remove_dir_raw(fd: u32, path: &str) -> Errno {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        #[link_name = "path_remove_directory"]
        fn path_remove_directory(fd: u32, path: *const u8, len: usize) -> u16;
    }
    // SAFETY: the caller passes a live string.
    unsafe { path_remove_directory(fd, path.as_ptr(), path.len()) }
}

/// Names the guest tries to reach above each preopen.
const ABOVE: &[&str] = &[
    "",
    "secret.txt",
    "app/secret.txt",
    "app/in/secret.txt",
    ".wask",
    ".wask/cache",
    ".wask/cache/cache-secret.txt",
    "cache",
    "cache/cache-secret.txt",
    "tmp",
    "ro",
    "rw0",
    "rw1",
    "tools/hostile.wasm",
    "etc/passwd",
    "outside-secret.txt",
];

// ---- the attacks -------------------------------------------------------------------

fn attack(name: &str, params: &str, pre: &[Preopen]) -> Report {
    let mut r = Report::new(name);
    let rw: Vec<Preopen> = pre.iter().filter(|p| writable(p)).cloned().collect();
    let ro: Vec<Preopen> = pre.iter().filter(|p| !writable(p)).cloned().collect();
    match name {
        // -- reading and discovering --
        "dotdot-dir" => {
            for p in pre {
                for path in [
                    "..",
                    "../..",
                    "../../..",
                    "../../../..",
                    "./..",
                    "x/../..",
                    "../.",
                    "/..",
                ] {
                    if let Some(fd) = r.refused(
                        &format!(
                            "opening {path:?} as a directory from {} (fd {})",
                            p.name, p.fd
                        ),
                        open_raw(p.fd, path, wasi::O_DIRECTORY, wasi::RIGHTS_ALL, 0, true),
                    ) {
                        if let Ok(names) = readdir_fd(fd, 0) {
                            r.escaped(format!("listed {path:?} above {}: {names:?}", p.name));
                        }
                        close(fd);
                    }
                }
            }
        }
        "dotdot-read" => {
            for p in pre {
                for depth in 1..=8 {
                    for name in ABOVE.iter().filter(|n| !n.is_empty()) {
                        let path = format!("{}{name}", "../".repeat(depth));
                        if let Some(bytes) = r.refused(
                            &format!("reading {path} from {}", p.name),
                            read_raw(p.fd, &path, true),
                        ) {
                            r.inspect(&path, &bytes);
                        }
                    }
                }
            }
            r.notes.truncate(3);
        }
        "dotdot-std" => {
            // Through wasi-libc's path mapping: `..` after a preopen's name.
            for p in pre {
                for up in 1..=6 {
                    for name in ABOVE.iter().filter(|n| !n.is_empty()) {
                        let path = format!(
                            "{}/{}{name}",
                            p.name.trim_end_matches('/'),
                            "../".repeat(up)
                        );
                        match std::fs::read(&path) {
                            Ok(bytes) => {
                                r.inspect(&path, &bytes);
                                // Inside the view again (`/app/..` is `/`) is fine; only
                                // a secret is an escape.
                            }
                            Err(e) => r.note(format!("{path}: {e}")),
                        }
                    }
                }
            }
            r.notes.truncate(3);
        }
        "abs-raw" => {
            let mut paths: Vec<String> = [
                "/",
                "/etc/passwd",
                "/proc/self/environ",
                "/tmp",
                "//etc/passwd",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            paths.extend(list(params));
            for p in pre {
                for path in &paths {
                    if let Some(fd) = r.refused(
                        &format!("opening absolute {path} from {}", p.name),
                        open_raw(p.fd, path, 0, wasi::RIGHT_FD_READ, 0, true),
                    ) {
                        if let Ok(bytes) = read_fd(fd) {
                            r.inspect(path, &bytes);
                        }
                        close(fd);
                    }
                }
            }
            r.notes.truncate(3);
        }
        "abs-std" => {
            // Host-absolute paths given by the test: wasi-libc maps them into `/`.
            for path in list(params) {
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        r.escaped(format!("read host path {path} ({} bytes)", bytes.len()));
                        r.inspect(&path, &bytes);
                    }
                    Err(e) => r.note(format!("{path}: {e}")),
                }
                if std::fs::metadata(&path).is_ok() {
                    r.escaped(format!("host path {path} exists in the sandbox"));
                }
            }
        }
        "read-undeclared" => {
            for path in list(params) {
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        r.escaped(format!("read undeclared {path} ({} bytes)", bytes.len()));
                        r.inspect(&path, &bytes);
                    }
                    Err(e) => r.note(format!("{path}: {e}")),
                }
                if let Some((p, rel)) = owner(pre, &path) {
                    for follow in [true, false] {
                        if let Some(bytes) = r.refused(
                            &format!("raw read of {rel} under {}", p.name),
                            read_raw(p.fd, &rel, follow),
                        ) {
                            r.inspect(&path, &bytes);
                        }
                    }
                }
            }
        }
        "stat-undeclared" => {
            for path in list(params) {
                if let Some((p, rel)) = owner(pre, &path) {
                    for follow in [true, false] {
                        r.refused(
                            &format!("stat of {path} (follow {follow})"),
                            filestat_type(p.fd, &rel, follow),
                        );
                    }
                }
                r.refused(
                    &format!("std metadata of {path}"),
                    std::fs::symlink_metadata(&path).map_err(io_err),
                );
            }
        }
        "read-cache" => {
            for path in [
                "/.wask/cache/cache-secret.txt",
                "/.wask/cache",
                "/.wask/tmp",
                "/.wask/cache/compiled",
                "/.wask/cache/explain",
            ] {
                match std::fs::read(path) {
                    Ok(bytes) => {
                        r.escaped(format!("read {path}"));
                        r.inspect(path, &bytes);
                    }
                    Err(e) => r.note(format!("{path}: {e}")),
                }
                if let Ok(rd) = std::fs::read_dir(path) {
                    let names: Vec<String> = rd
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    r.escaped(format!("listed {path}: {names:?}"));
                }
            }
            match std::fs::read_dir("/.wask") {
                Ok(rd) => {
                    let names: Vec<String> = rd
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    if names.iter().any(|n| n != "task.json") {
                        r.escaped(format!("/.wask holds more than task.json: {names:?}"));
                    } else {
                        r.note(format!("/.wask lists {names:?}"));
                    }
                }
                Err(e) => r.note(format!("/.wask: {e}")),
            }
        }
        "read-module" => {
            let mut paths = list(params);
            paths.extend(["/hostile.wasm", "/proc/self/exe", "/dev/stdin"].map(String::from));
            if let Some(argv0) = std::env::args().next() {
                paths.push(argv0.clone());
                paths.push(format!("/{argv0}"));
            }
            for path in paths {
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        r.inspect(&path, &bytes);
                        r.note(format!("{path}: read {} bytes", bytes.len()));
                    }
                    Err(e) => r.note(format!("{path}: {e}")),
                }
            }
        }
        "walk" => {
            // Recursively list and read everything reachable from every preopen.
            let mut files = 0;
            for p in pre {
                let mut stack = vec![p.name.clone()];
                while let Some(dir) = stack.pop() {
                    let Ok(rd) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    for e in rd.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let path = e.path().to_string_lossy().into_owned();
                        if secret_name(&name) {
                            r.escaped(format!("listing {dir} shows {name}"));
                        }
                        match e.file_type() {
                            Ok(t) if t.is_dir() => stack.push(path),
                            Ok(t) if t.is_symlink() => {
                                r.escaped(format!("{path} is a symbolic link in the view"))
                            }
                            _ => {
                                files += 1;
                                if let Ok(bytes) = std::fs::read(&path) {
                                    r.inspect(&path, &bytes);
                                }
                            }
                        }
                    }
                }
            }
            r.note(format!("{files} files reachable, none secret"));
        }
        "readdir-raw" => {
            for p in pre {
                for cookie in [0u64, 1, 2, 3, u64::MAX, u64::MAX - 1, 1 << 32, 1 << 63] {
                    match readdir_fd(p.fd, cookie) {
                        Ok(names) => {
                            for n in &names {
                                if secret_name(n) {
                                    r.escaped(format!(
                                        "fd_readdir({}, {cookie}) shows {n}",
                                        p.name
                                    ));
                                }
                            }
                            if cookie == 0 {
                                r.note(format!("{} lists {names:?}", p.name));
                            }
                        }
                        Err(e) => r.note(format!("fd_readdir({}, {cookie}): errno {e}", p.name)),
                    }
                }
            }
        }
        "inputs-are-files" => {
            // Declared inputs that are links on the host are plain files here.
            for path in list(params) {
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => {
                        r.escaped(format!("{path} is a symbolic link in the sandbox"))
                    }
                    Ok(_) => {}
                    Err(e) => r.note(format!("{path}: {e}")),
                }
                if let Some((p, rel)) = owner(pre, &path) {
                    let mut buf = vec![0u8; 4096];
                    let mut used = 0;
                    // SAFETY: `buf` receives the link text.
                    let e = unsafe {
                        wasi::path_readlink(
                            p.fd,
                            rel.as_ptr(),
                            rel.len(),
                            buf.as_mut_ptr(),
                            buf.len(),
                            &mut used,
                        )
                    };
                    if e == 0 {
                        r.escaped(format!(
                            "readlink {path} = {}",
                            String::from_utf8_lossy(&buf[..used])
                        ));
                    }
                    if filestat_type(p.fd, &rel, false) == Ok(wasi::FILETYPE_SYMLINK) {
                        r.escaped(format!("{path} has type symlink"));
                    }
                }
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        r.inspect(&path, &bytes);
                        r.note(format!(
                            "{path}: {:?}",
                            String::from_utf8_lossy(&bytes).trim()
                        ));
                    }
                    Err(e) => r.note(format!("{path}: {e}")),
                }
            }
        }

        // -- links planted by the task --
        "symlink-abs" => {
            let mut targets: Vec<String> = vec!["/etc/passwd".into(), "/".into()];
            targets.extend(list(params));
            for p in &rw {
                for (i, t) in targets.iter().enumerate() {
                    let link = format!("abs-link-{i}.txt");
                    if symlink_raw(t, p.fd, &link).is_ok() {
                        r.note(format!("planted {}/{link} -> {t}", p.name));
                        if let Some(bytes) = r.refused(
                            &format!("reading through {link} -> {t}"),
                            read_raw(p.fd, &link, true),
                        ) {
                            r.inspect(&link, &bytes);
                        }
                    } else {
                        r.note(format!("symlink {link} -> {t} refused"));
                    }
                }
            }
            if rw.is_empty() {
                r.note("no writable preopen");
            }
        }
        "symlink-dotdot" => {
            for p in &rw {
                for (i, t) in [
                    "../../../../secret.txt",
                    "../../../../../../../../etc/passwd",
                    "../ro/app/in/a.txt",
                    "../../../cache/cache-secret.txt",
                    "../../..",
                ]
                .iter()
                .enumerate()
                {
                    let link = format!("up-link-{i}.txt");
                    if symlink_raw(t, p.fd, &link).is_ok() {
                        r.note(format!("planted {link} -> {t}"));
                        if let Some(bytes) = r.refused(
                            &format!("reading through {link} -> {t}"),
                            read_raw(p.fd, &link, true),
                        ) {
                            r.inspect(&link, &bytes);
                        }
                        r.refused(
                            &format!("opening {link}/.. as a directory"),
                            open_raw(
                                p.fd,
                                &format!("{link}/.."),
                                wasi::O_DIRECTORY,
                                wasi::RIGHTS_ALL,
                                0,
                                true,
                            ),
                        );
                    } else {
                        r.note(format!("symlink {link} -> {t} refused"));
                    }
                }
            }
        }
        "symlink-dir" => {
            // A directory link leading up, then paths through it.
            for p in &rw {
                if symlink_raw("../../..", p.fd, "updir").is_ok() {
                    r.note(format!("planted {}/updir -> ../../..", p.name));
                }
                for path in [
                    "updir",
                    "updir/cache",
                    "updir/cache/cache-secret.txt",
                    "updir/../secret.txt",
                ] {
                    if let Some(fd) = r.refused(
                        &format!("opening {path}"),
                        open_raw(p.fd, path, 0, wasi::RIGHT_FD_READ | (1 << 14), 0, true),
                    ) {
                        if let Ok(names) = readdir_fd(fd, 0) {
                            r.escaped(format!("listed {path}: {names:?}"));
                        }
                        if let Ok(bytes) = read_fd(fd) {
                            r.inspect(path, &bytes);
                        }
                        close(fd);
                    }
                }
                r.refused(
                    "creating a file through updir",
                    open_raw(
                        p.fd,
                        "updir/planted-outside.txt",
                        wasi::O_CREAT,
                        wasi::RIGHTS_ALL,
                        0,
                        true,
                    ),
                );
            }
        }
        "symlink-ro" => {
            for p in &ro {
                r.refused(
                    &format!("planting a link in read-only {}", p.name),
                    symlink_raw("/etc/passwd", p.fd, "planted-link"),
                );
            }
            for path in list(params) {
                if let Some((p, rel)) = owner(pre, &path)
                    && ro.iter().any(|x| x.fd == p.fd)
                {
                    r.refused(
                        &format!("replacing input {path} with a link"),
                        unlink_raw(p.fd, &rel).and_then(|_| symlink_raw("/etc/passwd", p.fd, &rel)),
                    );
                }
            }
        }
        "symlink-to-input" => {
            // A link among the outputs to a declared input (absolute guest path and
            // relative); wask must never store or restore it.
            for (i, target) in list(params).iter().enumerate() {
                for p in &rw {
                    let link = format!("input-link-{i}.txt");
                    match symlink_raw(target, p.fd, &link) {
                        Ok(()) => r.note(format!("planted {}/{link} -> {target}", p.name)),
                        Err(e) => r.note(format!("link to {target}: errno {e}")),
                    }
                }
            }
        }
        "hardlink-input" => {
            // Link a read-only input into a writable directory, then write through it.
            for path in list(params) {
                let Some((src, rel)) = owner(pre, &path) else {
                    continue;
                };
                let before = std::fs::read(&path).ok();
                for p in &rw {
                    let dst = "hardlinked-input.txt";
                    if r.refused(
                        &format!("linking {path} into {}", p.name),
                        link_raw(src.fd, &rel, p.fd, dst),
                    )
                    .is_some()
                    {
                        if let Ok(fd) =
                            open_raw(p.fd, dst, 0, wasi::RIGHTS_ALL, wasi::FDFLAG_APPEND, false)
                        {
                            let _ = write_fd(fd, b"written through a hard link");
                            close(fd);
                        }
                        if std::fs::read(&path).ok() != before {
                            r.escaped(format!("{path} changed through the link"));
                        }
                    }
                }
            }
        }
        "hardlink-dotdot" => {
            for p in &rw {
                for src in [
                    "../../../../secret.txt",
                    "../../../cache/cache-secret.txt",
                    "../ro/app/in/a.txt",
                    "../../..",
                ] {
                    r.refused(
                        &format!("linking {src} into {}", p.name),
                        link_raw(p.fd, src, p.fd, "stolen.txt"),
                    );
                }
                for q in pre {
                    r.refused(
                        &format!("linking a file out of {} to {}/../x", p.name, q.name),
                        link_raw(q.fd, ".wask/task.json", p.fd, "../../stolen.txt"),
                    );
                }
            }
        }
        "hardlink-copy" => {
            // An input copied under an output root: a link to it and a write through
            // the link changes only the sandbox copy; wask must notice.
            let paths = list(params);
            if let [input, link] = &paths[..] {
                match std::fs::hard_link(input, link) {
                    Ok(()) => match std::fs::OpenOptions::new().append(true).open(link) {
                        Ok(mut f) => {
                            let _ = f.write_all(b" changed through a hard link");
                            r.note(format!(
                                "changed the sandbox copy of {input} through {link}"
                            ));
                        }
                        Err(e) => r.note(format!("{link}: {e}")),
                    },
                    Err(e) => r.note(format!("hard link {input} -> {link}: {e}")),
                }
            }
        }
        "rename-escape" => {
            for p in &rw {
                let _ = std::fs::write(
                    format!("{}/to-move.txt", p.name.trim_end_matches('/')),
                    b"x",
                );
                for dst in [
                    "../to-move.txt",
                    "../../../cache/planted.txt",
                    "../../../../planted.txt",
                ] {
                    r.refused(
                        &format!("renaming into {dst}"),
                        rename_raw(p.fd, "to-move.txt", p.fd, dst),
                    );
                }
                r.refused(
                    "renaming the preopen itself",
                    rename_raw(p.fd, ".", p.fd, "moved"),
                );
                for q in &ro {
                    r.refused(
                        &format!("renaming into read-only {}", q.name),
                        rename_raw(p.fd, "to-move.txt", q.fd, "planted.txt"),
                    );
                }
                let _ = unlink_raw(p.fd, "to-move.txt");
            }
        }

        // -- changing declared inputs (read-only ones: must be refused) --
        "write-ro" | "append-ro" | "truncate-ro" | "remove-ro" | "rename-ro" | "settimes-ro"
        | "allocate-ro" => {
            for path in list(params) {
                let Some((p, rel)) = owner(pre, &path) else {
                    r.note(format!("{path}: no preopen"));
                    continue;
                };
                match name {
                    "write-ro" => {
                        r.refused(
                            &format!("std write {path}"),
                            std::fs::write(&path, b"overwritten").map_err(io_err),
                        );
                        if let Some(fd) = r.refused(
                            &format!("raw open {path} for writing"),
                            open_raw(p.fd, &rel, 0, wasi::RIGHT_FD_WRITE, 0, true),
                        ) {
                            r.refused("writing", write_fd(fd, b"overwritten"));
                            close(fd);
                        }
                        if let Some(fd) = r.refused(
                            &format!("raw create-open {path}"),
                            open_raw(p.fd, &rel, wasi::O_CREAT, wasi::RIGHTS_ALL, 0, true),
                        ) {
                            r.refused("writing", write_fd(fd, b"overwritten"));
                            close(fd);
                        }
                    }
                    "append-ro" => {
                        r.refused(
                            &format!("std append {path}"),
                            std::fs::OpenOptions::new()
                                .append(true)
                                .open(&path)
                                .and_then(|mut f| f.write_all(b"appended"))
                                .map_err(io_err),
                        );
                        if let Some(fd) = r.refused(
                            &format!("raw open {path} for append"),
                            open_raw(p.fd, &rel, 0, wasi::RIGHTS_ALL, wasi::FDFLAG_APPEND, true),
                        ) {
                            r.refused("appending", write_fd(fd, b"appended"));
                            close(fd);
                        }
                    }
                    "truncate-ro" => {
                        r.refused(
                            &format!("std truncate {path}"),
                            std::fs::OpenOptions::new()
                                .write(true)
                                .truncate(true)
                                .open(&path)
                                .map(|_| ())
                                .map_err(io_err),
                        );
                        r.refused(
                            &format!("raw O_TRUNC {path}"),
                            open_raw(p.fd, &rel, wasi::O_TRUNC, wasi::RIGHTS_ALL, 0, true)
                                .map(close),
                        );
                        if let Ok(fd) =
                            open_raw(p.fd, &rel, 0, wasi::RIGHT_FD_READ | (1 << 22), 0, true)
                        {
                            // SAFETY: an fd we opened.
                            let e = unsafe { wasi::fd_filestat_set_size(fd, 0) };
                            r.refused("fd_filestat_set_size", if e == 0 { Ok(()) } else { Err(e) });
                            close(fd);
                        }
                    }
                    "remove-ro" => {
                        r.refused(
                            &format!("std remove {path}"),
                            std::fs::remove_file(&path).map_err(io_err),
                        );
                        r.refused(&format!("raw unlink {path}"), unlink_raw(p.fd, &rel));
                    }
                    "rename-ro" => {
                        r.refused(
                            &format!("rename {path} in place"),
                            rename_raw(p.fd, &rel, p.fd, &format!("{rel}.moved")),
                        );
                        for q in &rw {
                            r.refused(
                                &format!("rename {path} into {}", q.name),
                                rename_raw(p.fd, &rel, q.fd, "stolen.txt"),
                            );
                            let _ = std::fs::write(
                                format!("{}/replacement.txt", q.name.trim_end_matches('/')),
                                b"x",
                            );
                            r.refused(
                                &format!("rename a new file over {path}"),
                                rename_raw(q.fd, "replacement.txt", p.fd, &rel),
                            );
                            let _ = unlink_raw(q.fd, "replacement.txt");
                        }
                    }
                    "settimes-ro" => {
                        // SAFETY: the pointer and length describe `rel`.
                        let e = unsafe {
                            wasi::path_filestat_set_times(
                                p.fd,
                                wasi::LOOKUP_FOLLOW,
                                rel.as_ptr(),
                                rel.len(),
                                0,
                                0,
                                wasi::FST_ATIM_NOW | wasi::FST_MTIM_NOW,
                            )
                        };
                        r.refused(
                            "path_filestat_set_times",
                            if e == 0 { Ok(()) } else { Err(e) },
                        );
                        // SAFETY: as above.
                        let e = unsafe {
                            wasi::path_filestat_set_times(
                                p.fd,
                                0,
                                rel.as_ptr(),
                                rel.len(),
                                0,
                                12345,
                                wasi::FST_MTIM,
                            )
                        };
                        r.refused(
                            "path_filestat_set_times to a fixed time",
                            if e == 0 { Ok(()) } else { Err(e) },
                        );
                        if let Ok(fd) =
                            open_raw(p.fd, &rel, 0, wasi::RIGHT_FD_READ | (1 << 23), 0, true)
                        {
                            // SAFETY: an fd we opened.
                            let e = unsafe {
                                wasi::fd_filestat_set_times(fd, 0, 0, wasi::FST_MTIM_NOW)
                            };
                            r.refused(
                                "fd_filestat_set_times",
                                if e == 0 { Ok(()) } else { Err(e) },
                            );
                            close(fd);
                        }
                        r.refused(
                            "std set_modified",
                            std::fs::File::open(&path)
                                .and_then(|f| f.set_modified(std::time::SystemTime::now()))
                                .map_err(io_err),
                        );
                    }
                    _ => {
                        if let Ok(fd) = open_raw(p.fd, &rel, 0, wasi::RIGHTS_ALL, 0, true) {
                            // SAFETY: an fd we opened.
                            let e = unsafe { wasi::fd_allocate(fd, 0, 1 << 20) };
                            r.refused("fd_allocate", if e == 0 { Ok(()) } else { Err(e) });
                            close(fd);
                        } else {
                            r.note(format!("{path} cannot be opened with all rights"));
                        }
                    }
                }
            }
        }

        // -- changing inputs copied under an output root: allowed on the copy only --
        "write-copy" | "append-copy" | "truncate-copy" | "remove-copy" | "rename-copy"
        | "settimes-copy" => {
            for path in list(params) {
                let res = match name {
                    "write-copy" => std::fs::write(&path, b"overwritten copy"),
                    "append-copy" => std::fs::OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .and_then(|mut f| f.write_all(b" appended")),
                    "truncate-copy" => std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(0)),
                    "remove-copy" => std::fs::remove_file(&path),
                    "rename-copy" => std::fs::rename(&path, format!("{path}.renamed")),
                    _ => std::fs::File::options()
                        .write(true)
                        .open(&path)
                        .and_then(|f| {
                            f.set_modified(
                                std::time::UNIX_EPOCH
                                    + std::time::Duration::from_secs(1_000_000_000),
                            )
                        }),
                };
                match res {
                    Ok(()) => r.note(format!("{path}: changed the sandbox copy")),
                    Err(e) => r.note(format!("{path}: {e}")),
                }
            }
        }

        // -- creating files outside declared outputs --
        "create-ro" => {
            for path in list(params) {
                r.refused(
                    &format!("std create {path}"),
                    std::fs::write(&path, b"planted").map_err(io_err),
                );
                if let Some((p, rel)) = owner(pre, &path) {
                    r.refused(
                        &format!("raw create {path}"),
                        open_raw(p.fd, &rel, wasi::O_CREAT, wasi::RIGHTS_ALL, 0, true).map(close),
                    );
                }
            }
        }
        "mkdir-ro" => {
            for path in list(params) {
                r.refused(
                    &format!("std mkdir {path}"),
                    std::fs::create_dir(&path).map_err(io_err),
                );
                if let Some((p, rel)) = owner(pre, &path) {
                    r.refused(&format!("raw mkdir {path}"), mkdir_raw(p.fd, &rel));
                }
            }
        }
        "create-dotdot" => {
            // `..` after an output root, by std and raw.
            for path in list(params) {
                r.refused(
                    &format!("std create {path}"),
                    std::fs::write(&path, b"planted").map_err(io_err),
                );
                // wasi-libc may normalise; also go raw from each writable preopen.
            }
            for p in &rw {
                for rel in [
                    "../escape.txt",
                    "sub/../../escape.txt",
                    "../../../../escape.txt",
                    "../rw0/escape.txt",
                ] {
                    let _ = mkdir_raw(p.fd, "sub");
                    r.refused(
                        &format!("raw create {rel} in {}", p.name),
                        open_raw(p.fd, rel, wasi::O_CREAT, wasi::RIGHTS_ALL, 0, true).map(close),
                    );
                    r.refused(
                        &format!("raw mkdir {rel} in {}", p.name),
                        mkdir_raw(p.fd, rel),
                    );
                }
                let _ = unsafe { remove_dir_raw(p.fd, "sub") };
            }
        }
        "create-undeclared" => {
            // Inside an output root but matching no pattern: the sandbox allows it,
            // wask must refuse the task.
            for path in list(params) {
                if let Some(parent) = std::path::Path::new(&path).parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                match std::fs::write(&path, b"undeclared output") {
                    Ok(()) => r.note(format!("{path}: written in the sandbox")),
                    Err(e) => r.note(format!("{path}: {e}")),
                }
            }
        }
        "task-json" => {
            r.refused(
                "overwriting /.wask/task.json",
                std::fs::write("/.wask/task.json", b"{}").map_err(io_err),
            );
            match std::fs::read("/.wask/task.json") {
                Ok(b) => r.note(format!("task.json: {}", String::from_utf8_lossy(&b))),
                Err(e) => r.note(format!("task.json: {e}")),
            }
        }
        "grow-all" => {
            // Grows memory a page at a time until refused, and says how far it got:
            // what a task could learn of its memory limit if a refusal came back.
            let mut pages = 0u64;
            while pages < 1 << 16 && core::arch::wasm32::memory_grow(0, 1) != usize::MAX {
                pages += 1;
            }
            r.note(format!("grew {pages} pages"));
        }
        "time-to" => {
            // PATH: the wall clock's nanoseconds, as text, into PATH: an output that
            // differs from run to run under the host clock.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            match std::fs::write(params, format!("stable first line\nnow {now}\n")) {
                Ok(()) => r.note(format!("wrote the time to {params}")),
                Err(e) => r.note(format!("{params}: {e}")),
            }
        }
        "interleave" => {
            // N lines to each stream, alternating, each flushed: an order a replay must keep.
            use std::io::Write;
            for i in 0..params.parse::<u32>().unwrap_or(0) {
                let _ = writeln!(std::io::stdout(), "out {i}");
                let _ = std::io::stdout().flush();
                let _ = writeln!(std::io::stderr(), "err {i}");
            }
        }
        "copy" => {
            // SRC|DST: what the task read, kept as an output (to see which bytes it saw).
            if let Some((src, dst)) = params.split_once('|') {
                match std::fs::copy(src, dst) {
                    Ok(n) => r.note(format!("copied {n} bytes of {src}")),
                    Err(e) => r.note(format!("{src}: {e}")),
                }
            }
        }
        "write" => {
            // A legitimate output, so tasks that attack can also produce something.
            let paths = list(params);
            for path in paths {
                if let Some(parent) = std::path::Path::new(&path).parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                match std::fs::write(&path, format!("output {path}\n")) {
                    Ok(()) => r.note(format!("wrote {path}")),
                    Err(e) => r.note(format!("{path}: {e}")),
                }
            }
        }

        "put" => {
            // PATH|TEXT: writes exactly TEXT at PATH, creating parents (what a task
            // whose outputs cover wask's own directory could forge there).
            if let Some((path, text)) = params.split_once('|') {
                if let Some(parent) = std::path::Path::new(path).parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                match std::fs::write(path, text) {
                    Ok(()) => r.note(format!("put {} bytes at {path}", text.len())),
                    Err(e) => r.note(format!("{path}: {e}")),
                }
            }
        }

        // -- limits, and what the host's file system shows (the hardening suite) --
        "sleep" => {
            // A sleep of NS nanoseconds (poll_oneoff on one clock); `max` for u64::MAX.
            let ns = if params == "max" { u64::MAX } else { params.parse().unwrap_or(0) };
            let before = clock(wasi::CLOCK_MONOTONIC).unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_nanos(ns));
            let after = clock(wasi::CLOCK_MONOTONIC).unwrap_or(0);
            r.note(format!("slept; monotonic advanced {} ns", after.saturating_sub(before)));
        }
        "fill" => {
            // PATH|BYTES: writes BYTES bytes to PATH in 1 MiB writes.
            if let Some((path, n)) = params.split_once('|') {
                let total: u64 = n.parse().unwrap_or(0);
                let chunk = vec![b'x'; 1 << 20];
                let written = std::fs::File::create(path).and_then(|mut f| {
                    let mut done = 0u64;
                    while done < total {
                        let n = (total - done).min(chunk.len() as u64) as usize;
                        f.write_all(&chunk[..n])?;
                        done += n as u64;
                    }
                    Ok(done)
                });
                r.note(format!("fill {path}: {written:?}"));
            }
        }
        "sparse" => {
            // PATH|BYTES: a file of BYTES bytes that holds almost nothing on disk.
            if let Some((path, n)) = params.split_once('|') {
                let len: u64 = n.parse().unwrap_or(0);
                let set = std::fs::File::create(path).and_then(|f| f.set_len(len));
                r.note(format!("sparse {path}: {set:?}"));
            }
        }
        "pwrite-far" => {
            // PATH|OFFSET: one byte written at OFFSET.
            if let Some((path, n)) = params.split_once('|') {
                use std::os::fd::AsRawFd;
                let at: u64 = n.parse().unwrap_or(0);
                let wrote = std::fs::File::create(path).map(|f| {
                    let byte = [b'x'];
                    let iov = wasi::Ciovec {
                        buf: byte.as_ptr(),
                        len: 1,
                    };
                    let mut done = 0usize;
                    // SAFETY: one iovec over `byte`; the fd is the open file's.
                    let e = unsafe { wasi::fd_pwrite(f.as_raw_fd() as u32, &iov, 1, at, &mut done) };
                    (e, done)
                });
                r.note(format!("pwrite {path} at {at}: {wrote:?}"));
            }
        }
        "many-files" | "many-dirs" => {
            // DIR|N: N files (or directories) in DIR.
            if let Some((dir, n)) = params.split_once('|') {
                let n: u64 = n.parse().unwrap_or(0);
                let _ = std::fs::create_dir_all(dir);
                let mut made = 0;
                for i in 0..n {
                    let p = format!("{dir}/e{i}");
                    let ok = if name == "many-files" {
                        std::fs::write(&p, b"x").is_ok()
                    } else {
                        std::fs::create_dir(&p).is_ok()
                    };
                    if !ok {
                        break;
                    }
                    made += 1;
                }
                r.note(format!("{name}: made {made} of {n}"));
            }
        }
        "link-bomb" => {
            // PATH|N: a 1 MiB file and N more names for it.
            if let Some((path, n)) = params.split_once('|') {
                let n: u64 = n.parse().unwrap_or(0);
                let _ = std::fs::write(path, vec![b'x'; 1 << 20]);
                let mut made = 0;
                for i in 0..n {
                    if std::fs::hard_link(path, format!("{path}.{i}")).is_err() {
                        break;
                    }
                    made += 1;
                }
                r.note(format!("link-bomb: {made} links"));
            }
        }
        "meta" => {
            // What the file system says of each path beyond its bytes: printed whole so
            // two runs can be compared.
            for path in list(params) {
                let Some((p, rel)) = owner(pre, &path) else {
                    r.note(format!("{path}: no preopen"));
                    continue;
                };
                let mut buf = [0u8; 64];
                // SAFETY: `buf` is the 64-byte filestat the call fills.
                let e = unsafe {
                    wasi::path_filestat_get(
                        p.fd,
                        wasi::LOOKUP_FOLLOW,
                        rel.as_ptr(),
                        rel.len(),
                        buf.as_mut_ptr(),
                    )
                };
                let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
                r.note(format!(
                    "{path}: errno {e} dev {} ino {} type {} nlink {} size {} atim {} mtim {} ctim {}",
                    word(0),
                    word(8),
                    buf[16],
                    word(24),
                    word(32),
                    word(40),
                    word(48),
                    word(56)
                ));
            }
            r.notes = vec![r.notes.join(" | ")];
        }
        "argv0" => {
            r.note(format!("argv[0] is {:?}", std::env::args().next()));
        }
        "nest-open" => {
            // DIR|N: a link `x` to `.` in DIR, then x opened from itself N times: a path
            // that grows with every open while the directory stays the same; and at each
            // level an open of a name that does not exist.
            if let Some((dir, n)) = params.split_once('|') {
                let n: u32 = n.parse().unwrap_or(0);
                let _ = std::fs::create_dir_all(dir);
                let Some((p, rel)) = owner(pre, dir) else {
                    return r;
                };
                let _ = symlink_raw(".", p.fd, &format!("{rel}/x"));
                // Directories are opened with the rights a directory may have.
                let rights = wasi::RIGHTS_ALL & !(wasi::RIGHT_FD_READ | wasi::RIGHT_FD_WRITE);
                let mut opened = 0;
                match open_raw(p.fd, &rel, wasi::O_DIRECTORY, rights, 0, true) {
                    Ok(mut fd) => {
                        for _ in 0..n {
                            // A name that is not there, from every level: each refusal is
                            // an entry of the access record, with a longer path each time.
                            let _ = open_raw(fd, "missing", 0, wasi::RIGHT_FD_READ, 0, true);
                            match open_raw(fd, "x", wasi::O_DIRECTORY, rights, 0, true) {
                                Ok(next) => {
                                    close(fd);
                                    fd = next;
                                    opened += 1;
                                }
                                Err(e) => {
                                    r.note(format!("nested open {opened}: errno {e}"));
                                    break;
                                }
                            }
                        }
                        close(fd);
                    }
                    Err(e) => r.note(format!("open {dir}: errno {e}")),
                }
                let _ = unlink_raw(p.fd, &format!("{rel}/x"));
                r.note(format!("nest-open: {opened} nested opens"));
            }
        }
        "open-many" => {
            // PATH|N: PATH opened N times, never closed.
            if let Some((path, n)) = params.split_once('|') {
                let n: u32 = n.parse().unwrap_or(0);
                let mut held = Vec::new();
                let mut first_error = None;
                for _ in 0..n {
                    match std::fs::File::open(path) {
                        Ok(f) => held.push(f),
                        Err(e) => {
                            first_error = Some(e.to_string());
                            break;
                        }
                    }
                }
                r.note(format!("open-many: {} open, then {first_error:?}", held.len()));
            }
        }
        "odd-name" => {
            // DIR: a file whose name holds a newline, as outputs.
            let path = format!("{params}/line\nbreak.out");
            r.note(format!("odd-name: {:?}", std::fs::write(&path, b"x").map_err(|e| e.to_string())));
        }
        "deep-path" => {
            // DIR|DEPTH[|LEN]: DEPTH nested directories of LEN-byte names (200 unless
            // given), each made from a descriptor on the one above (so no call ever
            // names a long path), and a file at the bottom.
            if let Some((dir, n)) = params.split_once('|') {
                let (n, len) = n.split_once('|').unwrap_or((n, "200"));
                let n: usize = n.parse().unwrap_or(0);
                let len: usize = len.parse().unwrap_or(200);
                let _ = std::fs::create_dir_all(dir);
                let Some((p, rel)) = owner(pre, dir) else {
                    return r;
                };
                let rights = wasi::RIGHTS_ALL & !(wasi::RIGHT_FD_READ | wasi::RIGHT_FD_WRITE);
                let seg = "d".repeat(len);
                let mut fd = match open_raw(p.fd, &rel, wasi::O_DIRECTORY, rights, 0, true) {
                    Ok(fd) => fd,
                    Err(e) => {
                        r.note(format!("open {dir}: errno {e}"));
                        return r;
                    }
                };
                let mut depth = 0;
                for _ in 0..n {
                    if mkdir_raw(fd, &seg).is_err() {
                        break;
                    }
                    match open_raw(fd, &seg, wasi::O_DIRECTORY, rights, 0, true) {
                        Ok(next) => {
                            close(fd);
                            fd = next;
                            depth += 1;
                        }
                        Err(_) => break,
                    }
                }
                let file = open_raw(fd, "f.out", wasi::O_CREAT, wasi::RIGHTS_ALL, 0, true).map(close);
                close(fd);
                r.note(format!("deep-path: {depth} levels, then {file:?}"));
            }
        }

        // -- environment --
        "env-undeclared" => {
            for var in list(params) {
                match std::env::var_os(&var) {
                    Some(v) => r.escaped(format!("{var}={}", v.to_string_lossy())),
                    None => r.note(format!("{var} unset")),
                }
            }
        }
        "environ-raw" => {
            let allowed = list(params);
            let (mut count, mut size) = (0usize, 0usize);
            // SAFETY: both receive sizes.
            unsafe { wasi::environ_sizes_get(&mut count, &mut size) };
            let mut ptrs = vec![std::ptr::null_mut::<u8>(); count + 1];
            let mut buf = vec![0u8; size + 1];
            // SAFETY: buffers sized by environ_sizes_get.
            unsafe { wasi::environ_get(ptrs.as_mut_ptr(), buf.as_mut_ptr()) };
            let vars: Vec<String> = buf[..size]
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            for v in &vars {
                let name = v.split('=').next().unwrap_or("");
                if !allowed.iter().any(|a| a == name) {
                    r.escaped(format!("undeclared variable {v}"));
                }
            }
            r.note(format!("{count} variables: {vars:?}"));
        }

        // -- network --
        "sock-accept" => {
            for fd in 0..=16u32 {
                let mut out = 0u32;
                // SAFETY: `out` receives the fd.
                let e = unsafe { wasi::sock_accept(fd, 0, &mut out) };
                r.refused(
                    &format!("sock_accept({fd})"),
                    if e == 0 { Ok(()) } else { Err(e) },
                );
            }
            r.notes.truncate(4);
        }
        "sock-io" => {
            for fd in 0..=16u32 {
                let mut buf = [0u8; 16];
                let iov = wasi::Iovec {
                    buf: buf.as_mut_ptr(),
                    len: buf.len(),
                };
                let (mut n, mut flags) = (0usize, 0u16);
                // SAFETY: one iovec over `buf`.
                let e = unsafe { wasi::sock_recv(fd, &iov, 1, 0, &mut n, &mut flags) };
                r.refused(
                    &format!("sock_recv({fd})"),
                    if e == 0 { Ok(()) } else { Err(e) },
                );
                let msg = b"hello";
                let ciov = wasi::Ciovec {
                    buf: msg.as_ptr(),
                    len: msg.len(),
                };
                // SAFETY: one iovec over `msg`.
                let e = unsafe { wasi::sock_send(fd, &ciov, 1, 0, &mut n) };
                r.refused(
                    &format!("sock_send({fd})"),
                    if e == 0 { Ok(()) } else { Err(e) },
                );
                // SAFETY: no pointers.
                let e = unsafe { wasi::sock_shutdown(fd, 3) };
                r.refused(
                    &format!("sock_shutdown({fd})"),
                    if e == 0 { Ok(()) } else { Err(e) },
                );
            }
            r.notes.truncate(4);
        }
        "connect" => {
            for addr in list(params) {
                r.refused(
                    &format!("TCP connect {addr}"),
                    std::net::TcpStream::connect(&addr)
                        .map(|_| ())
                        .map_err(io_err),
                );
                r.refused(
                    &format!("UDP bind and send to {addr}"),
                    std::net::UdpSocket::bind("0.0.0.0:0")
                        .and_then(|s| s.send_to(b"x", &addr))
                        .map(|_| ())
                        .map_err(io_err),
                );
            }
            r.refused(
                "TCP listen",
                std::net::TcpListener::bind("127.0.0.1:0")
                    .map(|_| ())
                    .map_err(io_err),
            );
        }

        // -- time and randomness (determinism on) --
        "clock-realtime" => {
            let epoch: u64 = params.parse().unwrap_or(315_532_800);
            for attempt in 0..3 {
                match clock(wasi::CLOCK_REALTIME) {
                    Ok(t) if t == epoch * 1_000_000_000 => {
                        if attempt == 0 {
                            r.note(format!("realtime is the epoch {t}"))
                        }
                    }
                    Ok(t) => r.escaped(format!("realtime reads {t}, not the epoch {epoch}")),
                    Err(e) => r.note(format!("realtime: errno {e}")),
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if now != epoch {
                r.escaped(format!("SystemTime::now() is {now}"));
            }
            let mut res = 0u64;
            // SAFETY: `res` receives the resolution.
            unsafe { wasi::clock_res_get(wasi::CLOCK_REALTIME, &mut res) };
            r.note(format!("resolution {res}"));
        }
        "clock-monotonic" => {
            let a = clock(wasi::CLOCK_MONOTONIC);
            let mut x = 0u64;
            for i in 0..50_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
            }
            std::hint::black_box(x);
            let b = clock(wasi::CLOCK_MONOTONIC);
            match (a, b) {
                (Ok(a), Ok(b)) if b.saturating_sub(a) >= 1_000_000 => {
                    r.escaped(format!("monotonic advanced {} ns over real work", b - a))
                }
                (Ok(a), Ok(b)) => r.note(format!("monotonic {a} then {b}")),
                (a, b) => r.note(format!("monotonic {a:?} {b:?}")),
            }
            let i0 = std::time::Instant::now();
            let i1 = std::time::Instant::now();
            r.note(format!("Instant delta {:?}", i1 - i0));
        }
        "clock-cputime" => {
            for (id, label) in [
                (wasi::CLOCK_PROCESS, "process"),
                (wasi::CLOCK_THREAD, "thread"),
            ] {
                match clock(id) {
                    Ok(t) => r.escaped(format!("{label} CPU clock reads {t}")),
                    Err(e) => r.note(format!("{label} CPU clock: errno {e}")),
                }
                let mut res = 0u64;
                // SAFETY: `res` receives the resolution.
                let e = unsafe { wasi::clock_res_get(id, &mut res) };
                r.note(format!("{label} resolution: errno {e}"));
            }
        }
        "clock-sleep" => {
            // Sleep (poll_oneoff) and look at the clocks around it.
            let t0 = clock(wasi::CLOCK_REALTIME);
            let m0 = clock(wasi::CLOCK_MONOTONIC);
            std::thread::sleep(std::time::Duration::from_millis(30));
            let t1 = clock(wasi::CLOCK_REALTIME);
            let m1 = clock(wasi::CLOCK_MONOTONIC);
            if t0 != t1 {
                r.escaped(format!("realtime moved across a sleep: {t0:?} -> {t1:?}"));
            }
            if let (Ok(a), Ok(b)) = (m0, m1) {
                if b.saturating_sub(a) >= 30_000_000 && b - a < 10_000_000_000 {
                    // A virtual clock may jump by the requested sleep; that is not host
                    // time. Only a reading that is neither is suspicious.
                    r.note(format!(
                        "monotonic jumped {} ns (the requested sleep)",
                        b - a
                    ));
                } else {
                    r.note(format!("monotonic {a} -> {b}"));
                }
            }
        }
        "random" => {
            let mut buf = [0u8; 32];
            // SAFETY: `buf` is filled by the call.
            let e = unsafe { wasi::random_get(buf.as_mut_ptr(), buf.len()) };
            let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
            let mut hashed = std::collections::hash_map::RandomState::new();
            let _ = &mut hashed;
            use std::hash::BuildHasher;
            let h = hashed.hash_one(42u32);
            r.note(format!("errno {e} bytes {hex} hashmap-seeded {h:016x}"));
        }

        // -- descriptor games --
        "fd-renumber" => {
            // Put a read-only directory where a writable one was (wasi-libc still maps
            // the writable one's path to that number), then write through the number.
            // Renumbering onto a closed number is refused; onto an open one it works.
            for p in &ro {
                r.note(format!(
                    "renumber {} onto unused 200: errno {}",
                    p.fd,
                    // SAFETY: renumbering our own fd.
                    unsafe { wasi::fd_renumber(p.fd, 200) }
                ));
                if let Some(q) = rw.first() {
                    // SAFETY: renumbering our own fds.
                    let e = unsafe { wasi::fd_renumber(p.fd, q.fd) };
                    r.note(format!(
                        "renumber {} over {} (fd {}): errno {e}",
                        p.name, q.name, q.fd
                    ));
                    if e == 0 {
                        r.refused(
                            &format!("creating through fd {} (now the read-only tree)", q.fd),
                            open_raw(
                                q.fd,
                                "planted.txt",
                                wasi::O_CREAT,
                                wasi::RIGHTS_ALL,
                                0,
                                true,
                            )
                            .map(close),
                        );
                        r.refused(
                            &format!("std write to {}/x.out (now read-only)", q.name),
                            std::fs::write(format!("{}/x.out", q.name), b"x").map_err(io_err),
                        );
                        r.refused(
                            &format!("opening .. through fd {}", q.fd),
                            open_raw(q.fd, "..", wasi::O_DIRECTORY, wasi::RIGHTS_ALL, 0, true),
                        );
                        if let Some(path) = list(params).first()
                            && let Some((_, rel)) = owner(pre, path)
                        {
                            r.refused(
                                &format!("opening {path} for writing through fd {}", q.fd),
                                open_raw(q.fd, &rel, 0, wasi::RIGHTS_ALL, 0, true).map(close),
                            );
                        }
                    }
                }
            }
        }
        "fd-rights" => {
            for p in &ro {
                // SAFETY: no pointers.
                let e =
                    unsafe { wasi::fd_fdstat_set_rights(p.fd, wasi::RIGHTS_ALL, wasi::RIGHTS_ALL) };
                r.note(format!("set_rights on {}: errno {e}", p.name));
                r.refused(
                    &format!("creating in {} after asking for all rights", p.name),
                    open_raw(
                        p.fd,
                        "planted.txt",
                        wasi::O_CREAT,
                        wasi::RIGHTS_ALL,
                        0,
                        true,
                    )
                    .map(close),
                );
                for path in list(params) {
                    if let Some((q, rel)) = owner(pre, &path)
                        && q.fd == p.fd
                        && let Some(fd) = r.refused(
                            &format!("opening {path} for writing"),
                            open_raw(p.fd, &rel, 0, wasi::RIGHTS_ALL, 0, true)
                                .and_then(|fd| write_fd(fd, b"x").map(|_| fd)),
                        )
                    {
                        close(fd);
                    }
                }
            }
        }
        "stdin" => {
            let mut buf = Vec::new();
            match std::io::stdin().read_to_end(&mut buf) {
                Ok(0) => r.note("stdin is empty"),
                Ok(n) => r.escaped(format!("stdin had {n} bytes")),
                Err(e) => r.note(format!("stdin: {e}")),
            }
        }
        "ls" => {
            // The order the directory gives, unsorted.
            for path in list(params) {
                match std::fs::read_dir(&path) {
                    Ok(rd) => {
                        let names: Vec<String> = rd
                            .flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        r.note(format!("{path} [{}]", names.join(",")));
                    }
                    Err(e) => r.note(format!("{path}: {e}")),
                }
            }
            r.notes = vec![r.notes.join(" ")];
        }
        "preopens" => {
            r.note(format!(
                "{:?}",
                pre.iter()
                    .map(|p| (p.fd, p.name.clone()))
                    .collect::<Vec<_>>()
            ));
        }
        other => r.note(format!("unknown attack {other}")),
    }
    r
}

#[inline(never)]
fn deep(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let r = deep(n.wrapping_add(1));
    r.wrapping_mul(31).wrapping_add(n ^ (r >> 3))
}

fn main() {
    // `count-args ...`: a huge argument list, reported in one line.
    if std::env::args().nth(1).as_deref() == Some("count-args") {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let bytes: usize = args.iter().map(|a| a.len() + 1).sum();
        println!("held count-args {} arguments, {bytes} bytes", args.len());
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("deep-recursion") {
        // Recursion that keeps its frames in wasm locals, not in linear memory: it
        // exhausts the engine's stack, not the shadow stack.
        println!("{}", deep(std::hint::black_box(1)));
        return;
    }
    let pre = preopens();
    for arg in std::env::args().skip(1) {
        let (name, params) = arg.split_once(':').unwrap_or((arg.as_str(), ""));
        // Preopens can be renumbered by an attack: look again each time.
        let pre_now = if name == "preopens" {
            preopens()
        } else {
            pre.clone()
        };
        attack(name, params, &pre_now).print();
    }
}
