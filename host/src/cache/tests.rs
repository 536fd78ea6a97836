use super::*;
use crate::key::hash_bytes;
use std::fs;
use std::time::{Duration, SystemTime};

impl LocalCache {
    /// Where the entry of `key` lies (tests only: the cache itself never forms paths).
    fn entry_dir(&self, key: &Digest) -> PathBuf {
        let hex = key.hex();
        self.dir().join(&hex[..2]).join(hex)
    }
}

fn cache_with(keys: &[(u8, &[u8])]) -> (tempfile::TempDir, LocalCache, Vec<Digest>) {
    let dir = tempfile::tempdir().unwrap();
    let cache = LocalCache::new(dir.path().join("cache"), HashKind::Blake3);
    let mut digests = Vec::new();
    for (n, content) in keys {
        let key = Digest([*n; 32]);
        let file = dir.path().join(format!("out{n}"));
        fs::write(&file, content).unwrap();
        let out = ProducedOutput {
            path: format!("/out{n}"),
            contents: Contents::File(file),
            hash: hash_bytes(HashKind::Blake3, content),
            size: content.len() as u64,
            mode: 0o644,
        };
        cache
            .store(
                &key,
                &NewEntry {
                    outputs: &[out],
                    stdout: b"so",
                    stderr: b"se",
                    stored_by: "p:t",
                    access: AccessRecord::default(),
                    memory: 0,
                    write_order: &[],
                    durable: true,
                },
            )
            .unwrap();
        digests.push(key);
    }
    (dir, cache, digests)
}

fn set_age(path: &Path, age: Duration) {
    fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

fn policy(max_age: Option<Duration>, max_size: Option<u64>) -> CleanPolicy {
    CleanPolicy {
        max_age,
        max_size,
        orphan_age: ORPHAN_AGE,
        now: SystemTime::now(),
    }
}

#[test]
fn clean_removes_old_then_oldest_until_it_fits() {
    let (_d, cache, keys) = cache_with(&[(1, b"aaaa"), (2, b"bbbb"), (3, b"cccc")]);
    let day = Duration::from_secs(86400);
    for (key, days) in keys.iter().zip([10, 3, 2]) {
        let entry = cache.entry_dir(key);
        set_age(&entry.join("manifest.json"), day * days);
    }
    let per_entry = cache.scan().entries[0].bytes;
    let dry = cache
        .clean(&policy(Some(day * 5), Some(per_entry)), true)
        .unwrap();
    assert_eq!(dry.removed.len(), 2);
    assert_eq!(cache.info().entries, 3, "a dry run removes nothing");
    let report = cache
        .clean(&policy(Some(day * 5), Some(per_entry)), false)
        .unwrap();
    let got: Vec<(String, Reason)> = report
        .removed
        .iter()
        .map(|r| (r.name.clone(), r.reason))
        .collect();
    let name = |k: &Digest| format!("{}/{}", &k.hex()[..2], k.hex());
    assert_eq!(
        got,
        vec![
            (name(&keys[0]), Reason::Age),
            (name(&keys[1]), Reason::Size)
        ]
    );
    assert_eq!((report.kept_entries, report.kept_bytes), (1, per_entry));
    assert!(cache.lookup(&keys[2]).unwrap().is_some());
    assert!(cache.lookup(&keys[1]).unwrap().is_none());
    assert!(report.errors.is_empty());
}

#[test]
fn clean_removes_only_stale_temporary_dirs() {
    let (_d, cache, keys) = cache_with(&[(7, b"x")]);
    let shard = cache.entry_dir(&keys[0]).parent().unwrap().to_path_buf();
    let stale = shard.join(".tmp-stale");
    let fresh = shard.join(".tmp-fresh");
    fs::create_dir_all(stale.join("blobs")).unwrap();
    fs::create_dir_all(&fresh).unwrap();
    set_age(&stale.join("blobs"), Duration::from_secs(7200));
    set_age(&stale, Duration::from_secs(7200));
    let report = cache.clean(&policy(None, None), false).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.removed[0].reason, Reason::Orphan);
    assert!(!stale.exists() && fresh.exists());
    assert_eq!(cache.info().entries, 1);
}

#[test]
fn verify_removes_corrupt_entries_and_keeps_intact_ones() {
    let (_d, cache, keys) = cache_with(&[(1, b"good"), (2, b"bad!"), (3, b"xx")]);
    let blob = |k: &Digest, c: &[u8]| {
        cache
            .entry_dir(k)
            .join("blobs")
            .join(hash_bytes(HashKind::Blake3, c).hex())
    };
    fs::write(blob(&keys[1], b"bad!"), b"BAD!").unwrap();
    fs::remove_file(cache.entry_dir(&keys[2]).join("manifest.json")).unwrap();
    let report = cache.verify().unwrap();
    assert_eq!(report.intact, 1);
    assert_eq!(report.corrupt.len(), 2, "{:?}", report.corrupt);
    assert!(report.corrupt[0].1.contains("does not match"));
    assert!(report.errors.is_empty());
    assert!(cache.lookup(&keys[0]).unwrap().is_some());
    assert!(!cache.entry_dir(&keys[1]).exists());
    assert!(!cache.entry_dir(&keys[2]).exists());
    assert_eq!(cache.info().temporary, 0, "nothing left behind");
}

/// `clear`, `clean` and `verify` remove only what wask made, inside a directory that
/// carries wask's tag: a directory of someone else's is left whole, and foreign names
/// inside a cache are left and named.
#[test]
fn housekeeping_removes_only_what_wask_made() {
    let (_d, cache, keys) = cache_with(&[(1, b"aaaa")]);
    fs::write(cache.dir().join("notes.txt"), b"mine").unwrap();
    let shard = cache.entry_dir(&keys[0]).parent().unwrap().to_path_buf();
    fs::write(shard.join("readme"), b"mine too").unwrap();
    let engine = cache.dir().join("compiled/0123456789abcdef");
    fs::create_dir_all(&engine).unwrap();
    fs::write(engine.join(format!("{}.cwasm", "ab".repeat(32))), b"code").unwrap();
    // Under wask's names, but not of wask's shape: kept and named.
    fs::write(engine.join("x.cwasm"), b"mine").unwrap();
    fs::create_dir_all(cache.dir().join("compiled/abc")).unwrap();
    fs::create_dir_all(cache.dir().join("built/src")).unwrap();
    fs::write(cache.dir().join("built/src/main.c"), b"mine").unwrap();
    let report = cache.clear().unwrap();
    assert_eq!((report.entries, report.compiled_modules), (1, 1));
    let mut left = report.left.clone();
    left.sort();
    assert_eq!(
        left,
        [
            "01/readme",
            "built/src",
            "compiled/0123456789abcdef/x.cwasm",
            "compiled/abc",
            "notes.txt"
        ]
    );
    assert!(cache.dir().join("notes.txt").exists() && shard.join("readme").exists());
    assert!(engine.join("x.cwasm").exists() && cache.dir().join("built/src/main.c").exists());
    assert!(!engine.join(format!("{}.cwasm", "ab".repeat(32))).exists());
    fs::remove_dir_all(cache.dir().join("compiled")).unwrap();
    fs::remove_dir_all(cache.dir().join("built")).unwrap();
    // With nothing foreign left, `clear` leaves no directory of its own behind.
    fs::create_dir_all(&engine).unwrap();
    fs::write(engine.join(format!("{}.cwasm", "cd".repeat(32))), b"code").unwrap();
    assert_eq!(cache.clear().unwrap().compiled_modules, 1);
    assert!(!cache.dir().join("compiled").exists());
    assert!(cache.dir().join(marker::TAG).exists(), "the tag stays");

    let home = tempfile::tempdir().unwrap();
    fs::create_dir_all(home.path().join(".config/app")).unwrap();
    fs::write(home.path().join(".config/app/settings"), b"keep").unwrap();
    fs::create_dir_all(home.path().join("ab").join("ab".repeat(32))).unwrap();
    let foreign = LocalCache::new(home.path().to_path_buf(), HashKind::Blake3);
    for refused in [
        foreign.clear().map(|_| ()),
        foreign.verify().map(|_| ()),
        foreign
            .clean(&policy(Some(Duration::ZERO), Some(0)), false)
            .map(|_| ()),
    ] {
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("is not a wask cache directory")
        );
    }
    assert!(home.path().join(".config/app/settings").exists());
    assert!(home.path().join("ab").join("ab".repeat(32)).exists());
    let stored = foreign.store(
        &Digest([9; 32]),
        &NewEntry {
            outputs: &[],
            stdout: b"",
            stderr: b"",
            stored_by: "p:t",
            access: AccessRecord::default(),
            memory: 0,
            write_order: &[],
            durable: true,
        },
    );
    assert!(
        stored
            .unwrap_err()
            .to_string()
            .contains("is not a wask cache directory")
    );
}
