//! The example workspace (`examples/docs-site`) with the example plugins, as the README's
//! main command runs it: every task fresh, then every task from the cache with deleted
//! outputs restored byte for byte (CACHE-023). Also checks what the plugins produce.

use crate::support::{Ws, plugin_wasm, task};
use std::collections::BTreeMap;
use std::path::Path;

const TASKS: [&str; 3] = ["content:html", "site:index", "site:checksums"];

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
    for plugin in ["md2html", "index", "checksum"] {
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
    assert_eq!(produced.len(), 6, "{:?}", produced.keys());

    for dir in ["content/dist", "site/dist"] {
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
            .contains("Tasks: 3 completed (3 cached), 0 failed, 0 skipped")
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
    assert_eq!(sums.lines().count(), 5, "{sums}");
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
fn changing_one_page_reruns_exactly_the_tasks_that_read_it() {
    let ws = docs_site();
    ws.run(&["--workspace"]).0.expect_code(0);
    ws.write("content/pages/about.md", "# About, revised\n");
    let (run, s) = ws.run(&["--workspace"]);
    run.expect_code(0);
    for id in TASKS {
        assert_eq!(
            task(&s, id)["source"],
            "fresh",
            "{id} reads the changed page, directly or not"
        );
    }
    let about = String::from_utf8(ws.read("content/dist/html/about.html")).unwrap();
    assert!(about.contains("About, revised"));
}
