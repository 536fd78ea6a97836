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
    /// Reads this user's key, creating it on first use (see the module docs). A key
    /// file that is anything but a regular file of 32 bytes that only its owner (this
    /// user) can read is an error naming it: wask never blocks on it, reads past 32
    /// bytes of it, or goes on with a key others may know.
    pub fn load() -> Result<UserKey, KeyError> {
        let Some(dir) = key_dir().map_err(KeyError::Setting)? else {
            return Ok(UserKey::unkeyed());
        };
        let path = dir.join(FILE_NAME);
        if std::fs::metadata(&dir).is_ok_and(|m| !m.is_dir()) {
            let why = format!("{} is not a directory", dir.display());
            return Err(KeyError::Create { path, why });
        }
        match read_key(&path) {
            Ok(key) => return Ok(UserKey(key)),
            Err(Unusable::Missing) => {}
            Err(Unusable::Bad(why)) => return Err(KeyError::Bad { path, why }),
        }
        let created = create_key(&dir, &path);
        // Another process may have created it first: read whichever key won.
        match read_key(&path) {
            Ok(key) => Ok(UserKey(key)),
            Err(Unusable::Bad(why)) => Err(KeyError::Bad { path, why }),
            Err(Unusable::Missing) => Err(KeyError::Create {
                path,
                why: created.err().map(|e| e.to_string()).unwrap_or_default(),
            }),
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

/// Why the user key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Setting(String),
    #[error(
        "the user key {} {why}\n  hint: remove it and wask makes a new one (compiled and built modules are then made again)",
        .path.display()
    )]
    Bad { path: PathBuf, why: String },
    #[error("cannot create the user key {}: {why}\n  hint: set WASK_STATE_DIR to a directory of your own", .path.display())]
    Create { path: PathBuf, why: String },
}

enum Unusable {
    Missing,
    Bad(String),
}

/// The key at `path`: a private file ([`read_private`]) of exactly 32 bytes.
fn read_key(path: &std::path::Path) -> Result<[u8; 32], Unusable> {
    match read_private(path, 32) {
        Ok(None) => Err(Unusable::Missing),
        Ok(Some(bytes)) => <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| Unusable::Bad(format!("is {} bytes, not 32", bytes.len()))),
        Err(why) => Err(Unusable::Bad(why)),
    }
}

/// The contents of the private file at `path`, `None` if there is none: opened without
/// following a link or blocking, checked on the open file to be a regular file of at
/// most `max` bytes that belongs to this user and that no one else may read or write.
/// The error says what is wrong with it, to follow its path in a message.
pub fn read_private(path: &std::path::Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("is a symbolic link".into());
        }
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err("belongs to another user".into());
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "can be read or written by others (mode {:o}; it must be 600)",
            meta.mode() & 0o777
        ));
    }
    if meta.nlink() != 1 {
        return Err(format!(
            "has {} names (hard links): a key must have one, or it can be read where it is not guarded",
            meta.nlink()
        ));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = std::fs::metadata(parent)
        && dir.mode() & 0o022 != 0
        && dir.mode() & 0o1000 == 0
    {
        return Err(format!(
            "lies in {}, which others may write (mode {:o}): they could remove or replace it",
            parent.display(),
            dir.mode() & 0o7777
        ));
    }
    if meta.len() > max {
        return Err(format!("is {} bytes, more than {max}", meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(Some(bytes))
}

/// Makes a new random key at `path` (mode 600, in a directory only this user enters).
fn create_key(dir: &std::path::Path, path: &std::path::Path) -> std::io::Result<()> {
    let mut fresh = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut fresh)?;
    create_private(dir, path, &fresh)
}

/// Writes `bytes` as the new private file `path` (mode 600) in `dir`, made (mode 700)
/// if missing. The file is written whole under a name of its own and then linked into
/// place, so a process starting at the same moment reads either no file or all of one;
/// if `path` exists already, whichever process linked first wins.
pub fn create_private(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let draft = dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        blake3::hash(bytes)
            .to_hex()
            .as_str()
            .get(..8)
            .unwrap_or("0")
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&draft)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // Renamed into place, never replacing: no moment where the key has two names
        // (a reader refuses a key with another link). A file system without the flag
        // gets the link, then the unlink below.
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &draft,
            rustix::fs::CWD,
            path,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::EXIST => Err(std::io::Error::from(e)),
            Err(_) => std::fs::hard_link(&draft, path),
        }
    })();
    let _ = std::fs::remove_file(&draft);
    written
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
