//! The cache key (CACHE-001..009).
//!
//! A key is the digest of a framed serialisation of everything that can change what a
//! task produces. Every variable-length field is preceded by its length and every list
//! by its count (CACHE-009), so two different declarations never serialise to the same
//! bytes. The task's own name is deliberately absent: identical tasks share an entry.

use crate::workspace::HashKind;
use sha2::Digest as _;

/// The key-format revision; bump it whenever the serialisation below changes.
pub const KEY_REVISION: u32 = 1;

/// The sandbox semantics a key was derived under; bump when the runtime changes what
/// a guest can observe (the view, the clocks, the environment).
pub const RUNTIME_SEMANTICS: u32 = 1;

/// A 32-byte digest from the workspace's hash function (CACHE-001, 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn hex(&self) -> String {
        wask_runtime::hex(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<Digest> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Digest(out))
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// A streaming hasher for the configured function.
pub enum Hasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn new(kind: HashKind) -> Hasher {
        match kind {
            HashKind::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            HashKind::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Blake3(h) => Digest(*h.finalize().as_bytes()),
            Hasher::Sha256(h) => Digest(h.finalize().into()),
        }
    }
}

/// Hashes bytes in one call.
pub fn hash_bytes(kind: HashKind, bytes: &[u8]) -> Digest {
    let mut h = Hasher::new(kind);
    h.update(bytes);
    h.finish()
}

/// Hashes everything `reader` yields.
pub fn hash_reader(kind: HashKind, reader: &mut dyn std::io::Read) -> std::io::Result<Digest> {
    let mut h = Hasher::new(kind);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// A reader that fails once the user asked wask to stop, so hashing or staging a large
/// input ends within one buffer of a Ctrl-C rather than at the end of the file.
pub struct UntilCancelled<'c, R> {
    pub inner: R,
    pub cancel: &'c crate::cancel::Cancel,
}

impl<R: std::io::Read> std::io::Read for UntilCancelled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_set() {
            return Err(std::io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}

/// Hashes a file's contents.
pub fn hash_file(kind: HashKind, path: &std::path::Path) -> std::io::Result<Digest> {
    hash_reader(kind, &mut std::fs::File::open(path)?)
}

/// Why an input could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read input {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("input {0} is not a regular file")]
    NotAFile(String),
    #[error("input {0} changed while wask was reading it")]
    Changed(String),
    #[error("cancelled while hashing input {0}")]
    Cancelled(String),
}

/// Hashes the input at `path` (shown as `shown`) from one open descriptor, recording
/// its identity before and checking it after: a file that changes while it is read is
/// an error, never a key for bytes no one saw.
pub fn hash_input(
    kind: HashKind,
    path: &std::path::Path,
    shown: &str,
    cancel: &crate::cancel::Cancel,
) -> Result<Digest, InputError> {
    use std::os::unix::fs::OpenOptionsExt;
    use wask_runtime::view::FileIdentity;
    let read = |source| InputError::Read {
        path: shown.to_string(),
        source,
    };
    // Without following a link (the host resolved them) or blocking on a FIFO.
    let mut file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(read)?;
    let before = file.metadata().map_err(read)?;
    if !before.is_file() {
        return Err(InputError::NotAFile(shown.to_string()));
    }
    let mut reader = UntilCancelled {
        inner: &mut file,
        cancel,
    };
    let digest = match hash_reader(kind, &mut reader) {
        Ok(d) => d,
        Err(_) if cancel.is_set() => return Err(InputError::Cancelled(shown.to_string())),
        Err(e) => return Err(read(e)),
    };
    let identity = FileIdentity::of(&before);
    if FileIdentity::of(&file.metadata().map_err(read)?) != identity {
        return Err(InputError::Changed(shown.to_string()));
    }
    Ok(digest)
}

/// An environment variable as the task sees it (CACHE-008).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// Allow-listed but not set on the host: distinct from an empty value.
    Absent,
    Value(String),
}

/// Everything a key is derived from.
#[derive(Debug, Clone)]
pub struct KeyParts {
    pub hash: HashKind,
    /// Content hash of the module (CACHE-005).
    pub module: Digest,
    pub args: Vec<String>,
    /// The project directory the task's relative paths resolve against.
    pub project_dir: String,
    /// (workspace-absolute path, content hash), sorted by path (CACHE-006).
    pub inputs: Vec<(String, Digest)>,
    /// Workspace-absolute output patterns, as declared (CACHE-006).
    pub outputs: Vec<String>,
    /// (stdout hash, stderr hash) of each hard predecessor, in canonical order (CACHE-007).
    pub predecessors: Vec<(Digest, Digest)>,
    /// Sorted by name (CACHE-008).
    pub env: Vec<(String, EnvValue)>,
    /// `None` for the host clock; `Some(epoch seconds)` for the fixed clock.
    pub fixed_clock_epoch: Option<u64>,
}

struct Framer(Hasher);

impl Framer {
    fn u32(&mut self, v: u32) {
        self.0.update(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }
    fn tag(&mut self, t: &str) {
        self.bytes(t.as_bytes());
    }
    fn digest(&mut self, d: &Digest) {
        self.0.update(&d.0);
    }
}

impl KeyParts {
    /// The output patterns a run may write (`outputs` without its `!` exclusions).
    pub fn output_patterns(&self) -> Vec<String> {
        self.outputs
            .iter()
            .filter(|o| !o.starts_with('!'))
            .cloned()
            .collect()
    }

    /// The `!` exclusions of `outputs`, without the `!`.
    pub fn output_exclusions(&self) -> Vec<String> {
        self.outputs
            .iter()
            .filter_map(|o| o.strip_prefix('!'))
            .map(str::to_string)
            .collect()
    }

    /// Derives the key (CACHE-003: the schema prefix comes first).
    pub fn key(&self) -> Digest {
        let mut f = Framer(Hasher::new(self.hash));
        f.tag("wask-cache-key");
        f.u32(KEY_REVISION);
        f.tag(self.hash.name());

        f.tag("action");
        f.tag("wasi-p1-command");
        f.digest(&self.module);
        f.u64(self.args.len() as u64);
        for a in &self.args {
            f.bytes(a.as_bytes());
        }
        f.bytes(self.project_dir.as_bytes());

        f.tag("inputs");
        f.u64(self.inputs.len() as u64);
        for (path, digest) in &self.inputs {
            f.bytes(path.as_bytes());
            f.digest(digest);
        }

        f.tag("outputs");
        f.u64(self.outputs.len() as u64);
        for o in &self.outputs {
            f.bytes(o.as_bytes());
        }

        f.tag("predecessors");
        f.u64(self.predecessors.len() as u64);
        for (out, err) in &self.predecessors {
            f.digest(out);
            f.digest(err);
        }

        f.tag("env");
        f.u64(self.env.len() as u64);
        for (name, value) in &self.env {
            f.bytes(name.as_bytes());
            match value {
                EnvValue::Absent => f.u32(0),
                EnvValue::Value(v) => {
                    f.u32(1);
                    f.bytes(v.as_bytes());
                }
            }
        }

        f.tag("sandbox");
        f.u32(RUNTIME_SEMANTICS);
        match self.fixed_clock_epoch {
            Some(epoch) => {
                f.tag("clock-fixed");
                f.u64(epoch);
                f.tag("seed-from-key");
            }
            None => f.tag("clock-host"),
        }
        f.0.finish()
    }

    /// The seed of the task's random numbers (SANDBOX-005): derived from the key, so a
    /// task sees the same numbers whenever its inputs are the same.
    pub fn seed(key: &Digest) -> [u8; 32] {
        *blake3::keyed_hash(&key.0, b"wask-random-seed").as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> KeyParts {
        KeyParts {
            hash: HashKind::Blake3,
            module: hash_bytes(HashKind::Blake3, b"module"),
            args: vec!["a".into(), "b".into()],
            project_dir: "/p".into(),
            inputs: vec![("/p/x".into(), hash_bytes(HashKind::Blake3, b"x"))],
            outputs: vec!["/p/out/**".into()],
            predecessors: vec![(
                hash_bytes(HashKind::Blake3, b"o"),
                hash_bytes(HashKind::Blake3, b"e"),
            )],
            env: vec![("LANG".into(), EnvValue::Value("C".into()))],
            fixed_clock_epoch: Some(0),
        }
    }

    /// CACHE-004..009: every component changes the key.
    #[test]
    fn every_component_changes_the_key() {
        let k = base().key();
        let d = |b: &[u8]| hash_bytes(HashKind::Blake3, b);
        type Change = Box<dyn Fn(&mut KeyParts)>;
        let variants: Vec<(&str, Change)> = vec![
            ("hash function", Box::new(|p| p.hash = HashKind::Sha256)),
            ("module", Box::new(move |p| p.module = d(b"other"))),
            ("args", Box::new(|p| p.args.push("c".into()))),
            ("arg order", Box::new(|p| p.args.reverse())),
            ("project dir", Box::new(|p| p.project_dir = "/q".into())),
            ("input content", Box::new(move |p| p.inputs[0].1 = d(b"y"))),
            ("input path", Box::new(|p| p.inputs[0].0 = "/p/y".into())),
            (
                "extra input",
                Box::new(move |p| p.inputs.push(("/p/z".into(), d(b"z")))),
            ),
            ("outputs", Box::new(|p| p.outputs[0] = "/p/dist/**".into())),
            (
                "predecessor stdout",
                Box::new(move |p| p.predecessors[0].0 = d(b"o2")),
            ),
            (
                "predecessor stderr",
                Box::new(move |p| p.predecessors[0].1 = d(b"e2")),
            ),
            (
                "env value",
                Box::new(|p| p.env[0].1 = EnvValue::Value("D".into())),
            ),
            (
                "env absent vs empty",
                Box::new(|p| p.env[0].1 = EnvValue::Absent),
            ),
            ("env name", Box::new(|p| p.env[0].0 = "LC_ALL".into())),
            ("clock", Box::new(|p| p.fixed_clock_epoch = None)),
            ("epoch", Box::new(|p| p.fixed_clock_epoch = Some(1))),
        ];
        let mut seen = std::collections::HashSet::from([k]);
        for (what, change) in variants {
            let mut p = base();
            change(&mut p);
            assert!(
                seen.insert(p.key()),
                "changing the {what} did not give a new key"
            );
        }
        let mut empty = base();
        empty.env[0].1 = EnvValue::Value(String::new());
        let mut absent = base();
        absent.env[0].1 = EnvValue::Absent;
        assert_ne!(
            empty.key(),
            absent.key(),
            "an empty variable must differ from an absent one"
        );
    }

    /// CACHE-009: moving bytes between adjacent fields changes the key.
    #[test]
    fn framing_is_unambiguous() {
        let mut a = base();
        a.args = vec!["ab".into(), "c".into()];
        let mut b = base();
        b.args = vec!["a".into(), "bc".into()];
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn the_key_is_stable_for_the_same_parts() {
        assert_eq!(base().key(), base().key());
        assert_eq!(base().key().hex().len(), 64);
    }
}
