//! The remote cache (issue 12): results shared through a REAPI v2 or Bazel HTTP cache
//! server (`wask-remote` speaks the protocols), behind the local cache.
//!
//! A remote entry is never believed on its word. Every entry carries a DSSE envelope,
//! signed with Ed25519 by the key of whoever uploaded it, over the entry's manifest
//! exactly as the local cache stores it (key, every output's path, mode, size and
//! digest, both streams, write order, access record). A reader accepts an entry only if
//! that envelope verifies under one of its trusted keys (its own, and `trusted_keys`),
//! the manifest's key is the key it looked up, and every blob it downloads hashes to
//! what the remote names it by and to what the signed manifest records. Then the entry
//! is written to the local cache and restored from there, through the same checks as
//! any local hit (declared outputs only, never over an input). Nothing that becomes
//! code comes from the remote: modules, compiled code and crate builds stay local.
//!
//! The remote is an optimisation: whatever the server does (down, slow, 5xx, refusing
//! the credentials, sending garbage) a run's result is the same, with one warning line;
//! after [`GIVE_UP_AFTER`] failures the run stops asking.

mod fetch;
mod upload;

use crate::cancel::Cancel;
use crate::signing::{PublicKey, SigningKeyFile};
use crate::workspace::HashKind;
use crate::workspace::RemoteSettings;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use wask_remote::{Capabilities, RemoteError, RemoteStore};

pub use fetch::Fetched;
pub use upload::UploadReport;

/// Failures after which a run stops asking the server.
pub const GIVE_UP_AFTER: usize = 3;

/// The environment variable that holds the bearer token (never a file in the
/// repository).
pub const TOKEN_VARIABLE: &str = "WASK_REMOTE_CACHE_TOKEN";

/// A remote cache, as one run uses it. Cheap to share between the run's threads.
pub struct RemoteCache {
    inner: Arc<Inner>,
    uploads: upload::Uploader,
}

struct Inner {
    /// The run's: once set, nothing more is downloaded, stored or waited for.
    cancel: Cancel,
    store: Box<dyn RemoteStore>,
    read: bool,
    write: bool,
    /// Every request, and all of one entry's requests together, end within this.
    timeout: std::time::Duration,
    hash: HashKind,
    /// Whose signed entries are believed.
    trusted: Vec<PublicKey>,
    /// Signs uploads (only when `write`).
    signer: Option<SigningKeyFile>,
    capabilities: OnceLock<Result<Capabilities, wask_remote::RemoteError>>,
    /// What the TLS settings were, for a hint when a TLS connection fails.
    tls: TlsSetup,
    health: Health,
    stats: Stats,
}

/// How the server has behaved this run.
#[derive(Default)]
struct Health {
    failures: AtomicUsize,
    /// Whether the user was told the server is failing.
    warned: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// What the run got from and gave to the server.
#[derive(Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub bytes_down: AtomicU64,
    pub bytes_up: AtomicU64,
    pub requests: AtomicU64,
}

/// A PEM file of certificates or a key is a few kilobytes.
const MAX_TLS_FILE: u64 = 1 << 20;

/// Whether a bearer token may be sent to `url`: over TLS, or to a server on this
/// machine; never in clear text across a network.
fn token_may_go_to(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    match (url.scheme(), url.host()) {
        ("https" | "grpcs", _) => true,
        (_, Some(url::Host::Domain(name))) => name == "localhost",
        (_, Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        (_, Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        (_, None) => false,
    }
}

/// Which TLS settings a remote cache has: what a hint about a failed handshake needs.
struct TlsSetup {
    tls: bool,
    ca_file: bool,
    client_cert: bool,
}

impl TlsSetup {
    /// What to try when `message` (a failed request's) says TLS went wrong.
    fn hint(&self, message: &str) -> Option<&'static str> {
        if !self.tls || message.contains("did not answer within") {
            return None;
        }
        if message.contains("UnknownIssuer") || message.contains("invalid peer certificate") {
            return Some(if self.ca_file {
                "the server's certificate is not signed by the CA in `ca_file` (nor by one the system trusts)"
            } else {
                "the server's certificate is not signed by a CA the system trusts: name its CA in `ca_file` under [cache.remote]"
            });
        }
        // A server that requires a client certificate refuses a client without one in
        // ways that name no certificate: HTTP 400 (nginx), a closed or cancelled
        // connection (gRPC). So the hint says "if".
        (!self.client_cert).then_some(
            "if the server requires a client certificate, set `client_cert` and `client_key` under [cache.remote]",
        )
    }
}

/// Why the remote cache cannot be used at all (a setting, not the server).
#[derive(Debug, thiserror::Error)]
#[error("the remote cache {url}: {why}")]
pub struct RemoteSetupError {
    url: String,
    why: String,
}

impl RemoteCache {
    /// The remote cache `settings` describe, for a workspace whose keys use `hash`.
    /// Connecting does not reach the server yet: the first lookup does.
    pub fn open(
        settings: &RemoteSettings,
        hash: HashKind,
        cancel: &Cancel,
    ) -> Result<RemoteCache, RemoteSetupError> {
        let setup = |why: String| RemoteSetupError {
            url: settings.url.clone(),
            why,
        };
        // Small regular files, read with a bound and never from a FIFO or a device:
        // a workspace names them.
        let pem = |path: &std::path::Path, what: &str| {
            crate::fs::read_named_text(path, MAX_TLS_FILE)
                .map(String::into_bytes)
                .map_err(|e| setup(format!("cannot read the {what} {}: {e}", path.display())))
        };
        let ca_pem = match &settings.ca_file {
            Some(path) => Some(pem(path, "CA file (`ca_file`)")?),
            None => None,
        };
        let client_identity = match &settings.client_cert {
            Some((cert, key)) => Some(wask_remote::ClientIdentity {
                cert_pem: pem(cert, "client certificate (`client_cert`)")?,
                key_pem: pem(key, "client key (`client_key`)")?,
            }),
            None => None,
        };
        let token = std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty());
        if token.is_some() && !token_may_go_to(&settings.url) {
            return Err(setup(format!(
                "{TOKEN_VARIABLE} is set, and this URL would carry it in clear text: use https:// or grpcs:// (a loopback server may be plain)"
            )));
        }
        let options = wask_remote::Options {
            url: settings.url.clone(),
            timeout: settings.timeout,
            instance_name: settings.instance_name.clone(),
            headers: settings.headers.clone(),
            token,
            ca_pem,
            client_identity,
            cancelled: Some(wask_remote::CancelCheck({
                let cancel = cancel.clone();
                std::sync::Arc::new(move || cancel.is_set())
            })),
        };
        let store = wask_remote::connect(&options).map_err(|e| setup(e.to_string()))?;
        // The user's own key: trusted always, and the one that signs uploads.
        let own = SigningKeyFile::load().map_err(|e| setup(e.to_string()))?;
        let mut trusted = vec![own.public()];
        trusted.extend(settings.trusted_keys.iter().copied());
        let inner = Arc::new(Inner {
            cancel: cancel.clone(),
            store,
            read: settings.read,
            write: settings.write,
            timeout: settings.timeout,
            hash,
            trusted,
            signer: settings.write.then_some(own),
            capabilities: OnceLock::new(),
            tls: TlsSetup {
                tls: settings.url.starts_with("https://") || settings.url.starts_with("grpcs://"),
                ca_file: settings.ca_file.is_some(),
                client_cert: settings.client_cert.is_some(),
            },
            health: Health::default(),
            stats: Stats::default(),
        });
        Ok(RemoteCache {
            uploads: upload::Uploader::new(inner.clone(), settings.timeout),
            inner,
        })
    }

    pub fn url(&self) -> &str {
        self.inner.store.url()
    }

    pub fn reads(&self) -> bool {
        self.inner.read
    }

    pub fn writes(&self) -> bool {
        self.inner.write
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// What the server said it can do, or why it could not be asked.
    pub fn capabilities(&self) -> Result<Capabilities, String> {
        self.inner
            .capabilities()
            .map_err(|e| printable(&e.to_string()))
    }

    /// The last error the server gave, if any.
    pub fn last_error(&self) -> Option<String> {
        self.inner.health.last_error.lock().unwrap().clone()
    }

    /// Looks `key` up on the server and, on a trusted hit, writes it into `local`; see
    /// [`fetch`].
    pub fn fetch(
        &self,
        key: &crate::key::Digest,
        limits: &wask_runtime::Limits,
        local: &super::LocalCache,
        staging: &std::path::Path,
        warn: &dyn Fn(&str),
    ) -> Fetched {
        fetch::fetch(&self.inner, key, limits, local, staging, warn)
    }

    /// Whether the server holds a trusted entry for `key` (its signer's key id), without
    /// downloading it: for `wask why`.
    pub fn probe(&self, key: &crate::key::Digest) -> Result<Option<String>, String> {
        fetch::probe(&self.inner, key).map_err(|e| printable(&e))
    }

    /// Queues the upload of the local entry stored under `key` by `task`: it runs in
    /// the background, and [`RemoteCache::finish`] waits for it.
    pub fn upload(
        &self,
        key: crate::key::Digest,
        task: &crate::refs::TaskId,
        local: &super::LocalCache,
        staging: &std::path::Path,
    ) {
        if self.inner.write && self.inner.usable() {
            self.uploads
                .queue(key, task.clone(), local.clone(), staging.to_path_buf());
        }
    }

    /// Waits for the queued uploads, no longer than the timeout after the last one
    /// started; says what did not make it.
    pub fn finish(&self) -> UploadReport {
        self.uploads.finish()
    }
}

/// `text` (which may hold what a server sent) as it may be shown: control characters
/// (escape sequences, carriage returns, newlines) written as escapes, and no more than
/// 400 characters, so a hostile server cannot draw on the terminal or fill a log.
pub fn printable(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == 400 {
            out.push_str("...");
            break;
        }
        // Controls, and the format characters that reorder or hide text (bidi
        // overrides and isolates, zero widths, the byte order mark).
        let hides = matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}');
        if c.is_control() || hides {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Inner {
    fn capabilities(&self) -> Result<Capabilities, wask_remote::RemoteError> {
        self.capabilities
            .get_or_init(|| {
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.store.capabilities()
            })
            .clone()
    }

    /// Whether the run still asks the server.
    fn usable(&self) -> bool {
        self.health.failures.load(Ordering::Relaxed) < GIVE_UP_AFTER
    }

    /// Counts a failure of the server; the warning to show, the first time and when
    /// the run gives up.
    fn failed(&self, e: &RemoteError) -> Option<String> {
        if matches!(e, RemoteError::Cancelled) {
            return None;
        }
        *self.health.last_error.lock().unwrap() = Some(printable(&e.to_string()));
        let n = self.health.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.health.warned.swap(true, Ordering::Relaxed) {
            let message = e.to_string();
            let hint = self
                .tls
                .hint(&message)
                .map(|h| format!("\n  hint: {h}"))
                .unwrap_or_default();
            Some(format!(
                "the remote cache failed ({}); the run goes on with the local cache{hint}",
                printable(&message)
            ))
        } else if n == GIVE_UP_AFTER {
            Some(format!(
                "the remote cache failed {GIVE_UP_AFTER} times; this run stops asking it"
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_goes_only_over_tls_or_to_this_machine() {
        for url in [
            "https://cache.example:443",
            "grpcs://10.0.0.1:9092",
            "http://127.0.0.1:8080",
            "grpc://[::1]:9092",
            "http://localhost",
        ] {
            assert!(super::token_may_go_to(url), "{url}");
        }
        for url in [
            "http://cache.example",
            "grpc://10.0.0.1:9092",
            "http://127.0.0.1.example:80",
            "http://[::2]:80",
        ] {
            assert!(!super::token_may_go_to(url), "{url}");
        }
    }

    #[test]
    fn what_a_server_sends_is_shown_escaped_and_clipped() {
        let shown = super::printable("a\u{1b}[2K\r\u{202e}b\u{200b}c");
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() || c == '\u{202e}' || c == '\u{200b}'),
            "{shown}"
        );
        assert!(shown.starts_with('a') && shown.contains('b'), "{shown}");
        assert!(super::printable(&"x".repeat(10_000)).len() < 500);
    }
}
