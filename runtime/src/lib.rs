//! The wask sandbox.
//!
//! This crate runs one WASI (preview 1) module under wasmtime with exactly the
//! capabilities a task declared, and nothing else:
//!
//! * [`view`] builds the filesystem the guest sees from the task's declarations: a staged
//!   tree holding only the declared input files (read-only) and writable directories only
//!   where a declared output could land, then collects and checks what the guest wrote.
//! * [`Sandbox`] owns the wasmtime engine, the on-disk cache of compiled modules
//!   ([`compiled`]), and runs a [`LoadedModule`] against a [`RunSpec`] under [`Limits`].
//!   It captures the guest's stdout and stderr in full and, with
//!   [`Sandbox::run_with_output`], also hands them to an [`OutputSink`] as they are written.
//! * `guard` is the policy layer over the WASI calls whose plain behaviour would let a
//!   guest outlast its timeout, see the host through file metadata, or write without
//!   bound; [`compile`] keeps compilation inside the task's limits.
//! * [`determinism`] supplies the fixed clocks and key-seeded randomness of SANDBOX-005.
//! * [`access`] records which paths the guest opened and was refused (SANDBOX-009), so
//!   that a run report can name an undeclared path.
//! * [`paths`] is the one rule for the paths wask accepts, and [`secret`] the per-user
//!   key that authenticates what a cache holds that becomes code.
//!
//! It knows nothing of workspaces, graphs or cache keys: the host crate (`wask`) decides
//! *what* a task may see, this crate makes sure it sees exactly that. It keeps no
//! process-wide state (beyond a counter that makes temporary names unique): everything
//! a run needs hangs off its [`Sandbox`] and its store.

pub mod access;
mod capture;
pub mod compile;
pub mod compiled;
pub mod determinism;
mod engine;
mod guard;
mod limits;
pub mod paths;
mod sandbox;
pub mod secret;
pub mod tree;
pub mod view;

pub use capture::MAX_WRITE_RUNS;
pub use compile::CompileIn;
pub use guard::budget::LimitExceeded;
pub use limits::{Limits, MAX_TIMEOUT};
pub use sandbox::{
    ARGV0, CodeSource, Failure, LoadedModule, OutputSink, RunOutcome, RunSpec, Sandbox,
    SandboxOptions, Stream,
};

/// A blake3 digest, used by the runtime for module identity and integrity checks.
pub type Digest = [u8; 32];

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    digest
        .iter()
        .fold(String::with_capacity(digest.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The wasmtime this runtime is built on (pinned exactly in the workspace `Cargo.toml`),
/// and the features it is built with: what `wask --version --verbose` reports.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The wasmtime and wasmtime-wasi features enabled (see the workspace `Cargo.toml`).
pub const WASMTIME_FEATURES: &[&str] = &[
    "cranelift",
    "runtime",
    "std",
    "parallel-compilation",
    "component-model",
    "async",
    "anyhow",
    "backtrace",
    "call-hook",
    "wasi-p1",
];

#[cfg(test)]
mod version_tests {
    /// The version reported is the one the lock file builds.
    #[test]
    fn the_reported_wasmtime_version_is_the_locked_one() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .expect("the workspace lock file");
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .map(|v| v.trim_end_matches('"'));
        assert_eq!(locked, Some(super::WASMTIME_VERSION));
    }
}
