//! What the fifth outside review of the release binary got through, each as a test
//! that drives `wask` the way the attack did. See `docs/security.md` for the claims
//! these show.

use crate::hardening::{entries, hostile, run_task, workspace};
use crate::support::{Run, io_counter, task, terminate};
use std::process::Child;
use std::time::{Duration, Instant};

/// Sends SIGTERM to `child` once `counter` of it passes `bytes`, and waits for it.
fn terminate_past(child: Child, counter: &str, bytes: u64) -> Run {
    let start = Instant::now();
    while io_counter(child.id(), counter) < bytes {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "wask never got that far"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    terminate(child.id());
    Run(child.wait_with_output().unwrap())
}

/// SIGTERM while a large result is stored, or restored, stops it: the task is
/// Cancelled, no entry is stored and no output placed, and an entry being restored
/// stays whole for the next run. The review's wask finished storing and placing 1.5 GiB
/// after the signal (up to 7.5 s later) and reported the task done.
#[test]
fn a_signal_during_a_store_or_a_restore_leaves_nothing_half_done() {
    const GIB: u64 = 1 << 30;
    let ws = workspace(&hostile(
        "t",
        &[&format!("fill:/out/big.bin|{GIB}")],
        "outputs = [\"out/*.bin\"]",
    ));
    let summary = ws.path("s.json");
    let spawn = || ws.spawn(&["run", "p:t", "--summary", summary.to_str().unwrap()]);
    let state = || {
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        task(&s, "p:t")["state"].clone()
    };
    // The guest's gigabyte is written; past it by 128 MiB, the store's copy is under way.
    let run = terminate_past(spawn(), "wchar", GIB + (128 << 20));
    assert_eq!(run.code(), 128 + 15, "{}{}", run.stdout(), run.stderr());
    assert_eq!(state(), "cancelled");
    assert_eq!(entries(&ws), 0, "an entry was stored after the signal");
    assert!(!ws.path("out/big.bin").exists(), "the output was placed");

    let (run, record) = run_task(&ws, "p:t", &[]);
    run.expect_code(0);
    assert_eq!(record["source"], "fresh");
    std::fs::remove_file(ws.path("out/big.bin")).unwrap();
    // Nothing else a hit reads comes near 256 MiB: past it, the blob is being copied.
    let run = terminate_past(spawn(), "rchar", 256 << 20);
    assert_eq!(run.code(), 128 + 15, "{}{}", run.stdout(), run.stderr());
    assert_eq!(state(), "cancelled");
    assert!(
        !ws.path("out/big.bin").exists(),
        "a part of the output was placed"
    );
    let (run, record) = run_task(&ws, "p:t", &[]);
    run.expect_code(0);
    assert_eq!(record["source"], "cache", "the entry did not survive");
    assert_eq!(
        std::fs::metadata(ws.path("out/big.bin")).unwrap().len(),
        GIB
    );
}
