//! The Bazel HTTP cache layout: `GET`, `PUT` and `HEAD` of `<url>/ac/<hash>` (an
//! `ActionResult`, protobuf-encoded) and `<url>/cas/<hash>` (a blob), SHA-256 names.
//! bazel-remote serves it, and so does any WebDAV server (nginx's `dav_methods PUT`)
//! or object store behind a gateway; such servers never check a blob against its name,
//! so [`crate::fetch_blob`] does.

use crate::{
    ActionResult, Capabilities, Digest, DigestFunction, Options, RemoteError, RemoteStore,
};
use prost::Message;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// Far above any action result wask writes (a few hundred bytes per output, 10,000
/// outputs in 2 MiB): a cap, since decoding one costs a few times its size in memory.
const MAX_ACTION_RESULT: u64 = 4 << 20;

/// Resolves the server's name once: ureq's own resolver starts a thread for every
/// request when a timeout is set, which cost more than the request on loopback. Every
/// request of a store goes to the one host of its URL.
#[derive(Debug, Default)]
struct ResolvedOnce {
    addrs: std::sync::Mutex<Option<ureq::unversioned::resolver::ResolvedSocketAddrs>>,
}

impl ureq::unversioned::resolver::Resolver for ResolvedOnce {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        if let Some(addrs) = self.addrs.lock().unwrap().as_ref() {
            return Ok(addrs.clone());
        }
        let addrs = ureq::unversioned::resolver::DefaultResolver::default()
            .resolve(uri, config, timeout)?;
        *self.addrs.lock().unwrap() = Some(addrs.clone());
        Ok(addrs)
    }
}

pub struct HttpCache {
    url: String,
    /// The URL without a trailing `/`, to which `/ac/..` and `/cas/..` are added.
    base: String,
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
    timeout: Duration,
    cancelled: Option<crate::CancelCheck>,
}

impl HttpCache {
    pub fn connect(options: &Options) -> Result<HttpCache, RemoteError> {
        let roots: Vec<Certificate<'static>> = crate::tls::roots_der(options)?
            .into_iter()
            .map(|der| Certificate::from_der(&der).to_owned())
            .collect();
        let mut tls = TlsConfig::builder().root_certs(RootCerts::Specific(roots.into()));
        if let Some(identity) = &options.client_identity {
            let bad = |what: &str, e: ureq::Error| {
                RemoteError::Local(format!("the client {what} is not PEM: {e}"))
            };
            let cert =
                Certificate::from_pem(&identity.cert_pem).map_err(|e| bad("certificate", e))?;
            let key = PrivateKey::from_pem(&identity.key_pem).map_err(|e| bad("key", e))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
        }
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            // A cache server has no business sending wask elsewhere.
            .max_redirects(0)
            .tls_config(tls.build())
            .user_agent(concat!("wask/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            ResolvedOnce::default(),
        );
        let mut headers = options.headers.clone();
        if let Some(token) = &options.token {
            headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
        Ok(HttpCache {
            url: options.url.clone(),
            base: options.url.trim_end_matches('/').to_string(),
            agent,
            headers,
            timeout: options.timeout,
            cancelled: options.cancelled.clone(),
        })
    }

    fn with_headers<B>(&self, mut req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req
    }

    fn error(&self, e: ureq::Error) -> RemoteError {
        match e {
            ureq::Error::Timeout(_) => RemoteError::Timeout {
                url: self.url.clone(),
                seconds: self.timeout.as_secs(),
            },
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                RemoteError::Timeout {
                    url: self.url.clone(),
                    seconds: self.timeout.as_secs(),
                }
            }
            other => RemoteError::Unreachable {
                url: self.url.clone(),
                message: other.to_string(),
            },
        }
    }

    /// The error for an answer that is neither success nor "not found".
    fn status(&self, status: u16) -> RemoteError {
        match status {
            401 | 403 => RemoteError::Refused {
                url: self.url.clone(),
                message: format!("HTTP {status}"),
            },
            _ => RemoteError::Server {
                url: self.url.clone(),
                message: format!("HTTP {status}"),
            },
        }
    }

    fn get(&self, path: &str, out: &mut dyn Write, limit: u64) -> Result<bool, RemoteError> {
        self.not_cancelled()?;
        let req = self.with_headers(self.agent.get(format!("{}/{path}", self.base)));
        let mut resp = req.call().map_err(|e| self.error(e))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(false),
            s => return Err(self.status(s)),
        }
        // One byte over the limit is read, so a longer body is caught by the caller.
        let mut reader = resp
            .body_mut()
            .with_config()
            .limit(limit.saturating_add(1))
            .reader();
        match std::io::copy(&mut reader, out) {
            Ok(_) => Ok(true),
            Err(e) => match e.downcast::<ureq::Error>() {
                Ok(ureq::Error::BodyExceedsLimit(_)) => Err(RemoteError::Server {
                    url: self.url.clone(),
                    message: format!("a body over {limit} bytes"),
                }),
                Ok(e) => Err(self.error(e)),
                // The writer's own failure (see `crate::fetch_blob`).
                Err(e) if e.kind() == std::io::ErrorKind::Other => {
                    Err(RemoteError::Local(e.to_string()))
                }
                Err(e) => Err(self.error(ureq::Error::Io(e))),
            },
        }
    }

    /// A blocking request cannot be stopped part way: a cancelled run starts none.
    fn not_cancelled(&self) -> Result<(), RemoteError> {
        match &self.cancelled {
            Some(c) if c.is_set() => Err(RemoteError::Cancelled),
            _ => Ok(()),
        }
    }

    fn put(&self, path: &str, body: impl ureq::AsSendBody) -> Result<(), RemoteError> {
        self.not_cancelled()?;
        let req = self
            .with_headers(self.agent.put(format!("{}/{path}", self.base)))
            .header("Content-Type", "application/octet-stream");
        let resp = req.send(body).map_err(|e| self.error(e))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            s => Err(self.status(s)),
        }
    }
}

impl RemoteStore for HttpCache {
    fn url(&self) -> &str {
        &self.url
    }

    /// The layout has no capabilities call: SHA-256, no batches, updates taken. A `HEAD`
    /// of a blob no one stores shows the server answers (404 is an answer).
    fn capabilities(&self) -> Result<Capabilities, RemoteError> {
        let probe = Digest::of(DigestFunction::Sha256, b"wask capabilities probe");
        self.find_missing(&[probe])?;
        Ok(Capabilities {
            protocol: "HTTP",
            digest: DigestFunction::Sha256,
            max_batch_bytes: 0,
            update_enabled: true,
            inline_in_results: true,
            detail: "Bazel HTTP cache layout (/ac/, /cas/)".into(),
        })
    }

    fn get_action_result(&self, action: &Digest) -> Result<Option<ActionResult>, RemoteError> {
        let mut bytes = Vec::new();
        match self.get(
            &format!("ac/{}", action.hash),
            &mut bytes,
            MAX_ACTION_RESULT,
        ) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(RemoteError::Local(_)) => {
                return Err(RemoteError::Server {
                    url: self.url.clone(),
                    message: format!("an action result over {MAX_ACTION_RESULT} bytes"),
                });
            }
            Err(e) => return Err(e),
        }
        ActionResult::decode(&bytes[..])
            .map(Some)
            .map_err(|e| RemoteError::Server {
                url: self.url.clone(),
                message: format!("an action result that is not one: {e}"),
            })
    }

    fn update_action_result(
        &self,
        action: &Digest,
        result: &ActionResult,
    ) -> Result<(), RemoteError> {
        self.put(&format!("ac/{}", action.hash), result.encode_to_vec())
    }

    fn find_missing(&self, blobs: &[Digest]) -> Result<Vec<Digest>, RemoteError> {
        let mut missing = Vec::new();
        for blob in blobs {
            self.not_cancelled()?;
            let req =
                self.with_headers(self.agent.head(format!("{}/cas/{}", self.base, blob.hash)));
            let resp = req.call().map_err(|e| self.error(e))?;
            match resp.status().as_u16() {
                200 => {}
                404 => missing.push(blob.clone()),
                s => return Err(self.status(s)),
            }
        }
        Ok(missing)
    }

    fn read_blob(&self, blob: &Digest, out: &mut dyn Write) -> Result<bool, RemoteError> {
        self.get(&format!("cas/{}", blob.hash), out, blob.size)
    }

    fn write_blob(&self, blob: &Digest, path: &Path) -> Result<(), RemoteError> {
        let file = std::fs::File::open(path)
            .map_err(|e| RemoteError::Local(format!("cannot read {}: {e}", path.display())))?;
        self.put(&format!("cas/{}", blob.hash), file)
    }

    fn write_small_blobs(&self, blobs: &[(Digest, Vec<u8>)]) -> Result<(), RemoteError> {
        for (digest, bytes) in blobs {
            self.put(&format!("cas/{}", digest.hash), &bytes[..])?;
        }
        Ok(())
    }
}
