//! [`Sandbox`]: loading a module (compiled once, kept authenticated) and running it
//! against a [`RunSpec`] in a store of its own, with its WASI context, limits, clocks
//! and access record, and turning how it ended into a [`RunOutcome`].

use crate::access::{AccessTracker, GuestAccess};
use crate::capture::{CaptureStream, ForwardTx, WriteOrder};
use crate::compile::{CompileError, CompileIn};
use crate::compiled::{CompiledCache, Lookup};
use crate::determinism::{ClockMode, FixedWallClock, SeededRandom, VirtualClock};
use crate::guard::budget::LimitExceeded;
use crate::guard::{Guard, Stop, Time};
use crate::limits::StoreLimiter;
use crate::secret::UserKey;
use crate::view::Mount;
use crate::{Digest, Limits};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use wasmtime::{Engine, InstancePre, Linker, Module, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// `argv[0]` of every guest. A constant, not the module's file name: the name is not in
/// the key, so a guest must not be able to see it (the same bytes under another name
/// share the cache entry).
pub const ARGV0: &str = "task.wasm";

/// Per-store state of one guest run.
pub(crate) struct TaskState {
    pub wasi: WasiP1Ctx,
    pub limiter: StoreLimiter,
    pub guard: Guard,
}

/// How a [`Sandbox`] is set up.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Where compiled modules are cached (SANDBOX-008).
    pub compiled_dir: PathBuf,
    /// Where modules are compiled ([`CompileIn::Process`] when the embedder can).
    pub compile_in: CompileIn,
    /// The key that authenticates compiled modules.
    pub key: UserKey,
}

/// The engine, linker and compiled-module caches shared by every task of a process.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<TaskState>,
    compiled: CompiledCache,
    compile_in: CompileIn,
    loaded: Mutex<HashMap<Digest, LoadedModule>>,
    /// One gate per module being compiled: a second task with the same module waits for
    /// the first instead of compiling it again.
    compiling: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    ticker_stop: Arc<AtomicBool>,
    /// Set by [`Sandbox::cancel`]: every running guest is interrupted at its next tick.
    cancelled: Arc<AtomicBool>,
}

/// Where a loaded module's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    /// Already loaded earlier in this process.
    Memory,
    /// A verified artifact from the compiled-module cache.
    Disk,
    /// Compiled now: the cache had no artifact.
    Compiled,
    /// Compiled now: the cached artifact failed verification and was discarded.
    RecompiledAfterTamper,
}

/// A module compiled, linked against WASI and ready to instantiate.
#[derive(Clone)]
pub struct LoadedModule {
    /// blake3 of the module's bytes.
    pub digest: Digest,
    pub source: CodeSource,
    pre: InstancePre<TaskState>,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("digest", &crate::hex(&self.digest))
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What to run: everything the guest may see besides its module.
pub struct RunSpec<'a> {
    /// `argv[1..]` (`argv[0]` is [`ARGV0`]).
    pub args: &'a [String],
    /// The complete environment of the guest.
    pub env: &'a [(String, String)],
    /// Directories the guest sees, from [`crate::view::StagedView::mounts`].
    pub mounts: &'a [Mount],
    pub limits: Limits,
    pub clock: ClockMode,
    /// When the guest must have finished; by default `limits.timeout` from the start of
    /// the run. A caller that compiled the module first passes the deadline it compiled
    /// under, so compiling and running share the one timeout.
    pub deadline: Option<Instant>,
}

/// One of the guest's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives a guest's output while it runs (EXEC-016 live output), for
/// [`Sandbox::run_with_output`].
///
/// It is called with the bytes of each write, in the order the guest wrote them across
/// both streams, on a thread of the sandbox's own (so it may be borrowed from the
/// caller, but must be `Sync`), and never after `run_with_output` has returned. For
/// each stream the concatenation of the chunks it receives is exactly the captured
/// stream of the [`RunOutcome`]: bytes past the output cap are neither captured nor
/// forwarded. Chunks follow the guest's writes, so a line may arrive in several pieces.
pub type OutputSink<'a> = &'a (dyn Fn(Stream, &[u8]) + Sync);

/// Why a run failed (EXEC-009, SANDBOX-006, SANDBOX-007).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("exited with code {0}")]
    Exit(i32),
    #[error("exceeded its timeout of {0:?} and was interrupted")]
    Timeout(Duration),
    #[error("exceeded its timeout of {0:?} while its module was being compiled")]
    CompileTimeout(Duration),
    #[error("exceeded its memory limit of {} MiB", .0 >> 20)]
    MemoryLimit(u64),
    #[error("exceeded its output limit of {0} bytes on stdout or stderr")]
    OutputLimit(usize),
    #[error("wrote more than its outputs size limit of {0} bytes to files (`limits.outputs_size`)")]
    OutputsSize(u64),
    #[error(
        "created more than its outputs count limit of {0} files, directories and links (`limits.outputs_count`)"
    )]
    OutputsCount(u64),
    #[error(
        "its module is {size} bytes, over the module size limit of {limit} bytes (`limits.module_size`)"
    )]
    ModuleTooLarge { size: u64, limit: u64 },
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not start: {0}")]
    Setup(String),
    #[error("was cancelled")]
    Cancelled,
}

/// The result of one guest run.
#[derive(Debug)]
pub struct RunOutcome {
    pub result: Result<(), Failure>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// How the guest's writes to the two streams interleaved: runs of `(stream, bytes)`
    /// that add up to `stdout` and `stderr`, or empty if the guest switched streams more
    /// than [`MAX_WRITE_RUNS`] times.
    pub write_order: Vec<(Stream, u64)>,
    pub access: GuestAccess,
    /// The most memory the run held, in bytes, as the memory limit counts it. Memory
    /// only grows, and only as the guest asks, so this is a property of the run, not of
    /// the host.
    pub memory: u64,
}

/// How often a task waiting for another's compilation of the same module looks at its
/// deadline and the cancel flag.
const GATE_POLL: Duration = Duration::from_millis(2);

impl Sandbox {
    /// A sandbox that compiles on threads of this process, with this user's key.
    pub fn new(compiled_dir: &Path) -> anyhow::Result<Sandbox> {
        Sandbox::with_options(SandboxOptions {
            compiled_dir: compiled_dir.to_path_buf(),
            compile_in: CompileIn::Thread,
            key: UserKey::load()?,
        })
    }

    pub fn with_options(options: SandboxOptions) -> anyhow::Result<Sandbox> {
        let engine = Engine::new(&crate::engine::config())?;
        let mut linker: Linker<TaskState> = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |s: &mut TaskState| &mut s.wasi)?;
        crate::guard::add_to_linker(&mut linker)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        crate::engine::start_ticker(&engine, ticker_stop.clone())?;
        Ok(Sandbox {
            compiled: CompiledCache::new(&options.compiled_dir, &engine, options.key),
            compile_in: options.compile_in,
            engine,
            linker,
            loaded: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashMap::new()),
            ticker_stop,
            cancelled: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Compiles (or loads the verified compiled form of) a module and links it, under
    /// the task's module size limit and by `deadline` (SANDBOX-006).
    pub fn load(
        &self,
        wasm: &[u8],
        limits: &Limits,
        deadline: Instant,
    ) -> Result<LoadedModule, Failure> {
        if wasm.len() as u64 > limits.module_bytes {
            return Err(Failure::ModuleTooLarge {
                size: wasm.len() as u64,
                limit: limits.module_bytes,
            });
        }
        let digest = *blake3::hash(wasm).as_bytes();
        if let Some(m) = self.in_memory(&digest) {
            return Ok(m);
        }
        let gate = self
            .compiling
            .lock()
            .unwrap()
            .entry(digest)
            .or_default()
            .clone();
        let _turn = loop {
            if let Ok(turn) = gate.try_lock() {
                break turn;
            }
            self.check_stop(limits, deadline)?;
            std::thread::sleep(GATE_POLL);
        };
        // Whoever held the gate may have loaded it.
        if let Some(m) = self.in_memory(&digest) {
            return Ok(m);
        }
        let (module, source) = self.compile(&digest, wasm, limits, deadline)?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| {
            Failure::Setup(format!(
                "the module needs imports wask does not provide (only wasi_snapshot_preview1 is available): {e}"
            ))
        })?;
        let loaded = LoadedModule {
            digest,
            source,
            pre,
        };
        self.loaded.lock().unwrap().insert(digest, loaded.clone());
        Ok(loaded)
    }

    /// The module's compiled code: the verified artifact from the compiled cache, or
    /// compiled now (and stored) by `deadline`.
    fn compile(
        &self,
        digest: &Digest,
        wasm: &[u8],
        limits: &Limits,
        deadline: Instant,
    ) -> Result<(Module, CodeSource), Failure> {
        Ok(match self.compiled.load(&self.engine, digest) {
            Lookup::Hit(m) => (m, CodeSource::Disk),
            lookup => {
                let code = crate::compile::compile(
                    &self.engine,
                    &self.compile_in,
                    wasm,
                    deadline,
                    &self.cancelled,
                )
                .map_err(|e| match e {
                    CompileError::Invalid(e) => {
                        Failure::Setup(format!("not a valid WebAssembly module: {e}"))
                    }
                    CompileError::TimedOut => Failure::CompileTimeout(limits.timeout),
                    CompileError::Cancelled => Failure::Cancelled,
                    CompileError::Failed(e) => {
                        Failure::Setup(format!("could not compile the module: {e}"))
                    }
                })?;
                // SAFETY: `code` is what this engine's configuration produced for these
                // bytes, in this process or in a child running the same executable;
                // deserialize checks the engine's compatibility too.
                let m = unsafe { Module::deserialize(&self.engine, &code) }.map_err(|e| {
                    Failure::Setup(format!("could not load the compiled module: {e}"))
                })?;
                // A failed store only costs a recompile next time.
                let _ = self.compiled.store(digest, &code);
                let source = match lookup {
                    Lookup::Tampered(_) => CodeSource::RecompiledAfterTamper,
                    _ => CodeSource::Compiled,
                };
                (m, source)
            }
        })
    }

    fn in_memory(&self, digest: &Digest) -> Option<LoadedModule> {
        self.loaded
            .lock()
            .unwrap()
            .get(digest)
            .map(|m| LoadedModule {
                source: CodeSource::Memory,
                ..m.clone()
            })
    }

    fn check_stop(&self, limits: &Limits, deadline: Instant) -> Result<(), Failure> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(Failure::Cancelled)
        } else if Instant::now() >= deadline {
            Err(Failure::CompileTimeout(limits.timeout))
        } else {
            Ok(())
        }
    }

    /// Runs a loaded module's `_start` with exactly the capabilities in `spec`.
    pub fn run(&self, module: &LoadedModule, spec: &RunSpec<'_>) -> RunOutcome {
        self.execute(module, spec, None)
    }

    /// Like [`Sandbox::run`], and hands the guest's stdout and stderr to `on_output` as
    /// they are written (see [`OutputSink`]). The outcome still carries both streams in
    /// full, byte for byte what `run` would capture, under the same output cap.
    ///
    /// The sink is a separate argument rather than a field of [`RunSpec`] so that a spec
    /// stays plain data; it runs on a forwarding thread scoped to this call, so the guest
    /// never waits on it.
    pub fn run_with_output(
        &self,
        module: &LoadedModule,
        spec: &RunSpec<'_>,
        on_output: OutputSink<'_>,
    ) -> RunOutcome {
        let (tx, rx) = mpsc::channel::<Option<(Stream, bytes::Bytes)>>();
        // `tx` moves in: should the run panic, dropping it ends the forwarding thread.
        std::thread::scope(move |scope| {
            let forwarder = std::thread::Builder::new()
                .name("wask-output".into())
                .spawn_scoped(scope, move || {
                    // `None` marks the end of the run: every write came before it.
                    while let Ok(Some((stream, bytes))) = rx.recv() {
                        on_output(stream, &bytes);
                    }
                });
            let outcome = match forwarder {
                Ok(_) => self.execute(module, spec, Some(tx.clone())),
                // Without a thread the output is forwarded after the run, whole.
                Err(_) => {
                    let outcome = self.execute(module, spec, None);
                    for (stream, bytes) in [
                        (Stream::Stdout, &outcome.stdout),
                        (Stream::Stderr, &outcome.stderr),
                    ] {
                        if !bytes.is_empty() {
                            on_output(stream, bytes);
                        }
                    }
                    outcome
                }
            };
            let _ = tx.send(None);
            outcome
        })
    }

    fn execute(
        &self,
        module: &LoadedModule,
        spec: &RunSpec<'_>,
        forward: Option<ForwardTx>,
    ) -> RunOutcome {
        let deadline = spec
            .deadline
            .unwrap_or_else(|| spec.limits.deadline_from_now());
        let cap = spec.limits.output_bytes;
        let order = Arc::new(std::sync::Mutex::new(WriteOrder::default()));
        let stdout = CaptureStream::new(cap, Stream::Stdout, order.clone(), forward.clone());
        let stderr = CaptureStream::new(cap, Stream::Stderr, order.clone(), forward);
        let mut outcome = RunOutcome {
            result: Ok(()),
            stdout: Vec::new(),
            stderr: Vec::new(),
            write_order: Vec::new(),
            access: GuestAccess::default(),
            memory: 0,
        };
        // Cancelled before it began: a guest quick enough to end before its first epoch
        // tick would otherwise run to completion after the user asked to stop.
        if self.cancelled.load(Ordering::Relaxed) {
            outcome.result = Err(Failure::Cancelled);
            return outcome;
        }
        let virtual_clock = VirtualClock::default();
        let wasi = match wasi_context(spec, &stdout, &stderr, &virtual_clock) {
            Ok(w) => w,
            Err(e) => {
                outcome.result = Err(Failure::Setup(format!("{e:#}")));
                return outcome;
            }
        };
        let mut store = self.store(spec, wasi, virtual_clock, deadline);
        let result = call_start(module, &mut store);

        let state = store.into_data();
        outcome.access = state.guard.access.finish();
        outcome.memory = state.limiter.held();
        outcome.stdout = stdout.pipe.contents().to_vec();
        outcome.stderr = stderr.pipe.contents().to_vec();
        outcome.write_order = order
            .lock()
            .map(|mut o| std::mem::take(&mut *o).finish())
            .unwrap_or_default();
        let overflowed = outcome.stdout.len() > cap || outcome.stderr.len() > cap;
        outcome.stdout.truncate(cap);
        outcome.stderr.truncate(cap);
        outcome.result = match result {
            _ if overflowed => Err(Failure::OutputLimit(cap)),
            Ok(()) => Ok(()),
            Err(e) if matches!(e.downcast_ref::<I32Exit>(), Some(I32Exit(0))) => Ok(()),
            Err(_) if self.cancelled.load(Ordering::Relaxed) => Err(Failure::Cancelled),
            Err(e) => Err(classify(e, state.limiter.exceeded, spec.limits)),
        };
        outcome
    }

    /// A store for one run: the WASI context, the memory limiter, the policy layer, and
    /// the epoch callback that stops the guest at `deadline` or on cancel.
    fn store(
        &self,
        spec: &RunSpec<'_>,
        wasi: WasiP1Ctx,
        virtual_clock: VirtualClock,
        deadline: Instant,
    ) -> Store<TaskState> {
        let time = match spec.clock {
            ClockMode::Fixed { epoch_seconds, .. } => Time::Fixed {
                wall_ns: epoch_seconds.saturating_mul(1_000_000_000),
                clock: virtual_clock,
            },
            ClockMode::Host => Time::Host,
        };
        let guard = Guard::new(
            AccessTracker::new(spec.mounts.iter().map(|m| m.guest_path.clone())),
            spec.limits.outputs_size,
            spec.limits.outputs_count,
            time,
            Stop {
                deadline,
                cancelled: self.cancelled.clone(),
            },
        );
        let mut store = Store::new(
            &self.engine,
            TaskState {
                wasi,
                limiter: StoreLimiter::new(spec.limits.memory_bytes),
                guard,
            },
        );
        store.limiter(|s| &mut s.limiter);
        // Checked at every tick: cancellation (EXEC-012) must not wait for the timeout.
        let cancelled = self.cancelled.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if cancelled.load(Ordering::Relaxed) || Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });

        store
    }

    /// Interrupts every guest running in this sandbox within one epoch tick, and every
    /// guest started later at its first tick; they fail with [`Failure::Cancelled`].
    /// Compilations in progress stop too.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Why a run ended before `_start` returned.
struct Instantiation(wasmtime::Error);

impl std::fmt::Debug for Instantiation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::fmt::Display for Instantiation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not instantiate the module: {:#}", self.0)
    }
}

impl std::error::Error for Instantiation {}

fn call_start(module: &LoadedModule, store: &mut Store<TaskState>) -> wasmtime::Result<()> {
    let instance = module
        .pre
        .instantiate(&mut *store)
        .map_err(|e| wasmtime::Error::new(Instantiation(e)))?;
    let start = instance
        .get_typed_func::<(), ()>(&mut *store, "_start")
        .map_err(|_| {
            wasmtime::Error::msg(
                "the module has no `_start` export: only WASI command modules can be tasks",
            )
        })?;
    start.call(&mut *store, ())
}

fn wasi_context(
    spec: &RunSpec<'_>,
    stdout: &CaptureStream,
    stderr: &CaptureStream,
    virtual_clock: &VirtualClock,
) -> anyhow::Result<WasiP1Ctx> {
    let mut b = WasiCtxBuilder::new();
    // Must come before the preopens: each captures the flag when it is created.
    b.allow_blocking_current_thread(true);
    b.arg(ARGV0).args(spec.args);
    for (k, v) in spec.env {
        b.env(k, v);
    }
    for m in spec.mounts {
        let perms = if m.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(&m.host_dir, &m.guest_path, perms)?;
    }
    b.stdout(stdout.clone()).stderr(stderr.clone());
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if let ClockMode::Fixed {
        epoch_seconds,
        seed,
    } = spec.clock
    {
        b.wall_clock(FixedWallClock(Duration::from_secs(epoch_seconds)));
        b.monotonic_clock(virtual_clock.clone());
        b.secure_random(SeededRandom::new(&seed, "secure"));
        b.insecure_random(SeededRandom::new(&seed, "insecure"));
        b.insecure_random_seed(u128::from_le_bytes(seed[..16].try_into().unwrap()));
    }
    Ok(b.build_p1())
}

/// What a trap was, in words a task's author can act on (wasmtime's own name last).
fn trap_words(trap: Trap) -> String {
    let what = match trap {
        Trap::UnreachableCodeReached => {
            "the guest aborted (it executed `unreachable`: a Rust panic or `abort()`; its message, if it printed one, is in its stderr above)"
        }
        Trap::MemoryOutOfBounds => {
            "the guest accessed memory out of bounds (a bad pointer, or its shadow stack overflowed from deep recursion)"
        }
        Trap::HeapMisaligned => "the guest accessed memory at a misaligned address",
        Trap::TableOutOfBounds | Trap::IndirectCallToNull | Trap::BadSignature => {
            "the guest made an invalid indirect call (a corrupt function pointer)"
        }
        Trap::IntegerDivisionByZero => "the guest divided an integer by zero",
        Trap::IntegerOverflow => "the guest overflowed an integer in a division",
        Trap::BadConversionToInteger => {
            "the guest converted a float to an integer it does not fit in"
        }
        _ => return trap.to_string(),
    };
    format!("{what} [{trap}]")
}

fn classify(e: wasmtime::Error, memory_exceeded: bool, limits: Limits) -> Failure {
    if let Some(I32Exit(code)) = e.downcast_ref::<I32Exit>() {
        return Failure::Exit(*code);
    }
    if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
        return match limit {
            LimitExceeded::OutputsSize(n) => Failure::OutputsSize(*n),
            LimitExceeded::OutputsCount(n) => Failure::OutputsCount(*n),
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::Timeout(limits.timeout),
        Some(Trap::StackOverflow) => Failure::StackOverflow,
        _ if memory_exceeded => Failure::MemoryLimit(limits.memory_bytes),
        Some(trap) => Failure::Trap(trap_words(*trap)),
        None => match e.downcast_ref::<Instantiation>() {
            Some(i) => Failure::Setup(i.to_string()),
            None => Failure::Trap(format!("{e}")),
        },
    }
}
