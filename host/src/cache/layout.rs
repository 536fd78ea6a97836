//! The names wask makes in a cache directory, written once. What housekeeping counts
//! and what it removes in a tagged cache ([`super::marker`]) are decided by these: a
//! file is wask's because its name has the shape wask gives it *and* it sits where wask
//! puts it, never because it sits in a directory whose name wask uses. (Which directory
//! is a cache at all is the tag's to say: a name's shape proves nothing about who made
//! it.)
//!
//! ```text
//! <cache>/CACHEDIR.TAG                       the tag (super::marker)
//! <cache>/<2 hex>/<64 hex>/                  an entry: its manifest and blobs
//! <cache>/<2 hex>/.tmp-* .corrupt-* ...      a store or removal in progress
//! <cache>/compiled/<16 hex>/<64 hex>.cwasm   code compiled by one engine configuration
//! <cache>/built/<64 hex>.build|.wasm         modules built from guest crates
//! <cache>/.tmp-*                             a file being written atomically
//! ```

use cap_fs_ext::DirExt;
use cap_std::fs::Dir;

/// The directory of compiled modules.
pub const COMPILED: &str = "compiled";
/// The directory of modules built from guest crates.
pub const BUILT: &str = "built";

/// Prefixes of the temporary names wask gives: atomic writes, and entries on their way
/// in or out of a shard.
const TEMPORARY_PREFIXES: &[&str] = &[".tmp-", ".corrupt-", ".evict-", ".stale-"];

/// `len` lowercase hexadecimal digits, as wask writes them.
pub fn is_hex(name: &str, len: usize) -> bool {
    name.len() == len
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A shard: the directory of entries whose keys start with its name.
pub fn is_shard(name: &str) -> bool {
    is_hex(name, 2)
}

/// An entry's directory name in `shard`: its key.
pub fn is_entry(shard: &str, name: &str) -> bool {
    is_hex(name, 64) && name.starts_with(shard)
}

/// A temporary name wask gives, in a shard or in its other directories.
pub fn is_temporary(name: &str) -> bool {
    TEMPORARY_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The directory of one engine configuration's compiled code, under [`COMPILED`].
pub fn is_engine_dir(name: &str) -> bool {
    is_hex(name, 16)
}

/// A compiled module in an engine directory.
pub fn is_compiled_module(name: &str) -> bool {
    name.strip_suffix(".cwasm").is_some_and(|h| is_hex(h, 64))
}

/// A build record or a built module, under [`BUILT`].
pub fn is_built_file(name: &str) -> bool {
    name.strip_suffix(".build")
        .or_else(|| name.strip_suffix(".wasm"))
        .is_some_and(|h| is_hex(h, 64))
}

/// A built module (not its record), under [`BUILT`].
pub fn is_built_module(name: &str) -> bool {
    name.strip_suffix(".wasm").is_some_and(|h| is_hex(h, 64))
}

/// Whether a top-level name is one wask makes (its contents aside).
pub fn is_top_level(name: &str) -> bool {
    is_shard(name)
        || name == super::marker::TAG
        || name == COMPILED
        || name == BUILT
        || name.starts_with(".tmp-")
}

/// Every name at or under the top level of `cache` that wask would not have made,
/// looking into `compiled`, `built` and the shards as deep as wask writes (an entry's
/// own contents are checked when it is read). Names are relative to `cache`.
pub fn foreign_names(cache: &Dir) -> Vec<String> {
    let mut foreign = Vec::new();
    for name in names(cache) {
        let meta = cache.symlink_metadata(&name);
        let is_dir = meta.as_ref().is_ok_and(|m| m.is_dir());
        let is_file = meta.as_ref().is_ok_and(|m| m.is_file());
        let holds_ours = is_shard(&name) || name == COMPILED || name == BUILT;
        if holds_ours && is_dir {
            match cache.open_dir_nofollow(&name) {
                Ok(dir) => foreign.extend(
                    foreign_inside(&dir, &name)
                        .into_iter()
                        .map(|inner| format!("{name}/{inner}")),
                ),
                Err(_) => foreign.push(name),
            }
        } else if !(is_file && (name == super::marker::TAG || name.starts_with(".tmp-"))) {
            foreign.push(name);
        }
    }
    foreign
}

/// The names in `dir` (the top-level directory `name`) that wask would not have put
/// there.
fn foreign_inside(dir: &Dir, name: &str) -> Vec<String> {
    let mut foreign = Vec::new();
    for inner in names(dir) {
        let meta = dir.symlink_metadata(&inner);
        let is_dir = meta.as_ref().is_ok_and(|m| m.is_dir());
        let is_file = meta.as_ref().is_ok_and(|m| m.is_file());
        if name == COMPILED && is_dir && is_engine_dir(&inner) {
            foreign.extend(
                engine_dir_foreign(dir, &inner)
                    .into_iter()
                    .map(|n| format!("{inner}/{n}")),
            );
            continue;
        }
        let ours = if name == COMPILED {
            is_file && is_temporary(&inner)
        } else if name == BUILT {
            is_file && (is_built_file(&inner) || is_temporary(&inner))
        } else {
            is_dir && (is_entry(name, &inner) || is_temporary(&inner))
        };
        if !ours {
            foreign.push(inner);
        }
    }
    foreign
}

/// The names in the engine directory `engine` of `compiled` that wask did not make.
pub fn engine_dir_foreign(compiled: &Dir, engine: &str) -> Vec<String> {
    let Ok(dir) = compiled.open_dir_nofollow(engine) else {
        return vec![engine.to_string()];
    };
    names(&dir)
        .into_iter()
        .filter(|n| {
            let file = dir.symlink_metadata(n).is_ok_and(|m| m.is_file());
            !(file && (is_compiled_module(n) || is_temporary(n)))
        })
        .collect()
}

/// The names in `dir`, sorted. One that is not UTF-8 is shown lossily: wask makes none,
/// so it never has the shape of wask's names and is only ever reported, never removed.
pub fn names(dir: &Dir) -> Vec<String> {
    let mut names: Vec<String> = dir
        .entries()
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
