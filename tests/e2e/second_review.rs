//! What the second outside review of the release binary got through, each as a test
//! that drives `wask` the way the attack did (the first review's classes are in
//! `hardening`). See `docs/security.md` for the claims these show.

use crate::cache::reseal;
use crate::hardening::{
    entries, hostile, refused_at_load, run_task, set_tasks, toml_string, workspace,
};
use crate::support::{Ws, task};
use std::os::unix::fs::MetadataExt;

const HELLO: &str = "[tasks.hello]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:hello\"]\n\n";

/// The names in `.wask/tmp`: scratch directories and their locks.
fn scratch_names(ws: &Ws) -> Vec<String> {
    std::fs::read_dir(ws.path(".wask/tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A guest nests twenty thousand directories, each made through a descriptor on the
/// one above, well within `outputs_count`. Removing that tree by recursion overflowed
/// wask's stack (an abort), and every later run aborted again sweeping the leftover.
/// Now the task fails with a message, the other task succeeds, nothing is left in
/// `.wask/tmp`, and the next run is a plain run.
#[test]
fn a_tree_deeper_than_any_stack_fails_only_its_task() {
    let ws = workspace(&format!(
        "{}{HELLO}",
        hostile(
            "deep",
            &["deep-path:/out|20000|1"],
            "outputs = [\"out/**\"]"
        )
    ));
    let (run, summary) = ws.run(&["p:deep", "p:hello"]);
    assert_eq!(run.code(), 1, "{}{}", run.stdout(), run.stderr());
    let error = task(&summary, "p:deep")["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("longer than the host allows"), "{error}");
    assert_eq!(task(&summary, "p:hello")["state"], "succeeded");
    assert_eq!(scratch_names(&ws), Vec::<String>::new());
    assert!(!ws.path("out").exists());
    ws.run(&["p:hello"]).0.expect_code(0);
}

/// A timeout past what an `Instant` can hold panicked a worker thread, and the
/// scheduler then waited for it forever, deaf to the first SIGTERM. A timeout is at
/// most a year, said at load with the line; a year still runs.
#[test]
fn a_timeout_past_a_year_is_refused_at_load() {
    for timeout in ["18446744073709551615s", "213503982334601d", "367d"] {
        let ws = workspace(&format!(
            "[tasks.t]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:hi\"]\nlimits = {{ timeout = {} }}\n",
            toml_string(timeout)
        ));
        let check = ws.wask(&["check"]);
        refused_at_load(&check, "a timeout is at most a year");
        assert!(check.stderr().contains("wask.toml:"), "{}", check.stderr());
        refused_at_load(&ws.wask(&["run", "p:t"]), "a timeout is at most a year");
    }
    let ws = workspace(
        "[tasks.t]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:hi\"]\nlimits = { timeout = \"366d\" }\n",
    );
    let (run, record) = run_task(&ws, "p:t", &[]);
    run.expect_code(0);
    assert_eq!(record["state"], "succeeded");
}

/// A directory holding only `compiled/` and `built/` counted as "holding only what
/// wask makes": wask adopted it as a cache, and `cache clear` then removed everything
/// under those two names, a user's report and sources included. Now a file is wask's
/// only if its name has wask's shape where wask puts it: such a directory is not
/// adopted, and in wask's own cache `clear` leaves and names the rest.
#[test]
fn cache_clear_removes_only_files_of_wasks_own_shape() {
    let victim = tempfile::tempdir().unwrap();
    let v = victim.path();
    std::fs::create_dir_all(v.join("built/myproj/src")).unwrap();
    std::fs::write(v.join("built/myproj/src/main.c"), "int main(){}").unwrap();
    std::fs::create_dir_all(v.join("compiled")).unwrap();
    std::fs::write(v.join("compiled/report.pdf"), "precious").unwrap();
    let ws = workspace(HELLO);
    let env = [("WASK_CACHE_DIR", v.to_str().unwrap())];
    let run = ws.wask_env(&["run", "p:hello"], &env);
    refused_at_load(&run, "is not a wask cache directory");
    assert!(
        run.stderr().contains("compiled/report.pdf"),
        "{}",
        run.stderr()
    );
    let clear = ws.wask_env(&["cache", "clear"], &env);
    assert_eq!(clear.code(), 2, "{}{}", clear.stdout(), clear.stderr());
    assert_eq!(
        std::fs::read(v.join("compiled/report.pdf")).unwrap(),
        b"precious"
    );
    assert!(v.join("built/myproj/src/main.c").exists());
    assert!(!v.join("CACHEDIR.TAG").exists());

    // In wask's own cache, what has not wask's shape stays and is named.
    ws.run(&["p:hello"]).0.expect_code(0);
    let compiled = ws.path(".wask/cache/compiled");
    let engine = std::fs::read_dir(&compiled)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .expect("an engine directory")
        .path();
    let modules_before = std::fs::read_dir(&engine).unwrap().count();
    assert!(modules_before >= 1);
    ws.write(".wask/cache/compiled/report.pdf", "precious");
    std::fs::write(engine.join("notes.txt"), "mine").unwrap();
    ws.write(".wask/cache/built/myproj/src/main.c", "int main(){}");
    let clear = ws.wask(&["cache", "clear"]);
    clear.expect_code(0);
    let out = clear.stdout();
    assert!(out.contains("compiled/report.pdf"), "{out}");
    assert!(out.contains("notes.txt"), "{out}");
    assert!(out.contains("built/myproj"), "{out}");
    assert!(
        out.contains(&format!("{modules_before} compiled")),
        "only modules are counted: {out}"
    );
    assert_eq!(ws.read(".wask/cache/compiled/report.pdf"), b"precious");
    assert_eq!(std::fs::read(engine.join("notes.txt")).unwrap(), b"mine");
    assert!(ws.path(".wask/cache/built/myproj/src/main.c").exists());
    let left: Vec<String> = std::fs::read_dir(&engine)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["notes.txt"], "every compiled module went");
}

/// The entry of `ws`'s one task, as JSON, and where its manifest lies.
fn the_entry(ws: &Ws) -> (serde_json::Value, std::path::PathBuf) {
    let path = walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "manifest.json")
        .expect("an entry")
        .into_path();
    let manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (manifest, path)
}

/// An entry rewritten by someone who can write the cache (its checksum recomputed)
/// replayed two gigabytes of stdout past a 1 KiB output cap, holding them all in
/// memory, and restored twelve outputs past a two-file limit. An entry is a hit only
/// if a run under the task's limits could have given it; otherwise the task runs fresh
/// (so an entry made under looser limits is a miss under tighter ones, as the fresh run
/// would fail). `wask why` says which limit.
#[test]
fn a_forged_entry_is_held_to_the_tasks_limits() {
    let task_def = "[tasks.t]\nmodule = \"/tools/probe.wasm\"\nargs = [\"write:/out/a.txt:A\", \"print:small\", \"exit-on-error\"]\noutputs = [\"out/**\"]\nlimits = { output = \"1KiB\", outputs_count = 4, memory = \"64MiB\" }\n";
    type Forge = fn(&mut serde_json::Value, &std::path::Path);
    let forgeries: [(&str, Forge, &str); 3] = [
        (
            "stdout",
            |m, entry| {
                let big = vec![b'F'; 4096];
                std::fs::write(entry.join("stdout"), &big).unwrap();
                m["stdout"] = serde_json::json!({"hash": blake3::hash(&big).to_hex().to_string(), "size": 4096});
                // As a forger would: a write order that adds up (none: stdout, then stderr).
                m["write_order"] = serde_json::json!([]);
            },
            "its stdout is 4096 bytes, over the task's output limit of 1024 bytes",
        ),
        (
            "outputs",
            |m, entry| {
                for i in 0..10 {
                    let body = format!("forged {i}");
                    let h = blake3::hash(body.as_bytes()).to_hex().to_string();
                    std::fs::write(entry.join("blobs").join(&h), &body).unwrap();
                    m["outputs"].as_array_mut().unwrap().push(serde_json::json!({
                        "path": format!("/out/f{i}.txt"), "hash": h, "size": body.len(), "mode": 0o644,
                    }));
                }
            },
            "it has 11 outputs, over the task's outputs count limit of 4",
        ),
        (
            "memory",
            |m, _| m["memory"] = (1u64 << 40).into(),
            "over the task's memory limit of 67108864 bytes",
        ),
    ];
    for (what, forge, why) in forgeries {
        let ws = workspace(task_def);
        let (first, record) = run_task(&ws, "p:t", &[]);
        first.expect_code(0);
        assert_eq!(record["source"], "fresh");
        let (mut manifest, path) = the_entry(&ws);
        assert!(
            manifest["memory"].as_u64().unwrap() > 0,
            "the run's memory is kept"
        );
        forge(&mut manifest, path.parent().unwrap());
        std::fs::write(&path, reseal(manifest)).unwrap();

        let explained = ws.wask(&["why", "p:t"]).stdout();
        assert!(explained.contains("p:t: miss"), "{what}: {explained}");
        assert!(explained.contains(why), "{what}: {explained}");
        let (run, record) = run_task(&ws, "p:t", &[]);
        run.expect_code(0);
        assert_eq!(record["source"], "fresh", "{what}: {}", run.stderr());
        assert!(run.stderr().contains(why), "{what}: {}", run.stderr());
        assert!(
            !run.stdout().contains("FFFF"),
            "{what}: the forged stdout was shown"
        );
        assert!(
            !ws.path("out/f0.txt").exists(),
            "{what}: a forged output was restored"
        );
        assert_eq!(ws.read("out/a.txt"), b"A");
    }
}

/// A guest that gives one output two names (a hard link) left two names of one file in
/// the workspace after a fresh run, and two files after a hit: a write through one name
/// changed the other only in the first case. Each output is now a file of its own
/// after either.
#[test]
fn hard_links_a_task_makes_become_files_of_their_own() {
    let ws = workspace(&hostile(
        "t",
        &["link-bomb:/out/l.out|2"],
        "outputs = [\"out/**\"]",
    ));
    for round in ["fresh", "cache"] {
        let (run, record) = run_task(&ws, "p:t", &[]);
        run.expect_code(0);
        assert_eq!(record["source"], round);
        let inode = |p: &str| std::fs::metadata(ws.path(p)).unwrap();
        let (a, b) = (inode("out/l.out"), inode("out/l.out.0"));
        assert_ne!(a.ino(), b.ino(), "{round}: one file under two names");
        assert_eq!(a.nlink(), 1, "{round}");
        assert_eq!(ws.read("out/l.out"), ws.read("out/l.out.1"));
        if round == "fresh" {
            for p in ["out/l.out", "out/l.out.0", "out/l.out.1"] {
                std::fs::remove_file(ws.path(p)).unwrap();
            }
        }
    }
    assert_eq!(entries(&ws), 1);
}

/// `[cache] dir` inside a task's output glob was accepted at load (a guest writing
/// there was refused only when outputs were collected); `WASK_CACHE_DIR` there was
/// refused. Both are refused at load now, and so is a glob over a guest crate.
#[test]
fn an_output_glob_over_the_cache_or_a_crate_is_refused_at_load() {
    let outputs = hostile("t", &[], "outputs = [\"dist/**\"]");
    let ws = workspace(&outputs);
    ws.write(
        "wask.toml",
        format!("[workspace]\n\n[cache]\ndir = \"dist/c\"\n\n[project]\nname = \"p\"\n\n{outputs}"),
    );
    refused_at_load(&ws.wask(&["check"]), "can name paths in /dist/c");
    // A glob that cannot reach it is fine.
    let narrow = hostile("t", &[], "outputs = [\"dist/*.js\"]");
    ws.write(
        "wask.toml",
        format!("[workspace]\n\n[cache]\ndir = \"dist/c\"\n\n[project]\nname = \"p\"\n\n{narrow}"),
    );
    ws.wask(&["check"]).expect_code(0);
    let crate_task = "[tasks.built]\nmodule = { crate = \"/plugins/g\" }\n\n";
    let over = hostile("w", &[], "outputs = [\"plugins/**\"]");
    let ws = workspace(&format!("{crate_task}{over}"));
    refused_at_load(
        &ws.wask(&["check"]),
        "when wask builds the guest crate /plugins/g",
    );
}

/// The user key authenticates what wask runs from the cache. `WASK_STATE_DIR` inside
/// the cache put it where every reader of the cache could take it; a relative
/// `XDG_STATE_HOME` made a key in whatever directory wask ran in. The first is refused,
/// the second ignored, a relative `WASK_STATE_DIR` refused; and a key directory inside
/// the workspace is neither an input nor writable by a task.
#[test]
fn the_user_key_is_kept_out_of_the_cache_and_away_from_tasks() {
    let ws = workspace(HELLO);
    let cache_state = ws.path(".wask/cache/st");
    let run = ws.wask_env(
        &["run", "p:hello"],
        &[("WASK_STATE_DIR", cache_state.to_str().unwrap())],
    );
    assert_eq!(run.code(), 2, "{}{}", run.stdout(), run.stderr());
    assert!(
        run.stderr().contains("lies inside the cache directory"),
        "{}",
        run.stderr()
    );
    assert!(!cache_state.join("user-key").exists());

    let run = ws.wask_env(&["run", "p:hello"], &[("WASK_STATE_DIR", "relative")]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr().contains("must be an absolute path"),
        "{}",
        run.stderr()
    );

    let home = tempfile::tempdir().unwrap();
    let run = ws.wask_env(
        &["run", "p:hello"],
        &[
            ("XDG_STATE_HOME", "relative"),
            ("HOME", home.path().to_str().unwrap()),
        ],
    );
    run.expect_code(0);
    assert!(
        !ws.path("relative").exists(),
        "a key was made in the working directory"
    );
    assert!(home.path().join(".local/state/wask/user-key").exists());

    // A key inside the workspace: no task reads or writes it.
    let ws = workspace(&hostile("r", &[], "inputs = [\"keys/user-key\"]"));
    let keys = ws.path("keys");
    let env = [("WASK_STATE_DIR", keys.to_str().unwrap())];
    let (run, record) = run_task(&ws, "p:r", &env);
    let error = record["error"].as_str().unwrap_or_default();
    assert!(
        run.code() == 1 && error.contains("input /keys/user-key lies in wask's own directory"),
        "{error}\n{}{}",
        run.stdout(),
        run.stderr()
    );
    let key = std::fs::read(keys.join("user-key")).unwrap();
    set_tasks(
        &ws,
        &hostile(
            "w",
            &["put:/keys/user-key|known"],
            "outputs = [\"keys/**\"]",
        ),
    );
    refused_at_load(
        &ws.wask_env(&["run", "p:w"], &env),
        "lies in wask's own directory /keys",
    );
    set_tasks(
        &ws,
        &hostile(
            "w",
            &["put:/keys/user-key|known"],
            "outputs = [\"keys/user-key\"]",
        ),
    );
    refused_at_load(
        &ws.wask_env(&["run", "p:w"], &env),
        "lies in wask's own directory /keys",
    );
    assert_eq!(std::fs::read(keys.join("user-key")).unwrap(), key);
}
