//! The manifest of a cache entry (CACHE-011): strict JSON, unknown fields rejected.
//!
//! Every other file of an entry is checked against a hash the manifest records; the
//! manifest checks itself. It is written as compact JSON whose `checksum` field is the
//! hash of the same JSON with that field empty, and a manifest is only accepted when
//! re-encoding what was parsed gives back exactly the bytes on disk. So any changed
//! byte, even one that leaves the JSON valid (a path `/out/a.txt` become `/out/c.txt`,
//! a mode 420 become 421), makes the entry corrupt instead of restoring wrong bytes.

use crate::key::hash_bytes;
use crate::workspace::HashKind;
use serde::{Deserialize, Serialize};

/// The manifest format revision; a different revision is a miss (CACHE-003).
/// Revision 2 added the `checksum`.
pub const MANIFEST_REVISION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub revision: u32,
    /// `blake3` or `sha256`.
    pub hash: String,
    pub key: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// The task that stored the entry (informational: not part of the key).
    pub stored_by: String,
    pub outputs: Vec<OutputRecord>,
    pub stdout: StreamRecord,
    pub stderr: StreamRecord,
    pub access: AccessRecord,
    /// The hash of this manifest's encoding with this field empty; set by [`encode`].
    pub checksum: String,
}

/// The bytes to store for `manifest`, its checksum filled in.
pub fn encode(manifest: &Manifest, kind: HashKind) -> Vec<u8> {
    let mut m = manifest.clone();
    m.checksum.clear();
    m.checksum = hash_bytes(kind, &to_json(&m)).hex();
    to_json(&m)
}

/// Parses a stored manifest and checks it is byte for byte what [`encode`] wrote.
/// The error says what is wrong, for a report.
pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("manifest.json is not a valid manifest: {e}"))?;
    let kind = match manifest.hash.as_str() {
        "blake3" => HashKind::Blake3,
        "sha256" => HashKind::Sha256,
        other => {
            return Err(format!(
                "manifest.json names an unknown hash function `{other}`"
            ));
        }
    };
    if encode(&manifest, kind) != bytes {
        return Err("manifest.json does not match its checksum".into());
    }
    Ok(manifest)
}

fn to_json(m: &Manifest) -> Vec<u8> {
    serde_json::to_vec(m).expect("a manifest serialises")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutputRecord {
    /// Workspace-absolute path.
    pub path: String,
    pub hash: String,
    pub size: u64,
    /// Unix permission bits.
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StreamRecord {
    pub hash: String,
    pub size: u64,
}

/// What the task opened and what it was refused (SANDBOX-009).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessRecord {
    pub opened: Vec<String>,
    pub refused: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            revision: MANIFEST_REVISION,
            hash: "blake3".into(),
            key: "00".repeat(32),
            created_at: 1,
            stored_by: "p:t".into(),
            outputs: vec![OutputRecord {
                path: "/out/a.txt".into(),
                hash: "11".repeat(32),
                size: 3,
                mode: 0o644,
            }],
            stdout: StreamRecord {
                hash: "22".repeat(32),
                size: 0,
            },
            stderr: StreamRecord {
                hash: "33".repeat(32),
                size: 0,
            },
            access: AccessRecord::default(),
            checksum: String::new(),
        }
    }

    #[test]
    fn a_manifest_round_trips() {
        let bytes = encode(&sample(), HashKind::Blake3);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.outputs, sample().outputs);
        assert!(!back.checksum.is_empty());
    }

    /// CACHE-019: no single-bit change of a stored manifest is accepted, including
    /// those that leave it valid JSON with different meaning.
    #[test]
    fn every_flipped_bit_is_refused() {
        let bytes = encode(&sample(), HashKind::Blake3);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b).is_err(), "byte {i} bit {bit} accepted");
            }
        }
    }
}
