//! What a remote hit costs (issue 12): 1,000 tasks restored from a remote cache on
//! loopback into an empty local cache, against the same 1,000 restored from the local
//! cache, for each protocol; with requests and bytes per task, and the server's round
//! trip measured in the same process. Goal: a remote hit at most 2x a local hit plus
//! one round trip.
//!
//! The servers are the tests' (`scripts/servers.sh`): run
//!
//! ```sh
//! bash scripts/build-guests.sh rust
//! bash -c 'source scripts/servers.sh && start_servers && cargo bench -p wask --bench remote'
//! ```
//!
//! (`-- TASKS ROUNDS`, default `1000 3`). Each task is the example's `checksum` plugin
//! over one source file, with one output. Figures are medians of ROUNDS; in both runs
//! every output is restored into the workspace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const WASK: &str = env!("CARGO_BIN_EXE_wask");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `wask ARGS` in `root` with `env`: seconds, and the summary if `--summary` was asked.
fn wask(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (f64, serde_json::Value) {
    let summary = root.join(".summary.json");
    let _ = std::fs::remove_file(&summary);
    let mut cmd = Command::new(WASK);
    cmd.args(args)
        .current_dir(root)
        .env_remove("WASK_CACHE_DIR");
    if args[0] == "run" {
        cmd.arg("--summary").arg(&summary);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().expect("wask runs");
    let took = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "wask {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read(&summary)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (took, json)
}

const PER_PROJECT: usize = 50;

fn write_workspace(root: &Path, tasks: usize, url: &str, nonce: &str) {
    let checksum = repo().join("examples/docs-site/tools/checksum.wasm");
    std::fs::create_dir_all(root.join("tools")).unwrap();
    std::fs::copy(&checksum, root.join("tools/checksum.wasm"))
        .expect("build the example plugins first: bash scripts/build-guests.sh rust");
    let projects = tasks.div_ceil(PER_PROJECT);
    let names: Vec<String> = (0..projects).map(|p| format!("\"p{p:02}\"")).collect();
    std::fs::write(
        root.join("wask.toml"),
        format!(
            "[workspace]\nprojects = [{}]\n\n[cache.remote]\nurl = \"{url}\"\n",
            names.join(", ")
        ),
    )
    .unwrap();
    for p in 0..projects {
        let dir = root.join(format!("p{p:02}"));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let mut toml = format!("[project]\nname = \"p{p:02}\"\n");
        for k in 0..PER_PROJECT.min(tasks - p * PER_PROJECT) {
            std::fs::write(
                dir.join(format!("src/{k}.txt")),
                format!("{nonce} {p}/{k}\n").repeat(20),
            )
            .unwrap();
            toml.push_str(&format!(
                "\n[tasks.t{k:02}]\nmodule = \"/tools/checksum.wasm\"\nargs = [\"out/{k:02}.sum\"]\ninputs = [\"src/{k}.txt\"]\noutputs = [\"out/{k:02}.sum\"]\n"
            ));
        }
        std::fs::write(dir.join("wask.toml"), toml).unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The server's round trip: a lookup of an action nobody stored, median of 200.
fn round_trip(url: &str) -> f64 {
    let store = wask_remote::connect(&wask_remote::Options::new(url)).unwrap();
    store.capabilities().unwrap();
    let times = (0..200)
        .map(|i| {
            let d = wask_remote::Digest::of(
                wask_remote::DigestFunction::Sha256,
                format!("no such action {i}").as_bytes(),
            );
            let start = Instant::now();
            assert!(store.get_action_result(&d).unwrap().is_none());
            start.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

struct Figures {
    local: f64,
    remote: f64,
    rtt: f64,
    requests: f64,
    bytes: f64,
}

/// Moves every project's `out/` into `graveyard` (a rename, not a delete: see
/// `measure`), so the next run must restore every output.
fn bury_outputs(root: &Path, graveyard: &Path, round: &str) {
    let dest = graveyard.join(round);
    std::fs::create_dir_all(&dest).unwrap();
    for project in std::fs::read_dir(root).unwrap().flatten() {
        let out = project.path().join("out");
        if out.is_dir() {
            std::fs::rename(&out, dest.join(project.file_name())).unwrap();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Both runs restore every output (the workspace's `out/` directories are moved away
/// first); the remote one starts from an empty local cache holding only the compiled
/// module. Nothing is deleted until the end: on a file system without a journal (this
/// machine's ext4), every file created within a minute or more of a mass delete costs
/// a scan of the recently freed inodes (ext4's `recently_deleted`), which would charge
/// whichever run comes after a `cache clean` for it.
fn measure(url: &str, tasks: usize, rounds: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    std::fs::create_dir(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let graveyard = dir.path().join("graveyard");
    let state = dir.path().join("state");
    let state = state.to_str().unwrap().to_string();
    let nonce = format!("{:?}", std::time::SystemTime::now());
    write_workspace(&root, tasks, url, &nonce);
    let writer_cache = dir.path().join("cache-writer");
    let writer_cache = writer_cache.to_str().unwrap().to_string();
    let (_, s) = wask(
        &root,
        &["run", "--workspace"],
        &[
            ("WASK_STATE_DIR", &state),
            ("WASK_CACHE_DIR", &writer_cache),
            ("WASK_REMOTE_CACHE_WRITE", "true"),
        ],
    );
    assert_eq!(s["remote"]["uploaded"], tasks, "{}", s["remote"]);
    let (mut local, mut remote, mut requests, mut bytes) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let cache = dir.path().join(format!("cache-{round}"));
        copy_dir(
            &Path::new(&writer_cache).join("compiled"),
            &cache.join("compiled"),
        );
        std::fs::copy(
            Path::new(&writer_cache).join("CACHEDIR.TAG"),
            cache.join("CACHEDIR.TAG"),
        )
        .unwrap();
        let env = [
            ("WASK_STATE_DIR", state.as_str()),
            ("WASK_CACHE_DIR", cache.to_str().unwrap()),
        ];
        bury_outputs(&root, &graveyard, &format!("{round}-remote"));
        let (t, s) = wask(&root, &["run", "--workspace"], &env);
        assert_eq!(s["remote_hits"], tasks, "{}", s["remote"]);
        remote.push(t / tasks as f64);
        requests.push(s["remote"]["requests"].as_f64().unwrap() / tasks as f64);
        bytes.push(s["remote"]["bytes_down"].as_f64().unwrap() / tasks as f64);
        // The same again from the cache just filled: all local hits, the remote not
        // asked.
        bury_outputs(&root, &graveyard, &format!("{round}-local"));
        let (t, s) = wask(&root, &["run", "--workspace"], &env);
        assert_eq!(s["cached"], tasks);
        assert_eq!(s["remote_hits"], 0);
        local.push(t / tasks as f64);
    }
    Figures {
        local: median(local),
        remote: median(remote),
        rtt: round_trip(url),
        requests: median(requests),
        bytes: median(bytes),
    }
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let tasks = numbers.first().copied().unwrap_or(1000);
    let rounds = numbers.get(1).copied().unwrap_or(3);
    let servers: Vec<(&str, String)> = [
        ("HTTP (nginx)", "WASK_TEST_HTTP_CACHE"),
        ("REAPI (BuildGrid)", "WASK_TEST_REAPI"),
    ]
    .into_iter()
    .filter_map(|(name, var)| Some((name, std::env::var(var).ok()?)))
    .collect();
    assert!(
        !servers.is_empty(),
        "no server: run under `source scripts/servers.sh && start_servers`"
    );
    println!(
        "{tasks} tasks restored, per task (medians of {rounds}); goal: remote <= 2 x local + 1 round trip"
    );
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>8} {:>10} {:>10}",
        "server", "local hit", "remote hit", "round trip", "goal", "requests", "bytes"
    );
    for (name, url) in servers {
        let f = measure(&url, tasks, rounds);
        let goal = 2.0 * f.local + f.rtt;
        println!(
            "{name:<18} {:>7.2} ms {:>7.2} ms {:>7.2} ms {:>7.2}x {:>10.1} {:>10.0}",
            f.local * 1e3,
            f.remote * 1e3,
            f.rtt * 1e3,
            f.remote / goal,
            f.requests,
            f.bytes
        );
    }
}
