//! `wask cache info|clean|verify|clear`: the local cache (CACHE-021).

use super::{CliError, EXIT_BAD_CONFIG, EXIT_OK, EXIT_TASK_FAILED};
use crate::cache::{CleanPolicy, LocalCache, ORPHAN_AGE, Reason};
use crate::workspace::Workspace;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Show where the cache is, how many entries it holds and their size.
    Info,
    /// Evict old entries, then the least recently used ones until the cache fits.
    ///
    /// An entry's age is the time since it was stored or last restored by a hit. First
    /// every entry older than the maximum age goes, then the oldest entries until the
    /// rest fit in the maximum size. Temporary directories left by interrupted stores
    /// (untouched for an hour) are removed too. Limits default to `max_age` and
    /// `max_size` in the `[cache]` table of the workspace's `wask.toml`; the flags
    /// override them. Compiled modules are kept (`wask cache clear` removes them).
    Clean(CleanArgs),
    /// Re-hash every stored file; remove the entries whose bytes do not match.
    ///
    /// Exits 0 when every entry is intact, 1 when corrupt entries were found (they
    /// are removed, so their tasks run fresh next time).
    Verify,
    /// Remove every cache entry and compiled module.
    Clear,
}

#[derive(Args)]
pub struct CleanArgs {
    /// Remove entries not stored or used for longer than this, e.g. `30days`, `12h`
    /// [default: `[cache] max_age`].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_age: Option<Duration>,
    /// Then remove the oldest entries until the rest take at most this much, e.g.
    /// `500MiB`, `2GB` [default: `[cache] max_size`].
    #[arg(long, value_name = "SIZE", value_parser = crate::workspace::parse_size)]
    max_size: Option<u64>,
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn cache(directory: Option<PathBuf>, command: CacheCommand) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, _) = super::load(&dir)?;
    let cache = LocalCache::new(ws.settings.cache_dir.clone(), ws.settings.hash);
    match command {
        CacheCommand::Info => {
            let info = cache.info();
            println!("cache directory: {}", cache.dir().display());
            // Everything under the cache, by kind, and the crate builds beside it.
            let (builds, build_bytes) = crate_builds(&ws.root.join(".wask/build"));
            let line = |what: &str, count: u64, bytes: u64| {
                println!("{what:<22} {count:>8}  {:>12}", human_bytes(bytes));
            };
            println!("{:<22} {:>8}  {:>12}", "kind", "count", "size");
            line("entries", info.entries, info.bytes);
            line(
                "compiled modules",
                info.compiled_modules,
                info.compiled_bytes,
            );
            line("built modules", info.built_modules, info.built_bytes);
            line("crate builds", builds, build_bytes);
            println!("{:<22} {:>8}", "temporary directories", info.temporary);
            line(
                "total",
                info.entries + info.compiled_modules + info.built_modules + builds,
                info.bytes + info.compiled_bytes + info.built_bytes + build_bytes,
            );
            if !info.foreign.is_empty() {
                println!("not made by wask (left alone): {}", info.foreign.join(", "));
            }
            remote_info(&ws);
        }
        CacheCommand::Clear => {
            let report = cache.clear().map_err(|e| CliError::Other(e.into()))?;
            println!(
                "removed {} entries ({} bytes), {} compiled and {} built modules from {}",
                report.entries,
                report.bytes,
                report.compiled_modules,
                report.built_modules,
                cache.dir().display()
            );
            if !report.left.is_empty() {
                println!(
                    "left {} {} not made by wask: {}",
                    report.left.len(),
                    plural(report.left.len() as u64, "name", "names"),
                    report.left.join(", ")
                );
            }
            for e in &report.errors {
                eprintln!("error: {e}");
            }
            if !report.errors.is_empty() {
                return Ok(EXIT_BAD_CONFIG);
            }
        }
        CacheCommand::Clean(args) => return clean(&ws, &cache, args),
        CacheCommand::Verify => return verify(&cache),
    }
    Ok(EXIT_OK)
}

/// The remote cache, if the workspace has one: where, what it may do, and what the
/// server says it can do (one request), or why it could not be asked.
fn remote_info(ws: &Workspace) {
    let Some(settings) = &ws.settings.remote else {
        println!("remote cache: none");
        return;
    };
    println!("remote cache: {}", settings.url);
    println!(
        "  read: {}, write: {}, timeout: {} s, trusted keys: {} besides your own",
        settings.read,
        settings.write,
        settings.timeout.as_secs_f64(),
        settings.trusted_keys.len()
    );
    match crate::cache::remote::RemoteCache::open(
        settings,
        ws.settings.hash,
        &crate::cancel::Cancel::never(),
    ) {
        Err(e) => println!("  unusable: {e}"),
        Ok(remote) => match remote.capabilities() {
            Ok(caps) => println!(
                "  reachable: {} ({}), digests {}",
                caps.protocol,
                caps.detail,
                caps.digest.name()
            ),
            Err(e) => println!("  not reachable: {e}"),
        },
    }
}

fn clean(ws: &Workspace, cache: &LocalCache, args: CleanArgs) -> Result<i32, CliError> {
    let (config_age, config_size) = (ws.settings.cache_max_age, ws.settings.cache_max_size);
    let policy = CleanPolicy {
        max_age: args.max_age.or(config_age),
        max_size: args.max_size.or(config_size),
        orphan_age: ORPHAN_AGE,
        now: SystemTime::now(),
    };
    if policy.max_age.is_none() && policy.max_size.is_none() {
        eprintln!(
            "note: no --max-age or --max-size, and no `[cache] max_age` or `max_size`: \
             only leftover temporary directories are removed"
        );
    }
    let report = cache
        .clean(&policy, args.dry_run)
        .map_err(|e| CliError::Other(e.into()))?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let (mut entries, mut entry_bytes, mut temporary) = (0u64, 0u64, 0u64);
    for r in &report.removed {
        let age = humantime::format_duration(Duration::from_secs(r.age.as_secs()));
        match r.reason {
            Reason::Orphan => {
                temporary += 1;
                println!(
                    "{verb} temporary directory {} ({} bytes, untouched for {age}): left by an interrupted store",
                    r.name, r.bytes
                );
            }
            Reason::Age | Reason::Size => {
                entries += 1;
                entry_bytes += r.bytes;
                let why = if r.reason == Reason::Age {
                    format!(
                        "older than {}",
                        humantime::format_duration(policy.max_age.unwrap_or_default())
                    )
                } else {
                    format!("cache over {} bytes", policy.max_size.unwrap_or_default())
                };
                println!(
                    "{verb} entry {} ({} bytes, last used {age} ago): {why}",
                    r.name, r.bytes
                );
            }
        }
    }
    println!(
        "{verb} {entries} {} ({entry_bytes} bytes) and {temporary} temporary {}; {} {} ({} bytes) {}",
        plural(entries, "entry", "entries"),
        plural(temporary, "directory", "directories"),
        report.kept_entries,
        plural(report.kept_entries, "entry", "entries"),
        report.kept_bytes,
        if args.dry_run {
            "would remain"
        } else {
            "remain"
        },
    );
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    Ok(if report.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_BAD_CONFIG
    })
}

fn verify(cache: &LocalCache) -> Result<i32, CliError> {
    let report = cache.verify().map_err(|e| CliError::Other(e.into()))?;
    for (name, what) in &report.corrupt {
        println!("corrupt entry {name}: {what}; removed");
    }
    for (name, why) in &report.skipped {
        println!("skipped entry {name}: {why}");
    }
    let checked = report.intact + report.corrupt.len() as u64;
    println!(
        "verified {checked} {}: {} intact, {} corrupt{}{}",
        plural(checked, "entry", "entries"),
        report.intact,
        report.corrupt.len(),
        if report.corrupt.is_empty() {
            ""
        } else {
            " (removed)"
        },
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", report.skipped.len())
        },
    );
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    Ok(if !report.errors.is_empty() {
        EXIT_BAD_CONFIG
    } else if !report.corrupt.is_empty() {
        EXIT_TASK_FAILED
    } else {
        EXIT_OK
    })
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("expected a duration like `30days` or `12h`: {e}"))
}

/// The guest crate build directories under `dir` (`.wask/build`): how many, and the
/// bytes of every file in them (links not followed).
fn crate_builds(dir: &std::path::Path) -> (u64, u64) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let mut count = 0;
    let mut bytes = 0;
    for build in read.flatten() {
        if !build.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        count += 1;
        bytes += walkdir::WalkDir::new(build.path())
            .follow_links(false)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum::<u64>();
    }
    (count, bytes)
}

/// `1.5 MiB`: a size read at a glance (exact below 1 KiB).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
