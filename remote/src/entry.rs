//! A wask result as REAPI stores it: the action digest a wask key maps to, and the
//! `ActionResult` that carries the result's files, streams and seal. The layout is
//! documented in `docs/remote-cache.md` so that another tool can read wask's entries.
//!
//! The action is a canonical REAPI `Action` that runs nothing: its `Command` has the
//! arguments `["wask", "task", "<hash function>:<key hex>"]` and nothing else, its input
//! root is the empty `Directory`, and its salt is [`SALT`]. Its digest, the SHA-256 (or
//! the server's BLAKE3) of the encoded `Action`, is the action cache key. Nothing of the
//! host is in it: the wask key holds no host path, user, OS or architecture, so two
//! machines that derive the same key find each other's results.
//!
//! The `ActionResult` lists each output as an `output_file` (its workspace path without
//! the leading `/`), the streams as `stdout_digest` and `stderr_digest`, exit code 0,
//! and one more file at [`SEAL_PATH`]: the DSSE envelope that signs the result's
//! manifest. `.wask/` is wask's own directory, which no task output may name, so the
//! seal can never collide with an output; and being an output file, servers that check
//! an action result's blobs keep it alive with the entry.
//!
//! Small blobs may also travel inside the `ActionResult` (`OutputFile.contents`,
//! `stdout_raw`, `stderr_raw`), every one also stored under its digest: over the HTTP
//! layout wask writes them there, so a hit is one request; a REAPI server inlines them
//! only when asked. Inlined bytes are believed no more than downloaded ones.

use crate::{ActionResult, Digest, DigestFunction};
use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use prost::Message;
use std::collections::BTreeMap;

/// Changes only when this layout does, so entries of another layout are not found.
pub const SALT: &[u8] = b"wask-remote-entry-v1";

/// Where the seal (the signed manifest) is listed in the `ActionResult`.
pub const SEAL_PATH: &str = ".wask/entry.dsse.json";

/// The action cache key of a wask result: see the module documentation.
pub fn action_digest(function: DigestFunction, key_function: &str, key_hex: &str) -> Digest {
    let command = reapi::Command {
        arguments: vec![
            "wask".into(),
            "task".into(),
            format!("{key_function}:{key_hex}"),
        ],
        ..Default::default()
    };
    let action = reapi::Action {
        command_digest: Some(to_proto(&Digest::of(function, &command.encode_to_vec()))),
        input_root_digest: Some(to_proto(&Digest::of(function, &[]))),
        salt: SALT.to_vec(),
        ..Default::default()
    };
    Digest::of(function, &action.encode_to_vec())
}

/// One output of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// The workspace path, with its leading `/`.
    pub path: String,
    pub digest: Digest,
}

/// What an `ActionResult` of wask's layout holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    pub files: Vec<RemoteFile>,
    pub stdout: Digest,
    pub stderr: Digest,
    /// The DSSE envelope over the result's manifest.
    pub seal: Digest,
    /// The bytes of some of these blobs, carried in the `ActionResult` itself. Not
    /// checked here: a reader checks them as it checks what it downloads.
    pub inline: BTreeMap<Digest, Vec<u8>>,
}

impl RemoteEntry {
    /// Every blob the entry names, each once.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut all: Vec<Digest> = self.files.iter().map(|f| f.digest.clone()).collect();
        all.extend([self.stdout.clone(), self.stderr.clone(), self.seal.clone()]);
        all.sort();
        all.dedup();
        all
    }

    pub fn to_action_result(&self) -> ActionResult {
        let inline = |digest: &Digest| self.inline.get(digest).cloned().unwrap_or_default();
        let file = |path: &str, digest: &Digest| reapi::OutputFile {
            path: path.to_string(),
            digest: Some(to_proto(digest)),
            contents: inline(digest),
            ..Default::default()
        };
        let mut output_files: Vec<reapi::OutputFile> = self
            .files
            .iter()
            .map(|f| file(f.path.trim_start_matches('/'), &f.digest))
            .collect();
        output_files.push(file(SEAL_PATH, &self.seal));
        ActionResult {
            output_files,
            exit_code: 0,
            stdout_digest: Some(to_proto(&self.stdout)),
            stderr_digest: Some(to_proto(&self.stderr)),
            stdout_raw: inline(&self.stdout),
            stderr_raw: inline(&self.stderr),
            execution_metadata: Some(reapi::ExecutedActionMetadata {
                worker: "wask".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Reads an `ActionResult` of wask's layout, or says what makes it not one. Nothing
    /// here is believed yet: the host checks the seal, and every blob against it.
    #[allow(
        deprecated,
        reason = "an old writer's symlink fields must be empty too"
    )]
    pub fn from_action_result(r: &ActionResult) -> Result<RemoteEntry, String> {
        if r.exit_code != 0 {
            return Err(format!("it records exit code {}", r.exit_code));
        }
        if !r.output_directories.is_empty()
            || !r.output_symlinks.is_empty()
            || !r.output_file_symlinks.is_empty()
            || !r.output_directory_symlinks.is_empty()
        {
            return Err("it lists directories or symbolic links, which wask never stores".into());
        }
        let stream = |d: &Option<reapi::Digest>, name: &str| {
            d.as_ref()
                .ok_or_else(|| format!("it has no {name} digest"))
                .and_then(from_proto)
        };
        let mut seal = None;
        let mut files = Vec::new();
        let mut inline = BTreeMap::new();
        for f in &r.output_files {
            let digest = f
                .digest
                .as_ref()
                .ok_or_else(|| format!("{} has no digest", short(&f.path)))
                .and_then(from_proto)?;
            if !f.contents.is_empty() {
                inline.insert(digest.clone(), f.contents.clone());
            }
            if f.path == SEAL_PATH {
                if seal.replace(digest).is_some() {
                    return Err("it has two seals".into());
                }
            } else if f.path.is_empty() || f.path.starts_with('/') {
                return Err(format!("`{}` is not a relative path", short(&f.path)));
            } else {
                files.push(RemoteFile {
                    path: format!("/{}", f.path),
                    digest,
                });
            }
        }
        let (stdout, stderr) = (
            stream(&r.stdout_digest, "stdout")?,
            stream(&r.stderr_digest, "stderr")?,
        );
        for (digest, raw) in [(&stdout, &r.stdout_raw), (&stderr, &r.stderr_raw)] {
            if !raw.is_empty() {
                inline.insert(digest.clone(), raw.clone());
            }
        }
        Ok(RemoteEntry {
            files,
            stdout,
            stderr,
            seal: seal.ok_or("it has no seal: it was not stored by wask")?,
            inline,
        })
    }
}

/// A path from the server as a message may hold it: its first 100 characters.
fn short(path: &str) -> String {
    match path.char_indices().nth(100) {
        Some((at, _)) => format!("{}...", &path[..at]),
        None => path.to_string(),
    }
}

pub(crate) fn to_proto(d: &Digest) -> reapi::Digest {
    reapi::Digest {
        hash: d.hash.clone(),
        size_bytes: i64::try_from(d.size).unwrap_or(i64::MAX),
    }
}

/// A digest from the wire: lower-case hex of a 32-byte hash, a size that is not negative.
pub(crate) fn from_proto(d: &reapi::Digest) -> Result<Digest, String> {
    let hex = d.hash.len() == 64
        && d.hash
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex {
        return Err(format!("`{}` is not a digest", d.hash));
    }
    let size = u64::try_from(d.size_bytes)
        .map_err(|_| format!("the size {} is negative", d.size_bytes))?;
    Ok(Digest {
        hash: d.hash.clone(),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RemoteEntry {
        let d = |b: &[u8]| Digest::of(DigestFunction::Sha256, b);
        RemoteEntry {
            files: vec![RemoteFile {
                path: "/out/a.txt".into(),
                digest: d(b"a"),
            }],
            stdout: d(b"out"),
            stderr: d(b""),
            seal: d(b"seal"),
            inline: [(d(b"seal"), b"seal".to_vec()), (d(b"out"), b"out".to_vec())].into(),
        }
    }

    #[test]
    fn an_entry_round_trips_through_an_action_result() {
        let e = sample();
        let r = e.to_action_result();
        assert_eq!(r.output_files[0].path, "out/a.txt");
        assert_eq!(r.output_files[1].path, SEAL_PATH);
        let bytes = r.encode_to_vec();
        let back = RemoteEntry::from_action_result(&ActionResult::decode(&bytes[..]).unwrap());
        assert_eq!(back.unwrap(), e);
    }

    #[test]
    fn results_not_of_wasks_layout_are_refused() {
        let mut r = sample().to_action_result();
        r.output_files.pop();
        assert!(
            RemoteEntry::from_action_result(&r)
                .unwrap_err()
                .contains("no seal")
        );
        let mut r = sample().to_action_result();
        r.exit_code = 1;
        assert!(RemoteEntry::from_action_result(&r).is_err());
        let mut r = sample().to_action_result();
        r.output_files[0].path = "/etc/passwd".into();
        assert!(RemoteEntry::from_action_result(&r).is_err());
        let mut r = sample().to_action_result();
        r.output_files[0].digest.as_mut().unwrap().size_bytes = -1;
        assert!(RemoteEntry::from_action_result(&r).is_err());
        let mut r = sample().to_action_result();
        r.output_files[0].digest.as_mut().unwrap().hash = "../../x".into();
        assert!(RemoteEntry::from_action_result(&r).is_err());
    }

    /// The action digest depends on the key and nothing else, and differs by function.
    #[test]
    fn the_action_digest_is_the_keys_alone() {
        let k = "ab".repeat(32);
        let a = action_digest(DigestFunction::Sha256, "blake3", &k);
        assert_eq!(a, action_digest(DigestFunction::Sha256, "blake3", &k));
        assert_ne!(
            a,
            action_digest(DigestFunction::Sha256, "blake3", &"ac".repeat(32))
        );
        assert_ne!(a, action_digest(DigestFunction::Sha256, "sha256", &k));
        assert_ne!(
            a.hash,
            action_digest(DigestFunction::Blake3, "blake3", &k).hash
        );
    }
}
