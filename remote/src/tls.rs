//! The TLS settings both protocols share: the system's roots plus an optional CA file,
//! and an optional client certificate. The files are read once, at connect.

use crate::{Options, RemoteError};
use std::path::Path;

/// A file's bytes, or an error naming it.
pub(crate) fn read(path: &Path, what: &str) -> Result<Vec<u8>, RemoteError> {
    std::fs::read(path)
        .map_err(|e| RemoteError::Local(format!("cannot read the {what} {}: {e}", path.display())))
}

/// The system's root certificates as DER, plus `options.ca_file`'s.
pub(crate) fn roots_der(options: &Options) -> Result<Vec<Vec<u8>>, RemoteError> {
    // Roots the system cannot load are skipped (as every rustls user does); the CA file
    // is the user's explicit choice, so an unreadable one is an error.
    let mut roots: Vec<Vec<u8>> = rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    if let Some(ca) = &options.ca_file {
        let pem = read(ca, "CA file")?;
        let before = roots.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                roots.push(c.der().to_vec());
            }
        }
        if roots.len() == before {
            return Err(RemoteError::Local(format!(
                "the CA file {} holds no PEM certificate",
                ca.display()
            )));
        }
    }
    Ok(roots)
}
