//! What the third outside review of the release binary got through, each as a test that
//! drives `wask` the way the attack did (an input edited mid-run is `hardening`'s class
//! 12). See `docs/security.md` for the claims these show.

use crate::hardening::{
    fails_with, guest_crate, hostile, lines_of, refused_at_load, run_task, set_tasks, workspace,
};
use crate::support::{Run, Ws, appears, backdate, terminate, wask_binary};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits up to a minute for `child` to exit, killing it and failing the test if it
/// does not: wask must never hang on what these tests hand it.
#[track_caller]
fn finishes(mut child: Child) -> Run {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("wask did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Run(child.wait_with_output().unwrap())
}

/// Processes still alive (not zombies) whose command line names `needle`.
fn live_processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if cmdline.contains(needle) && !zombie {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// A guest crate at `plugins/slow` whose build script writes `<root>/build-started`
/// and then waits (up to a minute) for `<root>/edited`; the program prints
/// `src/msg.txt`.
fn slow_building_crate(ws: &Ws) {
    guest_crate(
        ws,
        "plugins/slow",
        "fn main() { print!(\"{}\", include_str!(\"msg.txt\")); }\n",
    );
    ws.write(
        "plugins/slow/build.rs",
        r#"use std::path::PathBuf;
fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    std::fs::write(root.join("build-started"), b"").unwrap();
    for _ in 0..600 {
        if root.join("edited").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
"#,
    );
}

/// The program lines task `id` printed.
fn printed(run: &Run, id: &str) -> Vec<String> {
    let prefix = format!("[{id}] ");
    lines_of(&run.stdout(), id)
        .iter()
        .map(|l| l.trim_start_matches(&prefix).to_string())
        .collect()
}

/// Two inputs that are one file (a hard link, or a link inside the workspace) are
/// staged as two files: what the task sees of them, inode numbers and link counts
/// included, is what it sees of two copies, and the key is the same. The review read
/// `nlink 2` and one inode number and so learned how the workspace was laid out.
#[test]
fn links_among_inputs_are_invisible_to_the_task() {
    let tasks = hostile(
        "t",
        &["meta:/in/a.txt,/in/b.txt", "write:/out/r.out"],
        "inputs = [\"in/a.txt\", \"in/b.txt\"]\noutputs = [\"out/*.out\"]",
    );
    let seen = |lay_out: &dyn Fn(&Ws)| {
        let ws = workspace(&tasks);
        ws.write("in/a.txt", "same\n");
        lay_out(&ws);
        let (run, r) = run_task(&ws, "p:t", &[]);
        assert_eq!(r["state"], "succeeded", "{}{}", run.stdout(), run.stderr());
        (printed(&run, "p:t"), r["key"].clone())
    };
    let copies = seen(&|ws| {
        ws.write("in/b.txt", "same\n");
    });
    let hard_link =
        seen(&|ws| std::fs::hard_link(ws.path("in/a.txt"), ws.path("in/b.txt")).unwrap());
    let symlink = seen(&|ws| std::os::unix::fs::symlink("a.txt", ws.path("in/b.txt")).unwrap());
    assert!(copies.0[0].contains("nlink 1"), "{:?}", copies.0);
    assert_eq!(copies, hard_link, "a hard link between inputs shows");
    assert_eq!(copies, symlink, "a link between inputs shows");
}

/// A memory grown past the limit traps the task: a refused growth would come back to
/// the guest, which could then measure its limit (and so learn something its key does
/// not hold) and go on. The review grew a page at a time and printed how far it got.
#[test]
fn a_task_cannot_measure_its_memory_limit() {
    for limit in ["64MiB", "128MiB"] {
        let ws = workspace(&hostile(
            "t",
            &["grow-all"],
            &format!("limits = {{ memory = \"{limit}\" }}"),
        ));
        let (run, r) = run_task(&ws, "p:t", &[]);
        fails_with(&run, &r, "exceeded its memory limit");
        assert!(!run.stdout().contains("grew"), "{}", run.stdout());
    }
}

/// `limits.module_size` holds on a cache hit too: the review stored an entry, lowered
/// the limit, and the hit ran as if the module were within it.
#[test]
fn the_module_size_limit_holds_on_a_hit() {
    let hello = "[tasks.t]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:hello\"]\n";
    let ws = workspace(hello);
    run_task(&ws, "p:t", &[]).0.expect_code(0);
    set_tasks(
        &ws,
        &format!("{hello}limits = {{ module_size = \"1KiB\" }}\n"),
    );
    let (run, r) = run_task(&ws, "p:t", &[]);
    fails_with(&run, &r, "over the module size limit");
    assert_ne!(r["source"], "cache");
    assert!(!run.stdout().contains("[p:t] hello"), "{}", run.stdout());
}

/// SIGTERM while a guest crate builds stops the build: cargo, its build scripts and the
/// compilers it started are gone when wask exits. The review found cargo still running
/// (and writing to the workspace) after wask had exited.
#[test]
fn a_signal_during_a_crate_build_stops_the_build() {
    let ws = workspace("[tasks.show]\nmodule = { crate = \"/plugins/slow\" }\n");
    slow_building_crate(&ws);
    ws.write("plugins/slow/src/msg.txt", "never\n");
    let child = ws.spawn(&["run", "p:show"]);
    let pid = child.id();
    appears(&ws.path("build-started"));
    terminate(pid);
    let run = finishes(child);
    assert_eq!(run.code(), 128 + 15, "{}", run.stderr());
    let build_dir = ws.path(".wask/build").display().to_string();
    let start = Instant::now();
    // Killed processes vanish from /proc a moment after their parent sees them go.
    while !live_processes_naming(&build_dir).is_empty() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(live_processes_naming(&build_dir), Vec::<String>::new());
}

/// A crate edited while cargo builds it (the edit given an old time stamp, so cargo
/// believes its build fresh) never leaves a module under a key of sources it was not
/// built from: the review put the sources back and ran the edited module.
#[test]
fn a_crate_edited_during_its_build_keeps_each_module_under_its_own_sources() {
    let ws = workspace("[tasks.show]\nmodule = { crate = \"/plugins/slow\" }\n");
    slow_building_crate(&ws);
    let msg = ws.path("plugins/slow/src/msg.txt");
    ws.write("plugins/slow/src/msg.txt", "first\n");
    backdate(&msg);
    let child = ws.spawn(&["run", "p:show"]);
    appears(&ws.path("build-started"));
    ws.write("plugins/slow/src/msg.txt", "second\n");
    backdate(&msg);
    ws.write("edited", "");
    let run = finishes(child);
    run.expect_code(0);
    assert_eq!(printed(&run, "p:show"), ["second"]);
    for text in ["first", "second", "first"] {
        ws.write("plugins/slow/src/msg.txt", format!("{text}\n"));
        backdate(&msg);
        let (run, _) = run_task(&ws, "p:show", &[]);
        run.expect_code(0);
        assert_eq!(printed(&run, "p:show"), [text], "{}", run.stderr());
    }
}

/// The user key is a regular file of 32 bytes only its owner may read; anything else
/// is an error naming it, never a hang (a FIFO, a link to a device), never a key others
/// may know (one readable by others, an empty file), never a key read from a
/// relative place.
#[test]
fn a_user_key_that_is_not_private_is_refused_with_its_path() {
    let hello = "[tasks.t]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:hello\"]\n";
    let ws = workspace(hello);
    let state = tempfile::tempdir().unwrap();
    let key = state.path().join("user-key");
    let run_with_state = |dir: &str| {
        let child = ws
            .command(&["run", "p:t"])
            .env("WASK_STATE_DIR", dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        finishes(child)
    };
    let state_dir = state.path().to_str().unwrap().to_string();
    // The first run makes the key, private to this user.
    run_with_state(&state_dir).expect_code(0);
    let made = std::fs::metadata(&key).unwrap();
    assert_eq!(made.len(), 32);
    assert_eq!(made.permissions().mode() & 0o777, 0o600);
    let good = std::fs::read(&key).unwrap();

    type Setup = fn(&std::path::Path, &[u8]);
    let cases: [(&str, Setup, &str); 5] = [
        (
            "a link to a device",
            |k, _| std::os::unix::fs::symlink("/dev/zero", k).unwrap(),
            "is a symbolic link",
        ),
        (
            "a FIFO",
            |k, _| {
                assert!(Command::new("mkfifo").arg(k).status().unwrap().success());
            },
            "is not a regular file",
        ),
        (
            "a directory",
            |k, _| std::fs::create_dir(k).unwrap(),
            "is not a regular file",
        ),
        (
            "an empty file",
            |k, _| {
                std::fs::write(k, b"").unwrap();
                std::fs::set_permissions(k, std::fs::Permissions::from_mode(0o600)).unwrap();
            },
            "is 0 bytes, not 32",
        ),
        (
            "a key others can read",
            |k, good| {
                std::fs::write(k, good).unwrap();
                std::fs::set_permissions(k, std::fs::Permissions::from_mode(0o644)).unwrap();
            },
            "can be read or written by others",
        ),
    ];
    for (what, setup, says) in cases {
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_dir(&key);
        setup(&key, &good);
        let run = run_with_state(&state_dir);
        assert!(
            run.code() == 2 && run.stderr().contains(says) && run.stderr().contains(&state_dir),
            "{what}: exit {}\n{}",
            run.code(),
            run.stderr()
        );
        assert!(!run.stdout().contains("[p:t] hello"), "{what} ran the task");
    }
    let not_a_dir = state.path().join("plain-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let run = run_with_state(not_a_dir.to_str().unwrap());
    assert!(
        run.code() == 2 && run.stderr().contains("cannot create the user key"),
        "{}",
        run.stderr()
    );
    let run = run_with_state("relative/state");
    assert!(
        run.code() == 2
            && run
                .stderr()
                .contains("WASK_STATE_DIR must be an absolute path"),
        "{}",
        run.stderr()
    );
}

/// An argument or environment value holding a NUL is refused at load: WASI hands them
/// to the guest as C strings, so the task would see less than its key records.
#[test]
fn a_nul_in_an_argument_or_environment_value_is_refused_at_load() {
    let ws = workspace(
        "[tasks.arg]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:a\\u0000b\"]\n\n\
         [tasks.env]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:hi\"]\nenv.set = { X = \"a\\u0000b\" }\n",
    );
    let check = ws.wask(&["check"]);
    refused_at_load(&check, "argument 1 of task `arg` contains a NUL character");
    refused_at_load(&check, "the value of `X` contains a NUL character");
    assert!(check.stderr().contains("wask.toml:"), "{}", check.stderr());
}

/// A project listed by a path that is a symbolic link (to a directory outside the
/// workspace, even) is refused: its `wask.toml` and modules would be read from there.
#[test]
fn a_project_behind_a_symbolic_link_is_refused() {
    let ws = Ws::new();
    ws.with_probe();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("wask.toml"),
        "[project]\nname = \"far\"\n\n[tasks.t]\nmodule = \"/tools/probe.wasm\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path("far")).unwrap();
    ws.write("wask.toml", "[workspace]\nprojects = [\"far\"]\n");
    refused_at_load(
        &ws.wask(&["check"]),
        "project directory `far` is a symbolic link or lies under one",
    );
}

/// A limit of the wrong type says what a limit may be.
#[test]
fn a_limit_of_the_wrong_type_says_what_is_expected() {
    let ws = workspace("[tasks.t]\nmodule = \"/tools/probe.wasm\"\nlimits = { memory = true }\n");
    let check = ws.wask(&["check"]);
    refused_at_load(&check, "a whole number, or a string with a unit");
    assert!(check.stderr().contains("wask.toml:"), "{}", check.stderr());
}

/// Output directories wask makes are `rwxr-xr-x` whatever the umask, on a fresh run
/// and on a restore: the review's run under umask 0 left the workspace's output
/// directories writable by every user of the machine.
#[test]
fn output_directories_are_not_world_writable_under_any_umask() {
    let ws = workspace(&hostile(
        "t",
        &["write:/out/deep/r.out"],
        "outputs = [\"out/**\"]",
    ));
    let under_umask_0 = |ws: &Ws| {
        let status = Command::new("sh")
            .arg("-c")
            .arg("umask 000 && exec \"$0\" run p:t")
            .arg(wask_binary())
            .current_dir(&ws.root)
            .env_remove("WASK_CACHE_DIR")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        for dir in ["out", "out/deep"] {
            let mode = std::fs::metadata(ws.path(dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755, "{dir} is {:o}", mode & 0o777);
        }
        let file = std::fs::metadata(ws.path("out/deep/r.out")).unwrap();
        assert_eq!(
            file.permissions().mode() & 0o022,
            0,
            "the output is writable by others"
        );
    };
    under_umask_0(&ws);
    std::fs::remove_dir_all(ws.path("out")).unwrap();
    under_umask_0(&ws);
}
