//! Compiling a module within its task's limits (SANDBOX-006, SANDBOX-007).
//!
//! Cranelift cannot be interrupted: a large or hostile module can keep it busy for
//! minutes (a 23 MB module took 25 s here) and use memory in proportion. So compiling
//! counts against the task's timeout and stops on cancel, and where the embedder can
//! (the `wask` binary) it happens in a child process that is killed when either comes:
//! nothing keeps burning a core after the task has failed, and the compiler's memory is
//! not the host's. Compiling on a thread of this process is the fallback for embedders
//! without a binary to run; then the task still fails at its deadline, but the thread
//! finishes its work before it goes away.
//!
//! The child is the embedder's own executable: it builds its engine with the same
//! [`crate::engine::config`] and writes the serialized module to stdout.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// Where modules are compiled.
#[derive(Debug, Clone)]
pub enum CompileIn {
    /// On a thread of this process.
    Thread,
    /// In a child process `program args...` that calls [`serve`].
    Process {
        program: PathBuf,
        args: Vec<OsString>,
    },
}

/// Why compiling gave no code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CompileError {
    /// The bytes are not a module wasmtime accepts.
    Invalid(String),
    TimedOut,
    Cancelled,
    /// The compiler itself failed (the child crashed, could not start, ...).
    Failed(String),
}

/// How often a waiting compilation looks at the deadline and the cancel flag.
const POLL: Duration = Duration::from_millis(5);

/// Compiles `wasm` to this engine's serialized code, giving up at `deadline` or when
/// `cancelled` is set.
pub(crate) fn compile(
    engine: &Engine,
    how: &CompileIn,
    wasm: &[u8],
    deadline: Instant,
    cancelled: &AtomicBool,
) -> Result<Vec<u8>, CompileError> {
    match how {
        CompileIn::Thread => on_thread(engine, wasm, deadline, cancelled),
        CompileIn::Process { program, args } => {
            match in_child(program, args, wasm, deadline, cancelled) {
                // A child that cannot start (no such binary) is no reason to fail the task.
                Err(CompileError::Failed(_)) => on_thread(engine, wasm, deadline, cancelled),
                r => r,
            }
        }
    }
}

fn on_thread(
    engine: &Engine,
    wasm: &[u8],
    deadline: Instant,
    cancelled: &AtomicBool,
) -> Result<Vec<u8>, CompileError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (engine, wasm) = (engine.clone(), wasm.to_vec());
    std::thread::Builder::new()
        .name("wask-compile".into())
        .spawn(move || {
            let _ = tx.send(
                engine
                    .precompile_module(&wasm)
                    .map_err(|e| CompileError::Invalid(format!("{e:#}"))),
            );
        })
        .map_err(|e| CompileError::Failed(e.to_string()))?;
    loop {
        if cancelled.load(Ordering::Relaxed) {
            return Err(CompileError::Cancelled);
        }
        if Instant::now() >= deadline {
            return Err(CompileError::TimedOut);
        }
        match rx.recv_timeout(POLL) {
            Ok(result) => return result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => return Err(CompileError::Failed("the compiler thread died".into())),
        }
    }
}

fn in_child(
    program: &PathBuf,
    args: &[OsString],
    wasm: &[u8],
    deadline: Instant,
    cancelled: &AtomicBool,
) -> Result<Vec<u8>, CompileError> {
    let parent = std::process::id();
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        // The child checks this against its parent: if they differ, the parent died
        // before the child could ask to die with it.
        .env("WASK_COMPILE_PARENT", parent.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CompileError::Failed(format!("cannot start {}: {e}", program.display())))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let result = std::thread::scope(|scope| {
        scope.spawn(move || {
            // The child may die before reading it all; its exit status says why.
            let _ = stdin.write_all(wasm);
        });
        let out = scope.spawn(move || {
            let mut bytes = Vec::new();
            stdout.read_to_end(&mut bytes).map(|_| bytes)
        });
        let err = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.take(64 << 10).read_to_string(&mut text);
            text
        });
        let status = loop {
            if cancelled.load(Ordering::Relaxed) || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => std::thread::sleep(POLL),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CompileError::Failed(e.to_string()));
                }
            }
        };
        let out = out.join().expect("reader thread");
        let err = err.join().expect("reader thread");
        Ok((status, out, err))
    })?;
    match result {
        (None, _, _) if cancelled.load(Ordering::Relaxed) => Err(CompileError::Cancelled),
        (None, _, _) => Err(CompileError::TimedOut),
        (Some(status), Ok(bytes), _) if status.success() => Ok(bytes),
        (Some(status), _, text) if status.code() == Some(EXIT_INVALID) => {
            Err(CompileError::Invalid(text.trim().to_string()))
        }
        (Some(status), _, text) => Err(CompileError::Failed(format!(
            "the compiler process ended with {status}: {}",
            text.trim()
        ))),
    }
}

/// The exit status of a child that was given bytes that are not a valid module.
const EXIT_INVALID: i32 = 3;

/// The child's side: reads a module on stdin, writes its serialized code on stdout.
/// Returns the process's exit status. Embedders run this from a hidden subcommand.
pub fn serve() -> i32 {
    // Die with the parent: a `wask` killed with SIGKILL must not leave its compiler
    // running on (Linux; elsewhere the child ends when its work does).
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and nothing else.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let parent = std::env::var("WASK_COMPILE_PARENT")
            .ok()
            .and_then(|p| p.parse::<u32>().ok());
        if parent.is_some_and(|p| p != std::os::unix::process::parent_id()) {
            return 1;
        }
    }
    let mut wasm = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut wasm) {
        eprintln!("cannot read the module: {e}");
        return 1;
    }
    let engine = match Engine::new(&crate::engine::config()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot create the engine: {e:#}");
            return 1;
        }
    };
    match engine.precompile_module(&wasm) {
        Ok(code) => match std::io::stdout().lock().write_all(&code) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cannot write the compiled module: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            EXIT_INVALID
        }
    }
}
