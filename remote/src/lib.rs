//! wask-remote: the two protocols existing cache servers speak, behind one blocking
//! [`RemoteStore`] trait.
//!
//! * [`grpc`]: the Remote Execution API v2 (`grpc://`, `grpcs://`): `Capabilities`,
//!   `ContentAddressableStorage` (`FindMissingBlobs`, `BatchUpdateBlobs`,
//!   `BatchReadBlobs`), `ByteStream` for blobs over the batch limit, and `ActionCache`.
//!   BuildGrid, bazel-remote, Buildbarn, NativeLink and EngFlow serve it.
//! * [`http`]: the Bazel HTTP cache layout (`http://`, `https://`): `GET`, `PUT` and
//!   `HEAD` of `/ac/<hash>` and `/cas/<hash>`, as bazel-remote, nginx with WebDAV and
//!   object stores behind a gateway serve it.
//!
//! This crate knows blobs, action digests and `ActionResult`s, nothing of wask's
//! workspaces, keys or trust: what an entry means, and whether to believe it, is the
//! host's (`wask::cache::remote`). What it does guarantee: a blob handed to the caller
//! has the bytes its digest names ([`fetch_blob`] hashes while it writes and never
//! takes more than the digest's size), and every request ends within the configured
//! timeout, whatever the server does.
//!
//! [`entry`] is the layout of a wask result as an `ActionResult`, and the action digest
//! a wask key maps to (both documented in `docs/remote-cache.md`).

pub mod entry;
pub mod grpc;
pub mod http;
mod tls;

pub use bazel_remote_apis::build::bazel::remote::execution::v2::ActionResult;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// The most bytes wask asks for or sends in one batch, whatever a server allows.
pub const MAX_BATCH: u64 = 4 << 20;

/// A blob's name in a content-addressed store: its hash (lower-case hex) and size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    pub hash: String,
    pub size: u64,
}

impl Digest {
    /// The digest of `bytes` under `function`.
    pub fn of(function: DigestFunction, bytes: &[u8]) -> Digest {
        let mut h = function.hasher();
        h.update(bytes);
        Digest {
            hash: h.finish(),
            size: bytes.len() as u64,
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.hash, self.size)
    }
}

/// The hash function a server names blobs by. REAPI servers say which they offer; the
/// HTTP layout is SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestFunction {
    Sha256,
    Blake3,
}

impl DigestFunction {
    pub fn name(self) -> &'static str {
        match self {
            DigestFunction::Sha256 => "sha256",
            DigestFunction::Blake3 => "blake3",
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            DigestFunction::Sha256 => Hasher::Sha256(<sha2::Sha256 as sha2::Digest>::new()),
            DigestFunction::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }
}

/// A running hash of either function.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => sha2::Digest::update(h, bytes),
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    /// The hash as lower-case hex.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&sha2::Digest::finalize(h)),
            Hasher::Blake3(h) => h.finalize().to_hex().to_string(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a server says it can do.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// `REAPI` or `HTTP`.
    pub protocol: &'static str,
    /// The hash function blobs are named by.
    pub digest: DigestFunction,
    /// The largest request of blobs in one batch (0: no batches).
    pub max_batch_bytes: u64,
    /// Whether the server takes action results from clients.
    pub update_enabled: bool,
    /// Whether small blobs are written into the action results too (the HTTP layout,
    /// which stores them as they come: a hit is then one request). REAPI asks clients
    /// not to, and inlines on request instead.
    pub inline_in_results: bool,
    /// What else the server said, for `wask cache info`.
    pub detail: String,
}

/// Why a request to the server failed. Every kind is the same to a run (the remote is
/// an optimisation); the kinds are for the message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("{url} refused the credentials: {message}")]
    Refused { url: String, message: String },
    #[error("{url} answered {message}")]
    Server { url: String, message: String },
    /// The server sent bytes that are not what they claim to be.
    #[error("{url} sent a wrong blob {digest}: {message}")]
    WrongBytes {
        url: String,
        digest: String,
        message: String,
    },
    #[error("{0}")]
    Local(String),
    /// The run was cancelled while the request waited.
    #[error("cancelled")]
    Cancelled,
}

/// A remote content-addressed store with an action cache. Calls block; every one ends
/// within the store's timeout.
pub trait RemoteStore: Send + Sync {
    /// The server's URL, as configured (no credentials).
    fn url(&self) -> &str;

    fn capabilities(&self) -> Result<Capabilities, RemoteError>;

    /// The action result stored under `action`, if any.
    fn get_action_result(&self, action: &Digest) -> Result<Option<ActionResult>, RemoteError>;

    fn update_action_result(
        &self,
        action: &Digest,
        result: &ActionResult,
    ) -> Result<(), RemoteError>;

    /// Which of `blobs` the server does not have.
    fn find_missing(&self, blobs: &[Digest]) -> Result<Vec<Digest>, RemoteError>;

    /// Writes the blob's bytes to `out`, at most `blob.size` of them plus one (so a
    /// longer blob is caught). `Ok(false)`: the server does not have it. The bytes are
    /// not checked here: use [`fetch_blob`].
    fn read_blob(&self, blob: &Digest, out: &mut dyn Write) -> Result<bool, RemoteError>;

    /// Uploads the file at `path`, whose digest is `blob`.
    fn write_blob(&self, blob: &Digest, path: &Path) -> Result<(), RemoteError>;

    /// Small blobs, fetched together where the protocol can (one request for all on
    /// REAPI). `None` for a blob the server does not have. Not checked: see
    /// [`fetch_blob`].
    fn read_small_blobs(&self, blobs: &[Digest]) -> Result<Vec<Option<Vec<u8>>>, RemoteError> {
        blobs
            .iter()
            .map(|b| {
                let mut bytes = Vec::new();
                Ok(self.read_blob(b, &mut bytes)?.then_some(bytes))
            })
            .collect()
    }

    /// Small blobs uploaded together where the protocol can.
    fn write_small_blobs(&self, blobs: &[(Digest, Vec<u8>)]) -> Result<(), RemoteError>;
}

/// Checks that `bytes` are what `blob` names under `function`.
pub fn check_blob(
    store: &dyn RemoteStore,
    function: DigestFunction,
    blob: &Digest,
    bytes: &[u8],
) -> Result<(), RemoteError> {
    let got = Digest::of(function, bytes);
    if got == *blob {
        Ok(())
    } else {
        Err(RemoteError::WrongBytes {
            url: store.url().into(),
            digest: blob.to_string(),
            message: format!("its bytes are {got}"),
        })
    }
}

/// Fetches `blob` into `out`, hashing as it goes: `Ok(false)` if the server does not
/// have it, an error if the bytes are not the blob's (then `out` holds bytes to throw
/// away).
pub fn fetch_blob(
    store: &dyn RemoteStore,
    function: DigestFunction,
    blob: &Digest,
    out: &mut dyn Write,
) -> Result<bool, RemoteError> {
    struct Hashing<'a> {
        out: &'a mut dyn Write,
        hasher: Hasher,
        written: u64,
        limit: u64,
        /// Set when the server sent more than the digest's size.
        overflowed: bool,
    }
    impl Write for Hashing<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.written.saturating_add(buf.len() as u64) > self.limit {
                self.overflowed = true;
                return Err(std::io::Error::other("more bytes than the digest's size"));
            }
            self.out.write_all(buf)?;
            self.hasher.update(buf);
            self.written += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }
    let mut w = Hashing {
        out,
        hasher: function.hasher(),
        written: 0,
        limit: blob.size,
        overflowed: false,
    };
    let wrong = |message: String| RemoteError::WrongBytes {
        url: store.url().into(),
        digest: blob.to_string(),
        message,
    };
    match store.read_blob(blob, &mut w) {
        Ok(false) => return Ok(false),
        Ok(true) => {}
        Err(_) if w.overflowed => return Err(wrong("it is longer than its size".into())),
        Err(e) => return Err(e),
    }
    let (written, hash) = (w.written, w.hasher.finish());
    if written != blob.size || hash != blob.hash {
        return Err(wrong(format!("its bytes are {hash}/{written}")));
    }
    Ok(true)
}

/// How to reach a server.
#[derive(Debug, Clone)]
pub struct Options {
    /// `grpc://`, `grpcs://`, `http://` or `https://`, with host, port and (HTTP) a
    /// path prefix.
    pub url: String,
    /// Every request ends within this.
    pub timeout: Duration,
    /// REAPI's instance name (empty: the default instance).
    pub instance_name: String,
    /// Sent with every request (`Authorization: Bearer` is added from `token`).
    pub headers: Vec<(String, String)>,
    /// A bearer token (from the environment, never from a file in the repository).
    pub token: Option<String>,
    /// PEM certificates trusted besides the system's roots (the bytes: reading files is
    /// the caller's, with its own bounds).
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and its key, PEM.
    pub client_identity: Option<ClientIdentity>,
    /// Polled while a request waits: once it returns true, gRPC requests end at once
    /// (`RemoteError::Cancelled`) and HTTP ones are not started.
    pub cancelled: Option<CancelCheck>,
}

/// Whether the caller's work was cancelled.
#[derive(Clone)]
pub struct CancelCheck(pub std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl CancelCheck {
    pub fn is_set(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for CancelCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CancelCheck")
    }
}

/// A client certificate for mutual TLS, PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("ClientIdentity { .. }")
    }
}

impl Options {
    /// `url` with a 10 s timeout and nothing else: the default instance, no headers,
    /// no credentials, the system's roots.
    pub fn new(url: &str) -> Options {
        Options {
            url: url.to_string(),
            timeout: Duration::from_secs(10),
            instance_name: String::new(),
            headers: Vec::new(),
            token: None,
            ca_pem: None,
            client_identity: None,
            cancelled: None,
        }
    }
}

/// The store `options.url` names.
pub fn connect(options: &Options) -> Result<Box<dyn RemoteStore>, RemoteError> {
    let url = options.url.as_str();
    if url.starts_with("grpc://") || url.starts_with("grpcs://") {
        Ok(Box::new(grpc::Reapi::connect(options)?))
    } else if url.starts_with("http://") || url.starts_with("https://") {
        Ok(Box::new(http::HttpCache::connect(options)?))
    } else {
        Err(RemoteError::Local(format!(
            "`{url}` is not a remote cache URL: use grpc://, grpcs://, http:// or https://"
        )))
    }
}
