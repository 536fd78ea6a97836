//! The daily workflow (issue 13), through the binary.

use crate::hardening::{hostile, workspace};
use crate::support::task;

/// Point 1: a task's own outputs are never its inputs. `inputs = ["**"]` beside
/// `outputs = ["SUMS"]` runs again (a hit: its last SUMS is not in its key), and a
/// literal input that is also an output is refused, saying so.
#[test]
fn a_tasks_own_outputs_are_never_its_inputs() {
    let ws = workspace(&hostile(
        "sums",
        &["write:/SUMS"],
        "inputs = [\"**\"]\noutputs = [\"SUMS\"]",
    ));
    ws.write("src/a.txt", "a\n");
    let (first, s1) = ws.run(&["p:sums"]);
    first.expect_code(0);
    assert_eq!(task(&s1, "p:sums")["source"], "fresh");
    assert!(ws.path("SUMS").is_file());
    let (second, s2) = ws.run(&["p:sums"]);
    second.expect_code(0);
    assert_eq!(
        task(&s2, "p:sums")["source"],
        "cache",
        "the task's own output changed its key: {}",
        second.stderr()
    );
    assert_eq!(task(&s1, "p:sums")["key"], task(&s2, "p:sums")["key"]);

    let ws = workspace(&hostile(
        "sums",
        &["write:/SUMS"],
        "inputs = [\"SUMS\"]\noutputs = [\"SUMS\"]",
    ));
    ws.write("SUMS", "old\n");
    let (run, _) = ws.run(&["p:sums"]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains("also one of the task's outputs"),
        "{}",
        run.stderr()
    );
}

/// Point 13: `wask init` adds `.wask/` to `.gitignore` (creating it, or appending to one that
/// does not end in a newline), and only once.
#[test]
fn init_ignores_the_wask_directory_once() {
    for existing in [None, Some("target/"), Some("# mine\n.wask/\n")] {
        let ws = crate::support::Ws::new();
        if let Some(text) = existing {
            ws.write(".gitignore", text);
        }
        ws.wask(&["init", "--name", "demo"]).expect_code(0);
        let ignore = std::fs::read_to_string(ws.path(".gitignore")).unwrap();
        let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
        assert_eq!(
            lines.iter().filter(|l| **l == ".wask/").count(),
            1,
            "{existing:?}: {ignore:?}"
        );
        if let Some(text) = existing {
            assert!(ignore.starts_with(text.trim_end()), "{ignore:?}");
            assert!(lines.contains(&text.lines().next().unwrap().trim()));
        }
    }
}

/// Point 2: `!PATTERN` in `inputs` takes what it matches out of the view and the key
/// (a change there is still a hit; a change elsewhere is not); in `outputs` it is
/// refused at load rather than matching nothing.
#[test]
fn an_input_exclusion_takes_files_out_of_the_key_and_an_output_one_is_refused() {
    let ws = workspace(&hostile(
        "t",
        &["copy:/src/skip/x.txt|/out/seen.txt", "write:/out/done.txt"],
        "inputs = [\"src/**\", \"!src/skip/**\"]\noutputs = [\"out/**\"]",
    ));
    ws.write("src/a.txt", "a\n");
    ws.write("src/skip/x.txt", "x\n");
    let (first, s1) = ws.run(&["p:t"]);
    first.expect_code(0);
    // Not in the view: the task could not copy it.
    assert!(!ws.path("out/seen.txt").exists(), "{}", first.stdout());
    ws.write("src/skip/x.txt", "changed\n");
    let (second, s2) = ws.run(&["p:t"]);
    second.expect_code(0);
    assert_eq!(task(&s2, "p:t")["source"], "cache", "{}", second.stderr());
    assert_eq!(task(&s1, "p:t")["key"], task(&s2, "p:t")["key"]);
    ws.write("src/a.txt", "changed\n");
    let (third, s3) = ws.run(&["p:t"]);
    third.expect_code(0);
    assert_eq!(task(&s3, "p:t")["source"], "fresh");

    let ws = workspace(&hostile(
        "t",
        &["write:/out/a.txt"],
        "inputs = []\noutputs = [\"out/**\", \"!out/tmp/**\"]",
    ));
    let check = ws.wask(&["check"]);
    check.expect_code(2);
    assert!(
        check
            .stderr()
            .contains("`!` exclusions are taken in `inputs`"),
        "{}",
        check.stderr()
    );
}

/// Point 12: `wask completions SHELL` prints a script naming the commands and their
/// flags; the bash one loads into bash and completes `wask`.
#[test]
fn completion_scripts_name_the_commands_and_bash_loads_its_own() {
    let ws = crate::support::Ws::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = ws.wask(&["completions", shell]);
        run.expect_code(0);
        let script = run.stdout();
        for word in ["audit", "new-task", "remote-cache", "why"] {
            assert!(script.contains(word), "{shell}: no `{word}`");
        }
    }
    let bash = ws.wask(&["completions", "bash"]).stdout();
    ws.write("wask.bash", &bash);
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p wask",
            ws.path("wask.bash").display()
        ))
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("_wask"));
    ws.wask(&["completions", "tcsh"]).expect_code(2);
}
