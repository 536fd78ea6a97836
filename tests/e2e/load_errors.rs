//! Load errors: spans, all errors at once, exit code 2 (WS-003, ID-001, PATH-001, DAG-004).

use crate::support::Ws;

#[test]
fn unknown_key_is_reported_with_file_line_and_column() {
    let ws = Ws::new();
    ws.write("wask.toml", "[workspace]\nprojects = [\"app\"]\n");
    ws.write(
        "app/wask.toml",
        "[project]\nname = \"app\"\n\n[tasks.build]\nmodule = \"x.wasm\"\ninptus = [\"src/**\"]\n",
    );
    let run = ws.wask(&["check"]);
    run.expect_code(2);
    let err = run.stderr();
    assert!(err.contains("app/wask.toml:6:1"), "{err}");
    assert!(err.contains("unknown field `inptus`"), "{err}");
}

#[test]
fn every_error_of_a_load_is_reported_together() {
    let ws = Ws::new();
    ws.write("wask.toml", "[workspace]\nprojects = [\"a\", \"b\"]\n");
    ws.write(
        "a/wask.toml",
        "[project]\nname = \"a\"\n\n[tasks.\"bad.name\"]\nmodule = \"x.wasm\"\n",
    );
    ws.write(
        "b/wask.toml",
        "[project]\nname = \"b\"\n\n[tasks.t]\nmodule = \"x.wasm\"\ninputs = [\"../escape\", \"ok/*.txt\", \"a//b\"]\nenv.from_host = [\"A=B\"]\n",
    );
    let run = ws.wask(&["check"]);
    run.expect_code(2);
    let err = run.stderr();
    assert!(
        err.contains("a/wask.toml:4:8"),
        "task name error with its span: {err}"
    );
    assert!(err.contains("invalid task name"), "{err}");
    assert!(
        err.contains("b/wask.toml:6:11"),
        "`..` input with its span: {err}"
    );
    assert!(err.contains("`..` segments"), "{err}");
    assert!(
        err.contains("b/wask.toml:6:36"),
        "empty segment with its span: {err}"
    );
    assert!(err.contains("invalid environment variable name"), "{err}");
    assert!(err.contains("has 4 errors"), "{err}");
}

/// DAG-004: unresolved reference, self reference, both deps and weak_deps, a cycle with
/// its path, and a duplicated literal output, all in one report.
#[test]
fn every_graph_rule_is_reported() {
    let ws = Ws::new();
    ws.write("wask.toml", "[workspace]\nprojects = [\"p\", \"q\"]\n");
    ws.write(
        "p/wask.toml",
        r#"[project]
name = "p"

[tasks.missing]
module = "x.wasm"
deps = ["nowhere:build"]

[tasks.selfish]
module = "x.wasm"
deps = ["~:selfish"]

[tasks.both]
module = "x.wasm"
deps = ["q:one"]
weak_deps = ["q:one"]

[tasks.out1]
module = "x.wasm"
outputs = ["/shared/out.txt"]
"#,
    );
    ws.write(
        "q/wask.toml",
        r#"[project]
name = "q"

[tasks.one]
module = "x.wasm"
deps = ["~:two"]

[tasks.two]
module = "x.wasm"
deps = ["~:three"]

[tasks.three]
module = "x.wasm"
deps = ["~:one"]

[tasks.out2]
module = "x.wasm"
outputs = ["/shared/out.txt"]
"#,
    );
    let run = ws.wask(&["check"]);
    run.expect_code(2);
    let err = run.stderr();
    assert!(
        err.contains("unresolved reference `nowhere:build`"),
        "{err}"
    );
    assert!(err.contains("p/wask.toml:6:9"), "{err}");
    assert!(err.contains("p:selfish depends on itself"), "{err}");
    assert!(
        err.contains("q:one appears in both `deps` and `weak_deps` of p:both"),
        "{err}"
    );
    assert!(
        err.contains("dependency cycle: q:one -> q:three -> q:two -> q:one"),
        "the cycle is printed as a path: {err}"
    );
    assert!(
        err.contains("p:out1 and q:out2 both declare the output /shared/out.txt"),
        "{err}"
    );
    assert!(err.contains("has 5 errors"), "{err}");
}

#[test]
fn a_missing_workspace_is_a_clear_error() {
    let ws = Ws::new();
    let run = ws.wask(&["check"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("no workspace found"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_valid_workspace_checks_clean() {
    let ws = Ws::new();
    ws.write("wask.toml", "[workspace]\nprojects = [\"libs/*\"]\n");
    ws.write(
        "libs/a/wask.toml",
        "[project]\nname = \"a\"\n[tasks.t]\nmodule = \"/x.wasm\"\n",
    );
    ws.write(
        "libs/b/wask.toml",
        "[project]\nname = \"b\"\n[tasks.t]\nmodule = \"/x.wasm\"\ndeps = [\"a:t\"]\n",
    );
    // `check` also looks for the module file.
    ws.write("x.wasm", crate::support::NOOP_WASM);
    let run = ws.wask(&["check"]);
    run.expect_code(0);
    assert!(
        run.stdout().contains("2 projects, 2 tasks"),
        "{}",
        run.stdout()
    );
}

/// `wask init` writes a starter that loads, and never overwrites a `wask.toml`.
#[test]
fn init_writes_a_valid_starter_and_refuses_to_overwrite() {
    let ws = Ws::new();
    let init = ws.wask(&["init", "--name", "demo"]);
    init.expect_code(0);
    let written = ws.read("wask.toml");
    ws.wask(&["check"]).expect_code(0);
    let again = ws.wask(&["init", "--name", "other"]);
    again.expect_code(2);
    assert!(
        again.stderr().contains("already exists"),
        "{}",
        again.stderr()
    );
    assert_eq!(ws.read("wask.toml"), written, "the file is untouched");
    let bad = Ws::new();
    bad.wask(&["init", "--name", "no spaces"]).expect_code(2);
    assert!(!bad.path("wask.toml").exists());
}

/// DAG-003 and DAG-004: a cycle made of implied edges is reported, naming the files.
#[test]
fn a_cycle_through_implied_edges_is_explained() {
    let ws = Ws::new();
    ws.write("tools/noop.wasm", crate::support::NOOP_WASM);
    ws.write(
        "wask.toml",
        r#"[workspace]
[project]
name = "p"

[tasks.a]
module = "/tools/noop.wasm"
inputs = ["b-out/**"]
outputs = ["a-out/**"]

[tasks.b]
module = "/tools/noop.wasm"
inputs = ["a-out/**"]
outputs = ["b-out/**"]
"#,
    );
    let check = ws.wask(&["check"]);
    check.expect_code(2);
    let err = check.stderr();
    assert!(err.contains("dependency cycle: p:a -> p:b -> p:a"), "{err}");
    assert!(
        err.contains("p:b reads files that p:a declares as outputs"),
        "{err}"
    );
}

/// `[cache.remote]` (issue 12): a URL of no protocol wask speaks, a credential in the
/// file (a token comes only from the environment), half a client certificate, a
/// trusted key that is not one and a zero timeout are each reported with their line;
/// so is a bad `WASK_REMOTE_CACHE`. `--remote-cache` with a bad URL is a usage error.
#[test]
fn remote_cache_settings_are_checked_at_load() {
    let ws = Ws::new();
    ws.write(
        "wask.toml",
        "[workspace]\n\n[cache.remote]\nurl = \"ftp://cache\"\ntimeout = \"0s\"\nheaders = { Authorization = \"Bearer s3cret\" }\ntrusted_keys = [\"-----BEGIN PUBLIC KEY-----\\nnope\\n-----END PUBLIC KEY-----\"]\nclient_cert = \"me.pem\"\n",
    );
    let run = ws.wask(&["check"]);
    run.expect_code(2);
    let err = run.stderr();
    for (line, text) in [
        (4, "is not a remote cache URL"),
        (5, "above zero"),
        (6, "WASK_REMOTE_CACHE_TOKEN"),
        (7, "not a PEM Ed25519 public key"),
        (8, "go together"),
    ] {
        assert!(
            err.contains(&format!("wask.toml:{line}:")),
            "line {line}: {err}"
        );
        assert!(err.contains(text), "{text}: {err}");
    }
    assert!(
        !err.contains("s3cret\n") || err.contains("Authorization"),
        "{err}"
    );

    let ok = Ws::new();
    ok.write("wask.toml", "[workspace]\n");
    let bad_env = ok.wask_env(&["check"], &[("WASK_REMOTE_CACHE", "cache:9092")]);
    bad_env.expect_code(2);
    assert!(
        bad_env.stderr().contains("WASK_REMOTE_CACHE"),
        "{}",
        bad_env.stderr()
    );
    let bad_flag = ok.wask(&["run", "--workspace", "--remote-cache", "nope"]);
    bad_flag.expect_code(2);
    assert!(
        bad_flag.stderr().contains("--remote-cache"),
        "{}",
        bad_flag.stderr()
    );
}
