//! Running tasks through the binary: the sandbox as seen from a workspace, the
//! lifecycle, skipping, and exit codes (SANDBOX-001..004, EXEC-007..021).

use crate::support::{Ws, task};

/// Two projects: `app:gen` copies an input to an output; `app:use` depends on it.
fn chain() -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    ws.write("wask.toml", "[workspace]\nprojects = [\"app\", \"lib\"]\n");
    ws.write("lib/src/data.txt", "library data\n");
    ws.write("lib/src/secret.txt", "not declared\n");
    ws.write(
        "lib/wask.toml",
        r#"[project]
name = "lib"

[tasks.gen]
module = "/tools/probe.wasm"
args = ["print:generating", "copy:/lib/src/data.txt:/lib/out/data.txt", "stderr:a warning"]
inputs = ["src/data.txt"]
outputs = ["out/*.txt"]
"#,
    );
    ws.write(
        "app/wask.toml",
        r#"[project]
name = "app"

[tasks.use]
module = "/tools/probe.wasm"
args = ["copy:/lib/out/data.txt:/app/final.txt"]
inputs = ["/lib/out/data.txt"]
outputs = ["final.txt"]
deps = ["lib:gen"]
"#,
    );
    ws
}

#[test]
fn a_chain_runs_in_dependency_order_and_exits_0() {
    let ws = chain();
    let (run, summary) = ws.run(&["app:use"]);
    run.expect_code(0);
    assert_eq!(ws.read("app/final.txt"), b"library data\n");
    for id in ["lib:gen", "app:use"] {
        let t = task(&summary, id);
        assert_eq!(t["state"], "succeeded");
        assert_eq!(t["source"], "fresh");
        assert_eq!(t["key"].as_str().unwrap().len(), 64);
    }
    assert!(
        task(&summary, "lib:gen")["finished_at"].as_str()
            <= task(&summary, "app:use")["started_at"].as_str(),
        "the dependency finished before its successor started"
    );
    assert!(
        run.stdout().contains("[lib:gen] generating"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stderr().contains("[lib:gen] a warning"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr()
            .contains("Tasks: 2 completed (0 cached), 0 failed, 0 skipped"),
        "{}",
        run.stderr()
    );
}

/// SANDBOX-001: an undeclared file does not exist for the task, and the report names it.
#[test]
fn an_undeclared_read_fails_and_is_named() {
    let ws = chain();
    ws.write(
        "app/wask.toml",
        r#"[project]
name = "app"

[tasks.peek]
module = "/tools/probe.wasm"
args = ["read:/lib/src/secret.txt", "exit-on-error"]
"#,
    );
    let (run, summary) = ws.run(&["app:peek"]);
    run.expect_code(1);
    let t = task(&summary, "app:peek");
    assert_eq!(t["state"], "failed");
    assert_eq!(
        t["undeclared_paths"],
        serde_json::json!(["/lib/src/secret.txt"])
    );
    assert!(
        run.stderr().contains("/lib/src/secret.txt"),
        "{}",
        run.stderr()
    );
    assert!(
        !run.stdout().contains("not declared"),
        "the secret's content never reaches the task"
    );
}

/// SANDBOX-002: writes outside the declared outputs fail and reach nothing.
#[test]
fn writes_outside_outputs_fail() {
    let ws = chain();
    ws.write(
        "app/wask.toml",
        r#"[project]
name = "app"

[tasks.outside]
module = "/tools/probe.wasm"
args = ["write:/lib/src/planted.txt:x", "exit-on-error"]

[tasks.sideways]
module = "/tools/probe.wasm"
args = ["write:/app/dist/ok.txt:x", "write:/app/dist/other.log:x"]
outputs = ["dist/*.txt"]
"#,
    );
    let (run, summary) = ws.run(&["app:outside", "app:sideways"]);
    run.expect_code(1);
    assert_eq!(task(&summary, "app:outside")["state"], "failed");
    assert!(!ws.path("lib/src/planted.txt").exists());
    let t = task(&summary, "app:sideways");
    assert_eq!(t["state"], "failed");
    assert!(
        t["error"].as_str().unwrap().contains("/app/dist/other.log"),
        "{t}"
    );
    assert!(!ws.path("app/dist/other.log").exists());
    assert!(
        !ws.path("app/dist/ok.txt").exists(),
        "a failed task places no outputs"
    );
}

/// SANDBOX-002: inputs and every workspace file are byte-identical after a task that
/// tries to modify, delete or rename them.
#[test]
fn inputs_survive_attempts_to_change_them() {
    let ws = chain();
    ws.write("app/in/a.txt", "original a\n");
    ws.write("app/out/b.txt", "original b\n");
    ws.write(
        "app/wask.toml",
        r#"[project]
name = "app"

[tasks.vandal]
module = "/tools/probe.wasm"
args = [
  "write:/app/in/a.txt:changed", "append:/app/in/a.txt:more", "truncate:/app/in/a.txt",
  "remove:/app/in/a.txt", "rename:/app/in/a.txt:/app/in/c.txt", "settimes:/app/in/a.txt",
  "write:/app/out/b.txt:changed", "remove:/app/out/b.txt",
]
inputs = ["in/a.txt", "out/b.txt"]
outputs = ["out/result.txt"]
"#,
    );
    let mtime = |p: &str| std::fs::metadata(ws.path(p)).unwrap().modified().unwrap();
    let (a_time, b_time) = (mtime("app/in/a.txt"), mtime("app/out/b.txt"));
    let (run, summary) = ws.run(&["app:vandal"]);
    run.expect_code(1);
    assert_eq!(task(&summary, "app:vandal")["state"], "failed");
    assert_eq!(ws.read("app/in/a.txt"), b"original a\n");
    assert_eq!(ws.read("app/out/b.txt"), b"original b\n");
    assert_eq!(mtime("app/in/a.txt"), a_time);
    assert_eq!(mtime("app/out/b.txt"), b_time);
    assert!(!ws.path("app/in/c.txt").exists());
}

/// SANDBOX-003: only allow-listed variables reach the task; `env.set` wins.
#[test]
fn the_environment_is_exactly_the_declared_view() {
    let ws = chain();
    ws.write(
        "app/wask.toml",
        r#"[project]
name = "app"

[tasks.env]
module = "/tools/probe.wasm"
args = ["envall"]
env.from_host = ["WASK_TEST_VISIBLE", "WASK_TEST_OVERRIDDEN", "WASK_TEST_UNSET"]
env.set = { WASK_TEST_OVERRIDDEN = "from-set", FIXED = "1" }
"#,
    );
    let run = ws.wask_env(
        &["run", "app:env"],
        &[
            ("WASK_TEST_VISIBLE", "yes"),
            ("WASK_TEST_OVERRIDDEN", "from-host"),
            ("WASK_TEST_SECRET", "leaked"),
        ],
    );
    run.expect_code(0);
    let out = run.stdout();
    assert!(out.contains("WASK_TEST_VISIBLE=yes"), "{out}");
    assert!(out.contains("WASK_TEST_OVERRIDDEN=from-set"), "{out}");
    assert!(out.contains("FIXED=1"), "{out}");
    assert!(
        !out.contains("leaked") && !out.contains("WASK_TEST_SECRET"),
        "{out}"
    );
    assert!(!out.contains("WASK_TEST_UNSET"), "{out}");
    assert!(!out.contains("PATH="), "{out}");
}

/// EXEC-009/010/021: a non-zero exit and a trap are failures, their dependents are
/// skipped naming the cause, independent tasks still run, and the exit code is 1.
#[test]
fn failures_skip_dependents_and_exit_1() {
    let ws = chain();
    ws.write(
        "app/wask.toml",
        r#"[project]
name = "app"

[tasks.exits]
module = "/tools/probe.wasm"
args = ["exit:3"]

[tasks.traps]
module = "/tools/probe.wasm"
args = ["trap"]

[tasks.after-exit]
module = "/tools/probe.wasm"
deps = ["~:exits"]

[tasks.after-after]
module = "/tools/probe.wasm"
deps = ["~:after-exit"]

[tasks.after-trap]
module = "/tools/probe.wasm"
deps = ["~:traps"]

[tasks.independent]
module = "/tools/probe.wasm"
args = ["print:fine"]
"#,
    );
    let (run, summary) = ws.run(&["app:after-after", "app:after-trap", "app:independent"]);
    run.expect_code(1);
    assert_eq!(task(&summary, "app:exits")["state"], "failed");
    assert!(
        task(&summary, "app:exits")["error"]
            .as_str()
            .unwrap()
            .contains("exited with code 3")
    );
    assert_eq!(task(&summary, "app:traps")["state"], "failed");
    assert!(
        task(&summary, "app:traps")["error"]
            .as_str()
            .unwrap()
            .contains("trap")
    );
    for (id, cause) in [
        ("app:after-exit", "app:exits"),
        ("app:after-after", "app:exits"),
        ("app:after-trap", "app:traps"),
    ] {
        assert_eq!(task(&summary, id)["state"], "skipped", "{id}");
        assert_eq!(task(&summary, id)["skipped_because"], cause, "{id}");
    }
    assert_eq!(task(&summary, "app:independent")["state"], "succeeded");
    assert!(
        run.stderr()
            .contains("1 completed (0 cached), 2 failed, 3 skipped"),
        "{}",
        run.stderr()
    );
}

#[test]
fn usage_errors_exit_2() {
    let ws = chain();
    ws.wask(&["run"]).expect_code(2);
    let r = ws.wask(&["run", "nosuch:task"]);
    r.expect_code(2);
    assert!(
        r.stderr().contains("no task matches `nosuch:task`"),
        "{}",
        r.stderr()
    );
    ws.wask(&["run", "--jobs", "0", "--workspace"])
        .expect_code(2);
}

#[test]
fn a_missing_literal_input_names_the_task_and_path() {
    let ws = chain();
    ws.write(
        "app/wask.toml",
        "[project]\nname = \"app\"\n[tasks.t]\nmodule = \"/tools/probe.wasm\"\ninputs = [\"nothere.txt\"]\n",
    );
    let (run, summary) = ws.run(&["app:t"]);
    run.expect_code(1);
    assert!(
        task(&summary, "app:t")["error"]
            .as_str()
            .unwrap()
            .contains("input /app/nothere.txt does not exist")
    );
}

/// Symlinks among inputs never let a task read outside its declarations.
#[test]
fn input_symlinks_must_lead_to_declared_inputs() {
    let ws = chain();
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), "outside the workspace").unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path("app/out-link.txt")).unwrap();
    std::os::unix::fs::symlink(
        ws.path("lib/src/secret.txt"),
        ws.path("app/undeclared-link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(ws.path("lib/src/data.txt"), ws.path("app/ok-link.txt")).unwrap();
    ws.write(
        "app/wask.toml",
        r#"[project]
name = "app"

[tasks.out]
module = "/tools/probe.wasm"
inputs = ["out-link.txt"]

[tasks.undeclared]
module = "/tools/probe.wasm"
inputs = ["undeclared-link.txt"]

[tasks.ok]
module = "/tools/probe.wasm"
args = ["read:/app/ok-link.txt"]
inputs = ["ok-link.txt", "/lib/src/data.txt"]
"#,
    );
    let (run, summary) = ws.run(&["app:out", "app:undeclared", "app:ok"]);
    run.expect_code(1);
    assert!(
        task(&summary, "app:out")["error"]
            .as_str()
            .unwrap()
            .contains("leads outside the workspace")
    );
    assert!(
        task(&summary, "app:undeclared")["error"]
            .as_str()
            .unwrap()
            .contains("not a declared input")
    );
    assert_eq!(task(&summary, "app:ok")["state"], "succeeded");
    assert!(
        run.stdout().contains("library data") || run.stdout().contains("ok read /app/ok-link.txt"),
        "{}",
        run.stdout()
    );
}

/// EXEC-030: `--dry-run` prints the run set in order with hit or miss, runs nothing.
#[test]
fn dry_run_reports_hits_and_misses_and_runs_nothing() {
    let ws = Ws::new();
    ws.write("tools/noop.wasm", crate::support::NOOP_WASM);
    ws.write(
        "wask.toml",
        "[workspace]\n[project]\nname = \"p\"\n[tasks.b]\nmodule = \"/tools/noop.wasm\"\ndeps = [\"~:a\"]\n[tasks.a]\nmodule = \"/tools/noop.wasm\"\n",
    );
    let dry = ws.wask(&["run", "p:b", "--dry-run"]);
    dry.expect_code(0);
    let lines: Vec<&str> = dry
        .0
        .stdout
        .split(|b| *b == b'\n')
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    assert!(lines[0].starts_with("miss  p:a"), "{lines:?}");
    assert!(
        lines[1].starts_with("miss  p:b  (runs after p:a"),
        "{lines:?}"
    );
    assert!(
        !ws.path(".wask/cache").exists()
            || walkdir::WalkDir::new(ws.path(".wask/cache"))
                .into_iter()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().eq("manifest.json"))
    );
    ws.wask(&["run", "p:b"]).expect_code(0);
    let dry = ws.wask(&["run", "p:b", "--dry-run"]);
    let out = dry.stdout();
    assert!(
        out.lines().next().unwrap().starts_with("hit   p:a"),
        "{out}"
    );
    assert!(
        out.lines().nth(1).unwrap().starts_with("hit   p:b"),
        "{out}"
    );
}

/// DAG-003: reading another task's declared output makes it a hard predecessor: it is
/// pulled into the run set, runs first, and its streams enter the reader's key.
#[test]
fn reading_another_tasks_output_implies_a_hard_edge() {
    let ws = Ws::new();
    ws.with_probe();
    ws.write("src/data.txt", "data\n");
    ws.write(
        "wask.toml",
        r#"[workspace]
[project]
name = "p"

[tasks.gen]
module = "/tools/probe.wasm"
args = ["copy:/src/data.txt:/gen/data.txt"]
inputs = ["src/data.txt"]
outputs = ["gen/*.txt"]

[tasks.use]
module = "/tools/probe.wasm"
args = ["copy:/gen/data.txt:/final.txt"]
inputs = ["gen/data.txt"]
outputs = ["final.txt"]
"#,
    );
    let (run, summary) = ws.run(&["p:use"]);
    run.expect_code(0);
    assert_eq!(task(&summary, "p:gen")["state"], "succeeded", "pulled in");
    assert_eq!(ws.read("final.txt"), b"data\n");
    let json = ws.wask(&["graph", "--format", "json"]).stdout();
    let graph: serde_json::Value = serde_json::from_str(&json).unwrap();
    let use_ = graph["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "p:use")
        .unwrap();
    assert_eq!(use_["deps"], serde_json::json!(["p:gen"]));
}
