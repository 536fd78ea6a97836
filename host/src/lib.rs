//! wask: a WebAssembly-sandboxed, content-addressed task runner for workspaces.
//!
//! This crate is everything outside the sandbox itself (which is `wask-runtime`):
//!
//! * [`workspace`] loads and checks `wask.toml` files (WS, ID, PATH rules);
//! * [`refs`] parses task references and [`graph`] builds the task graph (DAG rules);
//! * [`key`] derives cache keys and [`cache`] stores and restores entries (CACHE rules);
//!   [`explain`] makes a key's parts readable for `wask why`;
//! * [`modules`] reads `.wasm` modules, builds guest crates and checks pinned digests;
//! * [`protect`] says where no output may land, and [`fs`] reaches the cache and the
//!   workspace through directory handles that never follow a link;
//! * [`affected`] says which tasks changed files touch (`--affected`, `watch`);
//! * [`exec`] runs a run set: the lifecycle of one task and the scheduler (EXEC rules);
//! * [`signing`] is the user's Ed25519 key and the DSSE envelopes it signs (audit
//!   provenance, remote cache entries);
//! * [`cli`] is the `wask` command line, and the one place errors become messages;
//!   [`cancel`] carries Ctrl-C and SIGTERM to whatever is running.

pub mod affected;
pub mod audit;
pub mod cache;
pub mod cancel;
pub mod cli;
pub mod exec;
pub mod explain;
pub mod filter;
pub mod fs;
pub mod graph;
pub mod key;
pub mod modules;
pub mod protect;
pub mod refs;
pub mod signing;
pub mod workspace;

/// The `wask` program: what `main` runs, as an exit code. A child that compiles one
/// module for a parent `wask` (see `wask_runtime::compile`) is not a command anyone
/// types, so clap never sees it.
pub fn entry() -> i32 {
    if std::env::args_os().nth(1).as_deref() == Some(exec::COMPILE_SUBCOMMAND.as_ref()) {
        return wask_runtime::compile::serve();
    }
    cli::main()
}
