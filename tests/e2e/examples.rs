//! The example workspace (`examples/docs-site`) with the example plugins, as the README's
//! main command runs it: every task fresh, then every task from the cache with deleted
//! outputs restored byte for byte (CACHE-023). Also checks what the plugins produce.

use crate::support::{Ws, plugin_wasm, task};
use std::collections::BTreeMap;
use std::path::Path;

const TASKS: [&str; 7] = [
    "content:html",
    "site:index",
    "site:check",
    "site:pages",
    "site:meta",
    "site:checksums",
    "release:archive",
];

const PLUGINS: [&str; 6] = [
    "md2html", "index", "checksum", "template", "convert", "archive",
];

/// What the workspace writes under `dist/` directories.
const DIST_DIRS: [&str; 3] = ["content/dist", "site/dist", "release/dist"];

/// A copy of the example workspace's sources with freshly built plugins in `tools/`.
fn docs_site() -> Ws {
    let ws = Ws::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/docs-site");
    for entry in walkdir::WalkDir::new(&src).into_iter().filter_entry(|e| {
        let name = e.file_name().to_string_lossy();
        !(e.depth() > 0 && (name == ".wask" || name == "dist" || name == "tools"))
    }) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let rel = entry.path().strip_prefix(&src).unwrap();
            ws.write(rel.to_str().unwrap(), std::fs::read(entry.path()).unwrap());
        }
    }
    for plugin in PLUGINS {
        ws.write(
            &format!("tools/{plugin}.wasm"),
            std::fs::read(plugin_wasm(plugin)).unwrap(),
        );
    }
    ws
}

fn dist_files(ws: &Ws) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(&ws.root)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel = e
                .path()
                .strip_prefix(&ws.root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            rel.contains("/dist/")
                .then(|| (rel, std::fs::read(e.path()).unwrap()))
        })
        .collect()
}

#[test]
fn the_docs_site_runs_fresh_then_entirely_from_the_cache() {
    let ws = docs_site();
    let (fresh, s1) = ws.run(&["--workspace"]);
    fresh.expect_code(0);
    for id in TASKS {
        assert_eq!(task(&s1, id)["source"], "fresh", "{id}");
    }
    let produced = dist_files(&ws);
    // 4 pages; index, releases, sitemap, site.json, SHA256SUMS; the archive.
    assert_eq!(produced.len(), 10, "{:?}", produced.keys());

    for dir in DIST_DIRS {
        std::fs::remove_dir_all(ws.path(dir)).unwrap();
    }
    let (cached, s2) = ws.run(&["--workspace"]);
    cached.expect_code(0);
    for id in TASKS {
        assert_eq!(task(&s2, id)["source"], "cache", "{id}");
        assert_eq!(task(&s1, id)["key"], task(&s2, id)["key"], "{id}");
    }
    assert!(
        cached
            .stderr()
            .contains("Tasks: 7 completed (7 cached), 0 failed, 0 skipped")
    );
    assert_eq!(
        dist_files(&ws),
        produced,
        "restored outputs are byte-identical"
    );
}

#[test]
fn the_plugins_produce_what_they_promise() {
    let ws = docs_site();
    ws.run(&["--workspace"]).0.expect_code(0);

    let about = String::from_utf8(ws.read("content/dist/html/about.html")).unwrap();
    assert!(
        about.contains("<title>About this example</title>"),
        "{about}"
    );
    assert!(about.contains("<h1>About this example</h1>"), "{about}");
    assert!(ws.path("content/dist/html/guide/caching.html").is_file());

    let index = String::from_utf8(ws.read("site/dist/index.html")).unwrap();
    for page in [
        "about.html",
        "index.html",
        "guide/caching.html",
        "guide/getting-started.html",
    ] {
        assert!(index.contains(page), "the index links {page}:\n{index}");
    }

    // Every line of SHA256SUMS is the real digest of the file it names.
    let sums = String::from_utf8(ws.read("site/dist/SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 8, "{sums}");
    for line in sums.lines() {
        let (digest, rel) = line.split_once("  ").unwrap();
        let bytes = std::fs::read(ws.path("site").join(rel)).unwrap();
        use sha2::Digest;
        assert_eq!(
            digest,
            format!("{:x}", sha2::Sha256::digest(&bytes)),
            "{rel}"
        );
    }
}

#[test]
fn the_site_is_templated_converted_and_archived() {
    let ws = docs_site();
    ws.run(&["--workspace"]).0.expect_code(0);

    // `template`: the release notes through the layout, with data/site.toml as `site`.
    let releases = String::from_utf8(ws.read("site/dist/releases.html")).unwrap();
    assert!(
        releases.contains("<title>Releases - wask example docs</title>"),
        "{releases}"
    );
    assert!(
        releases.contains("<a href=\"../../content/dist/html/guide/caching.html\">"),
        "{releases}"
    );
    assert!(
        releases.contains("<h2>0.1.0 <small>2025-09-01</small></h2>"),
        "{releases}"
    );
    let sitemap = String::from_utf8(ws.read("site/dist/sitemap.xml")).unwrap();
    assert!(
        sitemap.contains("<loc>https://docs.example.org/site/dist/releases.html</loc>"),
        "{sitemap}"
    );

    // `convert`: the same data as JSON.
    let meta: serde_json::Value = serde_json::from_slice(&ws.read("site/dist/site.json")).unwrap();
    let data: toml::Value =
        toml::from_str(&String::from_utf8(ws.read("site/data/site.toml")).unwrap()).unwrap();
    assert_eq!(meta["title"].as_str(), data["title"].as_str());
    assert_eq!(meta["releases"][2]["date"], "2025-09-01");
    assert_eq!(
        meta["nav"].as_array().unwrap().len(),
        data["nav"].as_array().unwrap().len()
    );

    // `archive`: every page and everything in site/dist, at its workspace path.
    let archive = ws.path("release/dist/site.tar.gz");
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .current_dir(out.path())
        .status()
        .expect("the system `tar` runs");
    assert!(status.success());
    let unpacked: BTreeMap<String, Vec<u8>> = walkdir::WalkDir::new(out.path())
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(out.path()).unwrap();
            (
                rel.to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    let mut expected = dist_files(&ws);
    expected.remove("release/dist/site.tar.gz");
    assert_eq!(unpacked.len(), 9, "{:?}", unpacked.keys());
    assert_eq!(unpacked, expected);
}

#[test]
fn changing_one_page_reruns_exactly_the_tasks_that_read_it() {
    let ws = docs_site();
    ws.run(&["--workspace"]).0.expect_code(0);
    let archive = ws.read("release/dist/site.tar.gz");
    ws.write("content/pages/about.md", "# About, revised\n");
    let (run, s) = ws.run(&["--workspace"]);
    run.expect_code(0);
    for id in TASKS {
        let reads_pages = matches!(
            id,
            "content:html" | "site:index" | "site:checksums" | "release:archive"
        );
        let expected = if reads_pages { "fresh" } else { "cache" };
        assert_eq!(
            task(&s, id)["source"],
            expected,
            "{id} reads the changed page (directly or not): {reads_pages}"
        );
    }
    let about = String::from_utf8(ws.read("content/dist/html/about.html")).unwrap();
    assert!(about.contains("About, revised"));
    assert_ne!(ws.read("release/dist/site.tar.gz"), archive);
}

#[test]
fn changing_the_site_data_reruns_the_data_tasks_and_what_follows_them() {
    let ws = docs_site();
    ws.run(&["--workspace"]).0.expect_code(0);
    let data = String::from_utf8(ws.read("site/data/site.toml")).unwrap();
    ws.write(
        "site/data/site.toml",
        data.replace("version = \"0.3.0\"", "version = \"0.3.1\""),
    );
    let (run, s) = ws.run(&["--workspace"]);
    run.expect_code(0);
    for id in TASKS {
        let expected = match id {
            "content:html" | "site:index" => "cache",
            _ => "fresh",
        };
        assert_eq!(task(&s, id)["source"], expected, "{id}");
    }
    let releases = String::from_utf8(ws.read("site/dist/releases.html")).unwrap();
    assert!(releases.contains("wask example docs 0.3.1"), "{releases}");
}

#[test]
fn a_malformed_data_file_fails_the_check_naming_file_line_and_column() {
    let ws = docs_site();
    ws.write("site/data/site.toml", "title = \"x\"\nversion = 0.3.0\n");
    let (run, s) = ws.run(&["--workspace"]);
    run.expect_code(1);
    assert_eq!(task(&s, "site:check")["state"], "failed");
    let err = run.stderr();
    assert!(err.contains("invalid: /site/data/site.toml:2:"), "{err}");
    for id in [
        "site:pages",
        "site:meta",
        "site:checksums",
        "release:archive",
    ] {
        assert_eq!(task(&s, id)["state"], "skipped", "{id}");
    }
}

/// The example workspace audits clean with signed provenance (issue 11's "done when"):
/// every task is reproducible, the envelope of each is accepted by the validators
/// nobody here wrote, and `wask audit verify` reproduces every subject in a second
/// copy of the workspace.
#[test]
fn the_docs_site_audits_clean_and_its_signed_provenance_verifies_elsewhere() {
    if crate::audit::validator().is_none() {
        return;
    }
    let ws = docs_site();
    let state = tempfile::tempdir().unwrap();
    let env = [("WASK_STATE_DIR", state.path().to_str().unwrap())];
    let dir = state.path().join("provenance");
    let audit = ws.wask_env(
        &[
            "audit",
            "--workspace",
            "--json",
            "--provenance",
            dir.to_str().unwrap(),
        ],
        &env,
    );
    audit.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&audit.stdout()).unwrap();
    let verdicts: BTreeMap<&str, &str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["task"].as_str().unwrap(), t["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(verdicts.len(), TASKS.len(), "{verdicts:?}");
    assert!(
        verdicts.values().all(|v| *v == "reproducible"),
        "{verdicts:?}"
    );

    let pem = state.path().join("pub.pem");
    let key = ws.wask_env(&["audit", "key"], &env);
    key.expect_code(0);
    std::fs::write(&pem, key.stdout()).unwrap();
    let mut records = Vec::new();
    for id in TASKS {
        let record = dir.join(format!("{}.intoto.jsonl", id.replace(':', ".")));
        let (ok, said) = crate::audit::validates(&record, Some(&pem));
        assert!(ok, "{id}: {said}");
        records.push(record.to_str().unwrap().to_string());
    }

    let elsewhere = docs_site();
    let mut args = vec!["audit", "verify", "--key", pem.to_str().unwrap()];
    args.extend(records.iter().map(String::as_str));
    let verified = elsewhere.wask(&args);
    verified.expect_code(0);
    let reproduced = verified
        .stdout()
        .matches("subjects reproduced bit for bit")
        .count();
    assert_eq!(reproduced, TASKS.len(), "{}", verified.stdout());
}
