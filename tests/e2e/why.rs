//! `wask why`: the key part by part, hit or miss, and what changed since the last entry.

use crate::support::Ws;

fn ws() -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    ws.write("src/a.txt", "alpha\n");
    ws.write("src/b.txt", "beta\n");
    ws.write(
        "wask.toml",
        r#"[workspace]
[project]
name = "p"

[tasks.gen]
module = "/tools/probe.wasm"
args = ["copy:/src/a.txt:/out/a.txt"]
inputs = ["src/*.txt"]
outputs = ["out/a.txt"]
env.from_host = ["WASK_WHY_FLAVOUR"]

[tasks.use]
module = "/tools/probe.wasm"
args = ["read:/out/a.txt"]
inputs = ["out/a.txt"]
deps = ["~:gen"]
"#,
    );
    ws
}

#[test]
fn a_task_never_run_is_a_miss_without_history() {
    let ws = ws();
    let why = ws.wask(&["why", "p:gen"]);
    why.expect_code(0);
    let out = why.stdout();
    assert!(out.starts_with("p:gen: miss"), "{out}");
    assert!(
        out.contains("/src/a.txt") && out.contains("/src/b.txt"),
        "{out}"
    );
    assert!(out.contains("WASK_WHY_FLAVOUR: absent"), "{out}");
    assert!(out.contains("no entry in this cache yet"), "{out}");
    let use_ = ws.wask(&["why", "p:use"]).stdout();
    assert!(
        use_.contains("key not known yet") && use_.contains("p:gen"),
        "{use_}"
    );
}

#[test]
fn a_hit_names_its_entry_and_a_miss_names_what_changed() {
    let ws = ws();
    ws.wask(&["run", "p:use"]).expect_code(0);
    let hit = ws.wask(&["why", "p:use", "--json"]);
    hit.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&hit.stdout()).unwrap();
    let t = &json["tasks"][0];
    assert_eq!(t["state"], "hit");
    assert_eq!(t["stored_by"], "p:use");
    assert_eq!(t["predecessors"], serde_json::json!(["p:gen"]));
    let (summary_run, summary) = ws.run(&["p:use"]);
    summary_run.expect_code(0);
    assert_eq!(
        t["key"],
        crate::support::task(&summary, "p:use")["key"],
        "why shows the key the run uses"
    );

    ws.write("src/b.txt", "beta, edited\n");
    ws.write("src/c.txt", "new\n");
    let miss = ws.wask_env(&["why", "p:gen"], &[("WASK_WHY_FLAVOUR", "mint")]);
    let out = miss.stdout();
    assert!(out.starts_with("p:gen: miss"), "{out}");
    assert!(out.contains("- input /src/b.txt changed"), "{out}");
    assert!(out.contains("- input /src/c.txt added"), "{out}");
    assert!(
        out.contains("- environment variable WASK_WHY_FLAVOUR changed"),
        "{out}"
    );
    assert!(!out.contains("/src/a.txt changed"), "{out}");
    assert!(
        !out.contains("mint"),
        "variable values are never printed: {out}"
    );
}

/// SANDBOX-009: the access record of the stored run (inputs opened, undeclared paths
/// attempted) is kept in the entry and shown by `wask why`.
#[test]
fn why_shows_what_the_stored_run_opened_and_attempted() {
    let ws = Ws::new();
    ws.with_probe();
    ws.write("src/a.txt", "alpha\n");
    ws.write("src/b.txt", "beta\n");
    ws.write("secret.txt", "undeclared\n");
    ws.write(
        "wask.toml",
        r#"[workspace]
[project]
name = "p"

[tasks.peek]
module = "/tools/probe.wasm"
args = ["read:/src/a.txt", "read:/secret.txt", "mkdir:/out/x", "mkdir:/out/x"]
inputs = ["src/*.txt"]
outputs = ["out/**"]
"#,
    );
    ws.wask(&["run", "p:peek"]).expect_code(0);
    let out = ws.wask(&["why", "p:peek"]).stdout();
    assert!(out.contains("p:peek: hit"), "{out}");
    let opened = out.lines().find(|l| l.contains("inputs it read:")).unwrap();
    assert!(opened.contains("/src/a.txt"), "{out}");
    assert!(
        !opened.contains("/src/b.txt"),
        "declared but never opened: {out}"
    );
    let attempted = out
        .lines()
        .find(|l| l.contains("undeclared paths"))
        .unwrap();
    assert!(attempted.contains("/secret.txt"), "{out}");
    assert!(
        !attempted.contains("/out/x"),
        "creating an existing directory is not an attempt: {out}"
    );
}

/// `wask why` names the declared inputs the stored run never opened, with the `inputs`
/// entry that brought each in: a file the task only saw in a listing was not read.
#[test]
fn why_names_declared_inputs_the_task_never_read() {
    let ws = crate::hardening::workspace(&crate::hardening::hostile(
        "t",
        &["ls:/in", "copy:/in/a.txt|/out/a.txt"],
        "inputs = [\"in/*.txt\", \"extra/b.txt\"]\noutputs = [\"out/a.txt\"]",
    ));
    ws.write("in/a.txt", "read\n");
    ws.write("in/listed.txt", "only listed\n");
    ws.write("extra/b.txt", "never opened\n");
    ws.run(&["p:t"]).0.expect_code(0);
    let why = ws.wask(&["why", "p:t"]);
    why.expect_code(0);
    let out = why.stdout();
    let line = out
        .lines()
        .find(|l| l.contains("declared, never read"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("in/listed.txt (from `/in/*.txt`)"), "{line}");
    assert!(line.contains("extra/b.txt (from `/extra/b.txt`)"), "{line}");
    assert!(!line.contains("in/a.txt"), "{line}");
    let json: serde_json::Value =
        serde_json::from_str(&ws.wask(&["why", "p:t", "--json"]).stdout()).unwrap();
    let never = &json["tasks"][0]["never_read"];
    assert_eq!(never.as_array().map(Vec::len), Some(2), "{json:#}");
}
