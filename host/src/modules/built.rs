//! Modules built from guest crates, kept under `<cache>/built/` and authenticated.
//!
//! A built module becomes code that runs with a task's inputs and allow-listed
//! environment, so whoever can write the cache directory must not be able to put their
//! module in its place. Both files of a build carry a MAC under this user's key
//! ([`wask_runtime::secret::UserKey`]), and are read without following links:
//!
//! * `<source key>.build`: which module the build of those sources gave, and the files
//!   outside the crate the build read, each with its hash;
//! * `<blake3 of the module>.wasm`: the module.
//!
//! A file that does not verify is removed and the crate built again.

use crate::fs::{open_ambient, open_dirs, read_at_most, write_atomic};
use cap_fs_ext::DirExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use wask_runtime::secret::UserKey;

const RECORD_PURPOSE: &str = "wask built module record";
const MODULE_PURPOSE: &str = "wask built module";

/// The most a record may hold (a few bytes per file the build read).
const MAX_RECORD: u64 = 64 << 20;
/// The most a built module may hold; the module size limit refuses less.
const MAX_MODULE: u64 = 4 << 30;

/// What one build of a crate's sources gave.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRecord {
    /// blake3 of the module, hex.
    module: String,
    /// Files outside the crate's directories that the build read, with their blake3.
    read: Vec<(PathBuf, String)>,
}

impl BuildRecord {
    pub fn new(module: &[u8], read: Vec<(PathBuf, [u8; 32])>) -> BuildRecord {
        BuildRecord {
            module: blake3::hash(module).to_hex().to_string(),
            read: read
                .into_iter()
                .map(|(p, d)| (p, wask_runtime::hex(&d)))
                .collect(),
        }
    }

    /// Whether every file the build read still holds what it held.
    fn still_holds(&self) -> bool {
        self.read.iter().all(|(path, hash)| {
            std::fs::read(path)
                .map(|b| *blake3::hash(&b).as_bytes())
                .unwrap_or([0; 32])
                == hex32(hash).unwrap_or([1; 32])
        })
    }
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    crate::key::Digest::from_hex(text).map(|d| d.0)
}

/// The built modules of one cache directory.
pub struct BuiltStore {
    cache_dir: PathBuf,
    key: UserKey,
}

impl BuiltStore {
    pub fn new(cache_dir: &Path, key: UserKey) -> BuiltStore {
        BuiltStore {
            cache_dir: cache_dir.to_path_buf(),
            key,
        }
    }

    fn dir(&self, create: bool) -> std::io::Result<cap_std::fs::Dir> {
        if create {
            std::fs::create_dir_all(&self.cache_dir)?;
        }
        open_dirs(&open_ambient(&self.cache_dir)?, &["built"], create)
    }

    /// The module the sources with `source_key` built to, if it is kept, verifies, and
    /// every other file its build read is unchanged.
    pub fn find(&self, source_key: &str) -> Option<Vec<u8>> {
        let dir = self.dir(false).ok()?;
        let record_name = format!("{source_key}.build");
        let record = read_at_most(&dir, &record_name, MAX_RECORD).ok()?;
        let Some(record) = self.open_sealed(RECORD_PURPOSE, source_key, &record) else {
            let _ = dir.remove_file_or_symlink(&record_name);
            return None;
        };
        let record: BuildRecord = serde_json::from_slice(record).ok()?;
        if !record.still_holds() {
            return None;
        }
        let module_name = format!("{}.wasm", record.module);
        let sealed = read_at_most(&dir, &module_name, MAX_MODULE).ok()?;
        match self.open_sealed(MODULE_PURPOSE, &record.module, &sealed) {
            Some(module) if blake3::hash(module).to_hex().as_str() == record.module => {
                Some(module.to_vec())
            }
            _ => {
                let _ = dir.remove_file_or_symlink(&module_name);
                None
            }
        }
    }

    /// Keeps the module built from the sources with `source_key`.
    pub fn keep(
        &self,
        source_key: &str,
        record: &BuildRecord,
        module: &[u8],
    ) -> std::io::Result<()> {
        let dir = self.dir(true)?;
        write_atomic(
            &dir,
            &format!("{}.wasm", record.module),
            &self.seal(MODULE_PURPOSE, &record.module, module),
        )?;
        let json = serde_json::to_vec(record).expect("a record serialises");
        write_atomic(
            &dir,
            &format!("{source_key}.build"),
            &self.seal(RECORD_PURPOSE, source_key, &json),
        )
    }

    /// `MAC || bytes`, the MAC binding the bytes to `name` (so no file can stand in for
    /// another's).
    fn seal(&self, purpose: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
        let mut out = self.key.mac(purpose, &[name.as_bytes(), bytes]).to_vec();
        out.extend_from_slice(bytes);
        out
    }

    fn open_sealed<'b>(&self, purpose: &str, name: &str, sealed: &'b [u8]) -> Option<&'b [u8]> {
        let (tag, bytes) = sealed.split_at_checked(32)?;
        self.key
            .verify(purpose, &[name.as_bytes(), bytes], tag)
            .then_some(bytes)
    }
}
