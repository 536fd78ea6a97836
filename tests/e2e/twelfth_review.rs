//! The twelfth outside review, of the eleventh review's fixes: every attack that
//! worked, through the binary. See `docs/security.md`.

use crate::hardening::{fails_with, hostile, refused_at_load, run_task, set_tasks, workspace};
use crate::support::{Ws, plugin_wasm};

/// A nested workspace's first run made its cache (and tag) while an outer task was
/// storing a large output that covered it, and the outer task then placed a forged
/// entry there. No output lies under another workspace's root (a directory whose
/// `wask.toml` has `[workspace]`), which a task can never make; checked at load, at
/// collection and again just before placing.
#[test]
fn no_output_lies_under_another_workspace_s_root() {
    let ws = workspace(&hostile(
        "evil",
        &["put:/inner/c/e9/forged|POISONED"],
        "outputs = [\"inner/**\"]",
    ));
    ws.write(
        "inner/wask.toml",
        "[workspace]\nprojects = [\"q\"]\n\n[cache]\ndir = \"c\"\n",
    );
    refused_at_load(&ws.wask(&["check"]), "the root of another workspace");
    set_tasks(
        &ws,
        &hostile(
            "evil",
            &["put:/stuff/inner/c/e9/forged|POISONED"],
            "outputs = [\"stuff/**\"]",
        ),
    );
    std::fs::create_dir_all(ws.path("stuff")).unwrap();
    std::fs::rename(ws.path("inner"), ws.path("stuff/inner")).unwrap();
    let (run, record) = run_task(&ws, "p:evil", &[]);
    fails_with(&run, &record, "the root of another workspace");
    assert!(!ws.path("stuff/inner/c").exists());
}

/// A dependent read a person's file through `deps` because the ledger still named the
/// dependency as its writer after the dependency excluded it or stopped writing it.
/// What a dependency's outputs are is what it left in this run.
#[test]
fn a_dependent_reads_only_what_its_dependency_left_in_this_run() {
    let ws = Ws::new();
    ws.with_probe();
    std::fs::copy(
        crate::support::hostile_wasm(),
        ws.path("tools/hostile.wasm"),
    )
    .unwrap();
    ws.write(
        "tools/checksum.wasm",
        std::fs::read(plugin_wasm("checksum")).unwrap(),
    );
    let tasks = |dep_args: &[&str], dep_outputs: &str| {
        format!(
            "{}[tasks.t]\nmodule = \"/tools/checksum.wasm\"\nargs = [\"out/sums.txt\"]\ndeps = [\"~:d\"]\noutputs = [\"out/**\"]\n",
            hostile("d", dep_args, &format!("outputs = [{dep_outputs}]"))
        )
    };
    set_tasks(&ws, &tasks(&["write:/gen/a.txt,/gen/b.txt"], "\"gen/**\""));
    ws.run(&["p:t"]).0.expect_code(0);
    let listed = |ws: &Ws| String::from_utf8(ws.read("out/sums.txt")).unwrap();
    assert!(listed(&ws).contains("gen/a.txt"));
    // It excludes a.txt now; a person writes a secret there.
    set_tasks(
        &ws,
        &tasks(&["write:/gen/b.txt"], "\"gen/**\", \"!gen/a.txt\""),
    );
    ws.write("gen/a.txt", "SECRET=hunter2\n");
    ws.run(&["p:t"]).0.expect_code(0);
    assert!(!listed(&ws).contains("gen/a.txt"), "{}", listed(&ws));
    // It stops writing it without excluding it.
    set_tasks(&ws, &tasks(&["write:/gen/b.txt"], "\"gen/**\""));
    ws.run(&["p:t"]).0.expect_code(0);
    assert!(!listed(&ws).contains("gen/a.txt"), "{}", listed(&ws));
    assert!(listed(&ws).contains("gen/b.txt"));
}

/// Each `.gitignore` was bounded at 128 KiB, but not their sum: 150 of them took wask
/// to 4.2 GB. One task's globs read at most 512 KiB of them in all.
#[test]
fn the_gitignore_files_one_task_reads_are_bounded_in_all() {
    let ws = workspace("[tasks.t]\nmodule = \"/tools/probe.wasm\"\ninputs = [\"src/**\"]\n");
    let lines = "*a*b*c*d*e*f*g*h*i*j*k*l*m*n*o*p\n".repeat(3000);
    assert!(lines.len() < 128 << 10);
    for i in 0..6 {
        ws.write(&format!("src/s{i}/.gitignore"), &lines);
        ws.write(&format!("src/s{i}/f.txt"), "x\n");
    }
    let (run, record) = run_task(&ws, "p:t", &[]);
    fails_with(&run, &record, "in all");
}

/// `describe --json` printed C1 controls and bidi overrides raw and whole, and text
/// mode printed line separators and zero-width characters raw.
#[test]
fn describe_escapes_invisible_characters_in_text_and_json() {
    let ws = Ws::new();
    let summary = format!(
        "s\u{9b}2J\u{202e}\u{2028}\u{200b}\u{feff}{}",
        "y".repeat(5000)
    );
    let toml = format!("name = \"x\"\nsummary = {}\n", toml::Value::String(summary));
    ws.write(
        "x.wasm",
        crate::support::module_with_section("wask.describe", toml.as_bytes()),
    );
    for args in [
        vec!["describe", "x.wasm"],
        vec!["describe", "x.wasm", "--json"],
    ] {
        let run = ws.wask(&args);
        run.expect_code(0);
        let out = run.stdout();
        for c in ['\u{9b}', '\u{202e}', '\u{2028}', '\u{200b}', '\u{feff}'] {
            assert!(!out.contains(c), "{args:?}: {c:?} shown raw");
        }
        assert!(out.len() < 2000, "{args:?}: {} bytes", out.len());
    }
}

/// `--affected` missed an edit to a file marked assume-unchanged or skip-worktree,
/// which git never compares: such files count as changed.
#[test]
fn affected_counts_files_git_is_told_not_to_compare() {
    let ws = Ws::new();
    ws.write("t.wasm", crate::support::NOOP_WASM);
    set_tasks(
        &ws,
        "[tasks.a]\nmodule = \"/t.wasm\"\ninputs = [\"a/**\"]\n\n[tasks.b]\nmodule = \"/t.wasm\"\ninputs = [\"b/**\"]\n",
    );
    ws.write(".gitignore", ".wask/\n.wask-summary.json\n");
    ws.write("a/x.txt", "1\n");
    ws.write("b/x.txt", "1\n");
    ws.git(&["init", "-q", "-b", "main"]);
    ws.git(&["add", "-A"]);
    ws.git(&["commit", "-q", "-m", "one"]);
    ws.git(&["update-index", "--assume-unchanged", "a/x.txt"]);
    ws.write("a/x.txt", "CHANGED\n");
    let (run, summary) = ws.run(&["--affected"]);
    run.expect_code(0);
    assert_eq!(
        crate::support::task_ids(&summary),
        ["p:a"],
        "{}",
        run.stderr()
    );
}
