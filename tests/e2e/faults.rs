//! Limits and faults through the binary (SANDBOX-006, SANDBOX-007), and determinism
//! (SANDBOX-005).
//!
//! Each fault runs in the same `wask run` as an independent good task: the faulty task
//! fails with a message naming its limit, within that limit; the good task succeeds;
//! wask exits 1 (a task failed), not with a crash; and a following run of the good task
//! alone is a cache hit, so the host process and the cache are healthy.

use crate::support::{Ws, hostile_wasm, task};
use std::time::{Duration, Instant};

/// A workspace (root project `p`) with the probe and hostile guests and a good task.
fn workspace(faulty: &str) -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    std::fs::copy(hostile_wasm(), ws.path("tools/hostile.wasm")).unwrap();
    ws.write("src/in.txt", "good input\n");
    ws.write(
        "wask.toml",
        format!(
            r#"[workspace]

[project]
name = "p"

[tasks.good]
module = "/tools/probe.wasm"
args = ["print:fine", "copy:/src/in.txt:/out/good.txt"]
inputs = ["src/in.txt"]
outputs = ["out/good.txt"]

[tasks.faulty]
{faulty}
"#
        ),
    );
    ws
}

/// (fault, the faulty task's declaration, what its error must say, its time budget).
const FAULTS: &[(&str, &str, &str, Duration)] = &[
    (
        "infinite loop",
        "module = \"/tools/probe.wasm\"\nargs = [\"print:started\", \"loop\"]\nlimits = { timeout = \"1s\" }",
        "exceeded its timeout of 1s and was interrupted",
        Duration::from_secs(6),
    ),
    (
        "memory bomb",
        "module = \"/tools/probe.wasm\"\nargs = [\"alloc:256\"]\nlimits = { memory = \"64MiB\" }",
        "exceeded its memory limit of 64 MiB",
        Duration::from_secs(5),
    ),
    (
        "unbounded output",
        "module = \"/tools/probe.wasm\"\nargs = [\"spam:100000000\"]\nlimits = { output = \"64KiB\" }",
        "exceeded its output limit of 65536 bytes",
        Duration::from_secs(5),
    ),
    (
        "deep recursion (engine stack)",
        "module = \"/tools/hostile.wasm\"\nargs = [\"deep-recursion\"]",
        "overflowed its stack",
        Duration::from_secs(5),
    ),
    (
        // Rust keeps address-taken locals on a shadow stack at the bottom of linear
        // memory: exhausting it is an out-of-bounds access below address 0, which
        // wasmtime reports as a memory fault, not as a stack overflow.
        "deep recursion (shadow stack)",
        "module = \"/tools/probe.wasm\"\nargs = [\"recurse\"]",
        "trapped: the guest accessed memory out of bounds (a bad pointer, or its shadow stack overflowed from deep recursion) [wasm trap: out of bounds memory access]",
        Duration::from_secs(5),
    ),
    (
        "trap",
        "module = \"/tools/probe.wasm\"\nargs = [\"trap\"]",
        "trapped: the guest aborted (it executed `unreachable`: a Rust panic",
        Duration::from_secs(5),
    ),
    (
        "non-zero exit",
        "module = \"/tools/probe.wasm\"\nargs = [\"exit:7\"]",
        "exited with code 7",
        Duration::from_secs(5),
    ),
    (
        "huge argument list",
        "HUGE_ARGS",
        "exceeded its memory limit of 2 MiB",
        Duration::from_secs(10),
    ),
];

/// 1.24 MiB of arguments in 100k pieces, under a memory limit they do not fit in.
fn huge_args() -> String {
    let mut args = vec!["\"count-args\"".to_string()];
    args.extend((0..100_000).map(|i| format!("\"arg-{i:05}-xx\"")));
    format!(
        "module = \"/tools/hostile.wasm\"\nargs = [{}]\nlimits = {{ memory = \"2MiB\" }}",
        args.join(", ")
    )
}

/// The same argument list under the default limits arrives whole.
#[test]
fn a_huge_argument_list_arrives_whole_under_default_limits() {
    let decl = huge_args().replace("\nlimits = { memory = \"2MiB\" }", "");
    let ws = workspace(&decl);
    let (run, summary) = ws.run(&["p:good", "p:faulty"]);
    run.expect_code(0);
    assert_eq!(task(&summary, "p:faulty")["state"], "succeeded");
    assert!(
        run.stdout()
            .contains("[p:faulty] held count-args 100001 arguments, 1300011 bytes"),
        "{}",
        run.stdout()
    );
}

fn error_of(summary: &serde_json::Value, id: &str) -> String {
    task(summary, id)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn each_fault_fails_only_its_task_naming_the_limit() {
    let started = Instant::now();
    for &(fault, decl, message, budget) in FAULTS {
        let decl = if decl == "HUGE_ARGS" {
            huge_args()
        } else {
            decl.to_string()
        };
        let ws = workspace(&decl);
        let t0 = Instant::now();
        let (run, summary) = ws.run(&["p:good", "p:faulty"]);
        let took = t0.elapsed();
        let ctx = format!(
            "{fault}\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout().chars().take(2000).collect::<String>(),
            run.stderr()
        );
        run.expect_code(1);
        assert_eq!(task(&summary, "p:good")["state"], "succeeded", "{ctx}");
        assert_eq!(ws.read("out/good.txt"), b"good input\n", "{ctx}");
        let bad = task(&summary, "p:faulty");
        assert_eq!(bad["state"], "failed", "{ctx}");
        let error = error_of(&summary, "p:faulty");
        println!("{fault}: {error:?} in {took:.2?}");
        assert!(error.contains(message), "{fault}: error {error:?}\n{ctx}");
        assert!(took < budget, "{fault} took {took:?}\n{ctx}");
        if fault == "infinite loop" {
            let ms = bad["duration_ms"].as_f64().unwrap();
            assert!(
                (1000.0..2500.0).contains(&ms),
                "interrupted at its limit: {ms} ms"
            );
        }
        assert!(
            run.stderr().contains("1 completed (0 cached), 1 failed"),
            "{ctx}"
        );

        let (again, summary) = ws.run(&["p:good"]);
        again.expect_code(0);
        assert_eq!(task(&summary, "p:good")["source"], "cache", "{fault}");
    }
    println!("{} faults in {:.1?}", FAULTS.len(), started.elapsed());
}

/// The faults all at once, in one run with `-j 4`: every one fails on its own, the good
/// task still succeeds.
#[test]
fn faults_together_do_not_harm_each_other() {
    let ws = workspace("module = \"/tools/probe.wasm\"\nargs = [\"trap\"]");
    let mut toml = String::from_utf8(ws.read("wask.toml")).unwrap();
    let mut ids = vec!["p:good".to_string()];
    for (i, &(fault, decl, message, _)) in FAULTS.iter().enumerate() {
        if decl == "HUGE_ARGS" {
            continue;
        }
        toml.push_str(&format!("\n[tasks.f{i}]\n{decl}\n"));
        ids.push(format!("p:f{i}"));
        let _ = (fault, message);
    }
    ws.write("wask.toml", toml);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut args = refs.clone();
    args.extend(["-j", "4"]);
    let (run, summary) = ws.run(&args);
    run.expect_code(1);
    assert_eq!(task(&summary, "p:good")["state"], "succeeded");
    for (i, &(fault, decl, message, _)) in FAULTS.iter().enumerate() {
        if decl == "HUGE_ARGS" {
            continue;
        }
        let id = format!("p:f{i}");
        assert_eq!(task(&summary, &id)["state"], "failed", "{fault}");
        let error = error_of(&summary, &id);
        assert!(error.contains(message), "{fault}: {error}");
    }
}

// SANDBOX-005: determinism.

/// The task lines (`[p:t] ...`) of a run's stdout.
fn lines_of(stdout: &str, id: &str) -> Vec<String> {
    let prefix = format!("[{id}]");
    stdout
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(String::from)
        .collect()
}

fn clock_ws(task_clock: &str, sandbox: &str) -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    std::fs::copy(hostile_wasm(), ws.path("tools/hostile.wasm")).unwrap();
    ws.write(
        "wask.toml",
        format!(
            r#"[workspace]
{sandbox}
[project]
name = "p"

[tasks.t]
module = "/tools/probe.wasm"
args = ["time", "random", "monotonic", "time", "random"]
{task_clock}

[tasks.raw]
module = "/tools/hostile.wasm"
args = ["clock-realtime", "clock-monotonic", "clock-sleep", "random"]
{task_clock}
"#
        ),
    );
    ws
}

#[test]
fn time_and_randomness_repeat_across_fresh_runs() {
    let ws = clock_ws("", "");
    let (first, s1) = ws.run(&["p:t", "p:raw"]);
    first.expect_code(0);
    ws.wask(&["cache", "clear"]).expect_code(0);
    let (second, s2) = ws.run(&["p:t", "p:raw"]);
    second.expect_code(0);
    for id in ["p:t", "p:raw"] {
        assert_eq!(task(&s2, id)["source"], "fresh", "the cache was cleared");
        let (a, b) = (
            lines_of(&first.stdout(), id),
            lines_of(&second.stdout(), id),
        );
        assert!(!a.is_empty());
        assert_eq!(a, b, "{id}: two fresh runs print the same bytes");
        assert_eq!(task(&s1, id)["key"], task(&s2, id)["key"]);
    }
    let out = lines_of(&first.stdout(), "p:t");
    assert_eq!(out[0], "[p:t] ok time 315532800000000000", "{out:?}");
    assert_eq!(out[0], out[3], "the wall clock stands still");
    assert_ne!(out[1], out[4], "the random stream moves on");
    assert!(!first.stdout().contains("ESCAPED"), "{}", first.stdout());
}

fn key_and_time(ws: &Ws) -> (String, u128) {
    let (run, summary) = ws.run(&["p:t"]);
    run.expect_code(0);
    let key = task(&summary, "p:t")["key"].as_str().unwrap().to_string();
    let line = lines_of(&run.stdout(), "p:t")[0].clone();
    let nanos = line
        .strip_prefix("[p:t] ok time ")
        .unwrap()
        .parse()
        .unwrap();
    (key, nanos)
}

#[test]
fn host_clock_is_an_opt_out_that_changes_the_key() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let near_now = |t: u128| t.abs_diff(now) < 600 * 1_000_000_000;

    let (fixed_key, fixed_time) = key_and_time(&clock_ws("", ""));
    assert_eq!(fixed_time, 315_532_800 * 1_000_000_000);

    let (task_key, task_time) = key_and_time(&clock_ws("clock = \"host\"", ""));
    assert_ne!(task_key, fixed_key, "the task's clock choice is in its key");
    assert!(near_now(task_time), "{task_time}");

    let (ws_key, ws_time) = key_and_time(&clock_ws("", "[sandbox]\nclock = \"host\"\n"));
    assert_ne!(ws_key, fixed_key, "the workspace default is in the key too");
    assert!(near_now(ws_time), "{ws_time}");
    assert_eq!(
        ws_key, task_key,
        "the same effective clock gives the same key, wherever it was set"
    );

    // A task can opt back in to the fixed clock under a host default.
    let (back_key, back_time) = key_and_time(&clock_ws(
        "clock = \"fixed\"",
        "[sandbox]\nclock = \"host\"\n",
    ));
    assert_eq!(back_time, fixed_time);
    assert_eq!(back_key, fixed_key);

    // The epoch of the fixed clock is configurable and in the key.
    let (epoch_key, epoch_time) = key_and_time(&clock_ws("", "[sandbox]\nepoch = 1000000000\n"));
    assert_eq!(epoch_time, 1_000_000_000 * 1_000_000_000);
    assert_ne!(epoch_key, fixed_key);
}

#[test]
fn a_directory_listing_has_a_stable_order() {
    let names: Vec<String> = (0..40)
        .map(|i| format!("f{:02}-{}.txt", (i * 17) % 40, i))
        .collect();
    let make = |ws: &Ws, reverse: bool| {
        let _ = std::fs::remove_dir_all(ws.path("src"));
        let mut order = names.clone();
        if reverse {
            order.reverse();
        }
        for n in &order {
            ws.write(&format!("src/{n}"), n.as_bytes());
            ws.write(&format!("src/sub/{n}"), n.as_bytes());
        }
    };
    let ws = Ws::new();
    std::fs::create_dir_all(ws.path("tools")).unwrap();
    std::fs::copy(hostile_wasm(), ws.path("tools/hostile.wasm")).unwrap();
    ws.write(
        "wask.toml",
        r#"[workspace]
[project]
name = "p"

[tasks.ls]
module = "/tools/hostile.wasm"
args = ["ls:/src,/src/sub,/"]
inputs = ["src/**"]
"#,
    );
    make(&ws, false);
    let listing = |ws: &Ws| {
        ws.wask(&["cache", "clear"]).expect_code(0);
        let (run, summary) = ws.run(&["p:ls"]);
        run.expect_code(0);
        assert_eq!(task(&summary, "p:ls")["source"], "fresh");
        lines_of(&run.stdout(), "p:ls")
    };
    let first = listing(&ws);
    assert!(first[0].contains("f00-0.txt"), "{first:?}");
    assert_eq!(
        listing(&ws),
        first,
        "a second fresh run lists the same order"
    );
    make(&ws, true);
    assert_eq!(
        listing(&ws),
        first,
        "inputs created in the opposite order list the same"
    );
}
