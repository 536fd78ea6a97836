//! Per-task overhead of a trivial task: fresh (sandboxed), cache hit, and a native
//! process spawn as the baseline, all measured in this one process so the ratios hold
//! on a noisy machine.
//!
//! A second part runs a few tasks with large inputs, against reading and hashing the
//! same files (what the key costs anyway) and copying them, to show what staging each
//! input as a private copy adds to a fresh run.
//!
//! Run: `cargo bench -p wask --bench overhead` (optionally `-- TASKS ROUNDS`).

use std::path::Path;
use std::time::{Duration, Instant};
use wask::exec::observer::Silent;
use wask::exec::record::{Source, TaskState};

/// `(module (memory (export "memory") 1) (func (export "_start")))`
const NOOP_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: func [] -> []
    0x03, 0x02, 0x01, 0x00, // function 0 has type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // one memory, min 1 page
    0x07, 0x13, 0x02, // two exports
    0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, //
    0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, //
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // body: no locals, end
];

fn write_workspace(root: &Path, tasks: usize, input_bytes: usize) {
    std::fs::create_dir_all(root.join("tools")).unwrap();
    std::fs::write(root.join("tools/noop.wasm"), NOOP_WASM).unwrap();
    let mut toml = String::from("[workspace]\n\n[project]\nname = \"bench\"\n");
    for i in 0..tasks {
        let mut input = format!("input {i}\n").into_bytes();
        input.resize(input_bytes.max(input.len()), b'x');
        std::fs::write(root.join(format!("in{i}.txt")), input).unwrap();
        toml.push_str(&format!(
            "\n[tasks.t{i}]\nmodule = \"/tools/noop.wasm\"\nargs = [\"{i}\"]\ninputs = [\"in{i}.txt\"]\n"
        ));
    }
    std::fs::write(root.join("wask.toml"), toml).unwrap();
}

/// Runs every task of the workspace once, on one job so the figure is per task.
fn run_all(root: &Path, expect: Source) -> Duration {
    let ws = wask::workspace::load(root).expect("bench workspace loads");
    let graph = wask::graph::Graph::build(&ws).expect("bench graph builds");
    let ctx = wask::exec::RunContext::new(
        wask::exec::KeyContext::new(&ws, &graph, wask::cancel::Cancel::never()).unwrap(),
        &Silent,
        wask_runtime::CompileIn::Thread,
    )
    .unwrap();
    let all: Vec<usize> = (0..graph.nodes.len()).collect();
    let start = Instant::now();
    let records = wask::exec::run(
        &ctx,
        &all,
        &wask::exec::RunOptions {
            jobs: 1,
            fail_fast: false,
            cancelled: &|| false,
        },
    );
    let took = start.elapsed();
    for r in &records {
        assert_eq!(r.state, TaskState::Succeeded, "{}: {:?}", r.id, r.error);
        assert_eq!(r.source, Some(expect), "{}", r.id);
    }
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let tasks = args.first().copied().unwrap_or(200);
    let rounds = args.get(1).copied().unwrap_or(5);
    let (mut fresh, mut hit, mut native) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        write_workspace(&root, tasks, 0);
        warm_up(&root);
        fresh.push(run_all(&root, Source::Fresh).as_secs_f64() * 1e6 / tasks as f64);
        hit.push(run_all(&root, Source::Cache).as_secs_f64() * 1e6 / tasks as f64);
        let start = Instant::now();
        for _ in 0..tasks {
            let status = std::process::Command::new("true").status().unwrap();
            assert!(status.success());
        }
        native.push(start.elapsed().as_secs_f64() * 1e6 / tasks as f64);
    }
    let (f, h, n) = (median(fresh), median(hit), median(native));
    println!("per-task overhead, {tasks} trivial tasks x {rounds} rounds, medians, one job:");
    println!("  native process spawn (`true`):  {n:8.1} us   1.00x");
    println!(
        "  wask fresh (sandboxed run):     {f:8.1} us   {:.2}x native",
        f / n
    );
    println!(
        "  wask cache hit:                 {h:8.1} us   {:.2}x native",
        h / n
    );
    large_inputs(rounds);
}

/// Fresh runs and hits of tasks with one 16 MiB input each, per MiB, against reading
/// and hashing the inputs and against copying them.
fn large_inputs(rounds: usize) {
    const TASKS: usize = 8;
    const BYTES: usize = 16 << 20;
    let mib = (TASKS * BYTES) as f64 / (1 << 20) as f64;
    let (mut fresh, mut hit, mut hash, mut copy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        write_workspace(&root, TASKS, BYTES);
        warm_up(&root);
        let start = Instant::now();
        for i in 0..TASKS {
            let bytes = std::fs::read(root.join(format!("in{i}.txt"))).unwrap();
            std::hint::black_box(blake3::hash(&bytes));
        }
        hash.push(start.elapsed().as_secs_f64() * 1e6 / mib);
        let start = Instant::now();
        for i in 0..TASKS {
            std::fs::copy(
                root.join(format!("in{i}.txt")),
                root.join(format!("copy{i}")),
            )
            .unwrap();
        }
        copy.push(start.elapsed().as_secs_f64() * 1e6 / mib);
        fresh.push(run_all(&root, Source::Fresh).as_secs_f64() * 1e6 / mib);
        hit.push(run_all(&root, Source::Cache).as_secs_f64() * 1e6 / mib);
    }
    let (f, h, x, c) = (median(fresh), median(hit), median(hash), median(copy));
    println!(
        "\n{TASKS} tasks with a 16 MiB input each x {rounds} rounds, medians, per MiB of input:"
    );
    println!("  read and hash the inputs:       {x:8.1} us   1.00x");
    println!(
        "  copy the inputs:                {c:8.1} us   {:.2}x",
        c / x
    );
    println!(
        "  wask cache hit:                 {h:8.1} us   {:.2}x",
        h / x
    );
    println!(
        "  wask fresh (inputs copied):     {f:8.1} us   {:.2}x",
        f / x
    );
}

/// Compiles the module once outside the timing: the compiled-module cache makes later
/// runs load it from disk, which is what every real run but the very first does.
fn warm_up(root: &Path) {
    let ws = wask::workspace::load(root).unwrap();
    let graph = wask::graph::Graph::build(&ws).unwrap();
    let warm = wask::exec::RunContext::new(
        wask::exec::KeyContext::new(&ws, &graph, wask::cancel::Cancel::never()).unwrap(),
        &Silent,
        wask_runtime::CompileIn::Thread,
    )
    .map(|ctx| {
        ctx.sandbox
            .load(
                NOOP_WASM,
                &wask_runtime::Limits::default(),
                Instant::now() + Duration::from_secs(60),
            )
            .is_ok()
    });
    assert!(matches!(warm, Ok(true)));
}
