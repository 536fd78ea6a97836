//! Crash consistency and concurrent runs (CACHE-017, 019).
//!
//! `wask run` is killed with SIGKILL at moments drawn from a seeded generator, aimed
//! at its store and restore phases (located from an uninterrupted run's summary), over
//! and over. After every kill: each output holds its old bytes or its new bytes, never
//! a part; no stray file sits among the outputs; every entry in the cache is whole
//! (`wask cache verify` finds nothing corrupt). Then a normal run must be correct and
//! leave no scratch directory behind, the dead run's included.
//!
//! Two `wask run` processes on one workspace and cache must both succeed.

use crate::support::{Rng, Ws, task};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

const OUTPUTS: [&str; 4] = ["a.bin", "b.bin", "c.bin", "d.bin"];
/// Big enough that storing and restoring take a while (they copy and fsync).
const SIZE: usize = 512 * 1024;

const BIG: &str = r#"[workspace]

[project]
name = "p"

[tasks.big]
module = "/tools/probe.wasm"
args = ["copy:/src/a.bin:/out/a.bin", "copy:/src/b.bin:/out/b.bin", "copy:/src/c.bin:/out/c.bin", "copy:/src/d.bin:/out/d.bin", "exit-on-error"]
inputs = ["src/*.bin"]
outputs = ["out/*.bin"]
"#;

/// The bytes of output `file` in state `state`: every state is a different key.
fn content(state: u64, file: usize) -> Vec<u8> {
    Rng::new(state * 16 + file as u64).bytes(SIZE)
}

fn set_inputs(ws: &Ws, state: u64) {
    for (i, name) in OUTPUTS.iter().enumerate() {
        ws.write(&format!("src/{name}"), content(state, i));
    }
}

fn outputs_now(ws: &Ws) -> Vec<Option<Vec<u8>>> {
    OUTPUTS
        .iter()
        .map(|n| std::fs::read(ws.path(&format!("out/{n}"))).ok())
        .collect()
}

/// Names in `dir`, sorted; none if it does not exist.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Interrupted stores' temporary directories in the cache.
fn interrupted_stores(ws: &Ws) -> usize {
    walkdir::WalkDir::new(ws.path(".wask/cache"))
        .min_depth(2)
        .max_depth(2)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count()
}

/// Files staged for a restore and left by a killed run.
fn staged_restores(ws: &Ws) -> usize {
    walkdir::WalkDir::new(ws.path(".wask/tmp"))
        .into_iter()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".wask-restore-")
        })
        .count()
}

/// When `phase` of `p:big` ran, as offsets from `spawned` (the wall-clock time just
/// before the process was started).
fn phase_window(summary: &serde_json::Value, phase: &str, spawned: SystemTime) -> (u64, u64) {
    let p = task(summary, "p:big")["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == phase)
        .unwrap_or_else(|| panic!("no {phase} phase in {summary:#}"))
        .clone();
    let at = |k: &str| {
        let t = humantime::parse_rfc3339(p[k].as_str().unwrap()).unwrap();
        t.duration_since(spawned).unwrap_or_default().as_micros() as u64
    };
    (
        at("started_at"),
        at("finished_at").max(at("started_at") + 1),
    )
}

#[derive(Default, Debug)]
struct Tally {
    runs: u64,
    kills: u64,
    mid_store: u64,
    mid_restore: u64,
    torn_outputs_seen: u64,
}

/// How many kills that land while `wask` is running the test insists on.
const KILLS: u64 = 100;

/// CACHE-017/019: at least [`KILLS`] SIGKILLs during store and restore; nothing partial is
/// ever visible and the next run is always correct.
#[test]
fn sigkill_during_store_and_restore_never_leaves_a_partial_entry_or_output() {
    let ws = Ws::new();
    ws.with_probe().write("wask.toml", BIG);
    let mut rng = Rng::from_env(0xdead_beef);

    // Locate the phases once, uninterrupted, with the module already compiled (as it
    // is for every run after the first): where to aim the kills.
    set_inputs(&ws, 0);
    ws.run(&["p:big"]).0.expect_code(0);
    set_inputs(&ws, 1);
    let spawned = SystemTime::now();
    let (run, s) = ws.run(&["p:big"]);
    run.expect_code(0);
    let store = phase_window(&s, "store", spawned);
    std::fs::remove_dir_all(ws.path("out")).unwrap();
    let spawned = SystemTime::now();
    let (run, s) = ws.run(&["p:big"]);
    run.expect_code(0);
    assert_eq!(task(&s, "p:big")["source"], "cache");
    let restore = phase_window(&s, "restore", spawned);
    eprintln!("aiming at store {store:?} and restore {restore:?} (µs after spawn)");

    let mut stored: Vec<u64> = vec![0, 1];
    let mut current = 1u64;
    let mut next_state = 1u64;
    let mut tally = Tally::default();
    while tally.kills < KILLS {
        assert!(
            tally.runs < 8 * KILLS,
            "could not land {KILLS} kills: {tally:?}"
        );
        tally.runs += 1;
        let restoring = rng.below(2) == 0 && stored.len() > 1;
        let (state, window) = if restoring {
            let others: Vec<u64> = stored.iter().copied().filter(|s| *s != current).collect();
            (others[rng.below(others.len() as u64) as usize], restore)
        } else {
            next_state += 1;
            (next_state, store)
        };
        set_inputs(&ws, state);
        let before = outputs_now(&ws);
        let expected: Vec<Vec<u8>> = (0..OUTPUTS.len()).map(|i| content(state, i)).collect();
        let tmp_before = interrupted_stores(&ws);

        let started = Instant::now();
        let mut child = ws
            .command(&["run", "p:big"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Most kills are aimed: wait until the operation is seen to begin (a store's
        // temporary directory, the run's scratch directory that restores stage in),
        // then kill within its measured length, so a slow or busy machine moves the
        // kills with the work. The rest land anywhere up to the phase's end.
        let length = Duration::from_micros((window.1 - window.0) * 3 / 2 + 1);
        let aimed = rng.below(4) != 0;
        let began = if aimed {
            let seen = || {
                if restoring {
                    !names(&ws.path(".wask/tmp")).is_empty()
                } else {
                    interrupted_stores(&ws) > tmp_before
                }
            };
            while !seen() && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_micros(100));
            }
            Instant::now()
        } else {
            started
        };
        let until = if aimed {
            length
        } else {
            Duration::from_micros(window.1)
        };
        let delay = Duration::from_micros(rng.below(until.as_micros() as u64 + 1));
        std::thread::sleep(delay.saturating_sub(began.elapsed()));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            tally.kills += 1;
        }
        child.wait().unwrap();

        // Every output is whole: the old bytes or the new.
        let after = outputs_now(&ws);
        let mut new = 0;
        for (i, now) in after.iter().enumerate() {
            let what = format!(
                "run {} ({}), out/{}",
                tally.runs,
                if restoring { "restore" } else { "store" },
                OUTPUTS[i]
            );
            match now {
                Some(b) if *b == expected[i] => new += 1,
                Some(b) => assert_eq!(Some(b), before[i].as_ref(), "{what}: torn or foreign bytes"),
                None => assert!(before[i].is_none(), "{what}: an output vanished"),
            }
        }
        if new > 0 && new < OUTPUTS.len() {
            tally.torn_outputs_seen += 1; // a mix of whole files: killed between renames
        }
        let mut listed = OUTPUTS.map(String::from).to_vec();
        listed.sort();
        assert_eq!(
            names(&ws.path("out")),
            listed,
            "run {}: stray files among the outputs",
            tally.runs
        );
        if interrupted_stores(&ws) > tmp_before {
            tally.mid_store += 1;
        }
        if staged_restores(&ws) > 0 || (restoring && new > 0 && new < OUTPUTS.len()) {
            tally.mid_restore += 1;
        }

        // Every visible entry is whole.
        let verify = ws.wask(&["cache", "verify"]);
        assert!(
            verify.code() == 0 && verify.stdout().contains(" 0 corrupt"),
            "run {}: a partial entry is visible\n{}",
            tally.runs,
            verify.stdout()
        );

        // The next run is correct, and sweeps the dead run's scratch directory.
        let (run, s) = ws.run(&["p:big"]);
        run.expect_code(0);
        assert_eq!(task(&s, "p:big")["state"], "succeeded");
        for (i, now) in outputs_now(&ws).into_iter().enumerate() {
            assert!(
                now.as_ref() == Some(&expected[i]),
                "run {}: out/{} wrong after the rerun",
                tally.runs,
                OUTPUTS[i]
            );
        }
        assert_eq!(
            names(&ws.path(".wask/tmp")),
            Vec::<String>::new(),
            "scratch left behind"
        );
        if !stored.contains(&state) {
            stored.push(state);
        }
        current = state;
    }
    eprintln!("crash suite: {tally:?}");
    // The kills must really have landed inside the operations this test is about.
    assert!(tally.mid_store > 0 && tally.mid_restore > 0, "{tally:?}");
}

const PIPELINE: &str = r#"[workspace]

[project]
name = "p"

[tasks.one]
module = "/tools/probe.wasm"
args = ["copy:/src/x.txt:/out/one.txt", "exit-on-error"]
inputs = ["src/x.txt"]
outputs = ["out/one.txt"]

[tasks.two]
module = "/tools/probe.wasm"
args = ["copy:/src/y.txt:/out/deep/two.txt", "exit-on-error"]
inputs = ["src/y.txt"]
outputs = ["out/deep/two.txt"]

[tasks.both]
module = "/tools/probe.wasm"
args = ["copy:/out/one.txt:/out/both/1.txt", "copy:/out/deep/two.txt:/out/both/2.txt", "exit-on-error"]
deps = ["~:one", "~:two"]
inputs = ["out/one.txt", "out/deep/two.txt"]
outputs = ["out/both/*.txt"]
"#;

/// CACHE-017: two runs at once on one workspace and cache (cold cache, then a
/// changed input, then all hits) both succeed with the right outputs, and leave a
/// cache that verifies and no scratch behind.
#[test]
fn two_concurrent_runs_on_one_workspace_both_succeed() {
    let ws = Ws::new();
    ws.with_probe().write("wask.toml", PIPELINE);
    for round in 0..4 {
        let (x, y) = (format!("x{}\n", round / 2), format!("y{round}\n"));
        ws.write("src/x.txt", &x).write("src/y.txt", &y);
        if round == 3 {
            std::fs::remove_dir_all(ws.path("out")).unwrap();
        }
        let spawn = || {
            ws.command(&["run", "--all"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: a concurrent run failed\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(ws.read("out/one.txt"), x.as_bytes(), "round {round}");
        assert_eq!(ws.read("out/deep/two.txt"), y.as_bytes(), "round {round}");
        assert_eq!(ws.read("out/both/1.txt"), x.as_bytes(), "round {round}");
        assert_eq!(ws.read("out/both/2.txt"), y.as_bytes(), "round {round}");
        let verify = ws.wask(&["cache", "verify"]);
        verify.expect_code(0);
        assert_eq!(
            names(&ws.path(".wask/tmp")),
            Vec::<String>::new(),
            "round {round}"
        );
    }
    // After all that, a run is all hits.
    let (run, s) = ws.run(&["--all"]);
    run.expect_code(0);
    for id in ["p:one", "p:two", "p:both"] {
        assert_eq!(task(&s, id)["source"], "cache", "{id}");
    }
}
