//! WS-006 overlays: tasks attached to projects by a tag filter, the project's own
//! definition first, the more specific overlay next, otherwise a collision (DAG-004).

use crate::support::{Ws, task};

fn workspace(overlays: &str) -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    ws.write(
        "wask.toml",
        format!("[workspace]\nprojects = [\"a\", \"b\", \"c\", \"d\"]\n\n{overlays}"),
    );
    for (name, tags, own) in [
        ("a", r#"["rust"]"#, ""),
        ("b", r#"["rust", "experimental"]"#, ""),
        (
            "c",
            r#"["rust", "web"]"#,
            "[tasks.lint]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:c's own lint\"]\n",
        ),
        ("d", r#"["docs"]"#, ""),
    ] {
        ws.write(
            &format!("{name}/src/lib.txt"),
            format!("source of {name}\n"),
        );
        ws.write(
            &format!("{name}/wask.toml"),
            format!("[project]\nname = \"{name}\"\ntags = {tags}\n{own}"),
        );
    }
    ws
}

const LINT: &str = r#"
[overlays.lint]
tags = "rust & !experimental"

[overlays.lint.tasks.lint]
module = "/tools/probe.wasm"
args = ["print:linting"]
inputs = ["src/lib.txt"]
"#;

#[test]
fn an_overlay_attaches_to_matching_projects_and_yields_to_their_own_tasks() {
    let ws = workspace(LINT);
    let listed = ws.wask(&["query", "--tasks", "lint"]);
    listed.expect_code(0);
    assert_eq!(
        listed.stdout(),
        "a:lint\nc:lint\n",
        "b is experimental, d is not rust"
    );

    let (run, s) = ws.run(&["^:lint"]);
    run.expect_code(0);
    assert_eq!(task(&s, "a:lint")["state"], "succeeded");
    assert!(
        run.stdout().contains("[a:lint] linting"),
        "{}",
        run.stdout()
    );
    // The overlay's relative paths resolve in each project it attaches to.
    let why = ws.wask(&["why", "a:lint", "--json"]).stdout();
    let why: serde_json::Value = serde_json::from_str(&why).unwrap();
    assert_eq!(
        why["tasks"][0]["parts"]["inputs"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["/a/src/lib.txt"]
    );
    assert!(
        run.stdout().contains("[c:lint] c's own lint"),
        "{}",
        run.stdout()
    );
}

#[test]
fn the_more_specific_overlay_wins_and_equals_collide() {
    let specific = format!(
        "{LINT}\n[overlays.web-lint]\ntags = \"rust & web\"\n[overlays.web-lint.tasks.fmt]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:web fmt\"]\n\n[overlays.all-fmt]\ntags = \"rust\"\n[overlays.all-fmt.tasks.fmt]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:generic fmt\"]\n"
    );
    let ws = workspace(&specific);
    let run = ws.wask(&["run", "c:fmt", "a:fmt"]);
    run.expect_code(0);
    assert!(run.stdout().contains("[c:fmt] web fmt"), "{}", run.stdout());
    assert!(
        run.stdout().contains("[a:fmt] generic fmt"),
        "{}",
        run.stdout()
    );

    let colliding = "[overlays.one]\ntags = \"rust\"\n[overlays.one.tasks.fmt]\nmodule = \"/tools/probe.wasm\"\n\n[overlays.two]\ntags = \"rust | docs & rust\"\n[overlays.two.tasks.fmt]\nmodule = \"/tools/probe.wasm\"\n";
    let ws = workspace(colliding);
    let check = ws.wask(&["check"]);
    check.expect_code(2);
    let err = check.stderr();
    assert!(
        err.contains(
            "overlays one, two all define task `fmt` for project a, and none is more specific"
        ),
        "{err}"
    );
    assert!(
        err.contains("wask.toml:"),
        "the error has a location: {err}"
    );
}

#[test]
fn a_bad_tag_filter_points_at_its_column() {
    let ws = workspace("[overlays.x]\ntags = \"rust & (web\"\n");
    let check = ws.wask(&["check"]);
    check.expect_code(2);
    let err = check.stderr();
    assert!(err.contains("invalid tag filter in overlay `x`"), "{err}");
    assert!(
        err.contains("wask.toml:5:"),
        "line 5 of the root file: {err}"
    );
}
