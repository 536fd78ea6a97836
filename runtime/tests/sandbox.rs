//! The sandbox against the probe guest (`tests/guests/probe`): what a task can see, what
//! it cannot reach, the limits, determinism, and the compiled-module cache.
//! Requirement ids: SANDBOX-001..008.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use wask_runtime::determinism::{ClockMode, DEFAULT_EPOCH_SECONDS};
use wask_runtime::view::{InputFile, StagedView, ViewSpec, Violation};

/// The tests' hash function for staged inputs.
fn blake3_of(r: &mut dyn std::io::Read) -> std::io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update_reader(r)?;
    Ok(*h.finalize().as_bytes())
}

/// A deadline no test reaches.
fn far() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(3600)
}
use wask_runtime::{CodeSource, Failure, Limits, RunOutcome, Sandbox};

/// The probe guest, after `scripts/build-guests.sh rust` (the one place guests are
/// built) has brought it up to date, once per test binary.
fn probe_bytes() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = std::process::Command::new("bash")
            .arg(repo.join("scripts/build-guests.sh"))
            .arg("rust")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("bash runs");
        assert!(status.success(), "scripts/build-guests.sh rust failed");
        std::fs::read(repo.join("tests/guests/target/wasm32-wasip1/release/probe.wasm")).unwrap()
    })
}

/// A workspace on the host with one declared input (`/app/a.txt`) next to an undeclared
/// file (`/app/secret.txt`), and a sandbox whose compiled cache lives in the temp dir.
struct Fixture {
    dir: tempfile::TempDir,
    sandbox: Sandbox,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ws/app")).unwrap();
        std::fs::write(dir.path().join("ws/app/a.txt"), "declared\n").unwrap();
        std::fs::write(dir.path().join("ws/app/secret.txt"), "undeclared\n").unwrap();
        let sandbox = Sandbox::new(&dir.path().join("compiled")).unwrap();
        Fixture { dir, sandbox }
    }

    fn ws(&self, rel: &str) -> PathBuf {
        self.dir.path().join("ws").join(rel)
    }

    fn input(&self, guest: &str) -> InputFile {
        let host_path = self.ws(guest.trim_start_matches('/'));
        InputFile {
            guest_path: guest.to_string(),
            digest: *blake3::hash(&std::fs::read(&host_path).unwrap()).as_bytes(),
            host_path,
        }
    }

    fn stage(&self, inputs: &[InputFile], outputs: &[&str]) -> StagedView {
        let outputs: Vec<String> = outputs.iter().map(|s| s.to_string()).collect();
        StagedView::stage(
            &ViewSpec {
                inputs,
                outputs: &outputs,
                task_json: b"{}",
                hash: &blake3_of,
            },
            &self.dir.path().join("scratch"),
        )
        .unwrap()
    }

    fn run_with(
        &self,
        view: &StagedView,
        args: &[&str],
        limits: Limits,
        clock: ClockMode,
    ) -> RunOutcome {
        let module = self
            .sandbox
            .load(probe_bytes(), &Limits::default(), far())
            .unwrap();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.sandbox.run(
            &module,
            &wask_runtime::RunSpec {
                args: &args,
                env: &[("VISIBLE".into(), "yes".into())],
                mounts: view.mounts(),
                limits,
                clock,
                deadline: None,
            },
        )
    }

    fn run(&self, view: &StagedView, args: &[&str]) -> RunOutcome {
        self.run_with(view, args, Limits::default(), fixed())
    }

    /// A run with `/app/a.txt` declared and outputs under `/out`.
    fn standard(&self, args: &[&str]) -> (StagedView, RunOutcome) {
        let view = self.stage(&[self.input("/app/a.txt")], &["/out/**"]);
        let outcome = self.run(&view, args);
        (view, outcome)
    }
}

fn fixed() -> ClockMode {
    ClockMode::Fixed {
        epoch_seconds: DEFAULT_EPOCH_SECONDS,
        seed: [7; 32],
    }
}

fn stdout(o: &RunOutcome) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The result lines of the probe, one per action.
fn lines(o: &RunOutcome) -> Vec<String> {
    stdout(o).lines().map(String::from).collect()
}

#[track_caller]
fn assert_all_refused(o: &RunOutcome, action: &str) {
    let out = stdout(o);
    assert!(
        !out.lines().any(|l| l.starts_with(&format!("ok {action} "))),
        "a `{action}` succeeded:\n{out}"
    );
    assert!(out.contains(&format!("err {action} ")), "{out}");
}

// SANDBOX-001: exactly the declared inputs, read-only.

#[test]
fn a_declared_input_is_readable() {
    let f = Fixture::new();
    let (_, o) = f.standard(&["read:/app/a.txt"]);
    assert_eq!(o.result, Ok(()));
    assert_eq!(lines(&o), [r#"ok read /app/a.txt 9 "declared\n""#]);
}

#[test]
fn undeclared_files_do_not_exist_and_are_recorded() {
    let f = Fixture::new();
    let (_, o) = f.standard(&["read:/app/secret.txt", "stat:/app/secret.txt"]);
    assert_all_refused(&o, "read");
    assert_all_refused(&o, "stat");
    assert!(!stdout(&o).contains("undeclared\\n"));
    assert!(
        o.access.refused.iter().any(|(p, _)| p == "/app/secret.txt"),
        "{:?}",
        o.access
    );
}

#[test]
fn listing_shows_only_declared_names() {
    let f = Fixture::new();
    let (_, o) = f.standard(&["list:/app", "list:/"]);
    let out = lines(&o);
    assert_eq!(out[0], "ok list /app [a.txt]");
    assert!(!out[1].contains("secret"), "{out:?}");
}

#[test]
fn dot_dot_and_absolute_paths_never_leave_the_view() {
    let f = Fixture::new();
    let host_file = f.dir.path().join("ws/app/secret.txt");
    let escapes = [
        "read:/../app/secret.txt".to_string(),
        "read:/app/../../app/secret.txt".to_string(),
        "read:/../../../../etc/passwd".to_string(),
        "read:../ws/app/secret.txt".to_string(),
        "read:/etc/passwd".to_string(),
        "read:/proc/self/environ".to_string(),
        format!("read:{}", host_file.display()),
        "read:/out/../../app/secret.txt".to_string(),
        "read:/out/../../../etc/passwd".to_string(),
    ];
    let args: Vec<&str> = escapes.iter().map(String::as_str).collect();
    let (_, o) = f.standard(&args);
    assert_all_refused(&o, "read");
    assert_eq!(lines(&o).len(), escapes.len(), "{}", stdout(&o));
}

#[test]
fn the_module_and_the_cache_are_not_visible() {
    let f = Fixture::new();
    let compiled = f.dir.path().join("compiled");
    let (_, o) = f.standard(&[
        &format!("list:{}", compiled.display()),
        "list:/compiled",
        "read:/probe.wasm",
    ]);
    assert_all_refused(&o, "list");
    assert!(stdout(&o).contains("err read /probe.wasm"));
}

#[test]
fn declared_inputs_cannot_be_changed_by_any_route() {
    let f = Fixture::new();
    let before = std::fs::metadata(f.ws("app/a.txt")).unwrap();
    let (view, o) = f.standard(&[
        "write:/app/a.txt:x",
        "append:/app/a.txt:x",
        "truncate:/app/a.txt",
        "remove:/app/a.txt",
        "rename:/app/a.txt:/app/b.txt",
        "rename:/app/a.txt:/out/stolen.txt",
        "settimes:/app/a.txt",
        "hardlink:/app/a.txt:/out/h.txt",
        "write:/out/h.txt:through the link",
        "symlink:/app/a.txt:/app/link",
    ]);
    assert_eq!(o.result, Ok(()));
    for action in [
        "write", "append", "truncate", "remove", "rename", "settimes", "hardlink", "symlink",
    ] {
        let ok = lines(&o)
            .iter()
            .any(|l| l.starts_with(&format!("ok {action} /app")));
        assert!(!ok, "{action} on an input succeeded:\n{}", stdout(&o));
    }
    let after = std::fs::metadata(f.ws("app/a.txt")).unwrap();
    assert_eq!(std::fs::read(f.ws("app/a.txt")).unwrap(), b"declared\n");
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    assert_eq!(
        std::fs::read_dir(f.ws("app")).unwrap().count(),
        2,
        "nothing new appeared in the workspace"
    );
    // Whatever the guest managed to write is judged only by its declarations.
    let _ = view.collect(&Limits::default(), &blake3_of);
}

#[test]
fn the_task_description_is_read_only() {
    let f = Fixture::new();
    let (_, o) = f.standard(&["read:/.wask/task.json", "write:/.wask/task.json:x"]);
    assert!(
        stdout(&o).starts_with("ok read /.wask/task.json 2"),
        "{}",
        stdout(&o)
    );
    assert_all_refused(&o, "write");
}

// SANDBOX-002: writes only under declared outputs.

#[test]
fn writes_land_only_in_declared_outputs() {
    let f = Fixture::new();
    let (view, o) = f.standard(&[
        "write:/new.txt:x",
        "write:/app/new.txt:x",
        "mkdir:/elsewhere",
        "mkdir:/out/sub",
        "write:/out/sub/ok.txt:fine",
    ]);
    let out = lines(&o);
    assert!(out[0].starts_with("err write"), "{out:?}");
    assert!(out[1].starts_with("err write"), "{out:?}");
    assert!(out[2].starts_with("err mkdir"), "{out:?}");
    assert_eq!(out[4], "ok write /out/sub/ok.txt");
    let collected = view.collect(&Limits::default(), &blake3_of).unwrap();
    assert_eq!(collected.len(), 1);
    assert_eq!(collected[0].guest_path, "/out/sub/ok.txt");
    assert!(!f.ws("new.txt").exists() && !f.ws("app/new.txt").exists());
}

#[test]
fn a_write_outside_the_output_patterns_is_a_violation() {
    let f = Fixture::new();
    let view = f.stage(&[], &["/out/*.txt"]);
    let o = f.run(&view, &["write:/out/a.txt:x", "write:/out/a.log:x"]);
    assert_eq!(o.result, Ok(()));
    assert_eq!(
        view.collect(&Limits::default(), &blake3_of).unwrap_err(),
        [Violation::UndeclaredWrite("/out/a.log".into())]
    );
}

#[test]
fn a_symlink_planted_among_outputs_is_refused() {
    let f = Fixture::new();
    let secret = f.ws("app/secret.txt");
    let view = f.stage(&[f.input("/app/a.txt")], &["/out/**"]);
    let o = f.run(
        &view,
        &[
            "symlink:../app/a.txt:/out/rel-link",
            "symlink:a.txt:/out/plain-link",
            &format!("symlink:{}:/out/abs-link", secret.display()),
        ],
    );
    assert_eq!(o.result, Ok(()));
    // Whichever links the guest managed to create, none becomes an output.
    match view.collect(&Limits::default(), &blake3_of) {
        Ok(outputs) => assert!(outputs.is_empty(), "{outputs:?}"),
        Err(violations) => assert!(
            violations
                .iter()
                .all(|v| matches!(v, Violation::SymlinkOutput(_))),
            "{violations:?}"
        ),
    }
}

#[test]
fn a_declared_literal_output_that_is_missing_is_a_violation() {
    let f = Fixture::new();
    let view = f.stage(&[], &["/out/result.txt"]);
    let o = f.run(&view, &["print:nothing written"]);
    assert_eq!(o.result, Ok(()));
    assert_eq!(
        view.collect(&Limits::default(), &blake3_of).unwrap_err(),
        [Violation::MissingOutput("/out/result.txt".into())]
    );
}

// SANDBOX-003 and 004: environment, network, stdin.

#[test]
fn the_environment_is_exactly_what_was_given() {
    let f = Fixture::new();
    // SAFETY: set before any thread of this test reads the environment; the name is
    // unique to this test.
    unsafe { std::env::set_var("WASK_RUNTIME_TEST_SECRET", "leak") };
    let (_, o) = f.standard(&["envall", "env:WASK_RUNTIME_TEST_SECRET", "env:PATH"]);
    let out = lines(&o);
    assert_eq!(out[0], "VISIBLE=yes");
    assert_eq!(out[1], "ok envall 1 variables");
    assert!(out[2].starts_with("err env"), "{out:?}");
    assert!(out[3].starts_with("err env"), "{out:?}");
}

#[test]
fn there_is_no_network() {
    let f = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (_, o) = f.standard(&[&format!("socket:{addr}")]);
    assert_all_refused(&o, "socket");
}

#[test]
fn stdin_is_empty() {
    let f = Fixture::new();
    let (_, o) = f.standard(&["stdin"]);
    assert_eq!(lines(&o), ["ok stdin 0 bytes"]);
}

// SANDBOX-005: determinism.

#[test]
fn fixed_clock_and_seeded_randomness_repeat_exactly() {
    let f = Fixture::new();
    let args = ["time", "random", "monotonic"];
    let (_, first) = f.standard(&args);
    let (_, second) = f.standard(&args);
    assert_eq!(first.result, Ok(()));
    assert_eq!(stdout(&first), stdout(&second));
    let out = lines(&first);
    assert_eq!(
        out[0],
        format!("ok time {}", DEFAULT_EPOCH_SECONDS as u128 * 1_000_000_000)
    );

    let view = f.stage(&[], &[]);
    let other_seed = f.run_with(
        &view,
        &args,
        Limits::default(),
        ClockMode::Fixed {
            epoch_seconds: DEFAULT_EPOCH_SECONDS,
            seed: [8; 32],
        },
    );
    assert_ne!(lines(&other_seed)[1], out[1], "the seed drives randomness");
}

#[test]
fn host_clock_mode_sees_real_time() {
    let f = Fixture::new();
    let view = f.stage(&[], &[]);
    let o = f.run_with(&view, &["time"], Limits::default(), ClockMode::Host);
    let nanos: u128 = lines(&o)[0]
        .strip_prefix("ok time ")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert!(
        now.abs_diff(nanos) < 600 * 1_000_000_000,
        "{nanos} vs {now}"
    );
}

// SANDBOX-006 and 007: limits and traps fail the run, naming the cause.

#[test]
fn the_memory_limit_fails_the_run() {
    let f = Fixture::new();
    let view = f.stage(&[], &[]);
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let o = f.run_with(&view, &["alloc:64"], limits, fixed());
    assert_eq!(
        o.result,
        Err(Failure::MemoryLimit(32 << 20)),
        "{}",
        stdout(&o)
    );
    let ok = f.run_with(&view, &["alloc:8"], limits, fixed());
    assert_eq!(ok.result, Ok(()), "a guest under the limit runs");
}

#[test]
fn the_timeout_interrupts_a_spinning_guest() {
    let f = Fixture::new();
    let view = f.stage(&[], &[]);
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let o = f.run_with(&view, &["print:started", "loop"], limits, fixed());
    assert_eq!(o.result, Err(Failure::Timeout(Duration::from_millis(200))));
    assert_eq!(
        stdout(&o),
        "started\nok print \n",
        "output before the interrupt is kept"
    );
}

#[test]
fn the_output_cap_fails_the_run_and_keeps_the_cap() {
    let f = Fixture::new();
    let view = f.stage(&[], &[]);
    let limits = Limits {
        output_bytes: 1000,
        ..Limits::default()
    };
    let o = f.run_with(&view, &["spam:5000"], limits, fixed());
    assert_eq!(o.result, Err(Failure::OutputLimit(1000)));
    assert_eq!(o.stdout.len(), 1000);
    let exact = f.run_with(&view, &["spam:900"], limits, fixed());
    assert_eq!(exact.result, Ok(()), "output under the cap is fine");
}

#[test]
fn traps_exits_and_stack_overflows_are_failures() {
    let f = Fixture::new();
    let view = f.stage(&[], &[]);
    assert!(matches!(
        f.run(&view, &["trap"]).result,
        Err(Failure::Trap(_))
    ));
    assert_eq!(f.run(&view, &["exit:3"]).result, Err(Failure::Exit(3)));
    assert_eq!(f.run(&view, &["exit:0"]).result, Ok(()));
    // Rust guests keep their frames on a shadow stack in linear memory, so running out
    // of it is an out-of-bounds trap rather than wasmtime's own stack-overflow trap;
    // either way it is a failure, never a host crash.
    assert!(matches!(
        f.run(&view, &["recurse"]).result,
        Err(Failure::StackOverflow | Failure::Trap(_))
    ));
}

#[test]
fn a_module_without_start_or_invalid_bytes_is_a_clear_failure() {
    let f = Fixture::new();
    let err = f
        .sandbox
        .load(b"not wasm at all", &Limits::default(), far())
        .unwrap_err();
    assert!(matches!(err, Failure::Setup(_)), "{err:?}");
}

// SANDBOX-008: compiled modules are cached on disk and verified before use.

#[test]
fn compiled_modules_are_reused_and_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let compiled = dir.path().join("compiled");
    let first = Sandbox::new(&compiled).unwrap();
    assert_eq!(
        first
            .load(probe_bytes(), &Limits::default(), far())
            .unwrap()
            .source,
        CodeSource::Compiled
    );
    assert_eq!(
        first
            .load(probe_bytes(), &Limits::default(), far())
            .unwrap()
            .source,
        CodeSource::Memory
    );
    drop(first);

    let second = Sandbox::new(&compiled).unwrap();
    assert_eq!(
        second
            .load(probe_bytes(), &Limits::default(), far())
            .unwrap()
            .source,
        CodeSource::Disk
    );
    drop(second);

    let artifacts: Vec<PathBuf> = walkdir::WalkDir::new(&compiled)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .map(|e| e.into_path())
        .collect();
    assert_eq!(artifacts.len(), 1);
    let mut bytes = std::fs::read(&artifacts[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifacts[0], bytes).unwrap();

    let third = Sandbox::new(&compiled).unwrap();
    let module = third
        .load(probe_bytes(), &Limits::default(), far())
        .unwrap();
    assert_eq!(module.source, CodeSource::RecompiledAfterTamper);
    let view_dir = tempfile::tempdir().unwrap();
    let view = StagedView::stage(
        &ViewSpec {
            inputs: &[],
            outputs: &[],
            task_json: b"{}",
            hash: &blake3_of,
        },
        view_dir.path(),
    )
    .unwrap();
    let o = third.run(
        &module,
        &wask_runtime::RunSpec {
            args: &["print:still works".to_string()],
            env: &[],
            mounts: view.mounts(),
            limits: Limits::default(),
            clock: fixed(),
            deadline: None,
        },
    );
    assert_eq!(o.result, Ok(()));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "still works\nok print \n"
    );
}

// EXEC-012: cancellation interrupts running guests without waiting for their timeout.

#[test]
fn cancel_interrupts_a_running_guest() {
    let f = Fixture::new();
    let view = f.stage(&[], &[]);
    let limits = Limits {
        timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    // Loaded first: a compilation that has not started yet would be cancelled too.
    f.sandbox.load(probe_bytes(), &limits, far()).unwrap();
    let outcome = std::thread::scope(|s| {
        let running = s.spawn(|| f.run_with(&view, &["loop"], limits, fixed()));
        f.sandbox.cancel();
        running.join().unwrap()
    });
    assert_eq!(outcome.result, Err(Failure::Cancelled));
    let later = f.run_with(&view, &["loop"], limits, fixed());
    assert_eq!(
        later.result,
        Err(Failure::Cancelled),
        "a guest started after cancel stops at once"
    );
}

// EXEC-016: live output. The sink sees exactly the bytes the outcome captures.

fn run_live(
    f: &Fixture,
    args: &[&str],
    limits: Limits,
) -> (RunOutcome, Vec<(wask_runtime::Stream, Vec<u8>)>) {
    let view = f.stage(&[], &[]);
    let module = f
        .sandbox
        .load(probe_bytes(), &Limits::default(), far())
        .unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let chunks = std::sync::Mutex::new(Vec::new());
    let sink = |stream: wask_runtime::Stream, bytes: &[u8]| {
        chunks.lock().unwrap().push((stream, bytes.to_vec()));
    };
    let outcome = f.sandbox.run_with_output(
        &module,
        &wask_runtime::RunSpec {
            args: &args,
            env: &[],
            mounts: view.mounts(),
            limits,
            clock: fixed(),
            deadline: None,
        },
        &sink,
    );
    (outcome, chunks.into_inner().unwrap())
}

fn joined(chunks: &[(wask_runtime::Stream, Vec<u8>)], stream: wask_runtime::Stream) -> Vec<u8> {
    chunks
        .iter()
        .filter(|(s, _)| *s == stream)
        .flat_map(|(_, b)| b.iter().copied())
        .collect()
}

#[test]
fn the_output_sink_receives_exactly_the_captured_bytes() {
    use wask_runtime::Stream;
    let f = Fixture::new();
    let args = [
        "print:one",
        "stderr:two",
        "lines:50:many",
        "stderr:three",
        "tail:no newline",
    ];
    let (live, chunks) = run_live(&f, &args, Limits::default());
    assert_eq!(live.result, Ok(()));
    assert_eq!(joined(&chunks, Stream::Stdout), live.stdout);
    assert_eq!(joined(&chunks, Stream::Stderr), live.stderr);
    assert!(
        live.stdout
            .ends_with(b"many 50\nok lines 50 lines\nok stderr \nno newline")
    );
    assert_eq!(live.stderr, b"two\nthree\n");
    assert!(
        chunks.len() > 100,
        "chunks follow the guest's writes, not the end of the run"
    );
    // The order across streams is the guest's: `two` comes after `one`, before `many`.
    let first_err = chunks
        .iter()
        .position(|(s, _)| *s == Stream::Stderr)
        .unwrap();
    assert_eq!(
        joined(&chunks[..first_err], Stream::Stdout),
        b"one\nok print \n"
    );

    // The capture is the same as without a sink.
    let view = f.stage(&[], &[]);
    let plain = f.run(&view, &args);
    assert_eq!(plain.stdout, live.stdout);
    assert_eq!(plain.stderr, live.stderr);
}

#[test]
fn the_output_sink_stops_at_the_output_cap() {
    use wask_runtime::Stream;
    let f = Fixture::new();
    let limits = Limits {
        output_bytes: 1000,
        ..Limits::default()
    };
    let (o, chunks) = run_live(&f, &["spam:5000"], limits);
    assert_eq!(o.result, Err(Failure::OutputLimit(1000)));
    assert_eq!(o.stdout.len(), 1000);
    assert_eq!(joined(&chunks, Stream::Stdout), o.stdout);
    let (under, chunks) = run_live(&f, &["spam:900"], limits);
    assert_eq!(under.result, Ok(()), "output under the cap is fine");
    assert_eq!(joined(&chunks, Stream::Stdout), under.stdout);
}

/// SANDBOX-008 against a hostile cache: whoever can write the cache directory cannot
/// make the sandbox load code it did not compile for that module under this user's key,
/// neither by forging a plain digest header nor by swapping two modules' artifacts.
#[test]
fn compiled_artifacts_cannot_be_forged_or_swapped() {
    /// `(module (memory (export "memory") 1) (func (export "_start")))`
    const NOOP: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03,
        0x02, 0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, b'm', b'e', b'm',
        b'o', b'r', b'y', 0x02, 0x00, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, 0x0a,
        0x04, 0x01, 0x02, 0x00, 0x0b,
    ];
    let dir = tempfile::tempdir().unwrap();
    let compiled = dir.path().join("compiled");
    let artifact = |wasm: &[u8]| -> PathBuf {
        let name = format!("{}.cwasm", blake3::hash(wasm).to_hex());
        walkdir::WalkDir::new(&compiled)
            .into_iter()
            .flatten()
            .find(|e| e.file_name().to_string_lossy() == name)
            .expect("artifact stored")
            .into_path()
    };
    {
        let sandbox = Sandbox::new(&compiled).unwrap();
        sandbox
            .load(probe_bytes(), &Limits::default(), far())
            .unwrap();
        sandbox.load(NOOP, &Limits::default(), far()).unwrap();
    }
    // Swap: the no-op's artifact where the probe's belongs.
    std::fs::copy(artifact(NOOP), artifact(probe_bytes())).unwrap();
    let sandbox = Sandbox::new(&compiled).unwrap();
    let probe = sandbox
        .load(probe_bytes(), &Limits::default(), far())
        .unwrap();
    assert_eq!(probe.source, CodeSource::RecompiledAfterTamper);
    drop(sandbox);

    // Forge: the no-op's code under a plain blake3 header, as a writer without the key
    // would compute it.
    let code = std::fs::read(artifact(NOOP)).unwrap()[32..].to_vec();
    let mut forged = blake3::hash(&code).as_bytes().to_vec();
    forged.extend_from_slice(&code);
    std::fs::write(artifact(NOOP), forged).unwrap();
    let sandbox = Sandbox::new(&compiled).unwrap();
    assert_eq!(
        sandbox
            .load(NOOP, &Limits::default(), far())
            .unwrap()
            .source,
        CodeSource::RecompiledAfterTamper
    );
}

// Inputs are staged as the bytes their key was derived from (the hardening suite, class 12).

#[test]
fn an_input_that_changes_after_it_was_hashed_is_never_staged_or_seen() {
    let f = Fixture::new();
    // Changed between hashing and staging: a link would share the new bytes; refused.
    let input = f.input("/app/a.txt");
    std::fs::write(f.ws("app/a.txt"), "edited after hashing\n").unwrap();
    let staged = StagedView::stage(
        &ViewSpec {
            inputs: std::slice::from_ref(&input),
            outputs: &[],
            task_json: b"{}",
            hash: &blake3_of,
        },
        &f.dir.path().join("scratch"),
    );
    assert!(
        matches!(staged, Err(wask_runtime::view::StageError::InputChanged(ref p)) if p == "/app/a.txt"),
        "{:?}",
        staged.err()
    );
    // Changed while the task runs, in place and with its time stamp put back: the
    // staged copy is the run's own, and still holds the bytes that were hashed.
    let input = f.input("/app/a.txt");
    let before = std::fs::metadata(f.ws("app/a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let view = f.stage(std::slice::from_ref(&input), &[]);
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::options()
        .write(true)
        .open(f.ws("app/a.txt"))
        .unwrap();
    file.write_all_at(b"EDITED", 0).unwrap();
    file.set_modified(before).unwrap();
    let staged = view.mounts()[0].host_dir.join("app/a.txt");
    assert_eq!(
        *blake3::hash(&std::fs::read(&staged).unwrap()).as_bytes(),
        input.digest
    );
    // Two inputs that are one file on the host (a hard link) are two files in the view.
    std::fs::hard_link(f.ws("app/a.txt"), f.ws("app/b.txt")).unwrap();
    let (a, b) = (f.input("/app/a.txt"), f.input("/app/b.txt"));
    let view = f.stage(&[a, b], &[]);
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| {
        std::fs::metadata(view.mounts()[0].host_dir.join(p))
            .unwrap()
            .ino()
    };
    assert_ne!(ino("app/a.txt"), ino("app/b.txt"));
}

/// A module of `functions` large functions: slow to compile.
fn slow_module(functions: usize) -> Vec<u8> {
    let body =
        "local.get 0 local.get 1 i32.add local.tee 0 local.get 1 i32.mul local.set 1 ".repeat(400);
    let funcs: String = (0..functions)
        .map(|i| format!("(func $f{i} (param i32 i32) (result i32) {body} local.get 0)"))
        .collect();
    wat::parse_str(format!(
        "(module (memory (export \"memory\") 1) {funcs} (func (export \"_start\")))"
    ))
    .unwrap()
}

// SANDBOX-006: compiling counts against the deadline and stops on cancel.

#[test]
fn compiling_stops_at_the_deadline_and_on_cancel() {
    let f = Fixture::new();
    let wasm = slow_module(600);
    let soon = std::time::Instant::now() + Duration::from_millis(50);
    assert!(matches!(
        f.sandbox.load(&wasm, &Limits::default(), soon),
        Err(Failure::CompileTimeout(_))
    ));
    let small = Limits {
        module_bytes: 1000,
        ..Limits::default()
    };
    assert!(matches!(
        f.sandbox.load(&wasm, &small, far()),
        Err(Failure::ModuleTooLarge { limit: 1000, .. })
    ));
    f.sandbox.cancel();
    assert_eq!(
        f.sandbox
            .load(&wasm, &Limits::default(), far())
            .unwrap_err(),
        Failure::Cancelled
    );
}
