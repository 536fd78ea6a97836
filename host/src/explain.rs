//! Why a task's key is what it is (`wask why`): the key's parts in a form a person can
//! read and compare, and what changed between two of them.
//!
//! After every fresh run wask keeps the explained parts of the stored key under
//! `<workspace>/.wask/explain/`, one file per task; `wask why` compares the current parts
//! with them to say what made a miss. They stay with the workspace, never in a cache
//! directory others may read. Environment values are kept only as a MAC under this
//! user's key: a plain hash of a short secret (`API_TOKEN=1234`) could be reversed by
//! trying every value, a keyed one cannot without the key.

use crate::key::{EnvValue, KeyParts};
use crate::refs::TaskId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A key's parts, readable (CACHE-004..009).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Explained {
    pub key: String,
    pub hash: String,
    pub module: String,
    pub args: Vec<String>,
    pub project_dir: String,
    /// Input path to content hash.
    pub inputs: BTreeMap<String, String>,
    pub outputs: Vec<String>,
    /// For each hard predecessor, in canonical order: (stdout hash, stderr hash).
    pub predecessors: Vec<(String, String)>,
    /// Variable name to `absent` or the hash of its value.
    pub env: BTreeMap<String, String>,
    /// `fixed at <epoch seconds>` or `host`.
    pub clock: String,
}

impl Explained {
    /// `key` hides environment values (see the module docs).
    pub fn new(parts: &KeyParts, key: &wask_runtime::secret::UserKey) -> Explained {
        Explained {
            key: parts.key().hex(),
            hash: parts.hash.name().to_string(),
            module: parts.module.hex(),
            args: parts.args.clone(),
            project_dir: parts.project_dir.clone(),
            inputs: parts
                .inputs
                .iter()
                .map(|(p, d)| (p.clone(), d.hex()))
                .collect(),
            outputs: parts.outputs.clone(),
            predecessors: parts
                .predecessors
                .iter()
                .map(|(o, e)| (o.hex(), e.hex()))
                .collect(),
            env: parts
                .env
                .iter()
                .map(|(n, v)| {
                    let shown = match v {
                        EnvValue::Absent => "absent".to_string(),
                        EnvValue::Value(v) => format!(
                            "value {}",
                            &wask_runtime::hex(
                                &key.mac("wask explained variable", &[n.as_bytes(), v.as_bytes()])
                            )[..16]
                        ),
                    };
                    (n.clone(), shown)
                })
                .collect(),
            clock: match parts.fixed_clock_epoch {
                Some(epoch) => format!("fixed at {epoch}"),
                None => "host".to_string(),
            },
        }
    }

    /// What differs from `earlier`, one line per change, in key order.
    pub fn changes_since(&self, earlier: &Explained) -> Vec<String> {
        let mut out = Vec::new();
        if self.hash != earlier.hash {
            out.push(format!("hash function: {} -> {}", earlier.hash, self.hash));
        }
        if self.module != earlier.module {
            out.push(format!(
                "module content: {} -> {}",
                short(&earlier.module),
                short(&self.module)
            ));
        }
        if self.args != earlier.args {
            out.push(format!("args: {:?} -> {:?}", earlier.args, self.args));
        }
        if self.project_dir != earlier.project_dir {
            out.push(format!(
                "project directory: {} -> {}",
                earlier.project_dir, self.project_dir
            ));
        }
        diff_maps("input", &earlier.inputs, &self.inputs, &mut out);
        if self.outputs != earlier.outputs {
            out.push(format!(
                "outputs: {:?} -> {:?}",
                earlier.outputs, self.outputs
            ));
        }
        if self.predecessors != earlier.predecessors {
            out.push(if self.predecessors.len() != earlier.predecessors.len() {
                format!(
                    "hard predecessors: {} -> {}",
                    earlier.predecessors.len(),
                    self.predecessors.len()
                )
            } else {
                "a hard predecessor's stdout or stderr changed".to_string()
            });
        }
        diff_maps("environment variable", &earlier.env, &self.env, &mut out);
        if self.clock != earlier.clock {
            out.push(format!("clock: {} -> {}", earlier.clock, self.clock));
        }
        out
    }
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(16)]
}

fn diff_maps(
    what: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    for (k, v) in after {
        match before.get(k) {
            None => out.push(format!("{what} {k} added")),
            Some(old) if old != v => out.push(format!("{what} {k} changed")),
            Some(_) => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        out.push(format!("{what} {k} removed"));
    }
}

/// Where the explained parts of each task's last stored entry are kept.
pub struct ExplainStore {
    dir: PathBuf,
}

impl ExplainStore {
    /// The store of the workspace whose `.wask` directory is `wask_dir`.
    pub fn new(wask_dir: &Path) -> ExplainStore {
        ExplainStore {
            dir: wask_dir.join("explain"),
        }
    }

    fn name(id: &TaskId) -> String {
        let name = blake3::hash(id.to_string().as_bytes()).to_hex();
        format!("{}.json", &name[..32])
    }

    /// Records the parts of an entry just stored for `id`, whole or not at all.
    pub fn record(&self, id: &TaskId, explained: &Explained) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let dir = crate::fs::open_ambient(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(explained)?;
        crate::fs::write_atomic(&dir, &Self::name(id), &bytes)
    }

    /// The parts of the last entry stored for `id`, if any.
    pub fn last(&self, id: &TaskId) -> Option<Explained> {
        let dir = crate::fs::open_ambient(&self.dir).ok()?;
        let bytes = crate::fs::read_at_most(&dir, &Self::name(id), 64 << 20).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Digest;
    use crate::workspace::HashKind;

    fn key() -> wask_runtime::secret::UserKey {
        wask_runtime::secret::UserKey::from_bytes([5; 32])
    }

    fn parts() -> KeyParts {
        KeyParts {
            hash: HashKind::Blake3,
            module: Digest([1; 32]),
            args: vec!["a".into()],
            project_dir: "/p".into(),
            inputs: vec![
                ("/p/a".into(), Digest([2; 32])),
                ("/p/b".into(), Digest([3; 32])),
            ],
            outputs: vec!["/p/out".into()],
            predecessors: vec![],
            env: vec![("LANG".into(), EnvValue::Value("C".into()))],
            fixed_clock_epoch: Some(0),
        }
    }

    #[test]
    fn each_change_is_named() {
        let before = Explained::new(&parts(), &key());
        let mut p = parts();
        p.inputs[0].1 = Digest([9; 32]);
        p.inputs.remove(1);
        p.inputs.push(("/p/c".into(), Digest([4; 32])));
        p.env[0].1 = EnvValue::Absent;
        p.args.push("b".into());
        let changes = Explained::new(&p, &key()).changes_since(&before);
        assert_eq!(
            changes,
            [
                r#"args: ["a"] -> ["a", "b"]"#,
                "input /p/a changed",
                "input /p/c added",
                "input /p/b removed",
                "environment variable LANG changed",
            ]
        );
        assert!(
            Explained::new(&parts(), &key())
                .changes_since(&before)
                .is_empty()
        );
    }

    #[test]
    fn environment_values_are_not_kept() {
        let mut p = parts();
        p.env[0].1 = EnvValue::Value("hunter2".into());
        let text = serde_json::to_string(&Explained::new(&p, &key())).unwrap();
        assert!(!text.contains("hunter2"));
        // Nor an unkeyed hash of it, which a guess could be checked against.
        let plain = crate::key::hash_bytes(HashKind::Blake3, b"hunter2").hex();
        assert!(!text.contains(&plain[..16]), "{text}");
    }
}
