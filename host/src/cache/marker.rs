//! Which directory is a wask cache: the one that carries wask's `CACHEDIR.TAG`.
//!
//! `[cache] dir` and `WASK_CACHE_DIR` can name any directory, `$HOME/.cache` or
//! `../victim` included, so nothing wask does to a cache (`cache clear`, `clean`,
//! `verify`, storing) may assume the directory is its own. A cache directory carries a
//! tag file in the format of the Cache Directory Tagging Specification (which backup
//! tools honour), naming wask. wask writes one when it makes the directory or finds it
//! empty; any other directory is refused, and housekeeping in a directory without the
//! tag removes nothing. (wask once also adopted a directory holding only names of the
//! shape it makes; a user's files under such names were then its to delete.)
//!
//! Inside a tagged directory wask still removes only what it made, by name: shards of
//! entries (two hex digits) holding entries (64 hex digits) and its temporary
//! directories, `compiled/`, `built/`, and its own temporary files.

use crate::fs::{open_ambient, read_at_most, write_atomic};
use cap_std::fs::Dir;
use std::io;
use std::path::Path;

/// The tag file's name, fixed by the specification.
pub const TAG: &str = "CACHEDIR.TAG";

/// The specification's signature, the first line of every tag.
const SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

const CONTENT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This directory is a wask cache (a Cache Directory Tagging Specification tag).\n\
# wask removes only what it made here: shards of entries, compiled/, built/ and\n\
# its own temporary files.\n";

/// Why a directory cannot be used as a cache.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error(
        "{dir} is not a wask cache directory: it has no {TAG} written by wask, and holds {names}\n  hint: point `[cache] dir` or WASK_CACHE_DIR at an empty or new directory (a cache an older wask made without the tag can be removed; wask makes a new one)"
    )]
    Foreign { dir: String, names: String },
    #[error("cannot use {dir} as the cache directory: {source}")]
    Io { dir: String, source: io::Error },
}

/// Whether `dir` carries wask's tag.
pub fn is_tagged(dir: &Dir) -> bool {
    read_at_most(dir, TAG, 4096)
        .map(|b| {
            let text = String::from_utf8_lossy(&b);
            text.starts_with(SIGNATURE) && text.contains("wask cache")
        })
        .unwrap_or(false)
}

/// Opens the cache directory at `path` for writing: made and tagged if missing or
/// empty, refused otherwise.
pub fn open_for_writing(path: &Path) -> Result<Dir, MarkerError> {
    let io_err = |source| MarkerError::Io {
        dir: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(io_err)?;
    let dir = open_ambient(path).map_err(io_err)?;
    // Another wask making the same new cache writes its tag first, under a temporary
    // name: give it a moment to land before calling the directory someone else's.
    for _ in 0..ADOPTION_CHECKS {
        if is_tagged(&dir) {
            return Ok(dir);
        }
        let mut names = names_in(&dir);
        if names.is_empty() {
            write_atomic(&dir, TAG, CONTENT.as_bytes()).map_err(io_err)?;
            return Ok(dir);
        }
        if names.iter().all(|n| n.starts_with(".tmp-")) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        // Name what is least like wask's first: a user's file under a wask-shaped name.
        let foreign = super::layout::foreign_names(&dir);
        if !foreign.is_empty() {
            names = foreign;
        }
        names.sort();
        let shown = names.len().min(5);
        let mut listed = names[..shown].join(", ");
        if names.len() > shown {
            listed.push_str(&format!(" and {} more", names.len() - shown));
        }
        return Err(MarkerError::Foreign {
            dir: path.display().to_string(),
            names: listed,
        });
    }
    Err(MarkerError::Foreign {
        dir: path.display().to_string(),
        names: "only temporary files, which no wask finished writing".into(),
    })
}

/// How many times [`open_for_writing`] looks for another wask's tag to land.
const ADOPTION_CHECKS: usize = 50;

/// The names at the top of `dir`.
fn names_in(dir: &Dir) -> Vec<String> {
    dir.entries()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Opens the cache directory at `path` for housekeeping: `None` if it does not exist,
/// an error if it is not tagged (nothing may be removed there).
pub fn open_tagged(path: &Path) -> Result<Option<Dir>, MarkerError> {
    let dir = match open_ambient(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MarkerError::Io {
                dir: path.display().to_string(),
                source,
            });
        }
    };
    if is_tagged(&dir) {
        return Ok(Some(dir));
    }
    let names = names_in(&dir);
    if names.is_empty() {
        return Ok(None);
    }
    Err(MarkerError::Foreign {
        dir: path.display().to_string(),
        names: format!(
            "{} names (and no wask tag); nothing was removed",
            names.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_or_empty_directories_become_caches() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("new");
        assert!(is_tagged(&open_for_writing(&fresh).unwrap()));
        let empty = root.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(is_tagged(&open_for_writing(&empty).unwrap()));
        // Names of wask's shape are no proof: these could be anyone's files.
        let shaped = root.path().join("shaped");
        let entry = shaped.join("ab").join(format!("ab{}", "0".repeat(62)));
        std::fs::create_dir_all(&entry).unwrap();
        std::fs::write(entry.join("notes.txt"), b"mine").unwrap();
        let err = open_for_writing(&shaped).unwrap_err().to_string();
        assert!(err.contains("holds ab"), "{err}");
        assert!(!shaped.join(TAG).exists());
        let home = root.path().join("home");
        std::fs::create_dir_all(home.join(".config")).unwrap();
        std::fs::write(home.join("notes.txt"), b"mine").unwrap();
        let err = open_for_writing(&home).unwrap_err().to_string();
        assert!(err.contains(".config, notes.txt"), "{err}");
        assert!(!home.join(TAG).exists());
        assert!(open_tagged(&home).is_err());
        assert!(open_tagged(&root.path().join("missing")).unwrap().is_none());
    }
}
