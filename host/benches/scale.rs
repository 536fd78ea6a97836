//! How wask's own overhead grows with the size of a workspace (EXEC-004, issue 3's
//! 5,000-task target): load the `wask.toml` files, build and check the graph, plan the
//! run set, run every task fresh, then run every task from the cache.
//!
//! Each size is a grid of projects of 50 tasks: task `tK` depends on `~:t(K-1)` and on
//! `tK` of the previous project, so the graph has about two edges per task; every task
//! runs the no-op module on one declared input file. Figures are per task, and each is
//! also given as a ratio to the smallest size's per-task figure, measured in the same
//! process: a ratio near 1.0 at every size means the cost grows linearly.
//!
//! Run: `cargo bench -p wask --bench scale` (optionally `-- SIZE...`, default
//! `500 1000 2000 5000`).

use std::path::Path;
use std::time::Instant;
use wask::exec::observer::Silent;
use wask::exec::record::{Source, TaskState};

/// `(module (memory (export "memory") 1) (func (export "_start")))`
const NOOP_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
    0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, b'm', b'e', b'm', b'o', b'r',
    b'y', 0x02, 0x00, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, 0x0a, 0x04, 0x01, 0x02,
    0x00, 0x0b,
];

const PER_PROJECT: usize = 50;

fn write_workspace(root: &Path, tasks: usize) {
    let projects = tasks.div_ceil(PER_PROJECT);
    std::fs::create_dir_all(root.join("tools")).unwrap();
    std::fs::write(root.join("tools/noop.wasm"), NOOP_WASM).unwrap();
    let names: Vec<String> = (0..projects).map(|p| format!("\"p{p:04}\"")).collect();
    std::fs::write(
        root.join("wask.toml"),
        format!("[workspace]\nprojects = [{}]\n", names.join(", ")),
    )
    .unwrap();
    for p in 0..projects {
        let dir = root.join(format!("p{p:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut toml = format!("[project]\nname = \"p{p:04}\"\ntags = [\"t{}\"]\n", p % 4);
        for k in 0..PER_PROJECT.min(tasks - p * PER_PROJECT) {
            std::fs::write(dir.join(format!("in{k}.txt")), format!("{p}/{k}\n")).unwrap();
            let mut deps = Vec::new();
            if k > 0 {
                deps.push(format!("\"~:t{:02}\"", k - 1));
            }
            if p > 0 {
                deps.push(format!("\"p{:04}:t{k:02}\"", p - 1));
            }
            toml.push_str(&format!(
                "\n[tasks.t{k:02}]\nmodule = \"/tools/noop.wasm\"\nargs = [\"{p}\", \"{k}\"]\ninputs = [\"in{k}.txt\"]\ndeps = [{}]\n",
                deps.join(", ")
            ));
        }
        std::fs::write(dir.join("wask.toml"), toml).unwrap();
    }
}

/// Microseconds per task of each phase.
struct Figures {
    load: f64,
    graph: f64,
    plan: f64,
    fresh: f64,
    cached: f64,
}

fn run(root: &Path, tasks: usize, expect: Source) -> f64 {
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
            jobs: 2,
            fail_fast: false,
            cancelled: &|| false,
        },
    );
    let took = start.elapsed().as_secs_f64() * 1e6 / tasks as f64;
    assert_eq!(records.len(), tasks);
    for r in &records {
        assert_eq!(r.state, TaskState::Succeeded, "{}: {:?}", r.id, r.error);
        assert_eq!(r.source, Some(expect), "{}", r.id);
    }
    took
}

fn measure(tasks: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    write_workspace(&root, tasks);
    let per = |start: Instant| start.elapsed().as_secs_f64() * 1e6 / tasks as f64;

    let start = Instant::now();
    let ws = wask::workspace::load(&root).expect("bench workspace loads");
    let load = per(start);
    let start = Instant::now();
    let graph = wask::graph::Graph::build(&ws).expect("bench graph builds");
    let graph_time = per(start);
    assert_eq!(graph.nodes.len(), tasks);

    let ctx = wask::exec::RunContext::new(
        wask::exec::KeyContext::new(&ws, &graph, wask::cancel::Cancel::never()).unwrap(),
        &Silent,
        wask_runtime::CompileIn::Thread,
    )
    .unwrap();
    assert!(
        ctx.sandbox
            .load(
                NOOP_WASM,
                &wask_runtime::Limits::default(),
                std::time::Instant::now() + std::time::Duration::from_secs(60)
            )
            .is_ok(),
        "compile once, outside the timing"
    );
    let last = graph.nodes.len() - 1;
    let start = Instant::now();
    let run_set = graph.run_set(&[last]);
    let order = wask::exec::plan::topological(&graph, &run_set);
    let plan = per(start);
    assert_eq!(order.len(), tasks, "the last task needs every other");
    drop(ctx);

    Figures {
        load,
        graph: graph_time,
        plan,
        fresh: run(&root, tasks, Source::Fresh),
        cached: run(&root, tasks, Source::Cache),
    }
}

fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .filter(|n| *n > 0)
        .collect();
    if sizes.is_empty() {
        sizes = vec![500, 1000, 2000, 5000];
    }
    let results: Vec<(usize, Figures)> = sizes.iter().map(|&n| (n, measure(n))).collect();
    let base = &results[0].1;
    println!(
        "per-task cost by workspace size (two jobs); ratio = per-task cost / per-task cost at {} tasks",
        results[0].0
    );
    println!(
        "{:>6}  {:>16}  {:>16}  {:>16}  {:>16}  {:>16}",
        "tasks", "load", "graph", "plan", "run fresh", "run cached"
    );
    for (n, f) in &results {
        let cell = |v: f64, b: f64| format!("{v:8.1}us {:5.2}x", v / b);
        println!(
            "{n:>6}  {}  {}  {}  {}  {}",
            cell(f.load, base.load),
            cell(f.graph, base.graph),
            cell(f.plan, base.plan),
            cell(f.fresh, base.fresh),
            cell(f.cached, base.cached),
        );
    }
}
