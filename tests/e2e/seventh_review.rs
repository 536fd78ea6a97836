//! The seventh outside review: the same brief against the binary with the sixth
//! review's fixes, aimed again at the audit, provenance and `audit verify`. Each test
//! is one attack that worked, and fails on the binary it worked on.

use crate::hardening::{entries, hostile, set_tasks, workspace};
use crate::sixth_review::{FORGED, Keys, TASKS, forge_output, statement_of};
use crate::support::Ws;
use std::path::Path;

/// `audit verify FILE... --key PEM` in `ws`.
fn verify(ws: &Ws, files: &[&Path], pem: &Path) -> crate::support::Run {
    let mut args = vec!["audit", "verify", "--key", pem.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    ws.wask(&args)
}

/// Genuine signed provenance of `p:gen`: the keys, the record and the public key.
fn signed_gen(ws: &Ws) -> (Keys, std::path::PathBuf, std::path::PathBuf) {
    let keys = Keys::new();
    let prov = keys.dir.path().join("prov");
    keys.wask(
        ws,
        &["audit", "p:gen", "--provenance", prov.to_str().unwrap()],
    )
    .expect_code(0);
    let pem = keys.public(ws);
    (keys, prov.join("p.gen.intoto.jsonl"), pem)
}

/// 1 (medium): inside the signed statement a key given twice passed (the last won), so
/// a parser keeping the first read other claims under a signature wask verified. Now
/// the statement must be exactly as wask writes it.
#[test]
fn a_statement_with_a_key_given_twice_is_not_verified() {
    let ws = workspace(TASKS);
    let (keys, record, pem) = signed_gen(&ws);
    let genuine = serde_json::to_string(&statement_of(&record)).unwrap();
    let forged = format!(
        "{{\"subject\":[{{\"name\":\"evil\",\"digest\":{{\"sha256\":\"{}\"}}}}],{}",
        "0".repeat(64),
        &genuine[1..]
    );
    let file = keys.dir.path().join("dup.jsonl");
    std::fs::write(&file, keys.sign_bytes(forged.as_bytes(), "")).unwrap();
    let out = verify(&ws, &[&file], &pem);
    assert_eq!(out.code(), 1, "{}", out.stdout());
    assert!(
        out.stdout().contains("not in the form wask writes"),
        "{}",
        out.stdout()
    );
}

/// 2 (medium): a project directory named `module:` gave an input the very name of the
/// module's dependency, so a consumer looking the module up by name found the input's
/// digest. Inputs and outputs are named by their workspace path, with its `/`, which
/// the module's and the streams' names never start with.
#[test]
fn no_input_or_output_can_take_the_modules_or_a_streams_name() {
    let ws = workspace("");
    ws.write("wask.toml", "[workspace]\nprojects = [\"module:\"]\n");
    ws.write(
        "module:/wask.toml",
        "[project]\nname = \"m\"\n\n[tasks.t]\nmodule = \"/tools/hostile.wasm\"\nargs = [\"write:/module:/out/x.txt\"]\ninputs = [\"tools/hostile.wasm\"]\noutputs = [\"out/**\"]\n",
    );
    ws.write(
        "module:/tools/hostile.wasm",
        "other bytes under the module's name\n",
    );
    let keys = Keys::new();
    let prov = keys.dir.path().join("prov");
    keys.wask(
        &ws,
        &["audit", "m:t", "--provenance", prov.to_str().unwrap()],
    )
    .expect_code(0);
    let s = statement_of(&prov.join("m.t.intoto.jsonl"));
    for list in [
        &s["predicate"]["buildDefinition"]["resolvedDependencies"],
        &s["subject"],
    ] {
        let mut names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all, "two entries share a name: {list:#}");
    }
}

/// 3 (low): claims outside the build definition, the subjects and the access record
/// (the builder, the times, fields wask never writes) were not checked.
#[test]
fn every_part_of_the_statement_is_checked() {
    let ws = workspace(TASKS);
    let (keys, record, pem) = signed_gen(&ws);
    let genuine = statement_of(&record);
    type Lie = fn(&mut serde_json::Value);
    let lies: [(&str, Lie); 4] = [
        ("another builder", |s| {
            s["predicate"]["runDetails"]["builder"]["id"] = "https://evil".into()
        }),
        ("a field at the top", |s| s["extra"] = "claim".into()),
        ("a field in the run details", |s| {
            s["predicate"]["runDetails"]["extra"] = "claim".into()
        }),
        ("a finish before the start", |s| {
            s["predicate"]["runDetails"]["metadata"]["finishedOn"] = "1999-01-01T00:00:00Z".into()
        }),
    ];
    for (what, lie) in lies {
        let mut s = genuine.clone();
        lie(&mut s);
        let file = keys.dir.path().join("lie.jsonl");
        std::fs::write(&file, keys.sign(&s)).unwrap();
        let out = verify(&ws, &[&file], &pem);
        assert_eq!(out.code(), 1, "{what} verified: {}", out.stdout());
    }
}

/// 4 (low): a host-clock task whose output holds the minute agreed with itself twice
/// and was signed, though a run a minute later differs. A host-clock task is never
/// signed.
#[test]
fn a_task_on_the_host_clock_is_never_signed() {
    let ws = workspace(&hostile(
        "hc",
        &["write:/out/a.txt"],
        "outputs = [\"out/a.txt\"]\nclock = \"host\"",
    ));
    let keys = Keys::new();
    let prov = keys.dir.path().join("prov");
    let out = keys.wask(
        &ws,
        &["audit", "p:hc", "--provenance", prov.to_str().unwrap()],
    );
    assert!(out.stdout().contains("not signed"), "{}", out.stdout());
    assert!(
        !prov.join("p.hc.intoto.jsonl").exists(),
        "a host-clock task was signed"
    );
}

/// 5 (low): the unsigned key id was echoed whole and raw: escape sequences drew a fake
/// "verified" line on the terminal, and 10 MB came out as one line.
#[test]
fn an_unsigned_key_id_is_never_echoed_raw() {
    let ws = workspace(TASKS);
    let (keys, record, pem) = signed_gen(&ws);
    let payload = serde_json::to_vec(&statement_of(&record)).unwrap();
    let mut line: serde_json::Value = serde_json::from_str(&keys.sign_bytes(&payload, "")).unwrap();
    line["signatures"][0]["sig"] = "AAAA".into();
    line["signatures"][0]["keyid"] = format!("x)\r\x1b[2Kverified{}", "A".repeat(100_000)).into();
    let file = keys.dir.path().join("keyid.jsonl");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let out = verify(&ws, &[&file], &pem);
    assert_eq!(out.code(), 1);
    assert!(
        !out.stdout().contains('\x1b'),
        "an escape sequence was echoed"
    );
    assert!(
        out.stdout().len() < 10_000,
        "{} bytes echoed",
        out.stdout().len()
    );
}

/// 6 (low): the second of two statements of one task always failed, saying its
/// predecessors did not succeed.
#[test]
fn two_statements_of_one_task_both_verify() {
    let ws = workspace(TASKS);
    let (_keys, record, pem) = signed_gen(&ws);
    let out = verify(&ws, &[&record, &record], &pem);
    assert_eq!(out.code(), 0, "{}", out.stdout());
    assert_eq!(
        out.stdout().matches("verified ").count(),
        2,
        "{}",
        out.stdout()
    );
}

/// 7 (low): the audited task's own suspect entry stayed in the cache and the next run
/// restored it. It is removed, as `--audit-sample` removes one.
#[test]
fn an_audit_removes_the_suspect_entry_it_finds() {
    let ws = workspace(TASKS);
    ws.run(&["p:gen"]).0.expect_code(0);
    forge_output(&ws, "p:gen");
    let audit = ws.wask(&["audit", "p:gen"]);
    assert_eq!(audit.code(), 1);
    assert_eq!(entries(&ws), 0, "the suspect entry stayed");
    std::fs::remove_file(ws.path("out/a.txt")).unwrap();
    ws.run(&["p:gen"]).0.expect_code(0);
    assert_ne!(ws.read("out/a.txt"), FORGED);
}

/// 8 (low): a key with a second name (a hard link in the workspace) was accepted, and a
/// task read it through that name; a key directory anyone may write was accepted.
#[test]
fn a_key_with_two_names_or_in_a_shared_directory_is_refused() {
    let ws = workspace(&hostile(
        "leak",
        &["copy:/src/hl.pem|/out/k.txt"],
        "inputs = [\"src/**\"]\noutputs = [\"out/k.txt\"]",
    ));
    ws.write("src/other.txt", "x\n");
    let state = tempfile::tempdir().unwrap();
    let env = [("WASK_STATE_DIR", state.path().to_str().unwrap())];
    ws.wask_env(&["audit", "key"], &env).expect_code(0);
    std::fs::hard_link(state.path().join("signing-key.pem"), ws.path("src/hl.pem")).unwrap();
    let refused = ws.wask_env(&["audit", "key"], &env);
    assert_eq!(refused.code(), 2, "{}", refused.stdout());
    assert!(
        refused.stderr().contains("hard links"),
        "{}",
        refused.stderr()
    );
    std::fs::remove_file(ws.path("src/hl.pem")).unwrap();

    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let shared = ws.wask_env(&["audit", "key"], &env);
    assert_eq!(shared.code(), 2, "{}", shared.stdout());
    assert!(
        shared.stderr().contains("which others may write"),
        "{}",
        shared.stderr()
    );
}

/// 9 (low): `--summary` and `--profile` wrote through a link at their path, over its
/// target. The link is replaced; the target is left alone.
#[test]
fn summary_and_profile_never_write_through_a_link() {
    let ws = workspace(TASKS);
    let outside = tempfile::tempdir().unwrap();
    for flag in ["--summary", "--profile"] {
        let target = outside.path().join("precious.txt");
        std::fs::write(&target, "precious\n").unwrap();
        let link = ws.path("report.json");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        ws.wask(&["run", "p:gen", flag, link.to_str().unwrap()])
            .expect_code(0);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "precious\n",
            "{flag}"
        );
        assert!(!link.symlink_metadata().unwrap().is_symlink(), "{flag}");
    }
    set_tasks(&ws, TASKS);
}
