//! The on-disk cache of compiled modules (SANDBOX-008).
//!
//! Compiling a module with Cranelift costs tens of milliseconds; loading a compiled
//! artifact costs tens of microseconds. Artifacts are native code, so each file starts
//! with a keyed blake3 MAC of the module's digest and the code that follows, recorded
//! when it was written, and a file that does not match it is never loaded: it is
//! discarded and the module is compiled again. The key is a per-user secret kept outside
//! the cache ([`machine_key`]), so someone who can write to the cache directory (a
//! shared or restored cache) can neither forge native code nor swap one module's code
//! for another's. Artifacts live under a directory named by the engine's fingerprint,
//! so a different wasmtime version or configuration never sees another's code.

use crate::{Digest, hex};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// Where compiled artifacts of one engine configuration are kept.
pub struct CompiledCache {
    dir: PathBuf,
    key: [u8; 32],
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

/// The per-user key that authenticates compiled artifacts: 32 random bytes in
/// `$WASK_STATE_DIR/compiled-key`, else `$XDG_STATE_HOME/wask/compiled-key`, else
/// `~/.local/state/wask/compiled-key`, created (mode 0600) on first use. Without a home
/// directory the key is fixed, and artifacts are only protected against corruption.
pub fn machine_key() -> [u8; 32] {
    let dir = std::env::var_os("WASK_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("wask")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/wask")));
    let Some(dir) = dir else {
        return *blake3::hash(b"wask-compiled-key-unkeyed").as_bytes();
    };
    let path = dir.join("compiled-key");
    let read = || {
        std::fs::read(&path)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
    };
    if let Some(key) = read() {
        return key;
    }
    let created = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut fresh = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut fresh)?;
        std::fs::create_dir_all(&dir)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(&fresh)?;
        f.sync_all()
    })();
    // Another process may have created it first: read whichever key won.
    match (created, read()) {
        (_, Some(key)) => key,
        _ => *blake3::hash(b"wask-compiled-key-unkeyed").as_bytes(),
    }
}

impl CompiledCache {
    pub fn new(root: &Path, engine: &Engine, key: [u8; 32]) -> Self {
        let fp = hex(&engine_fingerprint(engine));
        CompiledCache {
            dir: root.join(&fp[..16]),
            key,
        }
    }

    /// The MAC binding an artifact to its module and to this user's key.
    fn mac(&self, module: &Digest, code: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(module);
        h.update(code);
        *h.finalize().as_bytes()
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
        let verified = bytes.len() > 32 && self.mac(module, &bytes[32..])[..] == bytes[..32];
        if verified {
            // SAFETY: the bytes are exactly what this engine configuration serialised for
            // this module (same fingerprint directory, MAC under this user's key recorded
            // at write and checked above).
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
        tmp.write_all(&self.mac(module_digest, &code))?;
        tmp.write_all(&code)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(module_digest))?;
        Ok(())
    }
}
