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
use wask_runtime::Stream;

/// The manifest format revision; a different revision is a miss (CACHE-003).
/// Revision 2 added the `checksum`, revision 3 the `memory` the run held, revision 4
/// the `write_order` of the two streams.
pub const MANIFEST_REVISION: u32 = 4;

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
    /// How the run's writes to the two streams interleaved, so a hit replays them as
    /// the fresh run wrote them: runs of `[stream, bytes]` (0 is stdout, 1 stderr) that
    /// add up to the two streams. Empty: stdout whole, then stderr.
    pub write_order: Vec<(u8, u64)>,
    pub access: AccessRecord,
    /// The most memory the run held, in bytes (memories and tables, as the memory limit
    /// counts): a run under a lower limit would have failed, so under one this entry
    /// is no hit.
    pub memory: u64,
    /// The hash of this manifest's encoding with this field empty; set by [`encode`].
    pub checksum: String,
}

impl Manifest {
    /// The hash function the manifest names, if wask knows it.
    pub fn hash_kind(&self) -> Option<HashKind> {
        HashKind::from_name(&self.hash)
    }
}

/// The bytes to store for `manifest`, its checksum filled in.
pub fn encode(manifest: &Manifest, kind: HashKind) -> Vec<u8> {
    let mut m = manifest.clone();
    m.checksum.clear();
    sealed(&m, kind).0
}

/// Parses a stored manifest and checks it is byte for byte what [`encode`] wrote.
/// The error says what is wrong, for a report.
pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
    let mut manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("manifest.json is not a valid manifest: {e}"))?;
    let Some(kind) = manifest.hash_kind() else {
        return Err(format!(
            "manifest.json names an unknown hash function `{}`",
            manifest.hash
        ));
    };
    let recorded = std::mem::take(&mut manifest.checksum);
    if sealed(&manifest, kind).0 != bytes {
        return Err("manifest.json does not match its checksum".into());
    }
    manifest.checksum = recorded;
    check_write_order(&manifest)?;
    Ok(manifest)
}

/// The run's write order as the manifest keeps it.
pub fn write_order_record(order: &[(Stream, u64)]) -> Vec<(u8, u64)> {
    order
        .iter()
        .map(|(s, n)| (u8::from(*s == Stream::Stderr), *n))
        .collect()
}

/// The write order a manifest keeps, or stdout whole then stderr if it keeps none.
pub fn write_order(m: &Manifest) -> Vec<(Stream, u64)> {
    if m.write_order.is_empty() {
        return [
            (Stream::Stdout, m.stdout.size),
            (Stream::Stderr, m.stderr.size),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    }
    m.write_order
        .iter()
        .map(|(s, n)| {
            (
                if *s == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                },
                *n,
            )
        })
        .collect()
}

/// A write order is runs of one stream each, alternating, that add up to the streams:
/// anything else is a manifest no run wrote.
fn check_write_order(m: &Manifest) -> Result<(), String> {
    let runs = &m.write_order;
    if runs.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| {
        Err(format!(
            "manifest.json has an impossible write order: {why}"
        ))
    };
    if runs.len() > wask_runtime::MAX_WRITE_RUNS {
        return bad("more runs than wask keeps");
    }
    let mut sums = [0u64; 2];
    for (i, (stream, n)) in runs.iter().enumerate() {
        if *stream > 1 || *n == 0 || (i > 0 && runs[i - 1].0 == *stream) {
            return bad("a run that is empty, of no stream, or of the stream before it");
        }
        let sum = &mut sums[*stream as usize];
        *sum = sum.saturating_add(*n);
    }
    if sums != [m.stdout.size, m.stderr.size] {
        return bad("its runs do not add up to the streams");
    }
    Ok(())
}

/// The encoding of `m` (whose `checksum` is empty) with its checksum filled in, and
/// the checksum. `checksum` is the struct's last field, so the sealed encoding is the
/// unsealed one with the checksum put between the final pair of quotes: one
/// serialisation serves both.
fn sealed(m: &Manifest, kind: HashKind) -> (Vec<u8>, String) {
    debug_assert!(m.checksum.is_empty());
    let unsealed = serde_json::to_vec(m).expect("a manifest serialises");
    let checksum = hash_bytes(kind, &unsealed).hex();
    let tail = b"\"\"}";
    debug_assert!(unsealed.ends_with(tail));
    let mut out = Vec::with_capacity(unsealed.len() + checksum.len());
    out.extend_from_slice(&unsealed[..unsealed.len() - tail.len()]);
    out.push(b'"');
    out.extend_from_slice(checksum.as_bytes());
    out.extend_from_slice(b"\"}");
    (out, checksum)
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
            write_order: Vec::new(),
            access: AccessRecord::default(),
            memory: 1 << 20,
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

    #[test]
    fn a_write_order_must_add_up_to_the_streams() {
        let with = |order: Vec<(u8, u64)>, out: u64, err: u64| {
            let mut m = sample();
            m.stdout.size = out;
            m.stderr.size = err;
            m.write_order = order;
            decode(&encode(&m, HashKind::Blake3))
        };
        let good = with(vec![(0, 3), (1, 2), (0, 1)], 4, 2).unwrap();
        assert_eq!(
            write_order(&good),
            [
                (Stream::Stdout, 3),
                (Stream::Stderr, 2),
                (Stream::Stdout, 1)
            ]
        );
        assert_eq!(
            write_order(&with(vec![], 4, 2).unwrap()),
            [(Stream::Stdout, 4), (Stream::Stderr, 2)]
        );
        for bad in [
            vec![(0, 3), (1, 2)],         // short of stdout
            vec![(0, 3), (0, 1), (1, 2)], // two runs of one stream in a row
            vec![(0, 4), (2, 2)],         // no such stream
            vec![(0, 4), (1, 0), (1, 2)], // an empty run
        ] {
            assert!(with(bad.clone(), 4, 2).is_err(), "{bad:?}");
        }
    }
}
