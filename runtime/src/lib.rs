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
//! * [`determinism`] supplies the fixed clocks and key-seeded randomness of SANDBOX-005.
//! * [`access`] records which paths the guest tried to open (SANDBOX-009), so that a run
//!   report can name an undeclared path.
//!
//! It knows nothing of workspaces, graphs or cache keys: the host crate (`wask`) decides
//! *what* a task may see, this crate makes sure it sees exactly that.

pub mod access;
pub mod compiled;
pub mod determinism;
mod limits;
mod sandbox;
pub mod view;

pub use limits::Limits;
pub use sandbox::{
    CodeSource, Failure, LoadedModule, OutputSink, RunOutcome, RunSpec, Sandbox, Stream,
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
