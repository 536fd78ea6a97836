//! `wask audit` (AUDIT-001, AUDIT-003): fresh runs compared with each other and with
//! the cache entry, through the binary.

use crate::cache::reseal;
use crate::hardening::{entries, hostile, workspace};
use crate::support::Ws;

const TASKS: &str = "[tasks.gen]\nmodule = \"/tools/hostile.wasm\"\nargs = [\"write:/out/a.txt\"]\noutputs = [\"out/a.txt\"]\n\n\
[tasks.use]\nmodule = \"/tools/hostile.wasm\"\nargs = [\"copy:/out/a.txt|/res/b.txt\"]\ninputs = [\"out/a.txt\"]\noutputs = [\"res/b.txt\"]\n\n";

/// The report of `wask audit ARGS --json`, and the exit code.
fn audit(ws: &Ws, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let run = ws.wask(&all);
    let report = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout(), run.stderr()));
    (run.code(), report)
}

/// A deterministic task is reproducible over two and five runs, and auditing it stores
/// nothing and writes none of its outputs; its predecessor runs first, as `wask run`
/// would run it, so the audited task reads the predecessor's output.
#[test]
fn a_deterministic_task_is_reproducible_and_auditing_it_changes_nothing() {
    let ws = workspace(TASKS);
    for runs in ["2", "5"] {
        let (code, report) = audit(&ws, &["p:use", "--runs", runs]);
        assert_eq!(code, 0, "{report:#}");
        assert_eq!(report[0]["task"], "p:use");
        assert_eq!(report[0]["verdict"], "reproducible");
        assert_eq!(report[0]["runs"].as_u64().unwrap().to_string(), runs);
    }
    assert!(ws.path("out/a.txt").is_file(), "the predecessor ran");
    assert!(!ws.path("res/b.txt").exists(), "the audit wrote an output");
    assert_eq!(entries(&ws), 1, "only the predecessor's run is stored");
    // With its entry in the cache, the runs are compared with it too.
    ws.run(&["p:use"]).0.expect_code(0);
    let (code, report) = audit(&ws, &["p:use"]);
    assert_eq!(code, 0);
    assert_eq!(report[0]["compared_with_cache"], true);
}

/// A task that writes the host's time differs between runs; the report names the file,
/// the first differing byte and the lines, and says the fixed clock is the cure.
#[test]
fn a_task_on_the_host_clock_differs_and_the_report_says_where() {
    let ws = workspace(&hostile(
        "clock",
        &["time-to:/t/now.txt"],
        "outputs = [\"t/now.txt\"]\nclock = \"host\"",
    ));
    let (code, report) = audit(&ws, &["p:clock"]);
    assert_eq!(code, 1);
    let t = &report[0];
    assert_eq!(t["verdict"], "differs");
    let d = &t["differences"][0];
    assert_eq!(d["file"], "/t/now.txt");
    // "stable first line\nnow " is 22 bytes: the time starts there.
    assert!(d["first_differing_byte"].as_u64().unwrap() >= 22, "{d:#}");
    assert!(d["diff"].as_str().unwrap().contains("-now "), "{d:#}");
    assert!(t["hint"].as_str().unwrap().contains("fixed clock"));
    let text = ws.wask(&["audit", "p:clock"]);
    assert_eq!(text.code(), 1);
    assert!(
        text.stdout().contains("first difference at byte"),
        "{}",
        text.stdout()
    );
}

/// What a writer of the cache puts in the one entry's first output.
const FORGED: &[u8] = b"forged but well formed\n";

/// Replaces the first output of the workspace's one cache entry with [`FORGED`], the
/// blob and the manifest made to match (as a writer of the cache can); its key.
fn forge_the_entry(ws: &Ws) -> String {
    let path = walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "manifest.json")
        .unwrap()
        .into_path();
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let hash = blake3::hash(FORGED).to_hex().to_string();
    std::fs::write(path.parent().unwrap().join("blobs").join(&hash), FORGED).unwrap();
    m["outputs"][0]["hash"] = hash.into();
    m["outputs"][0]["size"] = FORGED.len().into();
    let key = m["key"].as_str().unwrap().to_string();
    std::fs::write(&path, reseal(m)).unwrap();
    key
}

/// A cache entry whose output was replaced by other valid bytes (its manifest made to
/// match) is a suspect entry: two agreeing fresh runs give other bytes.
#[test]
fn an_entry_no_run_reproduces_is_a_suspect_entry() {
    let ws = workspace(TASKS);
    ws.run(&["p:gen"]).0.expect_code(0);
    forge_the_entry(&ws);
    let (code, report) = audit(&ws, &["p:gen"]);
    assert_eq!(code, 1);
    assert_eq!(report[0]["verdict"], "suspect_entry");
    assert_eq!(report[0]["differences"][0]["file"], "/out/a.txt");
    assert_eq!(
        report[0]["differences"][0]["versions"][1]["from"],
        "cache entry"
    );
}

/// `--workspace` audits every task; bad usage is exit 2.
#[test]
fn the_whole_workspace_is_audited_and_bad_usage_is_refused() {
    let ws = workspace(TASKS);
    let (code, report) = audit(&ws, &["--workspace"]);
    assert_eq!(code, 0, "{report:#}");
    let tasks: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["p:gen", "p:use"]);
    assert_eq!(ws.wask(&["audit"]).code(), 2);
    assert_eq!(ws.wask(&["audit", "p:gen", "--runs", "0"]).code(), 2);
    assert_eq!(ws.wask(&["audit", "p:nothing"]).code(), 2);
}

/// On a terminal outside CI a long audit shows which task and which run is under way,
/// and how many tasks are done; into a pipe it writes the table rows and nothing else.
#[test]
fn an_audit_shows_its_progress_on_a_terminal_only() {
    let ws = workspace(TASKS);
    let wask = crate::support::wask_binary();
    // `script` gives the audit a terminal; it is in every Debian base system.
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} audit --workspace --runs 3", wask.display()),
            "/dev/null",
        ])
        .current_dir(&ws.root)
        .env_remove("CI")
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .output()
        .expect("script (util-linux) runs");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    for step in [
        "auditing p:gen: run 1 of 3",
        "auditing p:use: run 3 of 3",
        "1/2",
    ] {
        assert!(shown.contains(step), "no {step:?} in {shown:?}");
    }
    let piped = ws.wask(&["audit", "--workspace", "--runs", "3"]);
    piped.expect_code(0);
    assert!(!piped.stderr().contains("auditing"), "{}", piped.stderr());
    let stdout = piped.stdout();
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(
        rows[0].starts_with("p:gen ") && rows[1].starts_with("p:use "),
        "{rows:?}"
    );
}

/// The Python that has the provenance validators (`scripts/test.sh` installs them), or
/// `None` outside CI when it is missing (under `CI=true` that fails the test).
pub(crate) fn validator() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("validators/validate.py");
    match std::env::var_os("WASK_TEST_VALIDATOR_PYTHON") {
        Some(python) => Some((python.into(), script)),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("WASK_TEST_VALIDATOR_PYTHON is not set: run the tests with scripts/test.sh")
        }
        None => {
            eprintln!("skipped: no provenance validators (run scripts/test.sh to install them)");
            None
        }
    }
}

/// Whether the validators accept `file` (with `key`, an envelope file).
pub(crate) fn validates(file: &std::path::Path, key: Option<&std::path::Path>) -> (bool, String) {
    let (python, script) = validator().expect("validators");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script).arg(file);
    if let Some(key) = key {
        cmd.arg(key);
    }
    let out = cmd.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The provenance of a reproducible task is an in-toto Statement v1 with a SLSA
/// Provenance v1 predicate in a DSSE envelope signed with Ed25519, and validators
/// nobody here wrote (in-toto-attestation, securesystemslib) accept it; a flipped
/// signature byte or a changed subject digest they refuse. The key is an `openssl`
/// key given by `WASK_SIGNING_KEY`, and `wask audit key` prints what `openssl` prints.
#[test]
fn signed_provenance_is_accepted_by_independent_validators() {
    if validator().is_none() {
        return;
    }
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ws = workspace(TASKS);
    let keys = tempfile::tempdir().unwrap();
    let key = crate::support::openssl_key(keys.path());
    let env = [("WASK_SIGNING_KEY", key.to_str().unwrap())];
    let public = ws.wask_env(&["audit", "key"], &env);
    public.expect_code(0);
    let openssl = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(public.stdout(), String::from_utf8_lossy(&openssl.stdout));
    let pem = keys.path().join("pub.pem");
    std::fs::write(&pem, public.stdout()).unwrap();

    let dir = keys.path().join("prov");
    let run = ws.wask_env(
        &["audit", "p:use", "--provenance", dir.to_str().unwrap()],
        &env,
    );
    run.expect_code(0);
    let envelope = dir.join("p.use.intoto.jsonl");
    let (ok, said) = validates(&envelope, Some(&pem));
    assert!(ok, "{said}");
    let line: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&envelope).unwrap()).unwrap();
    let statement: serde_json::Value =
        serde_json::from_slice(&b64.decode(line["payload"].as_str().unwrap()).unwrap()).unwrap();
    let names: Vec<&str> = statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"/res/b.txt"), "{names:?}");
    let b = ws.path("res/b.txt");
    assert!(!b.exists(), "the audit placed an output");

    // A flipped signature byte, and a changed subject digest, are refused.
    let tampered = keys.path().join("tampered.jsonl");
    let mut sig = b64
        .decode(line["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    sig[0] ^= 1;
    let mut bad = line.clone();
    bad["signatures"][0]["sig"] = b64.encode(&sig).into();
    std::fs::write(&tampered, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(
        !validates(&tampered, Some(&pem)).0,
        "a flipped signature byte passed"
    );
    let mut changed = statement.clone();
    changed["subject"][0]["digest"]["sha256"] = "00".repeat(32).into();
    let mut bad = line.clone();
    bad["payload"] = b64.encode(serde_json::to_vec(&changed).unwrap()).into();
    std::fs::write(&tampered, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(
        !validates(&tampered, Some(&pem)).0,
        "a changed subject digest passed"
    );

    // Unsigned only when asked, and then a bare statement that validates.
    let bare = keys.path().join("bare");
    let run = ws.wask(&[
        "audit",
        "p:gen",
        "--provenance",
        bare.to_str().unwrap(),
        "--unsigned",
    ]);
    run.expect_code(0);
    let (ok, said) = validates(&bare.join("p.gen.intoto.json"), None);
    assert!(ok, "{said}");
}

/// The signing key is private like the user key: one others may read is refused with
/// its path, and one wask makes is mode 600 beside the user key and stays the same.
#[test]
fn the_signing_key_is_private_and_made_once() {
    let ws = workspace(TASKS);
    let state = tempfile::tempdir().unwrap();
    let env = [("WASK_STATE_DIR", state.path().to_str().unwrap())];
    let first = ws.wask_env(&["audit", "key"], &env);
    first.expect_code(0);
    assert!(first.stdout().starts_with("-----BEGIN PUBLIC KEY-----"));
    let made = state.path().join("signing-key.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&made).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        ws.wask_env(&["audit", "key"], &env).stdout(),
        first.stdout()
    );
    std::fs::set_permissions(&made, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let refused = ws.wask_env(&["audit", "key"], &env);
    assert_eq!(refused.code(), 2);
    assert!(
        refused
            .stderr()
            .contains("signing-key.pem can be read or written by others"),
        "{}",
        refused.stderr()
    );
    let garbage = state.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    std::fs::set_permissions(
        &garbage,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let refused = ws.wask_env(
        &["audit", "key"],
        &[("WASK_SIGNING_KEY", garbage.to_str().unwrap())],
    );
    assert_eq!(refused.code(), 2);
    assert!(
        refused
            .stderr()
            .contains("is not a PKCS#8 PEM Ed25519 private key"),
        "{}",
        refused.stderr()
    );
}

/// `wask audit verify` checks the signature, then runs the task again in another clone
/// of the workspace and finds every subject bit for bit; an input byte changed there is
/// named; a tampered envelope fails; a file that is not provenance is exit 2.
#[test]
fn provenance_verifies_on_a_second_clone_and_names_a_changed_input() {
    let tasks = hostile(
        "src",
        &["copy:/in/a.txt|/out/a.txt"],
        "inputs = [\"in/a.txt\"]\noutputs = [\"out/a.txt\"]",
    );
    let ws = workspace(&tasks);
    ws.write("in/a.txt", "the source\n");
    let keys = tempfile::tempdir().unwrap();
    let state = [("WASK_STATE_DIR", keys.path().to_str().unwrap())];
    let dir = keys.path().join("prov");
    ws.wask_env(
        &["audit", "p:src", "--provenance", dir.to_str().unwrap()],
        &state,
    )
    .expect_code(0);
    let record = dir.join("p.src.intoto.jsonl");
    let pem = keys.path().join("pub.pem");
    std::fs::write(&pem, ws.wask_env(&["audit", "key"], &state).stdout()).unwrap();
    let verify = |ws: &Ws, file: &std::path::Path| {
        ws.wask(&[
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--key",
            pem.to_str().unwrap(),
        ])
    };

    let clone = workspace(&tasks);
    clone.write("in/a.txt", "the source\n");
    let ok = verify(&clone, &record);
    ok.expect_code(0);
    assert!(
        ok.stdout().contains("subjects reproduced bit for bit"),
        "{}",
        ok.stdout()
    );

    clone.write("in/a.txt", "the sourcE\n");
    let changed = verify(&clone, &record);
    assert_eq!(changed.code(), 1);
    assert!(
        changed.stdout().contains("input /in/a.txt differs"),
        "{}",
        changed.stdout()
    );

    // Declared otherwise (other arguments) than the record says: named, not run.
    clone.write("in/a.txt", "the source\n");
    crate::hardening::set_tasks(
        &clone,
        &tasks.replace(
            "copy:/in/a.txt|/out/a.txt",
            "copy:/in/a.txt|/out/a.txt\", \"argv0",
        ),
    );
    let redeclared = verify(&clone, &record);
    assert_eq!(redeclared.code(), 1, "{}", redeclared.stderr());
    assert!(
        redeclared
            .stdout()
            .contains("declared otherwise than the record says"),
        "{}",
        redeclared.stdout()
    );

    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut line: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let mut sig = b64
        .decode(line["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    sig[5] ^= 0x40;
    line["signatures"][0]["sig"] = b64.encode(&sig).into();
    let tampered = keys.path().join("tampered.jsonl");
    std::fs::write(&tampered, serde_json::to_vec(&line).unwrap()).unwrap();
    let bad = verify(&ws, &tampered);
    assert_eq!(bad.code(), 1);
    assert!(
        bad.stdout().contains("no signature of it verifies"),
        "{}",
        bad.stdout()
    );

    let text = std::fs::read_to_string(&record).unwrap();
    for (name, bytes) in [
        ("truncated", &text[..text.len() / 2]),
        ("not-json", "hello\n"),
        ("wrong-type", "[1, 2]\n"),
    ] {
        let file = keys.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let run = verify(&ws, &file);
        assert_eq!(run.code(), 2, "{name}: {}{}", run.stdout(), run.stderr());
        assert!(
            run.stderr().contains("is not a DSSE envelope"),
            "{name}: {}",
            run.stderr()
        );
    }
}

/// `wask run --audit-sample 1` runs every hit fresh again after restoring it: a clean
/// hit passes, an entry whose output was replaced by other valid bytes fails the run,
/// naming the entry; a fraction outside (0, 1] is refused.
#[test]
fn audit_sample_fails_a_run_on_a_suspect_entry() {
    let ws = workspace(TASKS);
    ws.run(&["p:gen"]).0.expect_code(0);
    let (run, summary) = ws.run(&["p:gen", "--audit-sample", "1"]);
    run.expect_code(0);
    assert_eq!(crate::support::task(&summary, "p:gen")["source"], "cache");

    let key = forge_the_entry(&ws);
    // Without the sample the forged bytes are restored, as the threat model says.
    ws.run(&["p:gen"]).0.expect_code(0);
    assert_eq!(ws.read("out/a.txt"), FORGED);
    let (run, summary) = ws.run(&["p:gen", "--audit-sample", "1"]);
    assert_eq!(run.code(), 1, "{}{}", run.stdout(), run.stderr());
    let error = crate::support::task(&summary, "p:gen")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains(&format!("suspect cache entry {key}")),
        "{error}"
    );
    assert!(error.contains("/out/a.txt"), "{error}");
    for bad in ["0", "1.5", "-1"] {
        assert_eq!(
            ws.wask(&["run", "p:gen", "--audit-sample", bad]).code(),
            2,
            "{bad}"
        );
    }
}

/// The audit lists, per task, the declared inputs its run never opened, with the
/// `inputs` entry that brought each in.
#[test]
fn the_audit_names_declared_inputs_never_read() {
    let ws = workspace(&hostile(
        "t",
        &["ls:/in", "copy:/in/a.txt|/out/a.txt"],
        "inputs = [\"in/*.txt\"]\noutputs = [\"out/a.txt\"]",
    ));
    ws.write("in/a.txt", "read\n");
    ws.write("in/listed.txt", "only listed\n");
    let (code, report) = audit(&ws, &["p:t"]);
    assert_eq!(code, 0, "{report:#}");
    let never = report[0]["never_read"].as_array().unwrap();
    assert_eq!(never.len(), 1, "{report:#}");
    assert_eq!(never[0]["path"], "/in/listed.txt");
    assert_eq!(never[0]["declared_by"], "/in/*.txt");
    let text = ws.wask(&["audit", "p:t"]).stdout();
    assert!(
        text.contains("declared, never read: in/listed.txt (from `/in/*.txt`)"),
        "{text}"
    );
}
