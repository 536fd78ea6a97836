//! Why a task's key is what it is (`wask why`): the key's parts in a form a person can
//! read and compare, and what changed between two of them.
//!
//! After every fresh run wask keeps the explained parts of the stored key under
//! `<cache>/explain/`, one file per task; `wask why` compares the current parts with
//! them to say what made a miss. Environment values are kept only as hashes, so the file
//! holds nothing the cache key itself does not already depend on.

use crate::key::{EnvValue, KeyParts, hash_bytes};
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
    pub fn new(parts: &KeyParts) -> Explained {
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
                        EnvValue::Value(v) => {
                            format!(
                                "value {}",
                                &hash_bytes(parts.hash, v.as_bytes()).hex()[..16]
                            )
                        }
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
    pub fn new(cache_dir: &Path) -> ExplainStore {
        ExplainStore {
            dir: cache_dir.join("explain"),
        }
    }

    fn path(&self, id: &TaskId) -> PathBuf {
        let name = blake3::hash(id.to_string().as_bytes()).to_hex();
        self.dir.join(format!("{}.json", &name[..32]))
    }

    /// Records the parts of an entry just stored for `id` (write then rename: a reader
    /// sees the old record or the new one).
    pub fn record(&self, id: &TaskId, explained: &Explained) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer_pretty(&mut tmp, explained)?;
        tmp.persist(self.path(id)).map_err(|e| e.error)?;
        Ok(())
    }

    /// The parts of the last entry stored for `id`, if any.
    pub fn last(&self, id: &TaskId) -> Option<Explained> {
        let bytes = std::fs::read(self.path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Digest;
    use crate::workspace::HashKind;

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
        let before = Explained::new(&parts());
        let mut p = parts();
        p.inputs[0].1 = Digest([9; 32]);
        p.inputs.remove(1);
        p.inputs.push(("/p/c".into(), Digest([4; 32])));
        p.env[0].1 = EnvValue::Absent;
        p.args.push("b".into());
        let changes = Explained::new(&p).changes_since(&before);
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
        assert!(Explained::new(&parts()).changes_since(&before).is_empty());
    }

    #[test]
    fn environment_values_are_not_kept() {
        let mut p = parts();
        p.env[0].1 = EnvValue::Value("hunter2".into());
        let text = serde_json::to_string(&Explained::new(&p)).unwrap();
        assert!(!text.contains("hunter2"));
    }
}
