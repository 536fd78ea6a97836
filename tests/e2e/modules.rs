//! Task modules: guest crates built by wask, pinned digests, and `wask new-task`
//! from an empty directory to a task that runs.

use crate::support::{NOOP_WASM, Ws, task};

/// A guest crate with no dependencies: quick to build.
fn hello_crate(ws: &Ws, message: &str) {
    ws.write(
        "plugins/hello/Cargo.toml",
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
    );
    ws.write(
        "plugins/hello/src/main.rs",
        format!(
            "fn main() {{\n    std::fs::create_dir_all(\"/out\").unwrap();\n    std::fs::write(\"/out/hello.txt\", \"{message}\\n\").unwrap();\n}}\n"
        ),
    );
}

fn crate_workspace(module: &str) -> Ws {
    let ws = Ws::new();
    ws.write(
        "wask.toml",
        format!(
            "[workspace]\n[project]\nname = \"p\"\n\n[tasks.hello]\nmodule = {module}\noutputs = [\"out/hello.txt\"]\n"
        ),
    );
    hello_crate(&ws, "hello from a crate");
    ws
}

#[test]
fn a_crate_module_is_built_cached_and_rebuilt_when_its_source_changes() {
    let ws = crate_workspace(r#"{ crate = "/plugins/hello" }"#);
    let (run, s1) = ws.run(&["p:hello"]);
    run.expect_code(0);
    assert_eq!(ws.read("out/hello.txt"), b"hello from a crate\n");
    assert!(
        run.stderr()
            .contains("building the guest crate /plugins/hello")
    );

    let (run, s2) = ws.run(&["p:hello"]);
    run.expect_code(0);
    assert_eq!(task(&s2, "p:hello")["source"], "cache");
    assert!(
        !run.stderr().contains("building"),
        "the built module is reused"
    );
    assert_eq!(task(&s1, "p:hello")["key"], task(&s2, "p:hello")["key"]);

    hello_crate(&ws, "hello, changed");
    let (run, s3) = ws.run(&["p:hello"]);
    run.expect_code(0);
    assert_eq!(task(&s3, "p:hello")["source"], "fresh");
    assert_ne!(task(&s3, "p:hello")["key"], task(&s1, "p:hello")["key"]);
    assert_eq!(ws.read("out/hello.txt"), b"hello, changed\n");
}

#[test]
fn a_crate_that_does_not_compile_stops_the_run_with_cargos_message() {
    let ws = crate_workspace(r#"{ crate = "/plugins/hello" }"#);
    ws.write(
        "plugins/hello/src/main.rs",
        "fn main() { this is not rust }\n",
    );
    let (run, _) = ws.run(&["p:hello"]);
    // A module that does not build is a failed task (exit 1), not bad usage (2).
    run.expect_code(1);
    let err = run.stderr();
    assert!(
        err.contains("building the guest crate /plugins/hello failed"),
        "{err}"
    );
    assert!(
        err.contains("src/main.rs"),
        "cargo's diagnostics are shown: {err}"
    );
    assert!(err.contains("nothing was run"), "{err}");
}

#[test]
fn a_pinned_digest_that_does_not_match_is_refused_with_both_digests() {
    let actual = blake3::hash(NOOP_WASM).to_hex().to_string();
    let wrong = "0".repeat(64);
    let ws = Ws::new();
    ws.write("tools/noop.wasm", NOOP_WASM);
    let workspace = |pin: &str| {
        format!(
            "[workspace]\n[project]\nname = \"p\"\n\n[tasks.t]\nmodule = {{ path = \"/tools/noop.wasm\", blake3 = \"{pin}\" }}\n"
        )
    };
    ws.write("wask.toml", workspace(&wrong));
    let (run, summary) = ws.run(&["p:t"]);
    run.expect_code(2);
    let err = run.stderr();
    assert!(
        err.contains(&format!("pinned:   blake3 = \"{wrong}\"")),
        "{err}"
    );
    assert!(
        err.contains(&format!("actual:   blake3 = \"{actual}\"")),
        "{err}"
    );
    assert!(summary.is_null(), "nothing ran, no summary");

    ws.write("wask.toml", workspace(&actual));
    ws.run(&["p:t"]).0.expect_code(0);

    ws.write("wask.toml", workspace("not-hex"));
    let check = ws.wask(&["check"]);
    check.expect_code(2);
    assert!(
        check.stderr().contains("64 lower-case hex digits"),
        "{}",
        check.stderr()
    );
}

#[test]
fn a_crate_module_can_pin_its_build() {
    let ws = crate_workspace(&format!(
        r#"{{ crate = "/plugins/hello", blake3 = "{}" }}"#,
        "ab".repeat(32)
    ));
    let (run, _) = ws.run(&["p:hello"]);
    run.expect_code(2);
    assert!(
        run.stderr()
            .contains("module built from /plugins/hello does not match its pinned digest"),
        "{}",
        run.stderr()
    );
}

/// `wask init` then `wask new-task`: an empty directory to a Rust task that runs.
#[test]
fn new_task_scaffolds_a_crate_that_runs_at_once() {
    let ws = Ws::new();
    ws.wask(&["init", "--name", "demo"]).expect_code(0);
    let created = ws.wask(&["new-task", "report"]);
    created.expect_code(0);
    assert!(ws.path("tasks/report/src/main.rs").is_file());
    assert!(ws.path("wask-guest/src/lib.rs").is_file());

    let (run, summary) = ws.run(&["report"]);
    run.expect_code(0);
    assert_eq!(task(&summary, "demo:report")["state"], "succeeded");
    // A crate build shows its progress as cargo compiles (issue 13, point 6).
    assert!(
        run.stderr()
            .contains("building /tasks/report: compiling wask-guest"),
        "{}",
        run.stderr()
    );
    // `cache info` counts every kind under the cache, and the crate build beside it.
    let info = ws.wask(&["cache", "info"]);
    info.expect_code(0);
    let count = |kind| crate::cache::info_count(&info.stdout(), kind);
    assert_eq!(count("entries"), 1, "{}", info.stdout());
    assert_eq!(count("built modules"), 1, "{}", info.stdout());
    assert_eq!(count("crate builds"), 1, "{}", info.stdout());
    assert!(count("compiled modules") >= 1, "{}", info.stdout());
    assert!(count("total") >= 4, "{}", info.stdout());
    // The scaffold describes itself.
    let described = ws.wask(&["describe", "demo:report"]);
    described.expect_code(0);
    assert!(
        described.stdout().starts_with("report: "),
        "{}",
        described.stdout()
    );
    let report = String::from_utf8(ws.read("out/report.txt")).unwrap();
    assert!(report.starts_with("1 declared input(s)\n"), "{report}");
    assert!(report.contains("/wask.toml"), "{report}");

    let again = ws.wask(&["new-task", "report"]);
    again.expect_code(2);
    assert!(again.stderr().contains("already has a task `report`"));
}

/// Without the wasm32-wasip1 target, building a crate module stops the run before
/// anything runs, with the exact command that installs it. The target is hidden from
/// wask by a `rustc` earlier on PATH that reports a library directory without it.
#[test]
fn a_missing_wasm_target_is_reported_with_the_command_to_install_it() {
    use std::os::unix::fs::PermissionsExt;
    let ws = crate_workspace(r#"{ crate = "/plugins/hello" }"#);
    let bin = tempfile::tempdir().unwrap();
    let empty_libdir = tempfile::tempdir().unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let fake = bin.path().join("rustc");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --print ] && [ \"$2\" = target-libdir ]; then echo '{}'; exit 0; fi\nPATH='{path}' exec rustc \"$@\"\n",
            empty_libdir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = ws.wask_env(
        &["run", "p:hello"],
        &[("PATH", &format!("{}:{path}", bin.path().display()))],
    );
    run.expect_code(2);
    let err = run.stderr();
    assert!(
        err.contains("the wasm32-wasip1 target is not installed"),
        "{err}"
    );
    assert!(
        err.contains("install it with: rustup target add wasm32-wasip1"),
        "{err}"
    );
    assert!(!ws.path("out/hello.txt").exists(), "nothing ran");
}
