//! What the fourth outside review of the release binary got through, each as a test
//! that drives `wask` the way the attack did. See `docs/security.md` for the claims
//! these show.

use crate::hardening::{
    entries, fails_with, hostile, refused_at_load, run_task, toml_string, workspace,
};
use crate::support::{Run, appears, backdate, io_counter, task, terminate};
use std::process::Command;
use std::time::Duration;

/// The user key's directory reached through a symbolic link into the workspace, on the
/// run that makes the key: the key was not there yet to be resolved, so it was left
/// out of the inputs by its written path only, and a glob over it handed the key to the
/// task. Through `WASK_STATE_DIR` and through `HOME`.
#[test]
fn a_user_key_made_through_a_link_into_the_workspace_never_reaches_a_task() {
    for via_home in [false, true] {
        let ws = workspace(&hostile(
            "steal",
            &[
                "copy:/keys/user-key|/out/stolen",
                "copy:/state/wask/user-key|/out/stolen2",
            ],
            "inputs = [\"keys/**\", \"state/**\"]\noutputs = [\"out/**\"]",
        ));
        let outside = tempfile::tempdir().unwrap();
        let link = outside.path().join("link");
        std::os::unix::fs::symlink(&ws.root, &link).unwrap();
        let mut cmd = ws.command(&["run", "p:steal"]);
        if via_home {
            let home = outside.path().join("home");
            std::fs::create_dir(&home).unwrap();
            std::os::unix::fs::symlink(&ws.root, home.join(".local")).unwrap();
            cmd.env_remove("WASK_STATE_DIR")
                .env_remove("XDG_STATE_HOME")
                .env("HOME", &home);
        } else {
            cmd.env("WASK_STATE_DIR", link.join("keys"));
        }
        let run = Run(cmd.output().unwrap());
        let key = if via_home {
            "state/wask/user-key"
        } else {
            "keys/user-key"
        };
        assert!(ws.path(key).is_file(), "the key was made in the workspace");
        let stolen = ws.path("out/stolen").exists() || ws.path("out/stolen2").exists();
        assert!(!stolen, "the task copied the key out\n{}", run.stdout());
        let key_bytes = ws.read(key);
        assert!(
            !run.0.stdout.windows(32).any(|w| w == key_bytes.as_slice()),
            "the key reached the task's output"
        );
    }
}

/// A guest crate edited during its build and put back before the build ended (both
/// edits under an old time stamp) left the module built from the edit under the key of
/// the original sources: the key before and after agreed. Every file the build reads
/// is now held to its change time too, which its owner cannot set back. A proc macro
/// of the crate's own reads the message, and waits, so the edits land exactly between
/// the moments that matter.
#[test]
fn an_edit_undone_during_a_crate_build_is_still_seen() {
    let ws = workspace("[tasks.show]\nmodule = { crate = \"/plugins/aba\" }\n");
    ws.write(
        "plugins/aba/Cargo.toml",
        "[package]\nname = \"aba\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nwaiter = { path = \"waiter\" }\n\n[workspace]\n",
    );
    ws.write(
        "plugins/aba/src/main.rs",
        "fn main() { print!(\"{}\", waiter::message!()); }\n",
    );
    ws.write(
        "plugins/aba/waiter/Cargo.toml",
        "[package]\nname = \"waiter\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\nproc-macro = true\n",
    );
    ws.write(
        "plugins/aba/waiter/src/lib.rs",
        r#"use std::path::PathBuf;
fn wait_for(p: &std::path::Path) {
    for _ in 0..1200 {
        if p.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
/// Waits for `edited-1`, reads `src/msg.txt`, says so, waits for `edited-2`.
#[proc_macro]
pub fn message(_: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = dir.join("../..");
    std::fs::write(root.join("compiling"), b"").unwrap();
    wait_for(&root.join("edited-1"));
    let text = std::fs::read_to_string(dir.join("src/msg.txt")).unwrap();
    std::fs::write(root.join("read"), b"").unwrap();
    wait_for(&root.join("edited-2"));
    format!("{text:?}").parse().unwrap()
}
"#,
    );
    // With its lock file, so the first build does not write one and build again.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let locked = Command::new(cargo)
        .args(["generate-lockfile", "--offline", "--manifest-path"])
        .arg(ws.path("plugins/aba/Cargo.toml"))
        .status()
        .unwrap();
    assert!(locked.success());
    let msg = ws.path("plugins/aba/src/msg.txt");
    ws.write("plugins/aba/src/msg.txt", "original\n");
    backdate(&msg);
    let child = ws.spawn(&["run", "p:show"]);
    appears(&ws.path("compiling"));
    ws.write("plugins/aba/src/msg.txt", "edited\n");
    backdate(&msg);
    ws.write("edited-1", "");
    appears(&ws.path("read"));
    ws.write("plugins/aba/src/msg.txt", "original\n");
    backdate(&msg);
    ws.write("edited-2", "");
    let run = Run(child.wait_with_output().unwrap());
    run.expect_code(0);
    assert!(
        run.stdout().contains("[p:show] original"),
        "the module built from the undone edit was kept\n{}{}",
        run.stdout(),
        run.stderr()
    );
    // And it is what the cache holds for these sources.
    let (again, _) = run_task(&ws, "p:show", &[]);
    assert!(
        again.stdout().contains("[p:show] original"),
        "{}",
        again.stdout()
    );
}

/// A directory that is not wask's, holding files under names of the shape wask gives
/// entries, is not adopted as a cache: the review's `wask run` tagged it, and `cache
/// clear` then deleted the files. Only a new or empty directory becomes a cache.
#[test]
fn a_directory_of_entry_shaped_names_is_never_adopted() {
    let ws = workspace("[tasks.t]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:hi\"]\n");
    let victim = tempfile::tempdir().unwrap();
    let entry = victim
        .path()
        .join("aa")
        .join(format!("aa{}", "a".repeat(62)));
    std::fs::create_dir_all(entry.join("sub")).unwrap();
    std::fs::write(entry.join("notes.txt"), "precious\n").unwrap();
    let compiled = victim.path().join("compiled").join("0".repeat(16));
    std::fs::create_dir_all(&compiled).unwrap();
    std::fs::write(compiled.join(format!("{}.cwasm", "1".repeat(64))), "mine").unwrap();
    let dir = victim.path().to_str().unwrap();
    for args in [
        &["run", "p:t"][..],
        &["cache", "clear"],
        &["cache", "clean"],
    ] {
        let run = ws.wask_env(args, &[("WASK_CACHE_DIR", dir)]);
        assert_eq!(run.code(), 2, "{args:?}: {}{}", run.stdout(), run.stderr());
        assert!(
            run.stderr().contains("is not a wask cache directory"),
            "{args:?}: {}",
            run.stderr()
        );
    }
    assert_eq!(
        std::fs::read(entry.join("notes.txt")).unwrap(),
        b"precious\n"
    );
    assert!(!victim.path().join("CACHEDIR.TAG").exists());
    // An empty directory is a new cache.
    let empty = tempfile::tempdir().unwrap();
    let run = ws.wask_env(
        &["run", "p:t"],
        &[("WASK_CACHE_DIR", empty.path().to_str().unwrap())],
    );
    run.expect_code(0);
    assert!(empty.path().join("CACHEDIR.TAG").is_file());
}

/// SIGTERM while a task's inputs are hashed stops the task: it is cancelled, its guest
/// never starts, nothing is stored. The review's task ran and was stored after the
/// signal, and wask took 14 s to exit over a 3 GiB input.
#[test]
fn a_signal_while_inputs_are_hashed_cancels_the_task() {
    // A guest so quick it ends before its first epoch tick, the one moment a running
    // guest notices a cancel: it must never be started once the signal came.
    let ws = workspace(
        "[tasks.h]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:ran\"]\ninputs = [\"big/*\"]\n",
    );
    ws.write("big/f", "x");
    // A first run compiles the module, as the review's did: nothing is left to compile.
    run_task(&ws, "p:h", &[]).0.expect_code(0);
    // Sparse: no disk used, but every byte is read and hashed.
    std::fs::File::options()
        .write(true)
        .open(ws.path("big/f"))
        .unwrap()
        .set_len(16 << 30)
        .unwrap();
    let summary = ws.path("s.json");
    let child = ws.spawn(&["run", "p:h", "--summary", summary.to_str().unwrap()]);
    // Once wask has read a gigabyte it is hashing the input (nothing else it reads is
    // a thousandth of that), with fifteen more to go.
    let start = std::time::Instant::now();
    while io_counter(child.id(), "rchar") < 1 << 30 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "wask never read the input"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    terminate(child.id());
    let run = Run(child.wait_with_output().unwrap());
    assert_eq!(run.code(), 128 + 15, "{}{}", run.stdout(), run.stderr());
    assert!(
        !run.stdout().contains("[p:h]"),
        "the guest ran after the signal: {}",
        run.stdout()
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(task(&s, "p:h")["state"], "cancelled");
    assert_eq!(entries(&ws), 1, "only the first run is stored");
}

/// Configuration cargo and rustup look for above wherever they run, which can name the
/// programs a build runs, is never an output, whether or not wask builds a crate
/// there: the review planted `/.cargo/config.toml` in a workspace whose crates only the
/// user builds.
#[test]
fn outputs_never_plant_cargo_configuration() {
    for output in [
        "/.cargo/config.toml",
        "/app/.cargo/config",
        "/app/rust-toolchain.toml",
    ] {
        let ws = workspace(&hostile(
            "t",
            &[],
            &format!("outputs = [{}]", toml_string(output)),
        ));
        refused_at_load(
            &ws.wask(&["check"]),
            "configuration, which cargo and rustup read",
        );
    }
    let ws = workspace(&hostile(
        "t",
        &["write:/out/app/.cargo/config.toml"],
        "outputs = [\"out/**\"]",
    ));
    let (run, record) = run_task(&ws, "p:t", &[]);
    fails_with(&run, &record, "configuration, which cargo and rustup read");
    assert!(!ws.path("out/app/.cargo").exists());
}

/// A cache directory reached through a link into the project, not made yet: a glob
/// over where it will be is refused at load, as one over the written path is.
#[test]
fn a_glob_over_a_cache_reached_through_a_link_is_refused_at_load() {
    let ws = workspace(&hostile("t", &[], "outputs = [\"c/**\"]"));
    std::os::unix::fs::symlink(ws.path("c"), ws.path("clink")).unwrap();
    let clink = ws.path("clink");
    let check = ws.wask_env(&["check"], &[("WASK_CACHE_DIR", clink.to_str().unwrap())]);
    refused_at_load(&check, "lies in wask's own directory");
}

/// A hit replays a task's two streams interleaved as the fresh run wrote them: the
/// review's hit printed all of stdout and then all of stderr, where the fresh run, in
/// `--output-mode live`, had alternated them line by line.
#[test]
fn a_hit_interleaves_stdout_and_stderr_as_the_fresh_run_did() {
    let ws = workspace(&hostile("t", &["interleave:3"], ""));
    let both = |ws: &crate::support::Ws| {
        let log = ws.path("both.log");
        let file = std::fs::File::create(&log).unwrap();
        let status = ws
            .command(&["run", "p:t", "--output-mode", "live"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .unwrap();
        assert!(status.success());
        String::from_utf8(std::fs::read(&log).unwrap())
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("[p:t] out ") || l.starts_with("[p:t] err "))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let fresh = both(&ws);
    let expected: Vec<String> = (0..3)
        .flat_map(|i| [format!("[p:t] out {i}"), format!("[p:t] err {i}")])
        .collect();
    assert_eq!(fresh, expected);
    assert_eq!(entries(&ws), 1);
    assert_eq!(both(&ws), fresh, "the hit replayed another order");
}
