//! Workspace-wide settings (WS-004) and the small enums tasks use.

use std::path::PathBuf;
use wask_runtime::Limits;

/// The hash function of keys, contents and streams (CACHE-002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Blake3,
    Sha256,
}

impl HashKind {
    /// Every hash function with its name in `wask.toml` and manifests: the one place
    /// the names are written.
    pub const NAMES: &[(&str, HashKind)] =
        &[("blake3", HashKind::Blake3), ("sha256", HashKind::Sha256)];

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .expect("every kind is named")
    }

    pub fn from_name(name: &str) -> Option<HashKind> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    Live,
    Buffered,
}

impl OutputMode {
    pub const NAMES: &[(&str, OutputMode)] = &[
        ("live", OutputMode::Live),
        ("buffered", OutputMode::Buffered),
    ];
}

/// How a task sees time and randomness (SANDBOX-005).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSetting {
    Fixed,
    Host,
}

impl ClockSetting {
    pub const NAMES: &[(&str, ClockSetting)] =
        &[("fixed", ClockSetting::Fixed), ("host", ClockSetting::Host)];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexScope {
    Workspace,
    Project,
}

impl MutexScope {
    pub const NAMES: &[(&str, MutexScope)] = &[
        ("workspace", MutexScope::Workspace),
        ("project", MutexScope::Project),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexMode {
    Exclusive,
    Shared,
}

impl MutexMode {
    pub const NAMES: &[(&str, MutexMode)] = &[
        ("exclusive", MutexMode::Exclusive),
        ("shared", MutexMode::Shared),
    ];
}

/// Settings from the workspace root's `wask.toml`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hash: HashKind,
    /// Absolute cache directory (`[cache] dir`, or `WASK_CACHE_DIR`).
    pub cache_dir: PathBuf,
    /// `None` means one job per logical CPU.
    pub jobs: Option<usize>,
    /// Per-tag concurrency caps (EXEC-005).
    pub tag_caps: Vec<(String, usize)>,
    pub output_mode: OutputMode,
    /// Defaults for every task's limits.
    pub limits: Limits,
    pub clock: ClockSetting,
    /// The fixed wall clock, in seconds since the Unix epoch.
    pub epoch_seconds: u64,
    /// `[cache] max_age`: the default of `wask cache clean --max-age`.
    pub cache_max_age: Option<std::time::Duration>,
    /// `[cache] max_size` in bytes: the default of `wask cache clean --max-size`.
    pub cache_max_size: Option<u64>,
    /// `[cache.remote]`, or `WASK_REMOTE_CACHE`: a shared cache server.
    pub remote: Option<RemoteSettings>,
}

/// A remote cache (`[cache.remote]`), as the root `wask.toml` and the environment set
/// it. The command line can still turn it off or point it elsewhere.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// `grpc://`, `grpcs://`, `http://` or `https://`.
    pub url: String,
    /// Look results up there (default true).
    pub read: bool,
    /// Upload fresh results there (default false, so laptops only read; CI sets
    /// `WASK_REMOTE_CACHE_WRITE=true`).
    pub write: bool,
    /// Every request ends within this (default 10 s).
    pub timeout: std::time::Duration,
    pub instance_name: String,
    pub headers: Vec<(String, String)>,
    /// Keys whose signed entries are believed, besides the user's own.
    pub trusted_keys: Vec<crate::signing::PublicKey>,
    pub ca_file: Option<PathBuf>,
    /// Certificate and key, PEM.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl RemoteSettings {
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

    /// A remote at `url` with every other setting at its default.
    pub fn at(url: String) -> RemoteSettings {
        RemoteSettings {
            url,
            read: true,
            write: false,
            timeout: Self::DEFAULT_TIMEOUT,
            instance_name: String::new(),
            headers: Vec::new(),
            trusted_keys: Vec::new(),
            ca_file: None,
            client_cert: None,
        }
    }
}

/// Parses `512MiB`, `1GiB`, `64KiB`, `1000` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a size like `512MiB`, found `{text}`"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}`: use B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(super::parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(super::parse_size("100"), Ok(100));
        assert!(super::parse_size("1 parsec").is_err());
    }
}
