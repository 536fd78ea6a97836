//! `wask cache info|clear`: the local cache (CACHE-021).

use super::{CliError, EXIT_OK};
use crate::cache::LocalCache;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Show where the cache is, how many entries it holds and their size.
    Info,
    /// Remove every cache entry and compiled module.
    Clear,
}

pub fn cache(directory: Option<PathBuf>, command: CacheCommand) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, _) = super::load(&dir)?;
    let cache = LocalCache::new(ws.settings.cache_dir.clone(), ws.settings.hash);
    match command {
        CacheCommand::Info => {
            let info = cache.info();
            println!("cache directory: {}", cache.dir().display());
            println!("entries: {}", info.entries);
            println!("size: {} bytes", info.bytes);
            println!("compiled modules: {}", info.compiled_modules);
            println!("temporary directories: {}", info.temporary);
        }
        CacheCommand::Clear => {
            let before = cache.info();
            cache
                .clear()
                .map_err(|e| anyhow::anyhow!("cannot clear {}: {e}", cache.dir().display()))?;
            println!(
                "removed {} entries ({} bytes) and {} compiled modules from {}",
                before.entries,
                before.bytes,
                before.compiled_modules,
                cache.dir().display()
            );
        }
    }
    Ok(EXIT_OK)
}
