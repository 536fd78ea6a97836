//! The sixth outside review: an attacker who had read only the README and
//! `docs/security.md` went after the audit, its signed provenance, `audit verify` and
//! `--audit-sample` in the release binary. Each test is one attack that worked, and
//! fails on the binary it worked on (`WASK_TEST_BINARY=/path/to/old/wask`).

use crate::hardening::{entries, hostile, set_tasks, workspace};
use crate::support::{Ws, task};
use base64::Engine as _;
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub(crate) const TASKS: &str = "[tasks.gen]\nmodule = \"/tools/hostile.wasm\"\nargs = [\"write:/out/a.txt\"]\noutputs = [\"out/a.txt\"]\n\n\
[tasks.use]\nmodule = \"/tools/hostile.wasm\"\nargs = [\"copy:/out/a.txt|/res/b.txt\"]\ndeps = [\"~:gen\"]\ninputs = [\"out/a.txt\"]\noutputs = [\"res/b.txt\"]\n\n";

pub(crate) const FORGED: &[u8] = b"PWNED\n";

/// The manifest of the entry `task` stored, and its path.
pub(crate) fn manifest_of(ws: &Ws, task: &str) -> (PathBuf, serde_json::Value) {
    walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "manifest.json")
        .map(|e| {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            (e.into_path(), m)
        })
        .find(|(_, m)| m["stored_by"] == task)
        .unwrap_or_else(|| panic!("no entry of {task}"))
}

/// Rewrites the entry of `task` as a writer of the cache can: `change` edits the
/// manifest, which is then sealed again.
pub(crate) fn forge(ws: &Ws, task: &str, change: impl FnOnce(&mut serde_json::Value, &Path)) {
    let (path, mut m) = manifest_of(ws, task);
    change(&mut m, path.parent().unwrap());
    std::fs::write(&path, crate::cache::reseal(m)).unwrap();
}

/// Replaces the first output of `task`'s entry with [`FORGED`].
pub(crate) fn forge_output(ws: &Ws, task: &str) {
    forge(ws, task, |m, dir| {
        let hash = blake3::hash(FORGED).to_hex().to_string();
        std::fs::write(dir.join("blobs").join(&hash), FORGED).unwrap();
        m["outputs"][0]["hash"] = hash.into();
        m["outputs"][0]["size"] = FORGED.len().into();
    });
}

/// An Ed25519 key made by openssl, its public PEM, and the environment that makes wask
/// sign with it.
pub(crate) struct Keys {
    pub(crate) dir: tempfile::TempDir,
}

impl Keys {
    pub(crate) fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        crate::support::openssl_key(dir.path());
        std::fs::create_dir(dir.path().join("state")).unwrap();
        Keys { dir }
    }
    pub(crate) fn key(&self) -> PathBuf {
        self.dir.path().join("k.pem")
    }
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "WASK_SIGNING_KEY".into(),
                self.key().to_str().unwrap().into(),
            ),
            (
                "WASK_STATE_DIR".into(),
                self.dir.path().join("state").to_str().unwrap().into(),
            ),
        ]
    }
    pub(crate) fn wask(&self, ws: &Ws, args: &[&str]) -> crate::support::Run {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ws.wask_env(args, &env)
    }
    pub(crate) fn public(&self, ws: &Ws) -> PathBuf {
        let pem = self.dir.path().join("pub.pem");
        let out = self.wask(ws, &["audit", "key"]);
        out.expect_code(0);
        std::fs::write(&pem, out.stdout()).unwrap();
        pem
    }
    /// `statement` signed as wask signs it.
    pub(crate) fn sign(&self, statement: &serde_json::Value) -> String {
        self.sign_bytes(&serde_json::to_vec(statement).unwrap(), "")
    }
    /// `payload` as it is, signed, under the key id `keyid`.
    pub(crate) fn sign_bytes(&self, payload: &[u8], keyid: &str) -> String {
        use ed25519_dalek::Signer as _;
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let pem = std::fs::read_to_string(self.key()).unwrap();
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap();
        let kind = "application/vnd.in-toto+json";
        let mut pae = format!("DSSEv1 {} {kind} {} ", kind.len(), payload.len()).into_bytes();
        pae.extend_from_slice(payload);
        let envelope = serde_json::json!({
            "payload": B64.encode(payload),
            "payloadType": kind,
            "signatures": [{"keyid": keyid, "sig": B64.encode(key.sign(&pae).to_bytes())}],
        });
        format!("{envelope}\n")
    }
}

pub(crate) fn statement_of(record: &Path) -> serde_json::Value {
    let line: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    serde_json::from_slice(&B64.decode(line["payload"].as_str().unwrap()).unwrap()).unwrap()
}

/// F1: a predecessor restored from a forged entry made its successor "reproducible"
/// and signed, over the forged bytes; `audit verify` restored the same forgery into the
/// workspace. Now every predecessor an audit or a verification restores is run fresh
/// too: a suspect one fails, with everything that needs it, and nothing is signed.
#[test]
fn a_forged_predecessor_fails_the_audit_and_is_signed_nowhere() {
    let ws = workspace(TASKS);
    let keys = Keys::new();
    let genuine = keys.dir.path().join("genuine");
    keys.wask(
        &ws,
        &["audit", "p:use", "--provenance", genuine.to_str().unwrap()],
    )
    .expect_code(0);
    ws.run(&["p:use"]).0.expect_code(0);
    forge_output(&ws, "p:gen");
    std::fs::remove_file(ws.path("out/a.txt")).unwrap();

    let prov = keys.dir.path().join("prov");
    let audit = keys.wask(
        &ws,
        &[
            "audit",
            "p:use",
            "--json",
            "--provenance",
            prov.to_str().unwrap(),
        ],
    );
    assert_eq!(audit.code(), 1, "{}{}", audit.stdout(), audit.stderr());
    let report: serde_json::Value = serde_json::from_str(&audit.stdout()).unwrap();
    assert_eq!(report[0]["verdict"], "failed", "{report:#}");
    assert!(
        report[0]["error"]
            .as_str()
            .unwrap()
            .contains("suspect cache entry"),
        "{report:#}"
    );
    let signed = std::fs::read_dir(&prov).map(|d| d.count()).unwrap_or(0);
    assert_eq!(signed, 0, "provenance was written over a forged input");
    assert_ne!(
        std::fs::read(ws.path("out/a.txt")).ok().as_deref(),
        Some(FORGED)
    );

    // Forged again (the audit removed the suspect entry): verification restores no
    // forged input, and does not verify.
    ws.run(&["p:gen"]).0.expect_code(0);
    forge_output(&ws, "p:gen");
    std::fs::remove_file(ws.path("out/a.txt")).unwrap();
    let pem = keys.public(&ws);
    let record = genuine.join("p.use.intoto.jsonl");
    let verify = ws.wask(&[
        "audit",
        "verify",
        record.to_str().unwrap(),
        "--key",
        pem.to_str().unwrap(),
    ]);
    assert_eq!(verify.code(), 1, "{}{}", verify.stdout(), verify.stderr());
    assert_ne!(
        std::fs::read(ws.path("out/a.txt")).ok().as_deref(),
        Some(FORGED)
    );
}

/// F2: a `WASK_SIGNING_KEY` inside the workspace was an ordinary input a task could
/// print (and the cache then kept it); one inside the cache was accepted; a relative
/// one too. Now the key is never an input, is refused inside the cache, and must be
/// named by an absolute path.
#[test]
fn the_signing_key_is_never_an_input_and_never_in_the_cache() {
    let ws = workspace(&hostile(
        "leak",
        &["copy:/src/k.pem|/out/k.txt"],
        "inputs = [\"src/**\"]\noutputs = [\"out/k.txt\"]",
    ));
    ws.write("src/other.txt", "an ordinary input\n");
    let keys = Keys::new();
    std::fs::copy(keys.key(), ws.path("src/k.pem")).unwrap();
    let inside = ws.path("src/k.pem");
    let state = keys.dir.path().join("state");
    let env = [
        ("WASK_SIGNING_KEY", inside.to_str().unwrap()),
        ("WASK_STATE_DIR", state.to_str().unwrap()),
    ];
    let run = ws.wask_env(&["run", "p:leak"], &env);
    assert!(!run.stdout().contains("PRIVATE KEY"), "{}", run.stdout());
    let leaked = std::fs::read_to_string(ws.path("out/k.txt")).unwrap_or_default();
    assert!(
        !leaked.contains("PRIVATE KEY"),
        "the task read the signing key"
    );

    let in_cache = ws.path(".wask/cache/k.pem");
    std::fs::copy(keys.key(), &in_cache).unwrap();
    let env = [
        ("WASK_SIGNING_KEY", in_cache.to_str().unwrap()),
        ("WASK_STATE_DIR", state.to_str().unwrap()),
    ];
    let refused = ws.wask_env(&["run", "p:leak"], &env);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    assert!(
        refused.stderr().contains("inside the cache directory"),
        "{}",
        refused.stderr()
    );

    let relative = ws.wask_env(&["audit", "key"], &[("WASK_SIGNING_KEY", "src/k.pem")]);
    assert_eq!(relative.code(), 2, "{}", relative.stderr());
    assert!(
        relative.stderr().contains("relative path"),
        "{}",
        relative.stderr()
    );
}

/// F3: `--audit-sample` chose the same hits for everyone, so a writer of the cache
/// could forge exactly the ones never chosen; and a forgery it caught was left in the
/// workspace and in the cache. Now the choice is new on every run, a suspect entry is
/// never restored, and it goes from the cache.
#[test]
fn audit_samples_differ_from_run_to_run_and_a_suspect_entry_is_never_restored() {
    let mut tasks = String::new();
    for i in 0..24 {
        tasks.push_str(&hostile(
            &format!("t{i}"),
            &[&format!("write:/out/{i}.txt")],
            &format!("outputs = [\"out/{i}.txt\"]"),
        ));
    }
    let ws = workspace(&tasks);
    ws.run(&["--workspace"]).0.expect_code(0);
    for i in 0..24 {
        forge_output(&ws, &format!("p:t{i}"));
    }
    let forged_cache = tempfile::tempdir().unwrap();
    copy_dir(&ws.path(".wask/cache"), forged_cache.path());
    let mut caught = Vec::new();
    for _ in 0..2 {
        std::fs::remove_dir_all(ws.path(".wask/cache")).unwrap();
        copy_dir(forged_cache.path(), &ws.path(".wask/cache"));
        std::fs::remove_dir_all(ws.path("out")).unwrap();
        let (_, summary) = ws.run(&["--workspace", "--audit-sample", "0.5"]);
        let failed: Vec<usize> = (0..24)
            .filter(|i| task(&summary, &format!("p:t{i}"))["state"] == "failed")
            .collect();
        for i in &failed {
            let placed = std::fs::read(ws.path(&format!("out/{i}.txt"))).ok();
            assert_ne!(
                placed.as_deref(),
                Some(FORGED),
                "t{i}: a suspect entry was restored"
            );
        }
        assert_eq!(
            entries(&ws),
            24 - failed.len(),
            "suspect entries stay in the cache"
        );
        caught.push(failed);
    }
    assert!(!caught[0].is_empty() && !caught[1].is_empty(), "{caught:?}");
    assert_ne!(caught[0], caught[1], "two runs checked the same hits");
}

fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).into_iter().flatten() {
        let target = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// F4: the statement held the cache key, a function of the host environment values the
/// task is given, so anyone holding it could test guesses of a secret with `wask run
/// --dry-run`. Now neither the key nor any value of `env.from_host` is in it.
#[test]
fn provenance_holds_neither_the_key_nor_a_host_value() {
    let ws = workspace(&hostile(
        "secret",
        &["write:/out/a.txt"],
        "outputs = [\"out/a.txt\"]\nenv = { from_host = [\"TOKEN\"] }",
    ));
    let keys = Keys::new();
    let secret = "supersecretvalue";
    let env = [("TOKEN", secret)];
    let (run, summary) = {
        let summary = ws.path(".wask-summary.json");
        let run = ws.wask_env(
            &["run", "p:secret", "--summary", summary.to_str().unwrap()],
            &env,
        );
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        (run, s)
    };
    run.expect_code(0);
    let key = task(&summary, "p:secret")["key"]
        .as_str()
        .unwrap()
        .to_string();
    let prov = keys.dir.path().join("prov");
    let mut all = keys.env();
    all.push(("TOKEN".into(), secret.into()));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ws.wask_env(
        &["audit", "p:secret", "--provenance", prov.to_str().unwrap()],
        &all,
    )
    .expect_code(0);
    let text = statement_of(&prov.join("p.secret.intoto.jsonl")).to_string();
    assert!(!text.contains(&key), "the statement holds the cache key");
    assert!(!text.contains(secret), "the statement holds the secret");
}

/// F5: `audit verify` checked only sha256 digests and part of the declaration: a
/// signed statement with a false blake3, a duplicate subject, a false input digest or
/// another clock still "verified", and so did a genuine record after the workspace
/// gave the task another clock. Now the build definition is rebuilt here and must be
/// the recorded one, and the subjects must be the recorded ones exactly.
#[test]
fn verify_holds_every_claim_of_the_statement() {
    let ws = workspace(TASKS);
    let keys = Keys::new();
    let prov = keys.dir.path().join("prov");
    keys.wask(
        &ws,
        &["audit", "p:gen", "--provenance", prov.to_str().unwrap()],
    )
    .expect_code(0);
    let pem = keys.public(&ws);
    let record = prov.join("p.gen.intoto.jsonl");
    let verify = |file: &Path| {
        ws.wask(&[
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--key",
            pem.to_str().unwrap(),
        ])
    };
    verify(&record).expect_code(0);
    let genuine = statement_of(&record);

    type Lie = Box<dyn Fn(&mut serde_json::Value)>;
    let lies: Vec<(&str, Lie)> = vec![
        (
            "a false blake3",
            Box::new(|s| s["subject"][0]["digest"]["blake3"] = "00".repeat(32).into()),
        ),
        (
            "an extra digest",
            Box::new(|s| s["subject"][0]["digest"]["sha512"] = "00".repeat(64).into()),
        ),
        (
            "a duplicate subject",
            Box::new(|s| {
                let mut fake = s["subject"][0].clone();
                fake["digest"]["sha256"] = "11".repeat(32).into();
                s["subject"].as_array_mut().unwrap().insert(0, fake);
            }),
        ),
        (
            "a false module blake3",
            Box::new(|s| {
                s["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["blake3"] =
                    "00".repeat(32).into()
            }),
        ),
        (
            "another clock",
            Box::new(|s| {
                s["predicate"]["buildDefinition"]["internalParameters"]["clock"] = "host".into()
            }),
        ),
        (
            "a pattern for the task",
            Box::new(|s| {
                s["predicate"]["buildDefinition"]["externalParameters"]["task"] = "^:gen".into()
            }),
        ),
    ];
    for (what, lie) in lies {
        let mut s = genuine.clone();
        lie(&mut s);
        let file = keys.dir.path().join("lie.jsonl");
        std::fs::write(&file, keys.sign(&s)).unwrap();
        let out = verify(&file);
        assert_ne!(out.code(), 0, "{what} verified:\n{}", out.stdout());
        assert!(
            !out.stdout().contains("verified p"),
            "{what}: {}",
            out.stdout()
        );
    }

    set_tasks(
        &ws,
        &TASKS.replace(
            "outputs = [\"out/a.txt\"]",
            "outputs = [\"out/a.txt\"]\nclock = \"host\"",
        ),
    );
    let changed = verify(&record);
    assert_eq!(changed.code(), 1, "{}", changed.stdout());
    assert!(
        changed.stdout().contains("declared otherwise"),
        "{}",
        changed.stdout()
    );
}

/// F6: `--runs 1` compared nothing and called a host-clock task reproducible.
#[test]
fn one_run_is_not_an_audit() {
    let ws = workspace(&hostile(
        "clock",
        &["time-to:/t/now.txt"],
        "outputs = [\"t/now.txt\"]\nclock = \"host\"",
    ));
    let one = ws.wask(&["audit", "p:clock", "--runs", "1"]);
    assert_eq!(one.code(), 2, "{}", one.stdout());
    assert!(one.stderr().contains("at least 2"), "{}", one.stderr());
}

/// F7: an entry whose write order or access record was rewritten passed `audit` and
/// `--audit-sample 1`; its hit then replayed the streams in another order, and `wask
/// why` reported reads that never happened. Both are part of what is compared now.
#[test]
fn an_entry_that_lies_about_its_order_or_its_reads_is_suspect() {
    let ws = workspace(&hostile("talk", &["interleave:3"], ""));
    type Lie = fn(&mut serde_json::Value);
    let lies: [(&str, Lie); 2] = [
        ("<write order>", |m| {
            let (out, err) = (m["stdout"]["size"].clone(), m["stderr"]["size"].clone());
            m["write_order"] = serde_json::json!([[1, err], [0, out]]);
        }),
        ("<access record>", |m| {
            m["access"]["refused"] = serde_json::json!(["/etc/shadow"])
        }),
    ];
    for (file, lie) in lies {
        ws.run(&["p:talk"]).0.expect_code(0);
        forge(&ws, "p:talk", |m, _| lie(m));
        let audit = ws.wask(&["audit", "p:talk", "--json"]);
        assert_eq!(audit.code(), 1, "{file}: {}", audit.stdout());
        let report: serde_json::Value = serde_json::from_str(&audit.stdout()).unwrap();
        assert_eq!(report[0]["verdict"], "suspect_entry", "{file}: {report:#}");
        assert_eq!(report[0]["differences"][0]["file"], file, "{report:#}");
        // The audit removed the suspect entry: store and forge it again.
        ws.run(&["p:talk"]).0.expect_code(0);
        forge(&ws, "p:talk", |m, _| lie(m));
        let (run, summary) = ws.run(&["p:talk", "--audit-sample", "1"]);
        assert_eq!(run.code(), 1, "{file}");
        let error = task(&summary, "p:talk")["error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(error.contains(file), "{file}: {error}");
    }
}

/// F8: `audit verify` read a provenance file or a key without a limit and waited on a
/// FIFO: `/dev/zero` took all memory, a FIFO hung. Both are refused at once (exit 2).
#[test]
fn verify_refuses_devices_and_fifos_at_once() {
    let ws = workspace(TASKS);
    let dir = tempfile::tempdir().unwrap();
    let fifo = crate::support::fifo(dir.path());
    let pem = dir.path().join("pub.pem");
    std::fs::write(&pem, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n").unwrap();
    let fifo = fifo.to_str().unwrap();
    for args in [
        vec![
            "audit",
            "verify",
            "/dev/zero",
            "--key",
            pem.to_str().unwrap(),
        ],
        vec!["audit", "verify", fifo, "--key", pem.to_str().unwrap()],
        vec![
            "audit",
            "verify",
            pem.to_str().unwrap(),
            "--key",
            "/dev/zero",
        ],
        vec!["audit", "verify", pem.to_str().unwrap(), "--key", fifo],
    ] {
        let mut child = ws.spawn(&args);
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > std::time::Duration::from_secs(60) {
                let _ = child.kill();
                panic!("{args:?} did not end");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

/// F10: a sampled hit printed its output twice (once restored, once from the check
/// run), and an audited task's damaged entry went unmentioned.
#[test]
fn a_sampled_hit_prints_once_and_a_damaged_entry_is_named() {
    let ws = workspace(TASKS);
    ws.run(&["p:gen"]).0.expect_code(0);
    let (run, _) = ws.run(&["p:gen", "--audit-sample", "1"]);
    run.expect_code(0);
    let said = run.stdout();
    assert_eq!(said.matches("wrote /out/a.txt").count(), 1, "{said}");

    let (path, _) = manifest_of(&ws, "p:gen");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let audit = ws.wask(&["audit", "p:gen"]);
    assert!(
        audit.stdout().contains("cache entry is damaged"),
        "{}",
        audit.stdout()
    );
}
