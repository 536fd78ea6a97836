//! `wask audit` (AUDIT-001, AUDIT-003): fresh runs compared with each other and with
//! the cache entry, through the binary.

use crate::cache::reseal;
use crate::hardening::{entries, hostile, workspace};
use crate::support::Ws;

const TASKS: &str = "[tasks.gen]\nmodule = \"/tools/hostile.wasm\"\nargs = [\"write:/out/a.txt\"]\noutputs = [\"out/a.txt\"]\n\n\
[tasks.use]\nmodule = \"/tools/hostile.wasm\"\nargs = [\"copy:/out/a.txt|/res/b.txt\"]\ninputs = [\"out/a.txt\"]\noutputs = [\"res/b.txt\"]\n\n";

/// The report of `wask audit ARGS --json`, and the exit code.
fn audit(ws: &Ws, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let run = ws.wask(&all);
    let report = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout(), run.stderr()));
    (run.code(), report)
}

/// A deterministic task is reproducible over two and five runs, and auditing it stores
/// nothing and writes none of its outputs; its predecessor runs first, as `wask run`
/// would run it, so the audited task reads the predecessor's output.
#[test]
fn a_deterministic_task_is_reproducible_and_auditing_it_changes_nothing() {
    let ws = workspace(TASKS);
    for runs in ["2", "5"] {
        let (code, report) = audit(&ws, &["p:use", "--runs", runs]);
        assert_eq!(code, 0, "{report:#}");
        assert_eq!(report[0]["task"], "p:use");
        assert_eq!(report[0]["verdict"], "reproducible");
        assert_eq!(report[0]["runs"].as_u64().unwrap().to_string(), runs);
    }
    assert!(ws.path("out/a.txt").is_file(), "the predecessor ran");
    assert!(!ws.path("res/b.txt").exists(), "the audit wrote an output");
    assert_eq!(entries(&ws), 1, "only the predecessor's run is stored");
    // With its entry in the cache, the runs are compared with it too.
    ws.run(&["p:use"]).0.expect_code(0);
    let (code, report) = audit(&ws, &["p:use"]);
    assert_eq!(code, 0);
    assert_eq!(report[0]["compared_with_cache"], true);
}

/// A task that writes the host's time differs between runs; the report names the file,
/// the first differing byte and the lines, and says the fixed clock is the cure.
#[test]
fn a_task_on_the_host_clock_differs_and_the_report_says_where() {
    let ws = workspace(&hostile(
        "clock",
        &["time-to:/t/now.txt"],
        "outputs = [\"t/now.txt\"]\nclock = \"host\"",
    ));
    let (code, report) = audit(&ws, &["p:clock"]);
    assert_eq!(code, 1);
    let t = &report[0];
    assert_eq!(t["verdict"], "differs");
    let d = &t["differences"][0];
    assert_eq!(d["file"], "/t/now.txt");
    // "stable first line\nnow " is 22 bytes: the time starts there.
    assert!(d["first_differing_byte"].as_u64().unwrap() >= 22, "{d:#}");
    assert!(d["diff"].as_str().unwrap().contains("-now "), "{d:#}");
    assert!(t["hint"].as_str().unwrap().contains("fixed clock"));
    let text = ws.wask(&["audit", "p:clock"]);
    assert_eq!(text.code(), 1);
    assert!(
        text.stdout().contains("first difference at byte"),
        "{}",
        text.stdout()
    );
}

/// A cache entry whose output was replaced by other valid bytes (its manifest made to
/// match) is a suspect entry: two agreeing fresh runs give other bytes.
#[test]
fn an_entry_no_run_reproduces_is_a_suspect_entry() {
    let ws = workspace(TASKS);
    ws.run(&["p:gen"]).0.expect_code(0);
    let path = walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "manifest.json")
        .unwrap()
        .into_path();
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let forged = b"forged but well formed\n";
    let hash = blake3::hash(forged).to_hex().to_string();
    std::fs::write(path.parent().unwrap().join("blobs").join(&hash), forged).unwrap();
    m["outputs"][0]["hash"] = hash.into();
    m["outputs"][0]["size"] = forged.len().into();
    std::fs::write(&path, reseal(m)).unwrap();
    let (code, report) = audit(&ws, &["p:gen"]);
    assert_eq!(code, 1);
    assert_eq!(report[0]["verdict"], "suspect_entry");
    assert_eq!(report[0]["differences"][0]["file"], "/out/a.txt");
    assert_eq!(
        report[0]["differences"][0]["versions"][1]["from"],
        "cache entry"
    );
}

/// `--workspace` audits every task; bad usage is exit 2.
#[test]
fn the_whole_workspace_is_audited_and_bad_usage_is_refused() {
    let ws = workspace(TASKS);
    let (code, report) = audit(&ws, &["--workspace"]);
    assert_eq!(code, 0, "{report:#}");
    let tasks: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["p:gen", "p:use"]);
    assert_eq!(ws.wask(&["audit"]).code(), 2);
    assert_eq!(ws.wask(&["audit", "p:gen", "--runs", "0"]).code(), 2);
    assert_eq!(ws.wask(&["audit", "p:nothing"]).code(), 2);
}
