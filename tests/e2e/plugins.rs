//! The example plugins `template`, `convert` and `archive` (`examples/plugins`) run
//! through the `wask` binary on small workspaces: what they write, and how a bad input
//! fails the task with a message naming the file and line.

use crate::support::{Ws, plugin_wasm, task};
use std::path::Path;
use std::process::Command;

/// A workspace with one project, `site`, whose `wask.toml` is `tasks`, and the named
/// plugins in `tools/`.
fn site(plugins: &[&str], tasks: &str) -> Ws {
    let ws = Ws::new();
    ws.write("wask.toml", "[workspace]\nprojects = [\"site\"]\n");
    ws.write(
        "site/wask.toml",
        format!("[project]\nname = \"site\"\n\n{tasks}"),
    );
    for plugin in plugins {
        ws.write(
            &format!("tools/{plugin}.wasm"),
            std::fs::read(plugin_wasm(plugin)).unwrap(),
        );
    }
    ws
}

fn text(ws: &Ws, rel: &str) -> String {
    String::from_utf8(ws.read(rel)).unwrap()
}

// ---------------------------------------------------------------------------- template

const PAGES_TASK: &str = r#"
[tasks.pages]
module = "/tools/template.wasm"
args = ["templates", "dist", "data/site.toml", "data/nav.json"]
inputs = ["templates/**", "data/**"]
outputs = ["dist/**"]
"#;

fn template_site() -> Ws {
    let ws = site(&["template"], PAGES_TASK);
    ws.write(
        "site/templates/_layout.html",
        "<title>{% block title %}{% endblock %} | {{ site.title }}</title>\n\
         <nav>{% for link in nav.links %}<a href=\"{{ link.href }}\">{{ link.text }}</a>{% endfor %}</nav>\n\
         {% block body %}{% endblock %}\n",
    );
    ws.write(
        "site/templates/news.html",
        "{% extends \"_layout.html\" %}\n\
         {% block title %}News{% endblock %}\n\
         {% block body %}\n\
         {% for item in site.news %}\n\
         <p>{{ item.date }}: {{ item.text }}</p>\n\
         {% endfor %}\n\
         {% endblock %}\n",
    );
    ws.write(
        "site/templates/feeds/titles.txt.j2",
        "{% for item in site.news %}{{ loop.index }}. {{ item.text }}\n{% endfor %}",
    );
    ws.write(
        "site/data/site.toml",
        "title = \"Fish & Chips\"\n\n\
         [[news]]\ndate = 2026-01-02\ntext = \"Opened <today>\"\n\n\
         [[news]]\ndate = 2026-02-03\ntext = \"Closed\"\n",
    );
    ws.write(
        "site/data/nav.json",
        r#"{"links": [{"href": "/a/b.html", "text": "A"}]}"#,
    );
    ws
}

#[test]
fn template_renders_pages_through_a_layout_with_toml_and_json_data() {
    let ws = template_site();
    let (run, s) = ws.run(&["site:pages"]);
    run.expect_code(0);
    assert_eq!(task(&s, "site:pages")["source"], "fresh");
    assert_eq!(
        text(&ws, "site/dist/news.html"),
        "<title>News | Fish &amp; Chips</title>\n\
         <nav><a href=\"/a/b.html\">A</a></nav>\n\
         <p>2026-01-02: Opened &lt;today&gt;</p>\n\
         <p>2026-02-03: Closed</p>\n"
    );
    assert_eq!(
        text(&ws, "site/dist/feeds/titles.txt"),
        "1. Opened <today>\n2. Closed\n",
        "a .txt template is not HTML-escaped and loses its .j2"
    );
    assert!(
        !ws.path("site/dist/_layout.html").exists(),
        "partials are not rendered"
    );

    // Same inputs, same key, same bytes: a second run comes from the cache.
    let before = ws.read("site/dist/news.html");
    std::fs::remove_dir_all(ws.path("site/dist")).unwrap();
    let (run, s) = ws.run(&["site:pages"]);
    run.expect_code(0);
    assert_eq!(task(&s, "site:pages")["source"], "cache");
    assert_eq!(ws.read("site/dist/news.html"), before);
}

#[test]
fn a_template_error_fails_the_task_naming_the_file_and_line() {
    let ws = template_site();
    ws.write(
        "site/templates/news.html",
        "{% extends \"_layout.html\" %}\n{% block body %}\n{% for x in site.news %}\n{% endblock %}\n",
    );
    let (run, s) = ws.run(&["site:pages"]);
    run.expect_code(1);
    assert_eq!(task(&s, "site:pages")["state"], "failed");
    let err = run.stderr();
    assert!(
        err.contains("error: /site/templates/news.html:4: syntax error"),
        "{err}"
    );

    // An undefined variable in the layout names the layout's line and the page.
    let ws = template_site();
    ws.write(
        "site/templates/_layout.html",
        "<title>{{ site.title }}</title>\n{{ sitee.title }}\n",
    );
    let (run, _) = ws.run(&["site:pages"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(
        err.contains("error: /site/templates/_layout.html:2: undefined value"),
        "{err}"
    );
    assert!(
        err.contains("(rendering /site/templates/news.html)"),
        "{err}"
    );
}

#[test]
fn malformed_template_data_fails_naming_the_file_line_and_column() {
    let ws = template_site();
    ws.write(
        "site/data/site.toml",
        "title = \"x\"\nnews = [\n  { date = 2026-01-02, text = = \"a\" },\n]\n",
    );
    let (run, _) = ws.run(&["site:pages"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("error: /site/data/site.toml:3:"), "{err}");
}

// ----------------------------------------------------------------------------- convert

const CONVERT_TASKS: &str = r#"
[tasks.json]
module = "/tools/convert.wasm"
args = ["data/site.toml", "dist/site.json"]
inputs = ["data/site.toml"]
outputs = ["dist/site.json"]

[tasks.yaml]
module = "/tools/convert.wasm"
args = ["dist/site.json", "dist/site.yaml"]
inputs = ["dist/site.json"]
outputs = ["dist/site.yaml"]

[tasks.toml]
module = "/tools/convert.wasm"
args = ["dist/site.yaml", "dist/again.toml"]
inputs = ["dist/site.yaml"]
outputs = ["dist/again.toml"]

[tasks.check]
module = "/tools/convert.wasm"
args = ["--check"]
inputs = ["data/**"]
"#;

const SITE_TOML: &str = r#"title = "Docs"
version = 3
ratio = 0.25
draft = false
released = 2026-03-02

[author]
name = "Ada"
tags = ["a", "b"]

[[pages]]
path = "index.html"
weight = 1

[[pages]]
path = "guide/intro.html"
weight = 2
"#;

#[test]
fn convert_chains_toml_json_yaml_and_back_to_the_same_data() {
    let ws = site(&["convert"], CONVERT_TASKS);
    ws.write("site/data/site.toml", SITE_TOML);
    ws.write("site/data/extra.yaml", "a: [1, 2]\n");
    let (run, s) = ws.run(&["site:toml", "site:check"]);
    run.expect_code(0);
    for id in ["site:json", "site:yaml", "site:toml", "site:check"] {
        assert_eq!(task(&s, id)["state"], "succeeded", "{id}");
    }
    assert!(
        run.stderr().contains("2 file(s) are valid"),
        "{}",
        run.stderr()
    );

    let json: serde_json::Value = serde_json::from_slice(&ws.read("site/dist/site.json")).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "title": "Docs",
            "version": 3,
            "ratio": 0.25,
            "draft": false,
            "released": "2026-03-02",
            "author": {"name": "Ada", "tags": ["a", "b"]},
            "pages": [
                {"path": "index.html", "weight": 1},
                {"path": "guide/intro.html", "weight": 2},
            ],
        })
    );
    let json_text = text(&ws, "site/dist/site.json");
    assert!(
        json_text.starts_with("{\n  \"title\": \"Docs\",\n  \"version\": 3,"),
        "pretty, in the order of the source: {json_text}"
    );

    let yaml = text(&ws, "site/dist/site.yaml");
    assert!(yaml.starts_with("title: Docs\n"), "{yaml}");

    // Back to TOML: the same data as the source (the date is a string from JSON on).
    let original: toml::Value = toml::from_str(SITE_TOML).unwrap();
    let again: toml::Value = toml::from_str(&text(&ws, "site/dist/again.toml")).unwrap();
    let mut expected = original.clone();
    expected
        .as_table_mut()
        .unwrap()
        .insert("released".into(), toml::Value::String("2026-03-02".into()));
    assert_eq!(again, expected);
}

#[test]
fn malformed_toml_fails_the_task_naming_the_file_line_and_column() {
    let ws = site(&["convert"], CONVERT_TASKS);
    ws.write(
        "site/data/site.toml",
        "title = \"Docs\"\n\n[author]\nname = \"Ada\nage = 3\n",
    );
    let (run, s) = ws.run(&["site:json"]);
    run.expect_code(1);
    assert_eq!(task(&s, "site:json")["state"], "failed");
    let err = run.stderr();
    assert!(err.contains("error: /site/data/site.toml:4:"), "{err}");
    assert!(!ws.path("site/dist/site.json").exists());

    // --check reports every bad file, then fails.
    ws.write("site/data/broken.json", "{\n  \"a\": 1,\n}\n");
    let (run, _) = ws.run(&["site:check"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("invalid: /site/data/site.toml:4:"), "{err}");
    assert!(
        err.contains("invalid: /site/data/broken.json:3:1: trailing comma"),
        "{err}"
    );
    assert!(err.contains("2 of 2 file(s) are not valid"), "{err}");
}

// ----------------------------------------------------------------------------- archive

const ARCHIVE_TASK: &str = r#"
[tasks.archive]
module = "/tools/archive.wasm"
args = ["public", "dist/public.tar.gz"]
inputs = ["public/**"]
outputs = ["dist/public.tar.gz"]
"#;

fn archive_site() -> Ws {
    let ws = site(&["archive"], ARCHIVE_TASK);
    ws.write("site/public/index.html", "<h1>Home</h1>\n");
    ws.write("site/public/guide/b.html", "bee\n");
    ws.write("site/public/guide/a.html", "ay\n");
    ws.write("site/public/z.txt", "");
    ws
}

fn system_tar(args: &[&str], dir: &Path) -> String {
    let out = Command::new("tar")
        .args(args)
        .env("TZ", "UTC")
        .current_dir(dir)
        .output()
        .expect("the system `tar` runs");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn archive_is_sorted_normalised_and_unpacks_to_the_inputs() {
    let ws = archive_site();
    ws.run(&["site:archive"]).0.expect_code(0);
    let archive = ws.path("site/dist/public.tar.gz");
    let dir = ws.root.clone();

    let names = system_tar(&["-tzf", archive.to_str().unwrap()], &dir);
    assert_eq!(
        names, "guide/\nguide/a.html\nguide/b.html\nindex.html\nz.txt\n",
        "sorted, directories first, paths relative to the base"
    );
    let verbose = system_tar(
        &["--numeric-owner", "-tvzf", archive.to_str().unwrap()],
        &dir,
    );
    for line in verbose.lines() {
        assert!(line.contains(" 0/0 "), "uid/gid 0: {line}");
        assert!(line.contains("1980-01-01 00:00"), "fixed mtime: {line}");
        let mode = line.split_whitespace().next().unwrap();
        assert!(
            mode == "drwxr-xr-x" || mode == "-rw-r--r--",
            "normalised mode: {line}"
        );
    }

    let out = tempfile::tempdir().unwrap();
    system_tar(&["-xzf", archive.to_str().unwrap()], out.path());
    for rel in ["index.html", "guide/a.html", "guide/b.html", "z.txt"] {
        assert_eq!(
            std::fs::read(out.path().join(rel)).unwrap(),
            ws.read(&format!("site/public/{rel}")),
            "{rel}"
        );
    }
}

#[test]
fn two_fresh_archive_runs_are_byte_identical() {
    let ws = archive_site();
    let (run, s) = ws.run(&["site:archive"]);
    run.expect_code(0);
    assert_eq!(task(&s, "site:archive")["source"], "fresh");
    let first = ws.read("site/dist/public.tar.gz");

    ws.wask(&["cache", "clear"]).expect_code(0);
    std::fs::remove_dir_all(ws.path("site/dist")).unwrap();
    // Rewrite every input: new mtimes on disk must not reach the archive.
    for rel in ["index.html", "guide/a.html", "guide/b.html", "z.txt"] {
        let path = format!("site/public/{rel}");
        let bytes = ws.read(&path);
        ws.write(&path, bytes);
    }
    let (run, s) = ws.run(&["site:archive"]);
    run.expect_code(0);
    assert_eq!(
        task(&s, "site:archive")["source"],
        "fresh",
        "the cache was cleared"
    );
    assert_eq!(ws.read("site/dist/public.tar.gz"), first);
}

#[test]
fn archive_with_an_unknown_format_fails() {
    let ws = site(
        &["archive"],
        r#"
[tasks.archive]
module = "/tools/archive.wasm"
args = ["public", "dist/public.rar"]
inputs = ["public/**"]
outputs = ["dist/**"]
"#,
    );
    ws.write("site/public/a.txt", "a");
    let (run, _) = ws.run(&["site:archive"]);
    run.expect_code(1);
    assert!(
        run.stderr()
            .contains("/site/dist/public.rar: the archive's name must end in .tar.gz"),
        "{}",
        run.stderr()
    );
}
