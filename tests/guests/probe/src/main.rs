//! The probe: a test guest that performs the actions named by its arguments, in order,
//! and prints one result line per action on stdout: `ok <action> ...` or
//! `err <action> <path>: <error>`. Tests use it to try everything a hostile task might
//! try and to observe what the sandbox allowed.
//!
//! Actions (`:` separates the parts; paths are guest paths):
//!
//! | action | does |
//! |---|---|
//! | `print:TEXT` / `stderr:TEXT` | writes TEXT and a newline to stdout / stderr |
//! | `read:P` | reads P; prints its length and content (debug-escaped) |
//! | `copy:A:B` | reads A, creates B's parents, writes B |
//! | `write:P:TEXT` / `append:P:TEXT` | writes / appends TEXT (no newline) |
//! | `mkdir:P` | creates P and its parents |
//! | `truncate:P` / `remove:P` / `rmdir:P` | truncates / removes a file / removes a directory |
//! | `rename:A:B` / `hardlink:A:B` / `symlink:TARGET:LINK` | the matching call |
//! | `settimes:P` | sets P's modification time to now |
//! | `list:P` | lists directory P, sorted |
//! | `stat:P` | prints the kind and length of P (without following a final symlink) |
//! | `env:NAME` / `envall` | prints one variable / every variable, sorted, as `NAME=value` |
//! | `args` | prints argv[0] and the arguments |
//! | `time` / `monotonic` / `random` | prints wall-clock nanoseconds / elapsed nanoseconds over a short busy loop / 16 random bytes |
//! | `stdin` | reads stdin to its end and prints how many bytes came |
//! | `socket:ADDR` | tries a TCP connection |
//! | `alloc:MIB` | allocates and touches MIB mebibytes (aborts if memory is refused) |
//! | `spam:N` | writes N bytes of `x` to stdout |
//! | `busy:N` | computes for N million steps |
//! | `loop` | spins forever |
//! | `recurse` | recurses until the stack overflows |
//! | `trap` | executes `unreachable` |
//! | `exit:N` | exits with status N |
//! | `exit-on-error` | exits with status 1 if an earlier action failed |
//! | `lines:N:TEXT` | writes N lines `TEXT I` (I from 1) to stdout, each in two writes split mid-line |
//! | `tail:TEXT` | writes TEXT without a newline to stdout and exits 0 at once (an unterminated last line) |

use std::io::{Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let mut failed = false;
    for arg in std::env::args().skip(1) {
        let (action, rest) = arg.split_once(':').unwrap_or((arg.as_str(), ""));
        if action == "exit-on-error" {
            if failed {
                std::process::exit(1);
            }
            continue;
        }
        let result = act(action, rest);
        match result {
            Ok(line) => println!("ok {action} {line}"),
            Err(e) => {
                failed = true;
                println!("err {action} {rest}: {e}");
            }
        }
        let _ = std::io::stdout().flush();
    }
}

fn two(rest: &str) -> Result<(&str, &str), String> {
    rest.split_once(':')
        .ok_or_else(|| format!("expected two parts separated by `:` in {rest:?}"))
}

fn act(action: &str, rest: &str) -> Result<String, String> {
    let io = |e: std::io::Error| e.to_string();
    match action {
        "print" => {
            println!("{rest}");
            Ok(String::new())
        }
        "stderr" => {
            eprintln!("{rest}");
            Ok(String::new())
        }
        "read" => {
            let bytes = std::fs::read(rest).map_err(io)?;
            Ok(format!(
                "{rest} {} {:?}",
                bytes.len(),
                String::from_utf8_lossy(&bytes)
            ))
        }
        "copy" => {
            let (from, to) = two(rest)?;
            let bytes = std::fs::read(from).map_err(io)?;
            if let Some(parent) = std::path::Path::new(to).parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::write(to, &bytes).map_err(io)?;
            Ok(format!("{from} {to} {}", bytes.len()))
        }
        "write" => {
            let (path, text) = two(rest)?;
            std::fs::write(path, text).map_err(io)?;
            Ok(path.to_string())
        }
        "append" => {
            let (path, text) = two(rest)?;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            Ok(path.to_string())
        }
        "mkdir" => {
            std::fs::create_dir_all(rest).map_err(io)?;
            Ok(rest.to_string())
        }
        "truncate" => {
            std::fs::OpenOptions::new()
                .write(true)
                .open(rest)
                .and_then(|f| f.set_len(0))
                .map_err(io)?;
            Ok(rest.to_string())
        }
        "remove" => {
            std::fs::remove_file(rest).map_err(io)?;
            Ok(rest.to_string())
        }
        "rmdir" => {
            std::fs::remove_dir(rest).map_err(io)?;
            Ok(rest.to_string())
        }
        "rename" => {
            let (a, b) = two(rest)?;
            std::fs::rename(a, b).map_err(io)?;
            Ok(format!("{a} {b}"))
        }
        "hardlink" => {
            let (a, b) = two(rest)?;
            std::fs::hard_link(a, b).map_err(io)?;
            Ok(format!("{a} {b}"))
        }
        "symlink" => {
            let (target, link) = two(rest)?;
            libc_symlink(target, link)?;
            Ok(format!("{target} {link}"))
        }
        "settimes" => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(rest)
                .map_err(io)?;
            f.set_modified(SystemTime::now()).map_err(io)?;
            Ok(rest.to_string())
        }
        "list" => {
            let mut names: Vec<String> = std::fs::read_dir(rest)
                .map_err(io)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()
                .map_err(io)?;
            names.sort();
            Ok(format!("{rest} [{}]", names.join(",")))
        }
        "stat" => {
            let m = std::fs::symlink_metadata(rest).map_err(io)?;
            let kind = if m.is_symlink() {
                "symlink"
            } else if m.is_dir() {
                "dir"
            } else {
                "file"
            };
            Ok(format!("{rest} {kind} {}", m.len()))
        }
        "env" => std::env::var(rest)
            .map(|v| format!("{rest}={v}"))
            .map_err(|e| e.to_string()),
        "envall" => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (k, v) in &vars {
                println!("{k}={v}");
            }
            Ok(format!("{} variables", vars.len()))
        }
        "args" => Ok(format!("{:?}", std::env::args().collect::<Vec<_>>())),
        "time" => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())?;
            Ok(format!("{}", now.as_nanos()))
        }
        "monotonic" => {
            let start = std::time::Instant::now();
            let mut x = 0u64;
            for i in 0..1_000_000u64 {
                x = x.wrapping_add(std::hint::black_box(i));
            }
            std::hint::black_box(x);
            Ok(format!("{}", start.elapsed().as_nanos()))
        }
        "random" => {
            // std's HashMap keys come from the WASI random source.
            let mut bytes = [0u8; 16];
            getrandom(&mut bytes)?;
            Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
        }
        "stdin" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(io)?;
            Ok(format!("{} bytes", buf.len()))
        }
        "socket" => {
            std::net::TcpStream::connect(rest).map_err(io)?;
            Ok(format!("connected to {rest}"))
        }
        "alloc" => {
            // Infallible, like most code: a refused growth aborts the guest.
            let mib: usize = rest.parse().map_err(|_| format!("not a number: {rest}"))?;
            let v = vec![1u8; mib << 20];
            Ok(format!("{} bytes", std::hint::black_box(&v).len()))
        }
        "spam" => {
            let n: usize = rest.parse().map_err(|_| format!("not a number: {rest}"))?;
            let chunk = [b'x'; 4096];
            let mut out = std::io::stdout().lock();
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                out.write_all(&chunk[..k]).map_err(io)?;
                left -= k;
            }
            Ok(format!("{n} bytes"))
        }
        "busy" => {
            // Real work for a known number of steps: the fixed clock cannot time it.
            let millions: u64 = rest.parse().map_err(|_| format!("not a number: {rest}"))?;
            let mut x = 0u64;
            for i in 0..millions * 1_000_000 {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
            }
            Ok(format!("{}", std::hint::black_box(x) % 10))
        }
        "loop" => loop {
            std::hint::spin_loop();
        },
        "recurse" => Ok(format!("{}", recurse(std::hint::black_box(1)))),
        "trap" => std::process::abort(),
        "exit" => {
            let code: i32 = rest.parse().map_err(|_| format!("not a number: {rest}"))?;
            let _ = std::io::stdout().flush();
            std::process::exit(code)
        }
        "lines" => {
            let (n, text) = two(rest)?;
            let n: usize = n.parse().map_err(|_| format!("not a number: {n}"))?;
            let mut out = std::io::stdout().lock();
            for i in 1..=n {
                // Two writes per line, each flushed: the host sees lines in pieces.
                write!(out, "{text} ")
                    .and_then(|_| out.flush())
                    .map_err(io)?;
                writeln!(out, "{i}").and_then(|_| out.flush()).map_err(io)?;
            }
            Ok(format!("{n} lines"))
        }
        "tail" => {
            let mut out = std::io::stdout().lock();
            out.write_all(rest.as_bytes())
                .and_then(|_| out.flush())
                .map_err(io)?;
            std::process::exit(0)
        }
        other => Err(format!("unknown action {other:?}")),
    }
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    if n == 0 {
        return 0;
    }
    recurse(n + 1).wrapping_add(pad[n as usize % 64])
}

/// The WASI `random_get` call, without a crate.
fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn random_get(buf: *mut u8, len: usize) -> u16;
    }
    // SAFETY: the pointer and length describe `buf`, which the call fills.
    let errno = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
    if errno == 0 {
        Ok(())
    } else {
        Err(format!("random_get failed with errno {errno}"))
    }
}

/// wasi-libc's `symlink`, which std links but does not expose on stable.
fn libc_symlink(target: &str, link: &str) -> Result<(), String> {
    unsafe extern "C" {
        fn symlink(target: *const std::ffi::c_char, link: *const std::ffi::c_char) -> i32;
    }
    let target = std::ffi::CString::new(target).map_err(|e| e.to_string())?;
    let link = std::ffi::CString::new(link).map_err(|e| e.to_string())?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    if unsafe { symlink(target.as_ptr(), link.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}
