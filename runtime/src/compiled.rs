//! The on-disk cache of compiled modules (SANDBOX-008).
//!
//! Compiling a module with Cranelift costs tens of milliseconds; loading a compiled
//! artifact costs tens of microseconds. Artifacts are native code, so each file starts
//! with a MAC (under this user's [`UserKey`]) of the module's digest and the code that
//! follows, recorded when it was written, and a file that does not match it is never
//! loaded: it is discarded and the module is compiled again. Someone who can write to the
//! cache directory can neither forge native code nor swap one module's code for
//! another's. Artifacts live under a directory named by the engine's fingerprint, so a
//! different wasmtime version or configuration never sees another's code.
//!
//! The directory is opened as a capability: files are read and written relative to it,
//! never through a link, so a link planted at `compiled/...` cannot redirect a write.

use crate::secret::UserKey;
use crate::{Digest, hex};
use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// Where compiled artifacts of one engine configuration are kept.
pub struct CompiledCache {
    /// `<cache>/compiled`.
    root: PathBuf,
    /// The engine fingerprint's directory name under `root`.
    engine_dir: String,
    key: UserKey,
}

/// The result of looking a module up in the compiled cache.
pub enum Lookup {
    Hit(Module),
    Miss,
    /// The artifact existed but failed verification; it was removed.
    Tampered(PathBuf),
}

/// What the MAC of an artifact is for.
const PURPOSE: &str = "wask compiled module";

/// Far above any artifact a module under the module size limit compiles to; a cap so a
/// hostile cache cannot make a load read without end.
const MAX_ARTIFACT: u64 = 8 << 30;

struct DigestHasher(blake3::Hasher);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        unreachable!("only the full digest is used")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A digest of everything that makes compiled code from one engine unusable by another.
pub fn engine_fingerprint(engine: &Engine) -> Digest {
    let mut h = DigestHasher(blake3::Hasher::new());
    h.write(b"wask-compiled-v2");
    engine.precompile_compatibility_hash().hash(&mut h);
    *h.0.finalize().as_bytes()
}

impl CompiledCache {
    pub fn new(root: &Path, engine: &Engine, key: UserKey) -> Self {
        CompiledCache {
            root: root.to_path_buf(),
            engine_dir: hex(&engine_fingerprint(engine))[..16].to_string(),
            key,
        }
    }

    fn name(module: &Digest) -> String {
        format!("{}.cwasm", hex(module))
    }

    /// The engine's directory, opened without following a link at any step; `create`
    /// makes what is missing.
    fn dir(&self, create: bool) -> std::io::Result<cap_std::fs::Dir> {
        let parent = self.root.parent().unwrap_or(Path::new("/"));
        let name = self.root.file_name().unwrap_or_default();
        let base = cap_std::fs::Dir::open_ambient_dir(parent, cap_std::ambient_authority())?;
        if create {
            let _ = base.create_dir(name);
        }
        let compiled = base.open_dir_nofollow(name)?;
        if create {
            let _ = compiled.create_dir(&self.engine_dir);
        }
        compiled.open_dir_nofollow(&self.engine_dir)
    }

    pub fn load(&self, engine: &Engine, module: &Digest) -> Lookup {
        let Ok(dir) = self.dir(false) else {
            return Lookup::Miss;
        };
        let name = Self::name(module);
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.read(true).follow(FollowSymlinks::No);
        let Ok(mut file) = dir.open_with(&name, &opts) else {
            return Lookup::Miss;
        };
        let mut bytes = Vec::new();
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        let read = regular
            && (&mut file)
                .take(MAX_ARTIFACT)
                .read_to_end(&mut bytes)
                .is_ok();
        // Verify the bytes we hold in memory, then load those same bytes: nothing can
        // change them between the check and the load.
        let verified = read
            && bytes.len() > 32
            && self
                .key
                .verify(PURPOSE, &[module, &bytes[32..]], &bytes[..32]);
        if verified {
            // SAFETY: the bytes are exactly what this engine configuration serialised for
            // this module (same fingerprint directory, MAC under this user's key recorded
            // at write and checked above).
            if let Ok(m) = unsafe { Module::deserialize(engine, &bytes[32..]) } {
                return Lookup::Hit(m);
            }
        }
        let _ = dir.remove_file_or_symlink(&name);
        Lookup::Tampered(self.root.join(&self.engine_dir).join(name))
    }

    /// Stores a module's serialized code. Failures only cost a later recompile, so they
    /// are returned for reporting but never fail a run.
    pub fn store(&self, module: &Digest, code: &[u8]) -> std::io::Result<()> {
        let dir = self.dir(true)?;
        let name = Self::name(module);
        let tmp = format!(".tmp-{}", unique());
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.write(true).create_new(true).follow(FollowSymlinks::No);
        let written = (|| {
            let mut f = dir.open_with(&tmp, &opts)?;
            f.write_all(&self.key.mac(PURPOSE, &[module, code]))?;
            f.write_all(code)?;
            f.sync_all()?;
            dir.rename(&tmp, &dir, &name)
        })();
        if written.is_err() {
            let _ = dir.remove_file(&tmp);
        }
        written
    }
}

/// A name no other writer uses at the same time: this process's id and a count. The
/// count is the crate's one piece of process-wide state, on purpose: two sandboxes in
/// one process may share a compiled directory, and a count of each would give both the
/// same names. It carries nothing from one run to another.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}
