//! The one wasmtime configuration of every sandbox, and the epoch ticker that drives
//! its timeouts.
//!
//! Compiled code is only valid for the configuration that made it, and a compiler child
//! process ([`crate::compile`]) must make exactly what this process would: both build
//! their engine from [`config`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine};

/// How often the epoch advances; a timeout fires within one tick of its limit.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine configuration: epoch interruption for timeouts and cancellation. Threads
/// (shared memories) are not compiled in, so every guest memory is private to its run.
pub(crate) fn config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] until `stop` is set.
pub(crate) fn start_ticker(engine: &Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let ticking = engine.clone();
    std::thread::Builder::new()
        .name("wask-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        })?;
    Ok(())
}
