//! A task that is not written in Rust: `examples/c-guest/wordcount.c`, plain C99 compiled
//! by Zig's clang against wasi-libc. wask treats any WASI preview 1 command module as a
//! task: the same sandbox, cache and access record apply to it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{Ws, task};

/// `examples/c-guest/target/wordcount.wasm`, built once per test binary by the project's
/// own script (`scripts/build-guests.sh c-guest`: installs the pinned zig from PyPI if it
/// is missing; zig's cache makes a rebuild of an unchanged source a no-op).
fn wordcount_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let out = Command::new("bash")
            .arg(repo.join("scripts/build-guests.sh"))
            .arg("c-guest")
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "building examples/c-guest failed (it needs python3 with pip, or zig from \
             `python3 -m pip install ziglang`):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        repo.join("examples/c-guest/target/wordcount.wasm")
    })
}

/// Project `docs` with a `count` task running wordcount with `args`.
fn ws_counting(args: &str) -> Ws {
    let ws = Ws::new();
    std::fs::create_dir_all(ws.path("tools")).unwrap();
    std::fs::copy(wordcount_wasm(), ws.path("tools/wordcount.wasm")).unwrap();
    ws.write("wask.toml", "[workspace]\nprojects = [\"docs\"]\n");
    ws.write("docs/pages/a.txt", "hello world\nsecond line here\n");
    ws.write("docs/pages/b.txt", "  one\ttwo  three\n\nno newline at end");
    ws.write("docs/pages/empty.txt", "");
    ws.write("docs/secret.txt", "not declared\n");
    ws.write(
        "docs/wask.toml",
        format!(
            r#"[project]
name = "docs"

[tasks.count]
module = "/tools/wordcount.wasm"
args = {args}
inputs = ["pages/*.txt"]
outputs = ["dist/counts.txt"]
"#
        ),
    );
    ws
}

/// Relative paths are the project's, absolute ones the workspace's (`/docs/...`).
const ARGS: &str = r#"["dist/counts.txt", "pages/a.txt", "/docs/pages/b.txt", "pages/empty.txt"]"#;

/// What `wc` prints for the same files, with a header and the paths as given.
const REPORT: &str = concat!(
    "   lines    words    bytes file\n",
    "       2        5       29 pages/a.txt\n",
    "       2        7       35 /docs/pages/b.txt\n",
    "       0        0        0 pages/empty.txt\n",
    "       4       12       64 total\n",
);

#[test]
fn a_c_task_counts_its_declared_inputs() {
    let ws = ws_counting(ARGS);
    let (run, summary) = ws.run(&["docs:count"]);
    run.expect_code(0);
    let t = task(&summary, "docs:count");
    assert_eq!(t["state"], "succeeded");
    assert_eq!(t["source"], "fresh");
    assert_eq!(t["undeclared_paths"], serde_json::json!([]));
    assert_eq!(
        String::from_utf8(ws.read("docs/dist/counts.txt")).unwrap(),
        REPORT
    );
    let created: Vec<_> = std::fs::read_dir(ws.path("docs/dist"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        created,
        ["counts.txt"],
        "the report is the only file created"
    );
}

/// CACHE-023 for a foreign module: the second run is a hit, restoring the same bytes.
#[test]
fn a_c_task_is_cached_like_any_other() {
    let ws = ws_counting(ARGS);
    let (fresh, s1) = ws.run(&["docs:count"]);
    fresh.expect_code(0);
    let report = ws.read("docs/dist/counts.txt");
    std::fs::remove_dir_all(ws.path("docs/dist")).unwrap();

    let (hit, s2) = ws.run(&["docs:count"]);
    hit.expect_code(0);
    let (t1, t2) = (task(&s1, "docs:count"), task(&s2, "docs:count"));
    assert_eq!(t2["state"], "succeeded");
    assert_eq!(t2["source"], "cache");
    assert_eq!(t1["key"], t2["key"]);
    assert_eq!(ws.read("docs/dist/counts.txt"), report);
    assert_eq!(String::from_utf8(report).unwrap(), REPORT);
}

/// SANDBOX-001 for a foreign module: an undeclared file does not exist inside the
/// sandbox, so wordcount fails with ENOENT, creates nothing, and wask names the path.
#[test]
fn a_c_task_cannot_read_an_undeclared_file() {
    let ws = ws_counting(r#"["dist/counts.txt", "pages/a.txt", "secret.txt"]"#);
    let (run, summary) = ws.run(&["docs:count"]);
    run.expect_code(1);
    let t = task(&summary, "docs:count");
    assert_eq!(t["state"], "failed");
    assert_eq!(
        t["undeclared_paths"],
        serde_json::json!(["/docs/secret.txt"])
    );
    assert!(
        run.stderr()
            .contains("wordcount: /docs/secret.txt: No such file or directory"),
        "{}",
        run.stderr()
    );
    assert!(
        !ws.path("docs/dist").exists(),
        "a failed run creates no output"
    );
    assert!(!run.stdout().contains("not declared"));
}
