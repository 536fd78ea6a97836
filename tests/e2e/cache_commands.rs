//! `wask cache clean` and `wask cache verify` through the binary (CACHE-021): eviction
//! by age and by size (least recently used first), leftover temporary directories,
//! dry runs, and full re-hash verification.
//!
//! An entry's age is its manifest's modification time (set when stored, refreshed by
//! each hit), so tests age entries by setting that time instead of sleeping.

use crate::support::{Ws, task};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A workspace with one independent task per name; task `n` writes `out/n.txt`.
fn tasks_ws(names: &[&str], cache_table: &str) -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    let mut text = format!("[workspace]\n{cache_table}\n[project]\nname = \"p\"\n");
    for n in names {
        text.push_str(&format!(
            "\n[tasks.{n}]\nmodule = \"/tools/probe.wasm\"\n\
             args = [\"print:task {n}\", \"write:/out/{n}.txt:content of {n}\", \"exit-on-error\"]\n\
             outputs = [\"out/{n}.txt\"]\n"
        ));
    }
    ws.write("wask.toml", text);
    ws
}

/// Runs the tasks and returns each one's source (`fresh` or `cache`) and key.
fn run_all(ws: &Ws, names: &[&str]) -> Vec<(String, String)> {
    let refs: Vec<String> = names.iter().map(|n| format!("p:{n}")).collect();
    let args: Vec<&str> = refs.iter().map(String::as_str).collect();
    let (run, summary) = ws.run(&args);
    run.expect_code(0);
    refs.iter()
        .map(|r| {
            let t = task(&summary, r);
            (
                t["source"].as_str().unwrap().to_string(),
                t["key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sources(ws: &Ws, names: &[&str]) -> Vec<String> {
    run_all(ws, names).into_iter().map(|(s, _)| s).collect()
}

fn entry_dir(ws: &Ws, key: &str) -> PathBuf {
    ws.path(&format!(".wask/cache/{}/{key}", &key[..2]))
}

fn set_age(path: &std::path::Path, age: Duration) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// Makes an entry look stored (and last used) `age` ago.
fn age_entry(ws: &Ws, key: &str, age: Duration) {
    set_age(&entry_dir(ws, key).join("manifest.json"), age);
}

fn entry_bytes(ws: &Ws, key: &str) -> u64 {
    walkdir::WalkDir::new(entry_dir(ws, key))
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn keys(ws: &Ws, names: &[&str]) -> Vec<String> {
    let first = run_all(ws, names);
    assert!(first.iter().all(|(s, _)| s == "fresh"), "{first:?}");
    first.into_iter().map(|(_, k)| k).collect()
}

/// Entries older than the maximum age go; younger ones stay. The `[cache] max_age`
/// setting is the default and `--max-age` overrides it.
#[test]
fn clean_evicts_entries_older_than_max_age() {
    let names = ["old", "young"];
    let ws = tasks_ws(&names, "[cache]\nmax_age = \"7days\"\n");
    let k = keys(&ws, &names);
    age_entry(&ws, &k[0], DAY * 10);
    age_entry(&ws, &k[1], DAY * 2);

    let kept = ws.wask(&["cache", "clean", "--max-age", "30days"]);
    kept.expect_code(0);
    assert!(
        kept.stdout()
            .contains("removed 0 entries (0 bytes) and 0 temporary directories; 2 entries"),
        "--max-age overrides the setting: {}",
        kept.stdout()
    );

    let clean = ws.wask(&["cache", "clean"]);
    clean.expect_code(0);
    let out = clean.stdout();
    let old = format!("removed entry {}/{}", &k[0][..2], k[0]);
    assert!(
        out.contains(&old) && out.contains("older than 7days"),
        "{out}"
    );
    assert!(!out.contains(&k[1]), "{out}");
    assert!(out.contains("removed 1 entry ("), "{out}");
    assert!(!entry_dir(&ws, &k[0]).exists());
    assert_eq!(sources(&ws, &names), ["fresh", "cache"]);
}

/// Over the maximum size the least recently used entries go first, until the rest fit.
#[test]
fn clean_evicts_oldest_first_until_under_max_size() {
    let names = ["a", "b", "c"];
    let ws = tasks_ws(&names, "");
    let k = keys(&ws, &names);
    // Ages not in name order: b is the oldest, then c, then a.
    age_entry(&ws, &k[1], DAY * 3);
    age_entry(&ws, &k[2], DAY * 2);
    age_entry(&ws, &k[0], DAY);
    let limit = entry_bytes(&ws, &k[0]) + entry_bytes(&ws, &k[2]);

    let clean = ws.wask(&["cache", "clean", "--max-size", &limit.to_string()]);
    clean.expect_code(0);
    let out = clean.stdout();
    assert!(
        out.contains(&format!("removed entry {}/{}", &k[1][..2], k[1])),
        "{out}"
    );
    assert!(out.contains(&format!("cache over {limit} bytes")), "{out}");
    assert!(
        out.contains(&format!("removed 1 entry ({} bytes)", entry_bytes_of(&out))),
        "{out}"
    );
    assert!(
        out.contains(&format!("2 entries ({limit} bytes) remain")),
        "{out}"
    );
    assert_eq!(sources(&ws, &names), ["cache", "fresh", "cache"]);
}

/// The byte count of the first removed entry line (`removed entry X (N bytes, ...`).
fn entry_bytes_of(out: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("removed entry"))
        .unwrap();
    let after = line.split_once(" (").unwrap().1;
    after.split_once(' ').unwrap().0.parse().unwrap()
}

/// A hit makes an entry young again: least recently used, not least recently stored.
#[test]
fn a_hit_refreshes_an_entrys_age() {
    let names = ["used", "unused"];
    let ws = tasks_ws(&names, "");
    let k = keys(&ws, &names);
    age_entry(&ws, &k[0], DAY * 10);
    age_entry(&ws, &k[1], DAY * 10);
    let (run, summary) = ws.run(&["p:used"]);
    run.expect_code(0);
    assert_eq!(task(&summary, "p:used")["source"], "cache");

    ws.wask(&["cache", "clean", "--max-age", "7days"])
        .expect_code(0);
    assert_eq!(sources(&ws, &names), ["cache", "fresh"]);
}

/// `--dry-run` lists what would go and removes nothing.
#[test]
fn clean_dry_run_removes_nothing() {
    let names = ["a", "b"];
    let ws = tasks_ws(&names, "");
    let k = keys(&ws, &names);
    age_entry(&ws, &k[0], DAY * 10);
    let orphan = ws.path(&format!(".wask/cache/{}/.tmp-interrupted", &k[0][..2]));
    std::fs::create_dir_all(&orphan).unwrap();
    set_age(&orphan, DAY);
    let info_before = ws.wask(&["cache", "info"]).stdout();

    let dry = ws.wask(&[
        "cache",
        "clean",
        "--max-age",
        "7days",
        "--max-size",
        "0",
        "--dry-run",
    ]);
    dry.expect_code(0);
    let out = dry.stdout();
    for key in &k {
        assert!(
            out.contains(&format!("would remove entry {}/{key}", &key[..2])),
            "{out}"
        );
    }
    assert!(
        out.contains("would remove temporary directory") && out.contains(".tmp-interrupted"),
        "{out}"
    );
    assert!(out.contains("would remove 2 entries"), "{out}");
    assert!(out.contains("0 entries (0 bytes) would remain"), "{out}");
    assert!(!out.contains("removed"), "{out}");

    assert_eq!(ws.wask(&["cache", "info"]).stdout(), info_before);
    assert!(orphan.exists());
    assert_eq!(sources(&ws, &names), ["cache", "cache"]);
}

/// A temporary directory left by an interrupted store is removed once nothing in it
/// has changed for an hour; a recent one may belong to a running store and stays.
#[test]
fn clean_removes_orphaned_temporary_dirs() {
    let names = ["a"];
    let ws = tasks_ws(&names, "");
    let k = keys(&ws, &names);
    let shard = ws.path(&format!(".wask/cache/{}", &k[0][..2]));
    let orphan = shard.join(".tmp-interrupted");
    std::fs::create_dir_all(orphan.join("blobs")).unwrap();
    std::fs::write(orphan.join("stdout"), "half").unwrap();
    for p in [orphan.join("stdout"), orphan.join("blobs"), orphan.clone()] {
        set_age(&p, Duration::from_secs(2 * 60 * 60));
    }
    let recent = shard.join(".tmp-running");
    std::fs::create_dir_all(&recent).unwrap();

    let clean = ws.wask(&["cache", "clean"]);
    clean.expect_code(0);
    let out = clean.stdout();
    assert!(
        out.contains(&format!(
            "removed temporary directory {}/.tmp-interrupted (4 bytes",
            &k[0][..2]
        )),
        "{out}"
    );
    assert!(!out.contains(".tmp-running"), "{out}");
    assert!(
        out.contains("removed 0 entries (0 bytes) and 1 temporary directory; 1 entry"),
        "{out}"
    );
    assert!(!orphan.exists());
    assert!(recent.exists());
    assert!(
        crate::cache::info_count(
            &ws.wask(&["cache", "info"]).stdout(),
            "temporary directories"
        ) == 1
    );
    assert_eq!(sources(&ws, &names), ["cache"]);
}

/// `verify` re-hashes every blob: a corrupted entry is reported and removed (exit 1),
/// its task runs fresh next time; intact entries stay hits; a clean cache exits 0.
#[test]
fn verify_removes_corrupt_entries_and_keeps_intact_ones() {
    let names = ["good", "bad"];
    let ws = tasks_ws(&names, "");
    let k = keys(&ws, &names);
    let ok = ws.wask(&["cache", "verify"]);
    ok.expect_code(0);
    assert!(
        ok.stdout()
            .contains("verified 2 entries: 2 intact, 0 corrupt"),
        "{}",
        ok.stdout()
    );

    let blobs = entry_dir(&ws, &k[1]).join("blobs");
    let blob = std::fs::read_dir(&blobs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 0x20; // same size: only a re-hash can tell
    std::fs::write(&blob, bytes).unwrap();

    let verify = ws.wask(&["cache", "verify"]);
    verify.expect_code(1);
    let out = verify.stdout();
    assert!(
        out.contains(&format!(
            "corrupt entry {}/{}: the blob of /out/bad.txt does not match its recorded hash; removed",
            &k[1][..2],
            k[1]
        )),
        "{out}"
    );
    assert!(
        out.contains("verified 2 entries: 1 intact, 1 corrupt (removed)"),
        "{out}"
    );
    assert!(!entry_dir(&ws, &k[1]).exists());
    assert!(
        crate::cache::info_count(
            &ws.wask(&["cache", "info"]).stdout(),
            "temporary directories"
        ) == 0,
        "removal leaves nothing behind"
    );

    let refs = ["p:good", "p:bad"];
    let (run, summary) = ws.run(&refs);
    run.expect_code(0);
    assert_eq!(task(&summary, "p:good")["source"], "cache");
    assert_eq!(task(&summary, "p:bad")["source"], "fresh");
    assert!(
        !run.stderr().contains("is corrupt"),
        "verify removed the entry, so the run sees a plain miss: {}",
        run.stderr()
    );
    ws.wask(&["cache", "verify"]).expect_code(0);
}

/// Bad limits are usage errors (exit 2); an empty or missing cache is fine (exit 0).
#[test]
fn cache_command_exit_codes() {
    let ws = tasks_ws(&["a"], "");
    ws.wask(&["cache", "clean", "--max-age", "soon"])
        .expect_code(2);
    let bad_size = ws.wask(&["cache", "clean", "--max-size", "2 parsecs"]);
    bad_size.expect_code(2);
    assert!(
        bad_size.stderr().contains("--max-size"),
        "{}",
        bad_size.stderr()
    );
    ws.wask(&["cache", "clean", "--max-size", "2GB"])
        .expect_code(0);
    ws.wask(&["cache", "verify"]).expect_code(0);
    let none = ws.wask(&["cache", "clean"]);
    none.expect_code(0);
    assert!(
        none.stderr()
            .contains("only leftover temporary directories"),
        "{}",
        none.stderr()
    );
}
