//! `[cache.remote]` (issue 12), and the environment that overrides it:
//! `WASK_REMOTE_CACHE` (the URL) and `WASK_REMOTE_CACHE_WRITE` (`true` on the machines
//! that upload, CI). A token is never read from a file of the repository: only from
//! `WASK_REMOTE_CACHE_TOKEN`, when the remote is opened.

use crate::signing::PublicKey;
use crate::workspace::diag::{FileId, LoadError};
use crate::workspace::load::Loader;
use crate::workspace::raw::RawRemote;
use crate::workspace::settings::RemoteSettings;
use toml::Spanned;

/// Why `url` is no remote cache URL, if it is not.
pub fn check_url(url: &str) -> Result<(), String> {
    let schemes = ["grpc://", "grpcs://", "http://", "https://"];
    match schemes.iter().find(|s| url.starts_with(**s)) {
        Some(s) if url[s.len()..].split('/').next().is_some_and(|a| a.contains('@')) => Err(
            "a remote cache URL holds no user name or password (they would be shown in every message and kept in the repository): set WASK_REMOTE_CACHE_TOKEN for a bearer token".into(),
        ),
        Some(_) if url.contains('?') || url.contains('#') => Err(
            "a remote cache URL holds no query or fragment (where signed URLs keep their credentials, which would be shown in every message): set WASK_REMOTE_CACHE_TOKEN for a bearer token".into(),
        ),
        Some(s) if url.len() > s.len() => Ok(()),
        _ => Err(format!(
            "`{url}` is not a remote cache URL: expected grpc://HOST:PORT or grpcs:// (REAPI v2), or http:// or https:// (the Bazel HTTP cache layout)"
        )),
    }
}

/// Headers that carry credentials or say where a request goes: never from a file of
/// the repository.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
    "host",
];

/// A header whose name holds one of these carries a credential, whatever the service
/// calls it (`x-buildbuddy-api-key`, `x-amz-security-token`, `private-token`).
const CREDENTIAL_WORDS: &[&str] = &[
    "auth", "token", "key", "secret", "cookie", "password", "session",
];

impl Loader {
    pub(super) fn remote(
        &mut self,
        file: FileId,
        raw: &Spanned<RawRemote>,
    ) -> Option<RemoteSettings> {
        let r = raw.get_ref();
        let Some(url) = &r.url else {
            let what = "`[cache.remote]` needs a `url`".into();
            self.err(file, raw.span(), what, "here");
            return None;
        };
        if let Err(e) = check_url(url.get_ref()) {
            self.err(file, url.span(), e, "here");
        }
        let mut s = RemoteSettings::at(url.get_ref().clone());
        s.read = r.read.unwrap_or(true);
        s.write = r.write.unwrap_or(false);
        if let Some(t) = self.amount_duration(file, &r.timeout) {
            if t.is_zero() {
                let span = r.timeout.as_ref().expect("parsed").span();
                self.err(file, span, "the timeout must be above zero".into(), "here");
            }
            s.timeout = t;
        }
        s.instance_name = r.instance_name.clone().unwrap_or_default();
        for (name, value) in &r.headers {
            let lower = name.get_ref().to_ascii_lowercase();
            if CREDENTIAL_HEADERS.contains(&lower.as_str())
                || CREDENTIAL_WORDS.iter().any(|w| lower.contains(w))
            {
                let what = "a credential is never kept in a file of the repository: set WASK_REMOTE_CACHE_TOKEN in the environment instead".into();
                self.err(file, name.span(), what, "here");
            }
            s.headers.push((name.get_ref().clone(), value.clone()));
        }
        for key in &r.trusted_keys {
            match self.trusted_key(key.get_ref()) {
                Ok(k) => s.trusted_keys.push(k),
                Err(e) => self.err(file, key.span(), e, "here"),
            }
        }
        s.ca_file = r.ca_file.as_ref().map(|f| self.root.join(f.get_ref()));
        match (&r.client_cert, &r.client_key) {
            (Some(c), Some(k)) => {
                let key = self.root.join(k.get_ref());
                // A file of the workspace can be a task's input, and so an output and
                // an upload: the private key must live elsewhere (as the signing key
                // does). Where it really is counts, through links.
                if crate::fs::is_within(
                    &crate::fs::resolved(&key),
                    &crate::fs::resolved(&self.root),
                ) {
                    let what = format!(
                        "the client key {} lies inside the workspace, where a task could read it and a result carry it to the cache: keep it outside the workspace (an absolute path, e.g. one CI writes from its secrets)",
                        key.display()
                    );
                    self.err(file, k.span(), what, "here");
                }
                s.client_cert = Some((self.root.join(c.get_ref()), key))
            }
            (None, None) => {}
            (Some(one), None) | (None, Some(one)) => {
                let what = "`client_cert` and `client_key` go together".into();
                self.err(file, one.span(), what, "here");
            }
        }
        Some(s)
    }

    /// A public key in `trusted_keys`: PEM text, or the path (from the workspace root)
    /// of a PEM file, as `wask audit key` prints it.
    fn trusted_key(&self, text: &str) -> Result<PublicKey, String> {
        if text.trim_start().starts_with("-----BEGIN") {
            return PublicKey::from_pem(text).map_err(|e| format!("this trusted key is {e}"));
        }
        // A file of the repository: a relative path that stays in the workspace, a
        // regular file (never a FIFO or a device, even through a link), read no further
        // than a key's size.
        if let Err(why) = crate::workspace::check_path(text) {
            return Err(format!(
                "a trusted key is a PEM text or a path in the workspace: {why}"
            ));
        }
        if text.starts_with('/') || text.split('/').any(|s| s == "..") {
            return Err(format!(
                "the trusted key `{text}` is not a path inside the workspace"
            ));
        }
        let path = self.root.join(text);
        // Where it really is: a link out of the workspace would trust whoever can
        // write the link's target.
        if !crate::fs::is_within(
            &crate::fs::resolved(&path),
            &crate::fs::resolved(&self.root),
        ) {
            return Err(format!(
                "the trusted key {} lies outside the workspace (through a link): keep the key itself in the repository",
                path.display()
            ));
        }
        let pem = read_key_file(&path)
            .map_err(|e| format!("cannot read the trusted key {}: {e}", path.display()))?;
        PublicKey::from_pem(&pem).map_err(|e| format!("the trusted key {} is {e}", path.display()))
    }

    /// `from_file` as the environment changes it.
    pub(super) fn remote_from_environment(
        &mut self,
        from_file: Option<RemoteSettings>,
    ) -> Option<RemoteSettings> {
        let url = std::env::var("WASK_REMOTE_CACHE")
            .ok()
            .filter(|u| !u.is_empty());
        let mut s = match (url, from_file) {
            (Some(url), file) => {
                if let Err(e) = check_url(&url) {
                    self.errors
                        .push(LoadError::plain(format!("WASK_REMOTE_CACHE: {e}")));
                }
                match file {
                    Some(f) => RemoteSettings { url, ..f },
                    None => RemoteSettings::at(url),
                }
            }
            (None, file) => file?,
        };
        if let Err(e) = write_from_environment(&mut s) {
            self.errors.push(LoadError::plain(e));
        }
        Some(s)
    }
}

/// `WASK_REMOTE_CACHE_WRITE` (`true` on the machines that should upload) over the
/// settings' `write`, wherever the URL came from.
pub fn write_from_environment(s: &mut RemoteSettings) -> Result<(), String> {
    match std::env::var("WASK_REMOTE_CACHE_WRITE").as_deref() {
        Ok("true" | "1") => s.write = true,
        Ok("false" | "0") => s.write = false,
        Ok("") | Err(_) => {}
        Ok(other) => {
            return Err(format!(
                "WASK_REMOTE_CACHE_WRITE is `{other}`: expected true or false"
            ));
        }
    }
    Ok(())
}

/// A PEM public key is a few hundred bytes.
const MAX_KEY_FILE: u64 = 64 << 10;

fn read_key_file(path: &std::path::Path) -> Result<String, String> {
    crate::fs::read_named_text(path, MAX_KEY_FILE)
}
