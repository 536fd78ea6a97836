use crate::access::{AccessRecord, AccessTracker};
use crate::compiled::{CompiledCache, Lookup};
use crate::determinism::{ClockMode, FixedWallClock, SeededRandom, VirtualMonotonicClock};
use crate::limits::MemoryLimiter;
use crate::view::Mount;
use crate::{Digest, Limits};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use wasmtime::{
    CallHook, Config, Engine, InstancePre, Linker, Memory, Module, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// How often the epoch advances; a timeout fires within one tick of its limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-store state of one guest run.
struct TaskState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    access: AccessTracker,
    memory: Option<Memory>,
}

/// The engine, linker and compiled-module caches shared by every task of a process.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<TaskState>,
    compiled: CompiledCache,
    loaded: Mutex<HashMap<Digest, LoadedModule>>,
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
    /// `argv[0]`.
    pub program: &'a str,
    /// `argv[1..]`.
    pub args: &'a [String],
    /// The complete environment of the guest.
    pub env: &'a [(String, String)],
    /// Directories the guest sees, from [`crate::view::StagedView::mounts`].
    pub mounts: &'a [Mount],
    pub limits: Limits,
    pub clock: ClockMode,
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
    #[error("exceeded its memory limit of {} MiB", .0 >> 20)]
    MemoryLimit(u64),
    #[error("exceeded its output limit of {0} bytes on stdout or stderr")]
    OutputLimit(usize),
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
    pub access: AccessRecord,
}

impl Sandbox {
    /// Creates the engine; compiled modules are cached under `compiled_dir`.
    pub fn new(compiled_dir: &Path) -> anyhow::Result<Sandbox> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker: Linker<TaskState> = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |s: &mut TaskState| &mut s.wasi)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.clone());
        std::thread::Builder::new()
            .name("wask-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })?;
        Ok(Sandbox {
            compiled: CompiledCache::new(compiled_dir, &engine, crate::compiled::machine_key()),
            engine,
            linker,
            loaded: Mutex::new(HashMap::new()),
            ticker_stop,
            cancelled: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Compiles (or loads the verified compiled form of) a module and links it.
    pub fn load(&self, wasm: &[u8]) -> Result<LoadedModule, Failure> {
        let digest = *blake3::hash(wasm).as_bytes();
        if let Some(m) = self.loaded.lock().unwrap().get(&digest) {
            return Ok(LoadedModule {
                source: CodeSource::Memory,
                ..m.clone()
            });
        }
        let (module, source) = match self.compiled.load(&self.engine, &digest) {
            Lookup::Hit(m) => (m, CodeSource::Disk),
            lookup => {
                let m = Module::new(&self.engine, wasm)
                    .map_err(|e| Failure::Setup(format!("not a valid WebAssembly module: {e}")))?;
                // A failed store only costs a recompile next time.
                let _ = self.compiled.store(&digest, &m);
                let source = match lookup {
                    Lookup::Tampered(_) => CodeSource::RecompiledAfterTamper,
                    _ => CodeSource::Compiled,
                };
                (m, source)
            }
        };
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
        forward: Option<mpsc::Sender<Option<(Stream, bytes::Bytes)>>>,
    ) -> RunOutcome {
        let cap = spec.limits.output_bytes;
        let stdout = CaptureStream::new(cap, Stream::Stdout, forward.clone());
        let stderr = CaptureStream::new(cap, Stream::Stderr, forward);
        let mut outcome = RunOutcome {
            result: Ok(()),
            stdout: Vec::new(),
            stderr: Vec::new(),
            access: AccessRecord::default(),
        };
        let wasi = match self.wasi_context(spec, &stdout, &stderr) {
            Ok(w) => w,
            Err(e) => {
                outcome.result = Err(Failure::Setup(format!("{e:#}")));
                return outcome;
            }
        };
        let mut store = Store::new(
            &self.engine,
            TaskState {
                wasi,
                limiter: MemoryLimiter {
                    max_bytes: usize::try_from(spec.limits.memory_bytes).unwrap_or(usize::MAX),
                    exceeded: false,
                },
                access: AccessTracker::new(spec.mounts.iter().map(|m| m.guest_path.clone())),
                memory: None,
            },
        );
        store.limiter(|s| &mut s.limiter);
        // Checked at every tick: cancellation (EXEC-012) must not wait for the timeout.
        let started = std::time::Instant::now();
        let (timeout, cancelled) = (spec.limits.timeout, self.cancelled.clone());
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if cancelled.load(Ordering::Relaxed) || started.elapsed() >= timeout {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store.call_hook(|mut ctx, hook| {
            if matches!(hook, CallHook::ReturningFromHost)
                && let Some(memory) = ctx.data().memory
            {
                let (bytes, state) = memory.data_and_store_mut(&mut ctx);
                state.access.drain(bytes);
            }
            Ok(())
        });

        AccessTracker::begin();
        let result = self.call_start(module, &mut store);
        AccessTracker::end();

        let state = store.into_data();
        outcome.access = state.access.finish();
        outcome.stdout = stdout.pipe.contents().to_vec();
        outcome.stderr = stderr.pipe.contents().to_vec();
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

    fn call_start(
        &self,
        module: &LoadedModule,
        store: &mut Store<TaskState>,
    ) -> wasmtime::Result<()> {
        let instance = module.pre.instantiate(&mut *store)?;
        store.data_mut().memory = instance.get_memory(&mut *store, "memory");
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
        &self,
        spec: &RunSpec<'_>,
        stdout: &CaptureStream,
        stderr: &CaptureStream,
    ) -> anyhow::Result<WasiP1Ctx> {
        let mut b = WasiCtxBuilder::new();
        // Must come before the preopens: each captures the flag when it is created.
        b.allow_blocking_current_thread(true);
        b.arg(spec.program).args(spec.args);
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
            b.monotonic_clock(VirtualMonotonicClock::new());
            b.secure_random(SeededRandom::new(&seed, "secure"));
            b.insecure_random(SeededRandom::new(&seed, "insecure"));
            b.insecure_random_seed(u128::from_le_bytes(seed[..16].try_into().unwrap()));
        }
        Ok(b.build_p1())
    }
}

impl Sandbox {
    /// Interrupts every guest running in this sandbox within one epoch tick, and every
    /// guest started later at its first tick; they fail with [`Failure::Cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A guest output stream: captured in memory up to one byte over the cap (which tells an
/// overflowing guest from one that wrote exactly the cap), and, when live output is on,
/// forwarded chunk by chunk to the thread that calls the [`OutputSink`].
#[derive(Clone)]
struct CaptureStream {
    pipe: MemoryOutputPipe,
    forward: Option<Forward>,
}

#[derive(Clone)]
struct Forward {
    stream: Stream,
    tx: mpsc::Sender<Option<(Stream, bytes::Bytes)>>,
    /// Bytes of this stream accepted so far, shared by every handle to it.
    written: Arc<AtomicUsize>,
    /// The output cap: bytes past it are not captured in the outcome, nor forwarded.
    cap: usize,
}

impl CaptureStream {
    fn new(
        cap: usize,
        stream: Stream,
        tx: Option<mpsc::Sender<Option<(Stream, bytes::Bytes)>>>,
    ) -> CaptureStream {
        CaptureStream {
            pipe: MemoryOutputPipe::new(cap.saturating_add(1)),
            forward: tx.map(|tx| Forward {
                stream,
                tx,
                written: Arc::new(AtomicUsize::new(0)),
                cap,
            }),
        }
    }

    /// Forwards `bytes`, which the pipe has just accepted, up to the cap.
    fn forward(&self, mut bytes: bytes::Bytes) {
        let Some(f) = &self.forward else { return };
        let before = f.written.fetch_add(bytes.len(), Ordering::Relaxed);
        bytes.truncate(f.cap.saturating_sub(before));
        if !bytes.is_empty() {
            // The receiver outlives the run; a send can only fail if its thread died.
            let _ = f.tx.send(Some((f.stream, bytes)));
        }
    }
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        // The pipe takes all of `bytes` or none of them.
        self.pipe.write(bytes.clone())?;
        self.forward(bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.pipe.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.pipe.check_write()
    }
}

impl tokio::io::AsyncWrite for CaptureStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.pipe).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.forward(bytes::Bytes::copy_from_slice(&buf[..n]));
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

fn classify(e: wasmtime::Error, memory_exceeded: bool, limits: Limits) -> Failure {
    if let Some(I32Exit(code)) = e.downcast_ref::<I32Exit>() {
        return Failure::Exit(*code);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::Timeout(limits.timeout),
        Some(Trap::StackOverflow) => Failure::StackOverflow,
        _ if memory_exceeded => Failure::MemoryLimit(limits.memory_bytes),
        Some(trap) => Failure::Trap(trap.to_string()),
        None => Failure::Trap(format!("{e}")),
    }
}
