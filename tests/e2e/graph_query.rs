//! `wask graph` (dot, Mermaid, JSON; hard and soft edges; run sets of references) and
//! `wask query` (tag, project and task filters in the WS-006 grammar).

use crate::support::{NOOP_WASM, Ws};
use std::collections::BTreeSet;

/// Four projects; edges, predecessor -> successor:
/// hard `assets:bundle -> content:html -> site:build -> site:serve`,
/// soft `content:lint -> content:html` and `assets:lint -> site:build`.
fn workspace() -> Ws {
    let ws = Ws::new();
    ws.write("tools/noop.wasm", NOOP_WASM);
    ws.write(
        "wask.toml",
        "[workspace]\nprojects = [\"assets\", \"content\", \"site\", \"legacy\"]\n",
    );
    ws.write(
        "assets/wask.toml",
        r#"[project]
name = "assets"
tags = ["web"]

[tasks.bundle]
module = "/tools/noop.wasm"
outputs = ["dist/bundle.js"]

[tasks.lint]
module = "/tools/noop.wasm"
"#,
    );
    ws.write(
        "content/wask.toml",
        r#"[project]
name = "content"
tags = ["docs"]

[tasks.html]
module = "/tools/noop.wasm"
inputs = ["src/**/*.md"]
outputs = ["dist/**/*.html"]
deps = ["assets:bundle"]
weak_deps = ["~:lint"]

[tasks.lint]
module = "/tools/noop.wasm"
"#,
    );
    ws.write(
        "site/wask.toml",
        r#"[project]
name = "site"
tags = ["docs", "web"]

[tasks.build]
module = "/tools/noop.wasm"
deps = ["content:html"]
weak_deps = ["assets:lint"]

[tasks.serve]
module = "/tools/noop.wasm"
deps = ["~:build"]
"#,
    );
    ws.write(
        "legacy/wask.toml",
        r#"[project]
name = "legacy"
tags = ["docs", "slow"]

[tasks.old]
module = "/tools/noop.wasm"
"#,
    );
    ws
}

const ALL: [&str; 7] = [
    "assets:bundle",
    "assets:lint",
    "content:html",
    "content:lint",
    "legacy:old",
    "site:build",
    "site:serve",
];

type Edges = BTreeSet<(String, String, bool)>;

fn edges(list: &[(&str, &str, bool)]) -> Edges {
    list.iter()
        .map(|(a, b, s)| (a.to_string(), b.to_string(), *s))
        .collect()
}

fn all_edges() -> Edges {
    edges(&[
        ("assets:bundle", "content:html", false),
        ("content:html", "site:build", false),
        ("site:build", "site:serve", false),
        ("content:lint", "content:html", true),
        ("assets:lint", "site:build", true),
    ])
}

/// The strings between double quotes on a line, in order.
fn quoted(line: &str) -> Vec<String> {
    line.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// Parses `wask graph --format dot` output: checks it is one `digraph { ... }` with
/// balanced braces, returns its nodes and its edges (`style=dashed` = soft).
fn parse_dot(dot: &str) -> (BTreeSet<String>, Edges) {
    let lines: Vec<&str> = dot.lines().collect();
    assert!(
        lines[0].starts_with("digraph ") && lines[0].ends_with('{'),
        "{dot}"
    );
    assert_eq!(*lines.last().unwrap(), "}", "{dot}");
    let mut depth = 0i32;
    let mut nodes = BTreeSet::new();
    let mut found = Edges::new();
    for line in &lines {
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        assert!(depth >= 0, "{dot}");
        let line = line.trim();
        if line.contains("->") {
            let q = quoted(line);
            assert_eq!(q.len(), 2, "an edge joins two quoted ids: {line}");
            assert!(line.ends_with(';'), "{line}");
            found.insert((q[0].clone(), q[1].clone(), line.contains("style=dashed")));
        } else if line.starts_with('"') {
            nodes.insert(quoted(line)[0].clone());
        }
    }
    assert_eq!(depth, 0, "{dot}");
    for (a, b, _) in &found {
        assert!(nodes.contains(a) && nodes.contains(b), "{a} -> {b}: {dot}");
    }
    (nodes, found)
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn dot_shows_every_task_and_edge_with_soft_edges_dashed() {
    let ws = workspace();
    let run = ws.wask(&["graph"]);
    run.expect_code(0);
    let dot = run.stdout();
    let (nodes, found) = parse_dot(&dot);
    assert_eq!(nodes, set(&ALL));
    assert_eq!(found, all_edges());
    // Exact lines, and the default format is dot.
    assert!(
        dot.contains("  \"assets:bundle\" -> \"content:html\";\n"),
        "{dot}"
    );
    assert!(
        dot.contains("  \"content:lint\" -> \"content:html\" [style=dashed];\n"),
        "{dot}"
    );
    // Grouped by project.
    assert!(dot.contains("subgraph \"cluster_site\" {"), "{dot}");
    assert_eq!(ws.wask(&["graph", "--format", "dot"]).stdout(), dot);
}

#[test]
fn references_show_their_run_set() {
    let ws = workspace();
    let run = ws.wask(&["graph", "site:build"]);
    run.expect_code(0);
    let (nodes, found) = parse_dot(&run.stdout());
    assert_eq!(nodes, set(&["assets:bundle", "content:html", "site:build"]));
    // Soft predecessors are not pulled in, so no soft edge shows.
    assert_eq!(
        found,
        edges(&[
            ("assets:bundle", "content:html", false),
            ("content:html", "site:build", false),
        ])
    );

    // A soft edge shows when both ends are in the set.
    let run = ws.wask(&["graph", "site:build", "content:lint"]);
    run.expect_code(0);
    let (_, found) = parse_dot(&run.stdout());
    assert!(found.contains(&("content:lint".into(), "content:html".into(), true)));
    assert_eq!(found.len(), 3);

    // A bare name from inside a project means that project's task.
    let site = ws.path("site");
    let run = ws.wask(&[
        "-C",
        site.to_str().unwrap(),
        "graph",
        "serve",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let ids: Vec<&str> = json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["assets:bundle", "content:html", "site:build", "site:serve"]
    );

    // A fan-out reference.
    let run = ws.wask(&["graph", "^:lint"]);
    run.expect_code(0);
    let (nodes, found) = parse_dot(&run.stdout());
    assert_eq!(nodes, set(&["assets:lint", "content:lint"]));
    assert!(found.is_empty());
}

#[test]
fn unknown_reference_is_a_usage_error() {
    let ws = workspace();
    let run = ws.wask(&["graph", "site:nope"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("no task matches `site:nope`"),
        "{}",
        run.stderr()
    );
    let run = ws.wask(&["graph", "bad.name"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("invalid task reference"),
        "{}",
        run.stderr()
    );
    ws.wask(&["graph", "--format", "svg"]).expect_code(2);
}

#[test]
fn mermaid_has_a_graph_header_subgraphs_and_both_edge_kinds() {
    let ws = workspace();
    let run = ws.wask(&["graph", "--format", "mermaid"]);
    run.expect_code(0);
    let out = run.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("graph "), "{out}");
    // Node keys to task ids: `tN["project:task"]`.
    let mut ids = std::collections::BTreeMap::new();
    for line in &lines {
        let line = line.trim();
        if let Some((key, rest)) = line.split_once("[\"")
            && !line.starts_with("subgraph")
        {
            ids.insert(key.to_string(), rest.trim_end_matches("\"]").to_string());
        }
    }
    assert_eq!(ids.values().cloned().collect::<BTreeSet<_>>(), set(&ALL));
    let mut found = Edges::new();
    for line in &lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() == 3 && (parts[1] == "-->" || parts[1] == "-.->") {
            found.insert((
                ids[parts[0]].clone(),
                ids[parts[2]].clone(),
                parts[1] == "-.->",
            ));
        }
    }
    assert_eq!(found, all_edges());
    let subgraphs = lines
        .iter()
        .filter(|l| l.trim().starts_with("subgraph "))
        .count();
    let ends = lines.iter().filter(|l| l.trim() == "end").count();
    assert_eq!((subgraphs, ends), (4, 4), "{out}");
    assert!(out.contains("[\"content\"]"), "{out}");
}

#[test]
fn json_lists_tasks_in_canonical_order_with_their_edges() {
    let ws = workspace();
    let run = ws.wask(&["graph", "--format", "json"]);
    run.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let tasks = json["tasks"].as_array().unwrap();
    let ids: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ALL);
    let mut found = Edges::new();
    for t in tasks {
        let id = t["id"].as_str().unwrap();
        assert_eq!(
            id,
            format!(
                "{}:{}",
                t["project"].as_str().unwrap(),
                t["task"].as_str().unwrap()
            )
        );
        for (key, soft) in [("deps", false), ("weak_deps", true)] {
            for d in t[key].as_array().unwrap() {
                found.insert((d.as_str().unwrap().to_string(), id.to_string(), soft));
            }
        }
    }
    assert_eq!(found, all_edges());
    let html = &tasks[2];
    assert_eq!(html["deps"], serde_json::json!(["assets:bundle"]));
    assert_eq!(html["weak_deps"], serde_json::json!(["content:lint"]));
}

fn query(ws: &Ws, args: &[&str]) -> Vec<String> {
    let mut all = vec!["query"];
    all.extend_from_slice(args);
    let run = ws.wask(&all);
    run.expect_code(0);
    run.stdout().lines().map(str::to_string).collect()
}

#[test]
fn query_filters_by_tags_projects_and_tasks() {
    let ws = workspace();
    assert_eq!(query(&ws, &[]), ALL);
    assert_eq!(
        query(&ws, &["--tags", "docs & !slow"]),
        ["content:html", "content:lint", "site:build", "site:serve"]
    );
    // `!` binds tighter than `&`, which binds tighter than `|`.
    assert_eq!(
        query(&ws, &["--tags", "slow | web & !docs"]),
        ["assets:bundle", "assets:lint", "legacy:old"]
    );
    assert_eq!(
        query(&ws, &["--tags", "(slow | web) & !docs"]),
        ["assets:bundle", "assets:lint"]
    );
    assert_eq!(
        query(&ws, &["--projects", "!site & !legacy"]),
        [
            "assets:bundle",
            "assets:lint",
            "content:html",
            "content:lint"
        ]
    );
    assert_eq!(
        query(&ws, &["--projects", "legacy|site"]),
        ["legacy:old", "site:build", "site:serve"]
    );
    assert_eq!(
        query(&ws, &["--tasks", "lint | build"]),
        ["assets:lint", "content:lint", "site:build"]
    );
}

#[test]
fn query_filters_combine() {
    let ws = workspace();
    assert_eq!(
        query(
            &ws,
            &[
                "--tags",
                "docs",
                "--projects",
                "!legacy",
                "--tasks",
                "!lint"
            ]
        ),
        ["content:html", "site:build", "site:serve"]
    );
    assert_eq!(
        query(&ws, &["--tags", "web", "--tasks", "lint"]),
        ["assets:lint"]
    );
    // Nothing matches: no lines, still success.
    let run = ws.wask(&["query", "--tags", "web", "--projects", "content"]);
    run.expect_code(0);
    assert_eq!(run.stdout(), "");
}

#[test]
fn query_json_describes_each_task() {
    let ws = workspace();
    let run = ws.wask(&["query", "--tasks", "html | bundle", "--json"]);
    run.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"tasks": [
            {
                "id": "assets:bundle",
                "project": "assets",
                "task": "bundle",
                "tags": ["web"],
                "module": "/tools/noop.wasm",
                "inputs": [],
                "outputs": ["/assets/dist/bundle.js"],
                "description": null,
            },
            {
                "id": "content:html",
                "project": "content",
                "task": "html",
                "tags": ["docs"],
                "module": "/tools/noop.wasm",
                "inputs": ["/content/src/**/*.md"],
                "outputs": ["/content/dist/**/*.html"],
                "description": null,
            },
        ]})
    );
}

#[test]
fn a_bad_filter_is_a_usage_error_with_a_caret() {
    let ws = workspace();
    let run = ws.wask(&["query", "--tags", "docs & "]);
    run.expect_code(2);
    let err = run.stderr();
    assert!(err.contains("invalid --tags filter"), "{err}");
    assert!(err.contains("after `&`"), "{err}");
    // The caret sits under the end, where a name was expected.
    assert!(err.contains("    docs & \n           ^"), "{err}");

    let run = ws.wask(&["query", "--projects", "site | $x"]);
    run.expect_code(2);
    let err = run.stderr();
    assert!(err.contains("invalid --projects filter"), "{err}");
    assert!(err.contains("    site | $x\n           ^"), "{err}");

    let run = ws.wask(&["query", "--tasks", "(build | lint"]);
    run.expect_code(2);
    let err = run.stderr();
    assert!(err.contains("expected `)`"), "{err}");
    assert!(
        err.contains("    (build | lint\n                 ^"),
        "{err}"
    );
    assert_eq!(run.stdout(), "");
}

#[test]
fn unknown_names_in_a_filter_are_warned_about() {
    let ws = workspace();
    let run = ws.wask(&["query", "--tags", "dosc", "--tasks", "!nope"]);
    run.expect_code(0);
    let err = run.stderr();
    assert!(err.contains("no project has the tag `dosc`"), "{err}");
    assert!(err.contains("no project has a task `nope`"), "{err}");
    assert_eq!(run.stdout(), "");
}
