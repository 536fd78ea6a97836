//! The per-user key that authenticates what wask keeps on disk and later runs.
//!
//! Whatever a cache holds that becomes code (compiled native code, modules built from
//! guest crates) is written with a keyed MAC under this key and checked before it is
//! used. The key lives outside every cache (`$WASK_STATE_DIR/user-key`, else
//! `$XDG_STATE_HOME/wask/user-key`, else `~/.local/state/wask/user-key`: 32 random
//! bytes, mode 0600), so someone who can write a cache directory (a cache shared between
//! users or machines, or restored from elsewhere) can neither forge such a file nor move
//! one into another's place. Without a home directory the key is a fixed value and the
//! check only protects against corruption.

use std::io::Write;
use std::path::PathBuf;

/// A 32-byte secret of this user's.
#[derive(Clone)]
pub struct UserKey([u8; 32]);

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKey(..)")
    }
}

/// The key file's name in the state directory.
const FILE_NAME: &str = "user-key";

impl UserKey {
    /// Reads this user's key, creating it on first use (see the module docs).
    pub fn load() -> UserKey {
        let Ok(Some(dir)) = key_dir() else {
            return UserKey::unkeyed();
        };
        let path = dir.join(FILE_NAME);
        let read = || {
            std::fs::read(&path)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
        };
        if let Some(key) = read() {
            return UserKey(key);
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
            (_, Some(key)) => UserKey(key),
            _ => UserKey::unkeyed(),
        }
    }

    /// A key from given bytes (tests).
    pub fn from_bytes(key: [u8; 32]) -> UserKey {
        UserKey(key)
    }

    fn unkeyed() -> UserKey {
        UserKey(*blake3::hash(b"wask-user-key-unkeyed").as_bytes())
    }

    /// A MAC over `parts` for `purpose`, each framed by its length so no two different
    /// lists of parts give the same bytes.
    pub fn mac(&self, purpose: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        for part in std::iter::once(purpose.as_bytes()).chain(parts.iter().copied()) {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        *h.finalize().as_bytes()
    }

    /// Whether `tag` is the MAC of `parts` for `purpose`, compared in constant time.
    pub fn verify(&self, purpose: &str, parts: &[&[u8]], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; 32]>::try_from(tag) else {
            return false;
        };
        blake3::Hash::from(self.mac(purpose, parts)) == blake3::Hash::from(tag)
    }
}

/// The directory that holds the key: `$WASK_STATE_DIR`, else `$XDG_STATE_HOME/wask`,
/// else `~/.local/state/wask`; `None` without a home. A relative `XDG_STATE_HOME` or
/// `HOME` is ignored (as the XDG specification says); a relative `WASK_STATE_DIR` is an
/// error, since the user asked for it and the key would move with the working
/// directory.
pub fn key_dir() -> Result<Option<PathBuf>, String> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = std::env::var_os("WASK_STATE_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(format!(
                "WASK_STATE_DIR must be an absolute path, not `{}`",
                dir.display()
            ));
        }
        return Ok(Some(dir));
    }
    Ok(absolute("XDG_STATE_HOME")
        .map(|d| d.join("wask"))
        .or_else(|| absolute("HOME").map(|h| h.join(".local/state/wask"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_purpose_parts_and_key() {
        let k = UserKey::from_bytes([1; 32]);
        let tag = k.mac("compiled", &[b"ab", b"c"]);
        assert!(k.verify("compiled", &[b"ab", b"c"], &tag));
        assert!(!k.verify("compiled", &[b"a", b"bc"], &tag), "framing");
        assert!(!k.verify("built", &[b"ab", b"c"], &tag), "purpose");
        assert!(!UserKey::from_bytes([2; 32]).verify("compiled", &[b"ab", b"c"], &tag));
    }
}
