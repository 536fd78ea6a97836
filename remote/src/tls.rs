//! The TLS settings both protocols share: the system's roots plus an optional CA, and
//! an optional client certificate, all given as PEM bytes (the caller reads the files).

use crate::{Options, RemoteError};

/// The system's root certificates as DER, plus `options.ca_pem`'s.
pub(crate) fn roots_der(options: &Options) -> Result<Vec<Vec<u8>>, RemoteError> {
    // Roots the system cannot load are skipped (as every rustls user does); the CA file
    // is the user's explicit choice, so an unreadable one is an error.
    let mut roots: Vec<Vec<u8>> = rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    if let Some(pem) = &options.ca_pem {
        let before = roots.len();
        for item in ureq::tls::parse_pem(pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                roots.push(c.der().to_vec());
            }
        }
        if roots.len() == before {
            return Err(RemoteError::Local(
                "the CA file holds no PEM certificate".into(),
            ));
        }
    }
    Ok(roots)
}
