//! The manifest of a cache entry (CACHE-011): strict JSON, unknown fields rejected.

use serde::{Deserialize, Serialize};

/// The manifest format revision; a different revision is a miss (CACHE-003).
pub const MANIFEST_REVISION: u32 = 1;

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
