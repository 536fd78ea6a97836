//! What `wask audit --workspace --runs N` costs per task, as a multiple of a fresh run
//! of the same workspace (issue 11's goal: at most N + 0.1 fresh runs per task).
//!
//! Both are timed through the `wask` binary, one task at a time (`wask run -j 1`; the
//! audit runs one task at a time), with the modules' compiled code already cached, as
//! on every run but a workspace's first:
//!
//! * the baseline: `wask cache clean --max-size 0` (every entry removed, compiled code
//!   kept), then `wask run --workspace -j 1`: every task fresh, stored;
//! * the audit: `wask audit --workspace --runs N` with every entry in the cache (the
//!   predecessors come from it, each audited task runs N times and is compared with
//!   its entry).
//!
//! Workspaces: the example (`examples/docs-site`, 7 tasks, its plugins built by
//! `bash scripts/build-guests.sh`) and a generated one of 1,000 tasks in 20 projects,
//! each task the example's `checksum` plugin over one source file and the output of
//! the task before it in its project (a chain of 50 per project).
//!
//! Run: `bash scripts/build-guests.sh rust && cargo bench -p wask --bench audit`
//! (optionally `-- RUNS ROUNDS`, default `2 3`). Figures are medians of ROUNDS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const WASK: &str = env!("CARGO_BIN_EXE_wask");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Seconds `wask ARGS` took in `root`; panics with its output if it fails.
fn timed(root: &Path, args: &[&str]) -> f64 {
    let start = Instant::now();
    let out = Command::new(WASK)
        .args(args)
        .current_dir(root)
        .env_remove("WASK_CACHE_DIR")
        .output()
        .expect("wask runs");
    let took = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "wask {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).into_iter().filter_entry(|e| {
        let name = e.file_name().to_string_lossy();
        !(e.depth() > 0 && (name == ".wask" || name == "dist"))
    }) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn example(root: &Path) -> usize {
    let site = repo().join("examples/docs-site");
    assert!(
        site.join("tools/checksum.wasm").is_file(),
        "build the example plugins first: bash scripts/build-guests.sh"
    );
    copy_tree(&site, root);
    7
}

const PROJECTS: usize = 20;
const PER_PROJECT: usize = 50;

fn generated(root: &Path) -> usize {
    let checksum = repo().join("examples/docs-site/tools/checksum.wasm");
    std::fs::create_dir_all(root.join("tools")).unwrap();
    std::fs::copy(&checksum, root.join("tools/checksum.wasm"))
        .expect("build the example plugins first: bash scripts/build-guests.sh");
    let names: Vec<String> = (0..PROJECTS).map(|p| format!("\"p{p:02}\"")).collect();
    std::fs::write(
        root.join("wask.toml"),
        format!("[workspace]\nprojects = [{}]\n", names.join(", ")),
    )
    .unwrap();
    for p in 0..PROJECTS {
        let dir = root.join(format!("p{p:02}"));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let mut toml = format!("[project]\nname = \"p{p:02}\"\n");
        for k in 0..PER_PROJECT {
            std::fs::write(
                dir.join(format!("src/{k}.txt")),
                format!("source {p}/{k}\n").repeat(50),
            )
            .unwrap();
            let (deps, before) = if k == 0 {
                (String::new(), String::new())
            } else {
                (
                    format!("deps = [\"~:t{:02}\"]\n", k - 1),
                    format!(", \"out/{:02}.sum\"", k - 1),
                )
            };
            toml.push_str(&format!(
                "\n[tasks.t{k:02}]\nmodule = \"/tools/checksum.wasm\"\nargs = [\"out/{k:02}.sum\"]\n{deps}inputs = [\"src/{k}.txt\"{before}]\noutputs = [\"out/{k:02}.sum\"]\n"
            ));
        }
        std::fs::write(dir.join("wask.toml"), toml).unwrap();
    }
    PROJECTS * PER_PROJECT
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Per task: a fresh run's seconds and the audit's, medians of `rounds`.
fn measure(root: &Path, tasks: usize, runs: usize, rounds: usize) -> (f64, f64) {
    // Compiles the modules once, outside the timing.
    timed(root, &["run", "--workspace", "-j", "1"]);
    let mut fresh = Vec::new();
    let mut audit = Vec::new();
    let runs = runs.to_string();
    for _ in 0..rounds {
        timed(root, &["cache", "clean", "--max-size", "0"]);
        fresh.push(timed(root, &["run", "--workspace", "-j", "1"]) / tasks as f64);
        audit.push(timed(root, &["audit", "--workspace", "--runs", &runs]) / tasks as f64);
    }
    (median(fresh), median(audit))
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let runs = numbers.first().copied().unwrap_or(2);
    let rounds = numbers.get(1).copied().unwrap_or(3);
    println!(
        "wask audit --workspace --runs {runs}, per task, against a fresh run (wask run -j 1), medians of {rounds} rounds; goal: at most {} fresh runs",
        runs as f64 + 0.1
    );
    println!(
        "{:<22} {:>6} {:>12} {:>12} {:>14}",
        "workspace", "tasks", "fresh run", "audit", "fresh runs"
    );
    type Writer = fn(&Path) -> usize;
    let workspaces: [(&str, Writer); 2] =
        [("example (docs-site)", example), ("generated", generated)];
    for (name, write) in workspaces {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let tasks = write(&root);
        let (fresh, audit) = measure(&root, tasks, runs, rounds);
        println!(
            "{name:<22} {tasks:>6} {:>9.2} ms {:>9.2} ms {:>13.2}x",
            fresh * 1e3,
            audit * 1e3,
            audit / fresh
        );
    }
}
