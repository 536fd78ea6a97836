//! The scheduler through the binary: global and per-tag caps (EXEC-004/005), mutexes
//! (EXEC-006), `--fail-fast` (EXEC-010), cancellation by a real signal (EXEC-012).
//! Overlap is judged from the `run` phase times recorded in the summary JSON.

use crate::support::{Ws, task};
use std::time::SystemTime;

/// The [start, end) of a task's sandboxed run, from the summary.
fn run_span(summary: &serde_json::Value, id: &str) -> (SystemTime, SystemTime) {
    let t = task(summary, id);
    let phase = t["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "run")
        .unwrap_or_else(|| panic!("{id} did not run fresh: {t:#}"));
    let time = |v: &serde_json::Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    (time(&phase["started_at"]), time(&phase["finished_at"]))
}

fn overlap(a: (SystemTime, SystemTime), b: (SystemTime, SystemTime)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// A workspace of projects, each `(name, tags, tasks)`; every task runs the probe with
/// `args` (plus a line naming the task, so that no two tasks share a key) and the extra
/// TOML lines given.
/// `(task, args, extra TOML)`.
type TaskSpec<'a> = (&'a str, &'a str, &'a str);

fn workspace(root_extra: &str, projects: &[(&str, &[&str], &[TaskSpec<'_>])]) -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    let names: Vec<String> = projects
        .iter()
        .map(|(n, _, _)| format!("\"{n}\""))
        .collect();
    ws.write(
        "wask.toml",
        format!(
            "[workspace]\nprojects = [{}]\n{root_extra}\n",
            names.join(", ")
        ),
    );
    for (name, tags, tasks) in projects {
        let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
        let mut text = format!(
            "[project]\nname = \"{name}\"\ntags = [{}]\n",
            tags.join(", ")
        );
        for (task, args, extra) in *tasks {
            text.push_str(&format!(
                "\n[tasks.{task}]\nmodule = \"/tools/probe.wasm\"\nargs = [{args}, \"print:{name}/{task}\"]\n{extra}\n"
            ));
        }
        ws.write(&format!("{name}/wask.toml"), text);
    }
    ws
}

const WORK: &str = r#""busy:60""#;

fn all_pairs_disjoint(summary: &serde_json::Value, ids: &[&str]) {
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert!(
                !overlap(run_span(summary, a), run_span(summary, b)),
                "{a} and {b} ran at the same time"
            );
        }
    }
}

#[test]
fn one_job_runs_one_task_at_a_time() {
    let ws = workspace(
        "",
        &[(
            "p",
            &[],
            &[("a", WORK, ""), ("b", WORK, ""), ("c", WORK, "")],
        )],
    );
    let (run, s) = ws.run(&["--workspace", "-j", "1"]);
    run.expect_code(0);
    all_pairs_disjoint(&s, &["p:a", "p:b", "p:c"]);
    // Canonical order when nothing else decides (EXEC-004).
    assert!(run_span(&s, "p:a").1 <= run_span(&s, "p:b").0);
    assert!(run_span(&s, "p:b").1 <= run_span(&s, "p:c").0);
}

/// With a remote cache to read, more tasks than `--jobs` are in flight (their lookups
/// overlap), but modules still run one at a time under `-j 1`. (Which module starts
/// first is the order the lookups end in: docs/decisions.md.)
#[test]
fn with_a_remote_cache_lookups_overlap_but_modules_keep_to_the_job_limit() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let ws = workspace(
        &format!("\n[cache.remote]\nurl = \"http://127.0.0.1:{port}\"\ntimeout = \"1s\"\n"),
        &[(
            "p",
            &[],
            &[
                ("a", WORK, ""),
                ("b", WORK, ""),
                ("c", WORK, ""),
                ("d", WORK, ""),
            ],
        )],
    );
    let (run, s) = ws.run(&["--workspace", "-j", "1"]);
    run.expect_code(0);
    assert!(
        run.stderr().contains("the remote cache failed"),
        "{}",
        run.stderr()
    );
    all_pairs_disjoint(&s, &["p:a", "p:b", "p:c", "p:d"]);
}

#[test]
fn a_tag_cap_limits_its_projects_only() {
    let ws = workspace(
        "[concurrency]\ntags = { heavy = 1 }\n",
        &[
            ("h1", &["heavy"], &[("t", WORK, "")]),
            ("h2", &["heavy"], &[("t", WORK, "")]),
            ("h3", &["heavy", "other"], &[("t", WORK, "")]),
            ("light", &[], &[("t", r#""print:light""#, "")]),
        ],
    );
    let (run, s) = ws.run(&["--workspace", "-j", "4"]);
    run.expect_code(0);
    all_pairs_disjoint(&s, &["h1:t", "h2:t", "h3:t"]);
    assert_eq!(task(&s, "light:t")["state"], "succeeded");
}

#[test]
fn an_exclusive_mutex_excludes_across_projects_and_modes() {
    let ws = workspace(
        "",
        &[
            ("a", &[], &[("t", WORK, "mutex = \"db\"")]),
            (
                "b",
                &[],
                &[("t", WORK, "mutex = { name = \"db\", mode = \"shared\" }")],
            ),
            ("c", &[], &[("t", WORK, "mutex = \"db\"")]),
        ],
    );
    let (run, s) = ws.run(&["--workspace", "-j", "3"]);
    run.expect_code(0);
    all_pairs_disjoint(&s, &["a:t", "b:t", "c:t"]);
}

#[test]
fn a_project_scoped_mutex_excludes_within_its_project_only() {
    let tasks: &[TaskSpec] = &[
        ("x", WORK, "mutex = \"~:m\""),
        ("y", WORK, "mutex = \"~:m\""),
    ];
    let ws = workspace("", &[("p", &[], tasks), ("q", &[], tasks)]);
    let (run, s) = ws.run(&["--workspace", "-j", "4"]);
    run.expect_code(0);
    all_pairs_disjoint(&s, &["p:x", "p:y"]);
    all_pairs_disjoint(&s, &["q:x", "q:y"]);
}

/// EXEC-006/007: a task waiting for a busy mutex holds no job slot, so an unrelated
/// task runs meanwhile; and a cache hit never waits for its mutex.
#[test]
fn a_waiting_task_holds_no_slot_and_a_hit_takes_no_mutex() {
    let ws = workspace(
        "",
        &[(
            "p",
            &[],
            &[
                ("a", r#""busy:200""#, "mutex = \"m\""),
                ("b", r#""busy:200""#, "mutex = \"m\""),
                ("c", r#""print:c""#, ""),
            ],
        )],
    );
    // With two jobs, `a` and `b` both miss and ask for the mutex; whichever gets it
    // first runs, the other finds it busy and steps back, and `c` takes the free slot
    // and runs while the mutex is held.
    let (run, s) = ws.run(&["--workspace", "-j", "2"]);
    run.expect_code(0);
    let (a, b) = (run_span(&s, "p:a"), run_span(&s, "p:b"));
    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    assert!(
        second.0 >= first.1,
        "the second holder waited for the first"
    );
    assert!(
        run_span(&s, "p:c").0 < first.1,
        "c ran while the mutex was held"
    );

    // Now `b` is cached: it completes while a fresh `a` holds the mutex.
    ws.write("p/extra.txt", "changes a's key\n");
    let text = String::from_utf8(ws.read("p/wask.toml")).unwrap().replacen(
        "mutex = \"m\"",
        "mutex = \"m\"\ninputs = [\"extra.txt\"]",
        1,
    );
    ws.write("p/wask.toml", text);
    let (run, s) = ws.run(&["--workspace", "-j", "2"]);
    run.expect_code(0);
    assert_eq!(task(&s, "p:b")["source"], "cache");
    let b_done =
        humantime::parse_rfc3339(task(&s, "p:b")["finished_at"].as_str().unwrap()).unwrap();
    assert!(b_done < run_span(&s, "p:a").1, "the hit did not wait for a");
}

#[test]
fn fail_fast_stops_admitting_after_a_failure() {
    let tasks: &[TaskSpec] = &[
        ("a", r#""exit:1""#, ""),
        ("b", r#""print:b""#, ""),
        ("c", r#""print:c""#, ""),
    ];
    let ws = workspace("", &[("p", &[], tasks)]);
    let (run, s) = ws.run(&["--workspace", "-j", "1", "--fail-fast"]);
    run.expect_code(1);
    assert_eq!(task(&s, "p:a")["state"], "failed");
    for id in ["p:b", "p:c"] {
        assert_eq!(task(&s, id)["state"], "skipped", "{id}");
        assert!(
            task(&s, id)["error"]
                .as_str()
                .unwrap()
                .contains("--fail-fast")
        );
    }
    let (run, s) = ws.run(&["--workspace", "-j", "1"]);
    run.expect_code(1);
    assert_eq!(
        task(&s, "p:c")["state"],
        "succeeded",
        "without --fail-fast the rest run"
    );
}

/// EXEC-012: a real signal to a real `wask run` interrupts the running module, records
/// it Cancelled, stores nothing, and exits 128 + the signal.
#[test]
fn sigint_and_sigterm_cancel_a_run() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let ws = workspace(
            "",
            &[(
                "p",
                &[],
                &[(
                    "spin",
                    r#""loop""#,
                    "limits = { timeout = \"10m\" }\noutputs = [\"out.txt\"]",
                )],
            )],
        );
        let summary = ws.path("summary.json");
        let mut child = std::process::Command::new(crate::support::wask_binary())
            .current_dir(&ws.root)
            .args(["run", "p:spin", "--summary", summary.to_str().unwrap()])
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The sandbox is staged just before the module starts: wait for it to appear.
        let staged = || {
            std::fs::read_dir(ws.path(".wask/tmp"))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("run-"))
                })
                .unwrap_or(false)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !staged() {
            assert!(
                std::time::Instant::now() < deadline,
                "the task never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        // A module that ignored cancellation would spin for ten minutes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "wask did not stop on SIG{signal}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(code), "SIG{signal}");
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        assert_eq!(task(&s, "p:spin")["state"], "cancelled");
        assert!(!ws.path("p/out.txt").exists());
        let stored = walkdir::WalkDir::new(ws.path(".wask/cache"))
            .into_iter()
            .flatten()
            .any(|e| e.file_name() == "manifest.json");
        assert!(!stored, "nothing is stored for a cancelled task");
        let leftovers = std::fs::read_dir(ws.path(".wask/tmp"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(leftovers, 0, "the sandbox scratch directory is removed");
    }
}
