//! The user's signing key, and the DSSE envelopes it signs: audit provenance
//! (AUDIT-002, payload type [`IN_TOTO`]) and remote cache entries ([`CACHE_MANIFEST`]).
//!
//! An Ed25519 key in a PKCS#8 PEM file: the one `WASK_SIGNING_KEY` names (as
//! `openssl genpkey -algorithm ed25519` writes it), else this user's, made once beside
//! the user key (`wask_runtime::secret`) with mode 600 and held to the same rules. The
//! public key prints as PEM SubjectPublicKeyInfo, which `openssl` and Python's
//! `cryptography` read. Signatures follow DSSE v1: the signature is over
//! `DSSEv1 <len(type)> <type> <len(body)> <body>`, and the key id is the one
//! securesystemslib gives an Ed25519 key, so its `Envelope.verify` finds the signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::path::PathBuf;

/// The payload type of an in-toto statement in a DSSE envelope.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The payload type of a cache entry's manifest, as a remote cache carries it.
pub const CACHE_MANIFEST: &str = "application/vnd.wask.cache-manifest+json";

/// The name of this user's signing key in the key directory.
const FILE_NAME: &str = "signing-key.pem";

/// A PEM private key is a few hundred bytes; a cap so a planted file is not read whole.
const MAX_KEY_FILE: u64 = 16 << 10;

/// Why there is no key to sign with.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("the signing key {} {why}", .path.display())]
    Unusable { path: PathBuf, why: String },
    #[error("{0}")]
    Setting(String),
    #[error(
        "there is no key directory (no HOME, XDG_STATE_HOME or WASK_STATE_DIR) to keep a signing key in\n  hint: set WASK_SIGNING_KEY to a PKCS#8 PEM Ed25519 key"
    )]
    NoHome,
    #[error("cannot create the signing key {}: {why}", .path.display())]
    Create { path: PathBuf, why: String },
}

/// An Ed25519 key that signs provenance and remote cache entries.
pub struct SigningKeyFile {
    key: SigningKey,
    /// Where it was read from, for messages.
    pub path: PathBuf,
}

/// The file `WASK_SIGNING_KEY` names, if it is set: an absolute path (a relative one
/// would name a different file from every directory wask is started in).
pub fn key_from_environment() -> Result<Option<PathBuf>, SigningKeyError> {
    let Some(path) = std::env::var_os("WASK_SIGNING_KEY").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    if path.is_relative() {
        return Err(SigningKeyError::Setting(format!(
            "WASK_SIGNING_KEY is the relative path {}: give the key's absolute path",
            path.display()
        )));
    }
    Ok(Some(path))
}

impl SigningKeyFile {
    /// `WASK_SIGNING_KEY`'s key, or this user's, made on first use.
    pub fn load() -> Result<SigningKeyFile, SigningKeyError> {
        if let Some(path) = key_from_environment()? {
            return match read(&path)? {
                Some(key) => Ok(SigningKeyFile { key, path }),
                None => Err(SigningKeyError::Unusable {
                    path,
                    why: "(WASK_SIGNING_KEY) does not exist".into(),
                }),
            };
        }
        let dir = wask_runtime::secret::key_dir()
            .map_err(SigningKeyError::Setting)?
            .ok_or(SigningKeyError::NoHome)?;
        let path = dir.join(FILE_NAME);
        if let Some(key) = read(&path)? {
            return Ok(SigningKeyFile { key, path });
        }
        let mut seed = [0u8; 32];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed));
        let created = random.and_then(|()| {
            let pem = SigningKey::from_bytes(&seed)
                .to_pkcs8_pem(Default::default())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            wask_runtime::secret::create_private(&dir, &path, pem.as_bytes())
        });
        // Another process may have made it first: use whichever key won.
        match read(&path)? {
            Some(key) => Ok(SigningKeyFile { key, path }),
            None => Err(SigningKeyError::Create {
                why: created.err().map(|e| e.to_string()).unwrap_or_default(),
                path,
            }),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The public key as PEM SubjectPublicKeyInfo.
    pub fn public_pem(&self) -> String {
        self.public().pem()
    }

    /// See [`PublicKey::keyid`].
    pub fn keyid(&self) -> String {
        self.public().keyid()
    }

    /// `payload` in a DSSE envelope of `payload_type` signed with this key.
    pub fn envelope(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let signature = self.key.sign(&pae(payload_type, payload));
        Envelope {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.into(),
            signatures: vec![EnvelopeSignature {
                keyid: self.keyid(),
                sig: STANDARD.encode(signature.to_bytes()),
            }],
        }
    }
}

/// An Ed25519 public key: one that may sign what wask believes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// A PEM SubjectPublicKeyInfo Ed25519 key, as `wask audit key` and `openssl pkey
    /// -pubout` print it.
    pub fn from_pem(pem: &str) -> Result<PublicKey, String> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey)
            .map_err(|e| format!("not a PEM Ed25519 public key: {e}"))
    }

    pub fn pem(&self) -> String {
        self.0
            .to_public_key_pem(Default::default())
            .expect("an Ed25519 public key encodes")
    }

    /// The key id securesystemslib gives this key: the SHA-256 of its canonical JSON.
    pub fn keyid(&self) -> String {
        let public = hex(self.0.as_bytes());
        let canonical = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{public}"}},"scheme":"ed25519"}}"#
        );
        hex(&sha2::Sha256::digest(canonical.as_bytes()))
    }
}

/// The payload of `envelope` if it is of `payload_type` and one of its signatures is
/// by one of `keys` over it (that key is returned too); why not otherwise.
pub fn verified_payload(
    envelope: &Envelope,
    payload_type: &str,
    keys: &[PublicKey],
) -> Result<(Vec<u8>, PublicKey), String> {
    if envelope.payload_type != payload_type {
        return Err(format!(
            "its payload type is `{}`, not `{payload_type}`",
            envelope.payload_type
        ));
    }
    let payload = STANDARD
        .decode(&envelope.payload)
        .map_err(|e| format!("its payload is not base64: {e}"))?;
    let message = pae(payload_type, &payload);
    for s in &envelope.signatures {
        let Some(sig) = STANDARD
            .decode(&s.sig)
            .ok()
            .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        else {
            continue;
        };
        if let Some(key) = keys
            .iter()
            .find(|k| k.0.verify_strict(&message, &sig).is_ok())
        {
            return Ok((payload, *key));
        }
    }
    // A key id is not signed: shown only if it looks like one, never echoed raw.
    let signers: Vec<String> = envelope
        .signatures
        .iter()
        .take(8)
        .map(|s| {
            let plain = s.keyid.len() <= 128
                && s.keyid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if plain {
                s.keyid.clone()
            } else {
                format!("(a key id of {} bytes that is not one)", s.keyid.len())
            }
        })
        .collect();
    Err(if signers.is_empty() {
        "it is not signed".into()
    } else {
        format!(
            "no signature of it verifies with a trusted key (it gives the key id {}, which no signature proves)",
            signers.join(", ")
        )
    })
}

/// The key in the private PEM file at `path`, if there is one.
fn read(path: &std::path::Path) -> Result<Option<SigningKey>, SigningKeyError> {
    let unusable = |why: String| SigningKeyError::Unusable {
        path: path.to_path_buf(),
        why,
    };
    let Some(bytes) = wask_runtime::secret::read_private(path, MAX_KEY_FILE).map_err(unusable)?
    else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|_| unusable("is not PEM text".into()))?;
    SigningKey::from_pkcs8_pem(&text)
        .map(Some)
        .map_err(|e| unusable(format!("is not a PKCS#8 PEM Ed25519 private key: {e}")))
}

/// DSSE's pre-authentication encoding: what a signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A DSSE envelope, as one JSON line of an `.intoto.jsonl` file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    #[test]
    fn an_envelope_signs_the_pae_of_its_payload() {
        let key = SigningKeyFile {
            key: SigningKey::from_bytes(&[7; 32]),
            path: PathBuf::new(),
        };
        let env = key.envelope(IN_TOTO, b"{\"a\":1}");
        assert_eq!(env.payload_type, IN_TOTO);
        let sig = STANDARD.decode(&env.signatures[0].sig).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        let verifying = key.key.verifying_key();
        assert!(verifying.verify(&pae(IN_TOTO, b"{\"a\":1}"), &sig).is_ok());
        assert!(verifying.verify(&pae(IN_TOTO, b"{\"a\":2}"), &sig).is_err());
        assert_eq!(
            pae("t", b"xy"),
            b"DSSEv1 1 t 2 xy".to_vec(),
            "the encoding DSSE specifies"
        );
        assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(key.keyid().len(), 64);
    }
}
