//! Which directory is a wask cache: the one that carries wask's `CACHEDIR.TAG`.
//!
//! `[cache] dir` and `WASK_CACHE_DIR` can name any directory, `$HOME/.cache` or
//! `../victim` included, so nothing wask does to a cache (`cache clear`, `clean`,
//! `verify`, storing) may assume the directory is its own. A cache directory carries a
//! tag file in the format of the Cache Directory Tagging Specification (which backup
//! tools honour), naming wask. wask writes one when it makes the directory, or finds it
//! empty, or holding only what wask makes; any other directory is refused, and
//! housekeeping in a directory without the tag removes nothing.
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
        "{dir} is not a wask cache directory: it has no {TAG} written by wask, and holds {names}\n  hint: point `[cache] dir` or WASK_CACHE_DIR at an empty or new directory"
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

/// Opens the cache directory at `path` for writing: made and tagged if missing, tagged
/// if empty or holding only what wask makes ([`super::layout`]), refused otherwise.
pub fn open_for_writing(path: &Path) -> Result<Dir, MarkerError> {
    let io_err = |source| MarkerError::Io {
        dir: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(io_err)?;
    let dir = open_ambient(path).map_err(io_err)?;
    if is_tagged(&dir) {
        return Ok(dir);
    }
    // Only what wask makes, where it makes it: a `compiled/` holding a report is not a
    // cache to adopt (housekeeping would otherwise be trusted with the report).
    let mut foreign = super::layout::foreign_names(&dir);
    if !foreign.is_empty() {
        foreign.sort();
        let shown = foreign.len().min(5);
        let mut names = foreign[..shown].join(", ");
        if foreign.len() > shown {
            names.push_str(&format!(" and {} more", foreign.len() - shown));
        }
        return Err(MarkerError::Foreign {
            dir: path.display().to_string(),
            names,
        });
    }
    write_atomic(&dir, TAG, CONTENT.as_bytes()).map_err(io_err)?;
    Ok(dir)
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
    let names: Vec<String> = dir
        .entries()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
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
    fn only_empty_or_wask_shaped_directories_become_caches() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("new");
        assert!(is_tagged(&open_for_writing(&fresh).unwrap()));
        let old = root.path().join("old");
        std::fs::create_dir_all(old.join("ab")).unwrap();
        std::fs::create_dir_all(old.join("compiled")).unwrap();
        assert!(
            open_for_writing(&old).is_ok(),
            "a cache of an earlier wask is adopted"
        );
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
