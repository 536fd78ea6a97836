//! The escape catalogue (SANDBOX-001..005, SANDBOX-009): the hostile guest
//! (`tests/guests/hostile`) tries every way out of its sandbox we know of, through the
//! `wask` binary, against a workspace full of bait: undeclared secrets next to declared
//! inputs, one in the cache directory and one outside the workspace, and symbolic and
//! hard links of every kind among the inputs and at output paths.
//!
//! Every attempt is one row of [`CATALOGUE`] and one `wask run` of its own. After every
//! run:
//!
//! * no `ESCAPED` line anywhere, and the task ended as the row expects;
//! * every workspace file (outside `.wask/`) byte-identical with the same mtime, except
//!   files matching the task's declared outputs; no new file outside them; no new
//!   symbolic link at all, so none leads outside the workspace;
//! * the bait outside the workspace and in the cache untouched, and the cache holding
//!   only well-formed entries whose outputs lie in the workspace outside `.wask/`;
//! * for a task that succeeded: its outputs are replaced by symbolic links leading
//!   outside the workspace and the task runs again, a cache hit that restores the same
//!   bytes as regular files and writes nothing through the links.
//!
//! Attacks on time and randomness also run fresh twice and must print the same bytes.

use crate::support::{Ws, hostile_wasm, task};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What wask must make of an attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Every route is refused inside the sandbox; the task itself succeeds (and its
    /// result is cached and restorable).
    Held,
    /// wask detects what the task did and fails it; the error contains this text.
    Fails(&'static str),
    /// wask refuses the declaration before anything runs (exit 2); stderr contains this.
    Rejected(&'static str),
}
use Expect::*;

/// One attempt: the task's guest arguments, inputs and outputs (relative to project
/// `app`, or workspace-absolute). `{WS}`, `{OUT}` and `{PORT}` in arguments stand for
/// the workspace root, the directory outside it, and a listening TCP port.
struct Attempt {
    name: &'static str,
    args: &'static [&'static str],
    inputs: &'static [&'static str],
    outputs: &'static [&'static str],
    expect: Expect,
}

const INPUTS: &[&str] = &["in/a.txt", "in/b.txt", "out/copied.txt"];
const OUTPUTS: &[&str] = &["out/*.out"];
/// A declared output every default task writes, so its result has something to cache.
const RESULT: &str = "write:/app/out/result.out";
const SYMLINK_OUTPUT: &str = "outputs must be regular files";
const MODIFIED_INPUT: &str = "changed or removed its declared input";
const NOT_WRITTEN_BY_IT: &str = "exists and was not written by app:t";

const fn guest(name: &'static str, args: &'static [&'static str], expect: Expect) -> Attempt {
    Attempt {
        name,
        args,
        inputs: INPUTS,
        outputs: OUTPUTS,
        expect,
    }
}

const fn host(
    name: &'static str,
    args: &'static [&'static str],
    inputs: &'static [&'static str],
    outputs: &'static [&'static str],
    expect: Expect,
) -> Attempt {
    Attempt {
        name,
        args,
        inputs,
        outputs,
        expect,
    }
}

/// Every attempt, with what wask must make of it.
#[rustfmt::skip]
const CATALOGUE: &[Attempt] = &[
    // --- `..` and absolute paths from every preopen ---
    guest("dotdot-open-dirs", &["dotdot-dir"], Held),
    guest("dotdot-read-files", &["dotdot-read"], Held),
    guest("dotdot-after-preopen-name", &["dotdot-std"], Held),
    guest(
        "absolute-host-paths-raw",
        &["abs-raw:{WS}/app/secret.txt,{OUT}/outside-secret.txt,{WS}/.wask/cache/cache-secret.txt"],
        Held,
    ),
    guest(
        "absolute-host-paths-libc",
        &[
            "abs-std:{WS}/app/secret.txt,{OUT}/outside-secret.txt,{WS}/.wask/cache/cache-secret.txt,{WS}/app/in/a.txt",
        ],
        Held,
    ),
    // --- undeclared files, the cache, the module ---
    guest(
        "read-undeclared-files",
        &[
            "read-undeclared:/app/secret.txt,/app/in/secret.txt,/secret.txt,/app/undeclared-plain.txt,/wask.toml,/app/wask.toml",
        ],
        Held,
    ),
    guest(
        "stat-undeclared-files",
        &["stat-undeclared:/app/secret.txt,/app/in/secret.txt,/secret.txt,/app/links,/app/linkdir"],
        Held,
    ),
    guest("read-the-cache", &["read-cache"], Held),
    guest(
        "read-own-module",
        &["read-module:/tools/hostile.wasm,/tools"],
        Held,
    ),
    // --- discovering names ---
    guest("walk-every-preopen", &["walk"], Held),
    guest("readdir-raw-cookies", &["readdir-raw"], Held),
    // --- links among the inputs (the host follows only links to declared inputs) ---
    host(
        "input-symlink-to-outside",
        &["read-undeclared:/app/links/to-outside.txt"],
        &["links/to-outside.txt"],
        OUTPUTS,
        Fails("leads outside the workspace"),
    ),
    host(
        "input-symlink-relative-outside",
        &[],
        &["links/rel-outside.txt"],
        OUTPUTS,
        Fails("leads outside the workspace"),
    ),
    host(
        "input-symlink-chain-outside",
        &[],
        &["links/chain.txt"],
        OUTPUTS,
        Fails("leads outside the workspace"),
    ),
    host(
        "input-symlink-to-undeclared",
        &[],
        &["links/to-undeclared.txt"],
        OUTPUTS,
        Fails("not a declared input"),
    ),
    host(
        "input-symlink-to-cache",
        &[],
        &["links/to-cache.txt"],
        OUTPUTS,
        Fails("leads outside the workspace"),
    ),
    host(
        "input-symlink-relative-to-cache",
        &[],
        &["links/rel-to-cache.txt"],
        OUTPUTS,
        Fails("leads outside the workspace"),
    ),
    host(
        "input-through-linked-dir",
        &[],
        &["linkdir/outside-secret.txt"],
        OUTPUTS,
        Fails("leads outside the workspace"),
    ),
    host(
        "input-glob-over-linked-dir",
        &["walk"],
        &["linkdir/**"],
        OUTPUTS,
        Fails("leads outside the workspace"),
    ),
    host(
        "input-glob-over-links",
        &["walk"],
        &["links/**"],
        OUTPUTS,
        Fails("symbolic link"),
    ),
    host(
        "input-symlink-to-declared-is-a-plain-file",
        &[
            "inputs-are-files:/app/links/to-declared.txt",
            "write-ro:/app/links/to-declared.txt",
            RESULT,
        ],
        &["links/to-declared.txt", "in/a.txt"],
        OUTPUTS,
        Held,
    ),
    host(
        "input-hardlink-to-outside-file",
        &[
            "write-ro:/app/hard/outside.txt",
            "append-ro:/app/hard/outside.txt",
            "truncate-ro:/app/hard/outside.txt",
            "settimes-ro:/app/hard/outside.txt",
            RESULT,
        ],
        &["hard/outside.txt"],
        OUTPUTS,
        Held,
    ),
    host(
        "input-hardlink-to-undeclared-file",
        &[
            "remove-ro:/app/hard/undeclared.txt",
            "rename-ro:/app/hard/undeclared.txt",
            "write-ro:/app/hard/undeclared.txt",
            RESULT,
        ],
        &["hard/undeclared.txt"],
        OUTPUTS,
        Held,
    ),
    host(
        "input-hardlink-to-cache-file",
        &[
            "write-ro:/app/hard/cache.txt",
            "allocate-ro:/app/hard/cache.txt",
            "hardlink-input:/app/hard/cache.txt",
            RESULT,
        ],
        &["hard/cache.txt"],
        OUTPUTS,
        Held,
    ),
    host(
        "input-hardlink-under-output-root-written",
        &["write-copy:/app/out/hard-copy.txt", RESULT],
        &["out/hard-copy.txt"],
        OUTPUTS,
        Fails(MODIFIED_INPUT),
    ),
    // --- links planted by the task among its outputs ---
    // wasmtime-wasi refuses to create a link with an absolute target.
    guest(
        "plant-absolute-symlinks",
        &["symlink-abs:{OUT}/outside-secret.txt,{WS}/.wask/cache/cache-secret.txt"],
        Held,
    ),
    guest(
        "plant-dotdot-symlinks",
        &["symlink-dotdot"],
        Fails(SYMLINK_OUTPUT),
    ),
    guest(
        "plant-directory-symlink",
        &["symlink-dir"],
        Fails(SYMLINK_OUTPUT),
    ),
    guest(
        "plant-symlink-to-input",
        &["symlink-to-input:/app/in/a.txt,../in/b.txt,copied.txt"],
        Fails(SYMLINK_OUTPUT),
    ),
    guest(
        "plant-symlink-in-read-only-tree",
        &["symlink-ro:/app/in/a.txt"],
        Held,
    ),
    guest(
        "hardlink-input-into-output",
        &["hardlink-input:/app/in/a.txt,/app/in/b.txt"],
        Held,
    ),
    guest("hardlink-from-above-preopen", &["hardlink-dotdot"], Held),
    guest(
        "hardlink-copied-input-then-write",
        &["hardlink-copy:/app/out/copied.txt,/app/out/link.out"],
        Fails(MODIFIED_INPUT),
    ),
    guest("rename-out-of-preopen", &["rename-escape"], Held),
    // --- changing declared inputs ---
    guest("write-input", &["write-ro:/app/in/a.txt"], Held),
    guest("append-input", &["append-ro:/app/in/a.txt"], Held),
    guest("truncate-input", &["truncate-ro:/app/in/a.txt"], Held),
    guest("remove-input", &["remove-ro:/app/in/a.txt"], Held),
    guest("rename-input", &["rename-ro:/app/in/a.txt"], Held),
    guest("set-times-of-input", &["settimes-ro:/app/in/a.txt"], Held),
    guest("allocate-input", &["allocate-ro:/app/in/a.txt"], Held),
    guest(
        "rights-upgrade-on-read-only-tree",
        &["fd-rights:/app/in/a.txt"],
        Held,
    ),
    guest(
        "renumber-read-only-over-writable",
        &[RESULT, "fd-renumber:/app/in/a.txt"],
        Held,
    ),
    guest(
        "write-copied-input",
        &["write-copy:/app/out/copied.txt"],
        Fails(MODIFIED_INPUT),
    ),
    guest(
        "append-copied-input",
        &["append-copy:/app/out/copied.txt"],
        Fails(MODIFIED_INPUT),
    ),
    guest(
        "truncate-copied-input",
        &["truncate-copy:/app/out/copied.txt"],
        Fails(MODIFIED_INPUT),
    ),
    guest(
        "remove-copied-input",
        &["remove-copy:/app/out/copied.txt"],
        Fails(MODIFIED_INPUT),
    ),
    guest(
        "rename-copied-input",
        &["rename-copy:/app/out/copied.txt"],
        Fails(MODIFIED_INPUT),
    ),
    // Only the sandbox's copy is touched, and its bytes are unchanged: harmless.
    guest(
        "set-times-of-copied-input",
        &["settimes-copy:/app/out/copied.txt"],
        Held,
    ),
    // --- creating files outside declared outputs ---
    guest(
        "create-in-read-only-tree",
        &["create-ro:/app/new.txt,/new.txt,/.wask/planted.txt,/app/in/new.txt,/app/in/a.txt.new"],
        Held,
    ),
    guest(
        "mkdir-in-read-only-tree",
        &["mkdir-ro:/newdir,/app/newdir,/.wask/cache"],
        Held,
    ),
    guest(
        "create-through-dotdot-after-output",
        &["create-dotdot:/app/out/../escape.txt,/app/out/../../escape.txt"],
        Held,
    ),
    guest(
        "create-undeclared-in-output-root",
        &["create-undeclared:/app/out/planted.log"],
        Fails("matches none of the task's `outputs` patterns"),
    ),
    guest(
        "create-undeclared-subdir-in-output-root",
        &["create-undeclared:/app/out/sub/planted.out"],
        Fails("matches none of the task's `outputs` patterns"),
    ),
    guest("overwrite-task-description", &["task-json"], Held),
    host(
        "output-path-with-dotdot",
        &[],
        INPUTS,
        &["../escape.txt"],
        Rejected("cannot contain `..`"),
    ),
    host(
        "output-absolute-dotdot",
        &[],
        INPUTS,
        &["/app/../escape.txt"],
        Rejected("cannot contain `..`"),
    ),
    host(
        "output-in-wask-dir",
        &[],
        INPUTS,
        &["/.wask/cache/**"],
        Rejected("reserved for wask"),
    ),
    host(
        "input-in-wask-dir",
        &[],
        &["/.wask/cache/cache-secret.txt"],
        OUTPUTS,
        Rejected("reserved for wask"),
    ),
    host(
        "input-path-with-dotdot",
        &[],
        &["../secret.txt"],
        OUTPUTS,
        Rejected("cannot contain `..`"),
    ),
    // --- outputs whose globs reach into wask's own directory ---
    host(
        "output-glob-covering-wask-dir",
        &["write:/app/out/result.out,/.wask/cache/planted.out,/.wask/tmp/planted.out"],
        INPUTS,
        &["/**"],
        Rejected("is a glob over /"),
    ),
    host(
        "output-glob-spelling-wask-dir",
        &["write:/app/out/result.out,/.wask/cache/planted.out"],
        INPUTS,
        &["/app/out/*.out", "/.w*/**"],
        Rejected("is a glob over /"),
    ),
    host(
        "output-glob-alternation-wask-dir",
        &["write:/app/out/result.out,/.wask/cache/planted.out"],
        INPUTS,
        &["/app/out/*.out", "/{.wask,x}/cache/*"],
        Rejected("is a glob over /"),
    ),
    // --- outputs at paths the workspace has planted links on ---
    host(
        "output-through-linked-dir",
        &["write:/app/linkout/x.txt"],
        INPUTS,
        &["linkout/*.txt"],
        Fails("wask does not write through it"),
    ),
    // A link (or any file) the task did not write is never replaced by its output.
    host(
        "output-over-symlink-to-outside",
        &["write:/app/out/victim.out"],
        INPUTS,
        OUTPUTS,
        Fails(NOT_WRITTEN_BY_IT),
    ),
    host(
        "output-over-hardlink-to-undeclared",
        &["write:/app/out/hard.out"],
        INPUTS,
        OUTPUTS,
        Fails(NOT_WRITTEN_BY_IT),
    ),
    // --- environment, network, stdin ---
    guest(
        "read-undeclared-variables",
        &["env-undeclared:WASK_TEST_SECRET,PATH,HOME,WASK_CACHE_DIR,USER,PWD"],
        Held,
    ),
    guest(
        "environ-raw-holds-only-declared",
        &["environ-raw:WASK_TEST_ALLOWED,FIXED"],
        Held,
    ),
    guest("sock-accept-every-fd", &["sock-accept"], Held),
    guest("sock-recv-send-shutdown-every-fd", &["sock-io"], Held),
    guest("connect-to-a-listener", &["connect:127.0.0.1:{PORT}"], Held),
    guest("stdin-is-empty", &["stdin"], Held),
    // --- host clock and randomness (determinism on) ---
    guest("clock-realtime", &["clock-realtime:315532800"], Held),
    guest("clock-monotonic", &["clock-monotonic"], Held),
    guest("clock-cputime", &["clock-cputime"], Held),
    guest("clock-across-sleep", &["clock-sleep"], Held),
    guest("randomness", &["random"], Held),
    // --- what the host's file system shows besides bytes (run twice, compared) ---
    guest("clock-sleep-is-virtual", &["sleep:20000000000"], Held),
    guest("clock-sleep-forever-is-virtual", &["sleep:max"], Held),
    guest(
        "clock-file-metadata",
        &["meta:/app/in/a.txt,/app/in,/app,/.wask/task.json,/,/app/out,/app/out/copied.txt"],
        Held,
    ),
    guest("clock-listing-order", &["ls:/app/in,/app,/,/app/out"], Held),
    guest("clock-argv0", &["argv0"], Held),
    // --- writes without bound (stopped while the task runs) ---
    guest(
        "file-bomb-sparse",
        &["sparse:/app/out/sparse.out|1099511627776"],
        Fails("outputs size limit"),
    ),
    guest(
        "file-bomb-far-write",
        &["pwrite-far:/app/out/far.out|1099511627776"],
        Fails("outputs size limit"),
    ),
    guest(
        "file-bomb-hard-links",
        &["link-bomb:/app/out/l.out|5000"],
        Fails("outputs size limit"),
    ),
    guest("descriptor-hoard", &["open-many:/app/in/a.txt|5000"], Held),
    guest("nested-opens", &["nest-open:/app/out/nest|20000"], Held),
    // --- outputs where other programs act on them ---
    host(
        "output-into-git-metadata",
        &["put:/app/out/.git/config|[core]\n\thooksPath = /tmp\n", RESULT],
        INPUTS,
        &["out/**"],
        Fails("version-control metadata"),
    ),
    host(
        "output-onto-a-wask-toml",
        &["put:/app/out/wask.toml|[workspace]\n", RESULT],
        INPUTS,
        &["out/**"],
        Fails("is a wask.toml"),
    ),
    host(
        "output-onto-its-own-module",
        &[],
        INPUTS,
        &["/tools/*.wasm"],
        Rejected("matches the module /tools/hostile.wasm"),
    ),
    host(
        "output-glob-over-the-project",
        &[],
        INPUTS,
        &["**"],
        Rejected("holds the project directory /app"),
    ),
    host(
        "output-onto-an-existing-file",
        &["put:/app/out/existing.out|replaced\n", RESULT],
        &["in/a.txt"],
        OUTPUTS,
        Fails(NOT_WRITTEN_BY_IT),
    ),
    // --- names wask cannot keep ---
    host(
        "output-name-with-a-newline",
        &["odd-name:/app/out", RESULT],
        INPUTS,
        &["out/**"],
        Fails("which wask cannot keep: paths cannot contain control characters"),
    ),
    host(
        "output-path-too-long",
        &["deep-path:/app/out|25", RESULT],
        INPUTS,
        &["out/**"],
        Fails("paths are at most 4096 bytes"),
    ),
];

/// Attempts run by their own test in a fresh workspace each (they aim at the cache,
/// so one must not spoil the next attempt's checks); the catalogue test runs the rest.
const RUN_ALONE: &[&str] = &[
    "output-glob-covering-wask-dir",
    "output-glob-spelling-wask-dir",
    "output-glob-alternation-wask-dir",
];

struct Bait {
    ws: Ws,
    outside: tempfile::TempDir,
    _listener: std::net::TcpListener,
    port: u16,
    summary_dir: tempfile::TempDir,
}

const CACHE_SECRET: &str = ".wask/cache/cache-secret.txt";
const CACHE_HARD: &str = ".wask/cache/cache-hard.txt";

fn symlink(target: impl AsRef<Path>, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

fn hard_link(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::hard_link(from, to).unwrap();
}

/// The workspace with its bait.
fn bait() -> Bait {
    let ws = Ws::new();
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path().canonicalize().unwrap();
    std::fs::create_dir_all(ws.path("tools")).unwrap();
    std::fs::copy(hostile_wasm(), ws.path("tools/hostile.wasm")).unwrap();
    ws.write("wask.toml", "[workspace]\nprojects = [\"app\"]\n");
    // A first run makes the cache directory, tagged as wask's, before bait goes in it.
    ws.write("app/wask.toml", "[project]\nname = \"app\"\n");
    ws.wask(&["run", "--all"]).expect_code(0);
    ws.write("app/in/a.txt", "public a\n");
    ws.write("app/in/b.txt", "public b\n");
    ws.write("app/out/copied.txt", "public copied\n");
    ws.write(
        "app/out/existing.out",
        "written by someone, not by a task\n",
    );
    ws.write("app/secret.txt", "TOPSECRET app\n");
    ws.write("app/in/secret.txt", "TOPSECRET next to the inputs\n");
    ws.write("secret.txt", "TOPSECRET at the root\n");
    ws.write("app/undeclared-plain.txt", "plain undeclared\n");
    ws.write(CACHE_SECRET, "TOPSECRET in the cache\n");
    ws.write(CACHE_HARD, "cache file, hard-linked\n");
    std::fs::write(out.join("outside-secret.txt"), "TOPSECRET outside\n").unwrap();
    std::fs::write(out.join("victim.txt"), "outside victim\n").unwrap();
    std::fs::write(out.join("hard-victim.txt"), "outside, hard-linked\n").unwrap();

    let links = ws.path("app/links");
    symlink(
        out.join("outside-secret.txt"),
        &links.join("to-outside.txt"),
    );
    let rel_out = Path::new("../../..")
        .join(out.strip_prefix(ws.root.parent().unwrap()).unwrap_or(&out))
        .join("outside-secret.txt");
    assert!(
        ws.root.parent() == out.parent(),
        "both temporary directories are siblings"
    );
    symlink(&rel_out, &links.join("rel-outside.txt"));
    symlink("chain2.txt", &links.join("chain.txt"));
    symlink(out.join("outside-secret.txt"), &links.join("chain2.txt"));
    symlink("../secret.txt", &links.join("to-undeclared.txt"));
    symlink(ws.path(CACHE_SECRET), &links.join("to-cache.txt"));
    symlink(
        "../../.wask/cache/cache-secret.txt",
        &links.join("rel-to-cache.txt"),
    );
    symlink("../in/a.txt", &links.join("to-declared.txt"));
    symlink(ws.path(".wask/cache"), &links.join("dir-to-cache"));
    symlink(&out, &ws.path("app/linkdir"));
    symlink(&out, &ws.path("app/linkout"));
    symlink(out.join("victim.txt"), &ws.path("app/out/victim.out"));

    hard_link(
        &out.join("hard-victim.txt"),
        &ws.path("app/hard/outside.txt"),
    );
    hard_link(
        &ws.path("app/undeclared-plain.txt"),
        &ws.path("app/hard/undeclared.txt"),
    );
    hard_link(&ws.path(CACHE_HARD), &ws.path("app/hard/cache.txt"));
    hard_link(
        &ws.path("app/undeclared-plain.txt"),
        &ws.path("app/out/hard-copy.txt"),
    );
    hard_link(
        &ws.path("app/undeclared-plain.txt"),
        &ws.path("app/out/hard.out"),
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    Bait {
        ws,
        outside,
        _listener: listener,
        port,
        summary_dir: tempfile::tempdir().unwrap(),
    }
}

/// Type, bytes (or link target) and mtime of every entry under `root`, skipping
/// `skip` (relative names of top-level entries).
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Dir,
    File {
        bytes: Vec<u8>,
        mtime: (i64, i64),
        ino: u64,
    },
    Link(PathBuf),
}

fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            let rel = e.path().strip_prefix(root).unwrap();
            !skip.iter().any(|s| rel == Path::new(s))
        });
    for e in walk {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.is_empty() {
            continue;
        }
        let m = e.path().symlink_metadata().unwrap();
        let entry = if m.file_type().is_symlink() {
            Entry::Link(std::fs::read_link(e.path()).unwrap())
        } else if m.is_dir() {
            Entry::Dir
        } else {
            Entry::File {
                bytes: std::fs::read(e.path()).unwrap(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ino: m.ino(),
            }
        };
        out.insert(rel, entry);
    }
    out
}

fn project_abs(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/app/{p}")
    }
}

/// What one run did.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    record: Option<serde_json::Value>,
}

impl Bait {
    fn subst(&self, arg: &str) -> String {
        arg.replace("{WS}", &self.ws.root.to_string_lossy())
            .replace(
                "{OUT}",
                &self
                    .outside
                    .path()
                    .canonicalize()
                    .unwrap()
                    .to_string_lossy(),
            )
            .replace("{PORT}", &self.port.to_string())
    }

    fn declare(&self, a: &Attempt) {
        let q = |v: Vec<String>| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut args: Vec<String> = a.args.iter().map(|s| self.subst(s)).collect();
        if a.outputs == OUTPUTS && !a.args.iter().any(|s| s.starts_with("write:")) {
            args.push(RESULT.into());
        }
        let toml = format!(
            "[project]\nname = \"app\"\n\n[tasks.t]\nmodule = \"/tools/hostile.wasm\"\nargs = [{}]\ninputs = [{}]\noutputs = [{}]\nenv.from_host = [\"WASK_TEST_ALLOWED\"]\nenv.set = {{ FIXED = \"1\" }}\n",
            q(args),
            q(a.inputs.iter().map(|s| s.to_string()).collect()),
            q(a.outputs.iter().map(|s| s.to_string()).collect()),
        );
        self.ws.write("app/wask.toml", toml);
    }

    fn run(&self) -> Outcome {
        let summary = self.summary_dir.path().join("summary.json");
        let _ = std::fs::remove_file(&summary);
        let run = self.ws.wask_env(
            &["run", "app:t", "--summary", summary.to_str().unwrap()],
            &[
                ("WASK_TEST_SECRET", "TOPSECRET in the environment"),
                ("WASK_TEST_ALLOWED", "yes"),
            ],
        );
        let record = std::fs::read(&summary)
            .ok()
            .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
            .map(|s| task(&s, "app:t").clone());
        Outcome {
            code: run.code(),
            stdout: run.stdout(),
            stderr: run.stderr(),
            record,
        }
    }

    fn outside_snapshot(&self) -> BTreeMap<String, Entry> {
        snapshot(self.outside.path(), &[])
    }

    fn cache_bait(&self) -> Vec<(Vec<u8>, std::time::SystemTime)> {
        [CACHE_SECRET, CACHE_HARD]
            .iter()
            .map(|p| {
                let path = self.ws.path(p);
                (
                    std::fs::read(&path).unwrap(),
                    std::fs::metadata(&path).unwrap().modified().unwrap(),
                )
            })
            .collect()
    }
}

/// Fails unless everything the run could have touched is as it must be.
#[track_caller]
fn check_after(
    b: &Bait,
    a: &Attempt,
    o: &Outcome,
    before: &BTreeMap<String, Entry>,
    outside: &BTreeMap<String, Entry>,
    cache_bait: &[(Vec<u8>, std::time::SystemTime)],
) {
    let ctx = format!(
        "attempt {}\n--- stdout\n{}\n--- stderr\n{}",
        a.name, o.stdout, o.stderr
    );
    assert!(!o.stdout.contains("ESCAPED"), "{ctx}");
    assert!(!o.stderr.contains("ESCAPED"), "{ctx}");
    assert!(
        !o.stdout.contains("TOPSECRET ") && !o.stderr.contains("TOPSECRET "),
        "a secret reached the output: {ctx}"
    );
    assert!(
        o.code == 0 || o.code == 1 || o.code == 2,
        "wask crashed: {ctx}"
    );

    let outputs: Vec<String> = a.outputs.iter().map(|p| project_abs(p)).collect();
    let matcher = wask_runtime::paths::glob_set(&outputs)
        .unwrap_or_else(|_| wask_runtime::paths::glob_set(&[]).unwrap());
    let declared = |rel: &str| matcher.is_match(format!("/{rel}"));
    let after = snapshot(&b.ws.root, &[".wask", "app/wask.toml"]);
    for (rel, was) in before {
        let now = after.get(rel);
        if declared(rel) && !matches!(was, Entry::Dir) {
            // An output may be replaced, by a regular file only.
            if let Some(now) = now {
                assert!(
                    matches!(now, Entry::File { .. }) || now == was,
                    "output {rel} became {now:?}: {ctx}"
                );
            }
            continue;
        }
        assert_eq!(now, Some(was), "workspace entry {rel} changed: {ctx}");
    }
    for (rel, now) in &after {
        if before.contains_key(rel) {
            continue;
        }
        match now {
            Entry::Link(t) => panic!("a new symbolic link {rel} -> {t:?} appeared: {ctx}"),
            Entry::File { .. } => assert!(
                declared(rel),
                "a file appeared outside the declared outputs: {rel}: {ctx}"
            ),
            Entry::Dir => assert!(
                after
                    .keys()
                    .any(|k| k.starts_with(&format!("{rel}/")) && declared(k)),
                "a directory appeared outside the declared outputs: {rel}: {ctx}"
            ),
        }
    }
    assert_eq!(
        &b.outside_snapshot(),
        outside,
        "the directory outside the workspace changed: {ctx}"
    );
    assert_eq!(
        b.cache_bait(),
        cache_bait,
        "the bait in the cache directory changed: {ctx}"
    );
    check_cache(b, &ctx);
    check_wask_dir(b, &ctx);
}

/// The cache holds only our bait and well-formed entries whose outputs lie in the
/// workspace outside `.wask/`, each blob matching its recorded hash.
#[track_caller]
fn check_cache(b: &Bait, ctx: &str) {
    let cache = b.ws.path(".wask/cache");
    for top in std::fs::read_dir(&cache).unwrap() {
        let top = top.unwrap();
        let name = top.file_name().to_string_lossy().into_owned();
        let ft = top.file_type().unwrap();
        if ["cache-secret.txt", "cache-hard.txt", "CACHEDIR.TAG"].contains(&name.as_str()) {
            assert!(ft.is_file(), "{name}: {ctx}");
            continue;
        }
        if ["compiled", "explain"].contains(&name.as_str()) {
            assert!(ft.is_dir(), "{name}: {ctx}");
            for e in walkdir::WalkDir::new(top.path()) {
                let e = e.unwrap();
                assert!(
                    !e.file_type().is_symlink(),
                    "{:?} in the cache: {ctx}",
                    e.path()
                );
            }
            continue;
        }
        assert!(
            name.len() == 2 && name.bytes().all(|c| c.is_ascii_hexdigit()) && ft.is_dir(),
            "unexpected {name} in the cache: {ctx}"
        );
        for entry in std::fs::read_dir(top.path()).unwrap() {
            let entry = entry.unwrap();
            let key = entry.file_name().to_string_lossy().into_owned();
            assert!(
                key.starts_with(&name) && key.len() == 64 && entry.file_type().unwrap().is_dir(),
                "unexpected {name}/{key} in the cache: {ctx}"
            );
            let dir = entry.path();
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
            assert_eq!(manifest["key"], key.as_str(), "{ctx}");
            for out in manifest["outputs"].as_array().unwrap() {
                let path = out["path"].as_str().unwrap();
                assert!(
                    path.starts_with("/app/") && !path.contains("/../"),
                    "a cache entry restores {path}: {ctx}"
                );
                let blob = dir.join("blobs").join(out["hash"].as_str().unwrap());
                let bytes = std::fs::read(&blob).unwrap();
                assert_eq!(
                    blake3::hash(&bytes).to_hex().as_str(),
                    out["hash"].as_str().unwrap(),
                    "{ctx}"
                );
                assert!(
                    !String::from_utf8_lossy(&bytes).contains("TOPSECRET"),
                    "{ctx}"
                );
            }
            for e in walkdir::WalkDir::new(&dir) {
                let e = e.unwrap();
                assert!(
                    !e.file_type().is_symlink(),
                    "{:?} in the cache: {ctx}",
                    e.path()
                );
            }
        }
    }
}

/// `.wask/` holds only the cache, wask's scratch directory (emptied after a run) and
/// the output ledger, which names only the task's own outputs.
#[track_caller]
fn check_wask_dir(b: &Bait, ctx: &str) {
    for e in std::fs::read_dir(b.ws.path(".wask")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            ["cache", "tmp", "outputs", "explain"].contains(&name.as_str()),
            "unexpected .wask/{name}: {ctx}"
        );
        if name == "outputs" {
            assert!(e.file_type().unwrap().is_file(), "{ctx}");
            for line in std::fs::read_to_string(e.path()).unwrap().lines() {
                assert!(
                    line.starts_with("app:t\t/app/out/"),
                    "ledger line {line:?}: {ctx}"
                );
            }
        }
        if name == "tmp" {
            let left: Vec<_> = std::fs::read_dir(e.path()).unwrap().flatten().collect();
            assert!(left.is_empty(), "scratch left behind {left:?}: {ctx}");
        }
    }
}

fn task_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("[app:t]"))
        .collect()
}

/// Runs one attempt and every check; returns the number of `wask run`s made.
fn attempt(b: &Bait, a: &Attempt) -> usize {
    b.declare(a);
    let before = snapshot(&b.ws.root, &[".wask", "app/wask.toml"]);
    let outside = b.outside_snapshot();
    let cache_bait = b.cache_bait();
    let o = b.run();
    if std::env::var_os("WASK_ESCAPES_VERBOSE").is_some() {
        eprintln!(
            "== {} ({:?}): exit {}\n{}{}",
            a.name, a.expect, o.code, o.stdout, o.stderr
        );
    }
    check_after(b, a, &o, &before, &outside, &cache_bait);
    let ctx = format!(
        "attempt {}\n--- stdout\n{}\n--- stderr\n{}",
        a.name, o.stdout, o.stderr
    );
    match a.expect {
        Rejected(what) => {
            assert_eq!(o.code, 2, "{ctx}");
            assert!(o.stderr.contains(what), "{ctx}");
            return 1;
        }
        Fails(what) => {
            assert_eq!(o.code, 1, "{ctx}");
            let r = o.record.as_ref().expect("a summary");
            assert_eq!(r["state"], "failed", "{ctx}");
            let error = r["error"].as_str().unwrap_or("");
            assert!(
                error.contains(what),
                "expected {what:?} in the error: {ctx}"
            );
            return 1;
        }
        Held => {
            assert_eq!(o.code, 0, "{ctx}");
            let r = o.record.as_ref().expect("a summary");
            assert_eq!(r["state"], "succeeded", "{ctx}");
            assert!(
                o.stdout.contains("held "),
                "the guest reported its attacks: {ctx}"
            );
        }
    }
    let mut runs = 1;
    let r = o.record.unwrap();
    let key = r["key"].as_str().unwrap().to_string();
    let outputs: Vec<String> = r["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(!outputs.is_empty(), "{ctx}");
    let fresh: Vec<Vec<u8>> = outputs
        .iter()
        .map(|p| std::fs::read(b.ws.path(p.trim_start_matches('/'))).unwrap())
        .collect();

    // Time and randomness: a second fresh run prints the same bytes.
    if a.name.starts_with("clock") || a.name == "randomness" {
        std::fs::remove_dir_all(b.ws.path(&format!(".wask/cache/{}/{key}", &key[..2]))).unwrap();
        let again = b.run();
        runs += 1;
        assert_eq!(
            task_lines(&again.stdout),
            task_lines(&o.stdout),
            "two fresh runs differ: {ctx}"
        );
        assert_eq!(again.record.unwrap()["source"], "fresh");
    }

    // The cache restores the same bytes, replacing links planted at the output paths.
    let out_dir = b.outside.path().canonicalize().unwrap();
    for p in &outputs {
        let dest = b.ws.path(p.trim_start_matches('/'));
        std::fs::remove_file(&dest).unwrap();
        std::os::unix::fs::symlink(out_dir.join("victim.txt"), &dest).unwrap();
    }
    let before = snapshot(&b.ws.root, &[".wask", "app/wask.toml"]);
    let outside = b.outside_snapshot();
    let hit = b.run();
    runs += 1;
    check_after(b, a, &hit, &before, &outside, &cache_bait);
    let hr = hit.record.as_ref().unwrap();
    assert_eq!(hr["state"], "succeeded", "{ctx}");
    assert_eq!(hr["source"], "cache", "{ctx}");
    assert_eq!(hr["key"], key.as_str());
    for (p, bytes) in outputs.iter().zip(&fresh) {
        let dest = b.ws.path(p.trim_start_matches('/'));
        assert!(
            dest.symlink_metadata().unwrap().is_file(),
            "{p} restored as a regular file: {ctx}"
        );
        assert_eq!(&std::fs::read(&dest).unwrap(), bytes, "{p}: {ctx}");
    }
    assert_eq!(
        task_lines(&hit.stdout),
        task_lines(&o.stdout),
        "the replay is the fresh run's output: {ctx}"
    );
    runs
}

#[test]
fn the_escape_catalogue_holds() {
    let started = std::time::Instant::now();
    let b = bait();
    let mut names = std::collections::HashSet::new();
    let mut runs = 0;
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for a in CATALOGUE {
        assert!(names.insert(a.name), "{} twice in the catalogue", a.name);
        if RUN_ALONE.contains(&a.name) {
            continue;
        }
        runs += attempt(&b, a);
        *tally
            .entry(match a.expect {
                Held => "held in the sandbox",
                Fails(_) => "failed by wask",
                Rejected(_) => "rejected at load",
            })
            .or_default() += 1;
    }
    println!(
        "escape catalogue: {} distinct attempts run, of {} ({} run alone, below): {tally:?}, {runs} wask runs in {:.1?}",
        CATALOGUE.len() - RUN_ALONE.len(),
        CATALOGUE.len(),
        RUN_ALONE.len(),
        started.elapsed()
    );
    assert!(CATALOGUE.len() >= 40);
}

/// The attempts of [`RUN_ALONE`]: an output pattern that does not start with
/// `/.wask` but matches paths in it (`/**`, `/.w*/**`, `/{.wask,x}/cache/*`) is
/// accepted at load, the output root `/` is writable, and whatever the task writes under
/// `/.wask/` is collected as an output and renamed into the workspace's `.wask/`
/// directory: into the cache and wask's scratch directory.
#[test]
fn output_globs_cannot_reach_the_wask_directory() {
    let mut escaped = Vec::new();
    for a in CATALOGUE.iter().filter(|a| RUN_ALONE.contains(&a.name)) {
        // A fresh workspace each: one escape must not spoil the next attempt's checks.
        let b = bait();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attempt(&b, a))).is_err() {
            escaped.push(a.name);
        }
    }
    assert!(escaped.is_empty(), "escaped: {escaped:?}");
}

/// The consequence of the escape above: a task poisons another task's cache entry. It
/// writes a forged entry (manifest, streams, blob) at the victim's key in the cache
/// directory; the victim's next run would be a "hit" restoring the attacker's bytes as
/// its declared output. Two routes: an output glob over the workspace root (refused at
/// load: a glob needs a directory of its own), and a cache directory configured inside
/// the attacker's output directory (refused at load too: the glob can name paths in the
/// cache; and a write there would be refused when outputs are collected).
#[test]
fn a_task_cannot_forge_another_tasks_cache_entry() {
    for (cache_dir, attacker_outputs) in [(".wask/cache", "/**"), ("app/out/cache", "out/**")] {
        let b = bait();
        let ws = &b.ws;
        ws.write(
            "wask.toml",
            format!("[workspace]\nprojects = [\"app\"]\n\n[cache]\ndir = \"{cache_dir}\"\n"),
        );
        let victim = "[tasks.victim]\nmodule = \"/tools/hostile.wasm\"\nargs = [\"write:/app/victim/result.txt\"]\noutputs = [\"victim/*.txt\"]\n";
        ws.write(
            "app/wask.toml",
            format!("[project]\nname = \"app\"\n\n{victim}"),
        );
        let summary = b.summary_dir.path().join("s.json");
        let key_of = |run: &crate::support::Run| {
            run.expect_code(0);
            let s: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
            task(&s, "app:victim")["key"].as_str().unwrap().to_string()
        };
        let key = key_of(&ws.wask(&["run", "app:victim", "--summary", summary.to_str().unwrap()]));
        let genuine = ws.read("app/victim/result.txt");
        // The attacker only needs the key, which follows from the victim's declarations.
        let entry = format!("/{cache_dir}/{}/{key}", &key[..2]);
        std::fs::remove_dir_all(ws.path(entry.trim_start_matches('/'))).unwrap();

        let forged = "POISONED by another task\n";
        let h = |s: &str| blake3::hash(s.as_bytes()).to_hex().to_string();
        let manifest = serde_json::json!({
            "revision": wask::cache::manifest::MANIFEST_REVISION,
            "hash": "blake3", "key": key, "created_at": 0, "memory": 0,
            "stored_by": "app:victim",
            "outputs": [{"path": "/app/victim/result.txt", "hash": h(forged), "size": forged.len(), "mode": 0o644}],
            "stdout": {"hash": h("forged stdout\n"), "size": 14},
            "write_order": [],
            "stderr": {"hash": h(""), "size": 0},
            "access": {"opened": [], "refused": []},
            "checksum": "",
        });
        let puts = [
            format!("put:{entry}/manifest.json|{manifest}"),
            format!("put:{entry}/stdout|forged stdout\n"),
            format!("put:{entry}/stderr|"),
            format!("put:{entry}/blobs/{}|{forged}", h(forged)),
        ];
        let args: Vec<String> = puts.iter().map(|p| format!("{p:?}")).collect();
        ws.write(
            "app/wask.toml",
            format!(
                "[project]\nname = \"app\"\n\n{victim}\n[tasks.attacker]\nmodule = \"/tools/hostile.wasm\"\nargs = [{}]\noutputs = [\"{attacker_outputs}\"]\n",
                args.join(", ")
            ),
        );
        let attack = ws.wask(&["run", "app:attacker"]);
        let ctx = format!(
            "{cache_dir}\n--- attacker\n{}{}",
            attack.stdout(),
            attack.stderr()
        );
        attack.expect_code(2);
        let why = if attacker_outputs == "/**" {
            "is a glob over /"
        } else {
            "can name paths in /app/out/cache"
        };
        assert!(attack.stderr().contains(why), "{ctx}");
        // The victim runs alone again.
        ws.write(
            "app/wask.toml",
            format!("[project]\nname = \"app\"\n\n{victim}"),
        );
        let _ = std::fs::remove_file(ws.path("app/victim/result.txt"));
        let run = ws.wask(&["run", "app:victim", "--summary", summary.to_str().unwrap()]);
        assert_eq!(
            key_of(&run),
            key,
            "the victim's key is what the attacker aimed at"
        );
        assert_eq!(
            String::from_utf8_lossy(&ws.read("app/victim/result.txt")),
            String::from_utf8_lossy(&genuine),
            "the victim's output came from a forged cache entry\n{ctx}\n--- victim\n{}{}",
            run.stdout(),
            run.stderr()
        );
    }
}

/// The same through a cache directory configured inside the workspace but outside
/// `.wask/` (`[cache] dir = "build-cache"`): only `/.wask` is reserved at load, so
/// `outputs = ["/build-cache/**"]` is accepted and the task writes into the cache.
#[test]
fn outputs_cannot_name_a_configured_cache_directory() {
    let ws = Ws::new();
    std::fs::create_dir_all(ws.path("tools")).unwrap();
    std::fs::copy(hostile_wasm(), ws.path("tools/hostile.wasm")).unwrap();
    ws.write(
        "wask.toml",
        r#"[workspace]
projects = ["app"]

[cache]
dir = "build-cache"
"#,
    );
    ws.write(
        "app/wask.toml",
        r#"[project]
name = "app"

[tasks.t]
module = "/tools/hostile.wasm"
args = ["write:/build-cache/planted.txt"]
outputs = ["/build-cache/*.txt"]
"#,
    );
    let run = ws.wask(&["run", "app:t"]);
    assert!(
        !ws.path("build-cache/planted.txt").exists(),
        "the task wrote into the cache directory (exit {})\n{}{}",
        run.code(),
        run.stdout(),
        run.stderr()
    );
    assert_ne!(run.code(), 0, "{}", run.stderr());
}
