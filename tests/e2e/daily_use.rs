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
