//! The key that signs provenance, and the DSSE envelope it signs (AUDIT-002).
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
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

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

/// An Ed25519 key that signs provenance.
pub struct ProvenanceKey {
    key: SigningKey,
    /// Where it was read from, for messages.
    pub path: PathBuf,
}

impl ProvenanceKey {
    /// `WASK_SIGNING_KEY`'s key, or this user's, made on first use.
    pub fn load() -> Result<ProvenanceKey, SigningKeyError> {
        if let Some(path) = std::env::var_os("WASK_SIGNING_KEY").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return match read(&path)? {
                Some(key) => Ok(ProvenanceKey { key, path }),
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
            return Ok(ProvenanceKey { key, path });
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
            Some(key) => Ok(ProvenanceKey { key, path }),
            None => Err(SigningKeyError::Create {
                why: created.err().map(|e| e.to_string()).unwrap_or_default(),
                path,
            }),
        }
    }

    /// The public key as PEM SubjectPublicKeyInfo.
    pub fn public_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .expect("an Ed25519 public key encodes")
    }

    /// The key id securesystemslib gives this key: the SHA-256 of its canonical JSON.
    pub fn keyid(&self) -> String {
        let public = hex(self.key.verifying_key().as_bytes());
        let canonical = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{public}"}},"scheme":"ed25519"}}"#
        );
        hex(&sha2::Sha256::digest(canonical.as_bytes()))
    }

    /// `payload` in a DSSE envelope signed with this key.
    pub fn envelope(&self, payload: &[u8]) -> Envelope {
        let signature = self.key.sign(&pae(PAYLOAD_TYPE, payload));
        Envelope {
            payload: STANDARD.encode(payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![EnvelopeSignature {
                keyid: self.keyid(),
                sig: STANDARD.encode(signature.to_bytes()),
            }],
        }
    }
}

/// The payload of `envelope` if one of its signatures is `public_pem`'s (a PEM
/// SubjectPublicKeyInfo Ed25519 key) over it; why not otherwise.
pub fn verified_payload(envelope: &Envelope, public_pem: &str) -> Result<Vec<u8>, String> {
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(public_pem)
        .map_err(|e| format!("the public key is not a PEM Ed25519 key: {e}"))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(format!(
            "its payload type is `{}`, not `{PAYLOAD_TYPE}`",
            envelope.payload_type
        ));
    }
    let payload = STANDARD
        .decode(&envelope.payload)
        .map_err(|e| format!("its payload is not base64: {e}"))?;
    let message = pae(PAYLOAD_TYPE, &payload);
    let signed = envelope.signatures.iter().any(|s| {
        STANDARD
            .decode(&s.sig)
            .ok()
            .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
            .is_some_and(|sig| key.verify_strict(&message, &sig).is_ok())
    });
    if signed {
        Ok(payload)
    } else {
        Err("no signature of it verifies with the public key".into())
    }
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
        let key = ProvenanceKey {
            key: SigningKey::from_bytes(&[7; 32]),
            path: PathBuf::new(),
        };
        let env = key.envelope(b"{\"a\":1}");
        assert_eq!(env.payload_type, PAYLOAD_TYPE);
        let sig = STANDARD.decode(&env.signatures[0].sig).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        let verifying = key.key.verifying_key();
        assert!(
            verifying
                .verify(&pae(PAYLOAD_TYPE, b"{\"a\":1}"), &sig)
                .is_ok()
        );
        assert!(
            verifying
                .verify(&pae(PAYLOAD_TYPE, b"{\"a\":2}"), &sig)
                .is_err()
        );
        assert_eq!(
            pae("t", b"xy"),
            b"DSSEv1 1 t 2 xy".to_vec(),
            "the encoding DSSE specifies"
        );
        assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(key.keyid().len(), 64);
    }
}
