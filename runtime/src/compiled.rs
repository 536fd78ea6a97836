//! The on-disk cache of compiled modules (SANDBOX-008).
//!
//! Compiling a module with Cranelift costs tens of milliseconds; loading a compiled
//! artifact costs tens of microseconds. Artifacts are native code, so each file starts
//! with the blake3 digest of the bytes that follow, recorded when it was written, and a
//! file whose bytes do not match it is never loaded: it is discarded and the module is
//! compiled again. Artifacts live under a directory named by the engine's fingerprint,
//! so a different wasmtime version or configuration never sees another's code.

use crate::{Digest, hex};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// Where compiled artifacts of one engine configuration are kept.
pub struct CompiledCache {
    dir: PathBuf,
}

/// The result of looking a module up in the compiled cache.
pub enum Lookup {
    Hit(Module),
    Miss,
    /// The artifact existed but failed verification; it was removed.
    Tampered(PathBuf),
}

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
    h.write(b"wask-compiled-v1");
    engine.precompile_compatibility_hash().hash(&mut h);
    *h.0.finalize().as_bytes()
}

impl CompiledCache {
    pub fn new(root: &Path, engine: &Engine) -> Self {
        let fp = hex(&engine_fingerprint(engine));
        CompiledCache {
            dir: root.join(&fp[..16]),
        }
    }

    fn path(&self, module: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", hex(module)))
    }

    pub fn load(&self, engine: &Engine, module: &Digest) -> Lookup {
        let path = self.path(module);
        let Ok(bytes) = std::fs::read(&path) else {
            return Lookup::Miss;
        };
        // Verify the bytes we hold in memory, then load those same bytes: nothing can
        // change them between the check and the load.
        let verified = bytes.len() > 32 && blake3::hash(&bytes[32..]).as_bytes()[..] == bytes[..32];
        if verified {
            // SAFETY: the bytes are exactly what this engine configuration serialised
            // (same fingerprint directory, digest recorded at write and checked above).
            if let Ok(m) = unsafe { Module::deserialize(engine, &bytes[32..]) } {
                return Lookup::Hit(m);
            }
        }
        let _ = std::fs::remove_file(&path);
        Lookup::Tampered(path)
    }

    /// Stores a compiled module. Failures only cost a later recompile, so they are
    /// returned for reporting but never fail a run.
    pub fn store(&self, module_digest: &Digest, module: &Module) -> anyhow::Result<()> {
        let code = module.serialize()?;
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(blake3::hash(&code).as_bytes())?;
        tmp.write_all(&code)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(module_digest))?;
        Ok(())
    }
}
