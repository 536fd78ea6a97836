//! Property-based fuzzing of everything wask parses from outside: `wask.toml` files,
//! task references, the tag filter grammar, and cache manifests. The property is the
//! same for each: no input makes wask panic, and every rejection is a clear error that
//! points inside the text it rejects.
//!
//! proptest stands in for cargo-fuzz, which needs a nightly toolchain this project does
//! not use. CI runs the default 256 cases per target; a longer run:
//! `PROPTEST_CASES=20000 cargo test --release -p wask --test fuzz`.

use proptest::prelude::*;
use proptest::test_runner::Config;
use wask::cache::ResultStore;
use wask::filter::Filter;
use wask::refs::TaskRef;

fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// Random edits (position, replacement) applied to a valid text, biased to characters
/// that mean something in the grammar under test.
fn mutate(text: &str, edits: &[(usize, u8, u8)], alphabet: &[u8]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(at, op, c) in edits {
        let at = if bytes.is_empty() {
            0
        } else {
            at % (bytes.len() + 1)
        };
        let c = alphabet[c as usize % alphabet.len()];
        match op % 3 {
            0 => bytes.insert(at, c),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ if at < bytes.len() => bytes[at] = c,
            _ => bytes.push(c),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..12)
}

const WORKSPACE: &str = r#"[workspace]
projects = ["app", "lib/*"]

[cache]
hash = "blake3"
max_size = "1GiB"

[concurrency]
default = 4
tags = { heavy = 1 }

[sandbox]
timeout = "5m"
clock = "fixed"

[overlays.lint]
tags = "rust & !experimental"
[overlays.lint.tasks.check]
module = "/tools/check.wasm"
inputs = ["src/**/*.rs"]
"#;

const PROJECT: &str = r#"[project]
name = "app"
tags = ["rust", "heavy"]

[tasks.build]
module = { crate = "/plugins/build", blake3 = "0000000000000000000000000000000000000000000000000000000000000000" }
args = ["src", "dist"]
inputs = ["src/**/*.md", "/lib/one/out.txt"]
outputs = ["dist/**"]
deps = ["lib-one:gen", "^:prep"]
weak_deps = ["~:lint"]
mutex = { name = "db", mode = "shared" }
env.from_host = ["LANG"]
env.set = { MODE = "release" }
limits = { memory = "512MiB", timeout = "30s" }

[tasks.lint]
module = "/tools/lint.wasm"
"#;

const LIB: &str = "[project]\nname = \"lib-one\"\n[tasks.gen]\nmodule = \"gen.wasm\"\noutputs = [\"out.txt\"]\n[tasks.prep]\nmodule = \"/tools/x.wasm\"\n";

proptest! {
    #![proptest_config(config())]

    /// WS-003: any `wask.toml` loads or is rejected with errors located in its text.
    #[test]
    fn workspace_loading_never_panics(root_edits in edits(), project_edits in edits()) {
        let alphabet = b"[]{}=\",.:/*~^!&|() \n#abc0123456789-_";
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::create_dir_all(root.join("lib/one")).unwrap();
        std::fs::write(root.join("wask.toml"), mutate(WORKSPACE, &root_edits, alphabet)).unwrap();
        std::fs::write(root.join("app/wask.toml"), mutate(PROJECT, &project_edits, alphabet)).unwrap();
        std::fs::write(root.join("lib/one/wask.toml"), LIB).unwrap();
        match wask::workspace::load(root) {
            Ok(ws) => {
                // A workspace that loads also builds its graph or reports why not.
                let _ = wask::graph::Graph::build(&ws);
            }
            Err(mut errors) => {
                prop_assert!(!errors.errors.is_empty());
                // `check` builds the graph of what loaded despite the errors, too.
                if let Some(partial) = errors.partial.take() {
                    let _ = wask::graph::Graph::build(&partial);
                }
                for e in &errors.errors {
                    prop_assert!(!e.message.is_empty());
                    if let Some((span, _)) = &e.primary {
                        let len = errors.sources.text(span.file).len();
                        prop_assert!(span.range.start <= span.range.end && span.range.end <= len,
                            "span {:?} outside a file of {len} bytes: {}", span.range, e.message);
                    }
                }
                let mut out = codespan_reporting::term::termcolor::NoColor::new(Vec::new());
                prop_assert!(errors.render(&mut out).is_ok());
            }
        }
    }

    /// Section 3: references parse to valid names or are refused with a message.
    #[test]
    fn task_references_never_panic(text in "[~^:\\[\\]a-z0-9_\\-]{0,16}|\\PC{0,16}") {
        for parsed in [TaskRef::parse(&text), TaskRef::parse_cli(&text)] {
            match parsed {
                Ok(r) => {
                    let names: Vec<&str> = match &r {
                        TaskRef::SameProject(t) | TaskRef::Every(t) | TaskRef::EveryOther(t) | TaskRef::Bare(t) => vec![t],
                        TaskRef::Project(p, t) => vec![p, t],
                        TaskRef::Tagged { tag, task, .. } => vec![tag, task],
                    };
                    for n in names {
                        prop_assert!(wask::workspace::check_name(n).is_ok(), "{text:?} gave the name {n:?}");
                    }
                }
                Err(message) => prop_assert!(!message.is_empty()),
            }
        }
    }

    /// WS-006: a filter parses to one whose canonical text parses to the same filter,
    /// or is refused at an offset inside the text.
    #[test]
    fn the_tag_filter_grammar_never_panics(text in "[ab !&|()]{0,24}|\\PC{0,12}") {
        match Filter::parse(&text) {
            Ok(filter) => {
                let canonical = filter.to_string();
                let again = Filter::parse(&canonical);
                prop_assert!(again.is_ok(), "{canonical:?} does not parse again");
                let again = again.unwrap();
                for tags in [&[][..], &["a"], &["b"], &["a", "b"]] {
                    let has = |t: &str| tags.contains(&t);
                    prop_assert_eq!(filter.matches(has), again.matches(has), "{:?} vs {:?}", text, canonical);
                }
            }
            Err(e) => {
                prop_assert!(e.offset <= text.len(), "offset {} past {:?}", e.offset, text);
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    /// CACHE-011/014: any manifest bytes are a clean miss, a reported corrupt entry, or
    /// (only for the bytes wask wrote) the entry of the key looked up; never a panic.
    #[test]
    fn manifest_parsing_never_panics(manifest_edits in edits(), raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let dir = tempfile::tempdir().unwrap();
        let cache = wask::cache::LocalCache::new(dir.path().to_path_buf(), wask::workspace::HashKind::Blake3);
        let key = wask::key::hash_bytes(wask::workspace::HashKind::Blake3, b"key");
        let hex = key.hex();
        let entry = dir.path().join(&hex[..2]).join(&hex);
        std::fs::create_dir_all(entry.join("blobs")).unwrap();
        std::fs::write(entry.join("stdout"), b"").unwrap();
        std::fs::write(entry.join("stderr"), b"").unwrap();
        let empty = wask::key::hash_bytes(wask::workspace::HashKind::Blake3, b"").hex();
        let stream = wask::cache::StreamRecord { hash: empty, size: 0 };
        let valid = String::from_utf8(wask::cache::manifest::encode(
            &wask::cache::Manifest {
                revision: wask::cache::manifest::MANIFEST_REVISION,
                hash: "blake3".into(),
                key: hex.clone(),
                created_at: 0,
                stored_by: "p:t".into(),
                outputs: vec![],
                stdout: stream.clone(),
                stderr: stream,
                write_order: vec![],
                access: Default::default(),
                memory: 0,
                checksum: String::new(),
            },
            wask::workspace::HashKind::Blake3,
        ))
        .unwrap();
        let alphabet = b"{}[]\":,0123456789abcdef-/. nultrue";
        for text in [mutate(&valid, &manifest_edits, alphabet).into_bytes(), raw.clone()] {
            let _ = wask::cache::manifest::decode(&text);
            std::fs::write(entry.join("manifest.json"), &text).unwrap();
            match cache.lookup(&key) {
                // Only the manifest as written is accepted.
                Ok(Some(found)) => {
                    prop_assert_eq!(&found.manifest.key, &hex);
                    prop_assert_eq!(text, valid.as_bytes());
                }
                Ok(None) => {}
                Err(what) => prop_assert!(!what.0.is_empty()),
            }
        }
    }
}
