//! The cache through the binary: hits equal fresh runs (CACHE-023), keys move only
//! with what they cover (CACHE-004..009), corruption is a reported miss (CACHE-019),
//! and a partial entry is never visible (CACHE-014, 017).

use crate::support::{Ws, task};
use std::os::unix::fs::PermissionsExt;

fn project(ws: &Ws, tasks: &str) {
    ws.write("wask.toml", "[workspace]\n\n[project]\nname = \"p\"\n");
    let mut text = std::fs::read_to_string(ws.path("wask.toml")).unwrap();
    text.push_str(tasks);
    ws.write("wask.toml", text);
}

const GEN: &str = r#"
[tasks.gen]
module = "/tools/probe.wasm"
args = ["print:line one", "print:line two", "stderr:to stderr", "copy:/src/a.txt:/out/a.txt", "mkdir:/out/deep", "write:/out/deep/b.txt:bee", "exit-on-error"]
inputs = ["src/*.txt"]
outputs = ["out/**"]
env.from_host = ["WASK_TEST_FLAVOUR"]
"#;

fn gen_ws() -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    ws.write("src/a.txt", "alpha\n");
    project(&ws, GEN);
    ws
}

fn key(summary: &serde_json::Value, id: &str) -> String {
    task(summary, id)["key"].as_str().unwrap().to_string()
}

/// CACHE-023: same bytes, modes and streams from a hit as from the fresh run, also
/// after the outputs were deleted.
#[test]
fn a_hit_restores_identical_bytes_modes_and_streams() {
    let ws = gen_ws();
    let (fresh, s1) = ws.run(&["p:gen"]);
    fresh.expect_code(0);
    assert_eq!(task(&s1, "p:gen")["source"], "fresh");
    let files = ["out/a.txt", "out/deep/b.txt"];
    let before: Vec<(Vec<u8>, u32)> = files
        .iter()
        .map(|f| {
            (
                ws.read(f),
                std::fs::metadata(ws.path(f)).unwrap().permissions().mode(),
            )
        })
        .collect();

    std::fs::remove_dir_all(ws.path("out")).unwrap();
    let (hit, s2) = ws.run(&["p:gen"]);
    hit.expect_code(0);
    assert_eq!(task(&s2, "p:gen")["source"], "cache");
    assert_eq!(key(&s1, "p:gen"), key(&s2, "p:gen"));
    let after: Vec<(Vec<u8>, u32)> = files
        .iter()
        .map(|f| {
            (
                ws.read(f),
                std::fs::metadata(ws.path(f)).unwrap().permissions().mode(),
            )
        })
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        fresh.stdout(),
        hit.stdout(),
        "stdout is replayed byte for byte"
    );
    let task_lines = |s: String| {
        s.lines()
            .filter(|l| l.starts_with("[p:gen]"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        task_lines(fresh.stderr()),
        task_lines(hit.stderr()),
        "stderr is replayed"
    );
    assert!(
        hit.stderr().contains("1 completed (1 cached)"),
        "{}",
        hit.stderr()
    );
}

/// Unrelated changes keep the key: another task, a file's mtime, the task's name.
#[test]
fn unrelated_changes_keep_the_key() {
    let ws = gen_ws();
    let (_, s1) = ws.run(&["p:gen"]);
    let k = key(&s1, "p:gen");

    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(ws.path("src/a.txt"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    project(
        &ws,
        &format!("{GEN}\n[tasks.other]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:x\"]\n"),
    );
    let (_, s2) = ws.run(&["p:gen"]);
    assert_eq!(
        key(&s2, "p:gen"),
        k,
        "mtime and another task do not move the key"
    );
    assert_eq!(task(&s2, "p:gen")["source"], "cache");

    project(&ws, &GEN.replace("[tasks.gen]", "[tasks.renamed]"));
    let (_, s3) = ws.run(&["p:renamed"]);
    assert_eq!(
        key(&s3, "p:renamed"),
        k,
        "a task's own name is not in its key (CACHE-009)"
    );
    assert_eq!(task(&s3, "p:renamed")["source"], "cache");
}

/// What the key covers moves it: input content, a new input, args, env value, outputs.
#[test]
fn covered_changes_move_the_key() {
    let ws = gen_ws();
    let (_, s) = ws.run(&["p:gen"]);
    let mut keys = std::collections::HashSet::from([key(&s, "p:gen")]);
    let mut step = |ws: &Ws, env: &[(&str, &str)], what: &str| {
        let summary = ws.root.join("s.json");
        ws.wask_env(
            &["run", "p:gen", "--summary", summary.to_str().unwrap()],
            env,
        );
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        assert!(keys.insert(key(&s, "p:gen")), "{what} must change the key");
    };
    ws.write("src/a.txt", "alpha changed\n");
    step(&ws, &[], "input content");
    ws.write("src/new.txt", "new\n");
    step(&ws, &[], "a new matching input");
    step(
        &ws,
        &[("WASK_TEST_FLAVOUR", "")],
        "an allow-listed variable set empty (vs absent)",
    );
    step(
        &ws,
        &[("WASK_TEST_FLAVOUR", "mint")],
        "an allow-listed variable's value",
    );
    project(&ws, &GEN.replace("print:line two", "print:line 2"));
    step(&ws, &[], "args");
    project(
        &ws,
        &GEN.replace(
            "outputs = [\"out/**\"]",
            "outputs = [\"out/**\", \"extra.txt\"]",
        )
        .replace("\"write:", "\"write:/extra.txt:e\", \"write:"),
    );
    step(&ws, &[], "outputs");
}

/// CACHE-019: a corrupted blob is a miss, reported, and never restored.
#[test]
fn a_corrupt_blob_is_a_reported_miss() {
    let ws = gen_ws();
    ws.run(&["p:gen"]).0.expect_code(0);
    let blobs: Vec<_> = walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().parent().unwrap().ends_with("blobs"))
        .collect();
    assert_eq!(blobs.len(), 2);
    for b in &blobs {
        let mut bytes = std::fs::read(b.path()).unwrap();
        bytes[0] ^= 0x20; // same size: only the hash can tell
        std::fs::write(b.path(), bytes).unwrap();
    }
    std::fs::remove_dir_all(ws.path("out")).unwrap();
    let (run, s) = ws.run(&["p:gen"]);
    run.expect_code(0);
    assert_eq!(
        task(&s, "p:gen")["source"],
        "fresh",
        "a corrupt entry is a miss"
    );
    assert!(
        run.stderr().contains("is corrupt"),
        "the corruption is reported: {}",
        run.stderr()
    );
    assert_eq!(
        ws.read("out/a.txt"),
        b"alpha\n",
        "the fresh run wrote the right bytes"
    );
    let (_, s) = ws.run(&["p:gen"]);
    assert_eq!(
        task(&s, "p:gen")["source"],
        "cache",
        "the fresh run stored a good entry again"
    );
}

/// CACHE-014/017: an entry without its manifest, or a leftover temporary directory, is
/// never a hit.
#[test]
fn a_partial_entry_is_never_visible() {
    let ws = gen_ws();
    let (_, s) = ws.run(&["p:gen"]);
    let k = key(&s, "p:gen");
    let entry = ws.path(&format!(".wask/cache/{}/{}", &k[..2], k));
    std::fs::remove_file(entry.join("manifest.json")).unwrap();
    std::fs::create_dir_all(ws.path(&format!(".wask/cache/{}/.tmp-interrupted", &k[..2]))).unwrap();
    std::fs::remove_dir_all(ws.path("out")).unwrap();
    let (run, s) = ws.run(&["p:gen"]);
    run.expect_code(0);
    assert_eq!(task(&s, "p:gen")["source"], "fresh");
    assert_eq!(ws.read("out/a.txt"), b"alpha\n");
    let info = ws.wask(&["cache", "info"]);
    assert!(
        info_count(&info.stdout(), "temporary directories") == 1,
        "{}",
        info.stdout()
    );
}

/// A truncated blob (wrong size) is a plain miss (CACHE-014).
#[test]
fn a_truncated_blob_is_a_miss() {
    let ws = gen_ws();
    ws.run(&["p:gen"]).0.expect_code(0);
    for e in walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
    {
        if e.file_type().is_file() && e.path().parent().unwrap().ends_with("blobs") {
            std::fs::write(e.path(), b"").unwrap();
        }
    }
    let (_, s) = ws.run(&["p:gen"]);
    assert_eq!(task(&s, "p:gen")["source"], "fresh");
}

#[test]
fn cache_dir_can_be_moved_and_cleared() {
    let ws = gen_ws();
    let elsewhere = tempfile::tempdir().unwrap();
    let run = ws.wask_env(
        &["run", "p:gen"],
        &[("WASK_CACHE_DIR", elsewhere.path().to_str().unwrap())],
    );
    run.expect_code(0);
    assert!(
        !ws.path(".wask/cache").exists()
            || std::fs::read_dir(ws.path(".wask/cache")).unwrap().count() == 0
    );
    assert!(std::fs::read_dir(elsewhere.path()).unwrap().count() > 0);
    ws.run(&["p:gen"]).0.expect_code(0);
    let info = ws.wask(&["cache", "info"]);
    assert_eq!(
        info_count(&info.stdout(), "entries"),
        1,
        "{}",
        info.stdout()
    );
    ws.wask(&["cache", "clear"]).expect_code(0);
    let info = ws.wask(&["cache", "info"]);
    assert_eq!(
        info_count(&info.stdout(), "entries"),
        0,
        "{}",
        info.stdout()
    );
}

/// A manifest edited as JSON, with its checksum recomputed as wask would.
pub fn reseal(mut m: serde_json::Value) -> Vec<u8> {
    m["checksum"] = "".into();
    let manifest: wask::cache::Manifest = serde_json::from_value(m).unwrap();
    wask::cache::manifest::encode(&manifest, wask::workspace::HashKind::Blake3)
}

/// The cache directory is not trusted: an entry whose manifest names an output the task
/// does not declare (through `..`, or onto an input), a setuid mode, or a blob that is a
/// link, never makes wask write or read outside the task's declarations.
#[test]
fn a_hostile_manifest_cannot_redirect_a_restore() {
    fn manifest_path(ws: &Ws) -> std::path::PathBuf {
        walkdir::WalkDir::new(ws.path(".wask/cache"))
            .into_iter()
            .flatten()
            .find(|e| e.file_name() == "manifest.json")
            .unwrap()
            .into_path()
    }
    let tamper = |edit: &dyn Fn(&mut serde_json::Value, &std::path::Path)| {
        let ws = gen_ws();
        ws.run(&["p:gen"]).0.expect_code(0);
        let path = manifest_path(&ws);
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut m, path.parent().unwrap());
        // The checksum only catches accidents: a hostile cache recomputes it, so the
        // checks below the checksum are what this test is about.
        std::fs::write(&path, reseal(m)).unwrap();
        std::fs::remove_dir_all(ws.path("out")).unwrap();
        let (run, s) = ws.run(&["p:gen"]);
        run.expect_code(0);
        (ws, run, s)
    };
    let first_output = |m: &serde_json::Value| m["outputs"][0].clone();

    for path in [
        "/../escape.txt",
        "/out/../src/a.txt",
        "/src/a.txt",
        "/.wask/x",
        "/out//a.txt",
    ] {
        let (ws, run, s) = tamper(&|m, _| {
            let mut extra = first_output(m);
            extra["path"] = path.into();
            m["outputs"].as_array_mut().unwrap().push(extra);
        });
        assert_eq!(task(&s, "p:gen")["source"], "fresh", "{path}: a miss");
        assert!(
            run.stderr()
                .contains(&format!("is corrupt: it lists the output {path:?}, which")),
            "{path}: reported: {}",
            run.stderr()
        );
        assert_eq!(
            ws.read("src/a.txt"),
            b"alpha\n",
            "{path}: the input is untouched"
        );
        assert!(!ws.root.parent().unwrap().join("escape.txt").exists());
    }

    // A mode a fresh run cannot give (WASI has no chmod; every output is 0644): a
    // setuid bit, or an executable file.
    for mode in [0o4755, 0o755, 0o600] {
        let (ws, run, s) = tamper(&|m, _| {
            m["outputs"][0]["mode"] = mode.into();
        });
        assert_eq!(
            task(&s, "p:gen")["source"],
            "fresh",
            "mode {mode:o}: a miss"
        );
        assert!(
            run.stderr().contains(&format!("it records mode {mode:o}")),
            "{}",
            run.stderr()
        );
        let restored = std::fs::metadata(ws.path("out/a.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(restored & 0o7777, 0o644, "mode {mode:o}");
    }

    let outside = tempfile::NamedTempFile::new().unwrap();
    let (_, _, s) = tamper(&|m, entry| {
        let hash = first_output(m)["hash"].as_str().unwrap().to_string();
        let blob = entry.join("blobs").join(&hash);
        std::fs::copy(&blob, outside.path()).unwrap();
        std::fs::remove_file(&blob).unwrap();
        std::os::unix::fs::symlink(outside.path(), &blob).unwrap();
    });
    assert_eq!(
        task(&s, "p:gen")["source"],
        "fresh",
        "a linked blob is never followed"
    );
}

/// A hostile cache may make a shard a link to somewhere else (here, a directory of
/// valuables, holding a copy of the entry too). wask must not take a hit through it,
/// store through it, or let `clean` or `verify` remove anything it leads to.
#[test]
fn a_linked_shard_is_never_followed() {
    let ws = gen_ws();
    let (_, s) = ws.run(&["p:gen"]);
    let k = key(&s, "p:gen");
    let shard = ws.path(&format!(".wask/cache/{}", &k[..2]));
    let victim = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(victim.path().join("keep/me")).unwrap();
    std::fs::write(victim.path().join("keep/me/file"), b"precious").unwrap();
    std::fs::create_dir(victim.path().join(".config")).unwrap();
    std::fs::rename(&shard, victim.path().join("shard-copy")).unwrap();
    std::fs::rename(
        victim.path().join("shard-copy").join(&k),
        victim.path().join(&k),
    )
    .unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86400);
    for e in walkdir::WalkDir::new(victim.path()).into_iter().flatten() {
        std::fs::File::open(e.path())
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    std::os::unix::fs::symlink(victim.path(), &shard).unwrap();
    let listing = |dir: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = walkdir::WalkDir::new(dir)
            .into_iter()
            .flatten()
            .map(|e| {
                let bytes = if e.file_type().is_file() {
                    std::fs::read(e.path()).unwrap()
                } else {
                    vec![]
                };
                (e.path().display().to_string(), bytes)
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(victim.path());

    std::fs::remove_dir_all(ws.path("out")).unwrap();
    let (run, s) = ws.run(&["p:gen"]);
    run.expect_code(0);
    assert_eq!(
        task(&s, "p:gen")["source"],
        "fresh",
        "no hit through a link"
    );
    assert_eq!(ws.read("out/a.txt"), b"alpha\n");
    assert!(
        run.stderr().contains("nothing is stored through it"),
        "{}",
        run.stderr()
    );
    ws.wask(&["cache", "verify"]).expect_code(0);
    ws.wask(&["cache", "clean", "--max-age", "1s"])
        .expect_code(0);
    ws.wask(&["cache", "clean", "--max-size", "0"])
        .expect_code(0);
    assert_eq!(
        listing(victim.path()),
        before,
        "what the link leads to is untouched"
    );
}

/// The count `wask cache info` gives on the line of `kind`.
pub(crate) fn info_count(info: &str, kind: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(kind).filter(|rest| rest.starts_with(' ')))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `{kind}` line in:\n{info}"))
}
