//! The daily workflow (issue 13), through the binary.

use crate::hardening::{hostile, set_tasks, workspace};
use crate::support::{Ws, plugin_wasm, task, task_ids};

/// Point 1: a task's own outputs are never its inputs. `inputs = ["**"]` beside
/// `outputs = ["SUMS"]` runs again (a hit: its last SUMS is not in its key), and a
/// literal input that is also an output is refused, saying so.
#[test]
fn a_tasks_own_outputs_are_never_its_inputs() {
    let ws = workspace(&hostile(
        "sums",
        &["write:/SUMS"],
        "inputs = [\"**\"]\noutputs = [\"SUMS\"]",
    ));
    ws.write("src/a.txt", "a\n");
    let (first, s1) = ws.run(&["p:sums"]);
    first.expect_code(0);
    assert_eq!(task(&s1, "p:sums")["source"], "fresh");
    assert!(ws.path("SUMS").is_file());
    let (second, s2) = ws.run(&["p:sums"]);
    second.expect_code(0);
    assert_eq!(
        task(&s2, "p:sums")["source"],
        "cache",
        "the task's own output changed its key: {}",
        second.stderr()
    );
    assert_eq!(task(&s1, "p:sums")["key"], task(&s2, "p:sums")["key"]);

    let ws = workspace(&hostile(
        "sums",
        &["write:/SUMS"],
        "inputs = [\"SUMS\"]\noutputs = [\"SUMS\"]",
    ));
    ws.write("SUMS", "old\n");
    let (run, _) = ws.run(&["p:sums"]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains("also one of the task's outputs"),
        "{}",
        run.stderr()
    );
}

/// Point 13: `wask init` adds `.wask/` to `.gitignore` (creating it, or appending to one that
/// does not end in a newline), and only once.
#[test]
fn init_ignores_the_wask_directory_once() {
    for existing in [None, Some("target/"), Some("# mine\n.wask/\n")] {
        let ws = crate::support::Ws::new();
        if let Some(text) = existing {
            ws.write(".gitignore", text);
        }
        ws.wask(&["init", "--name", "demo"]).expect_code(0);
        let ignore = std::fs::read_to_string(ws.path(".gitignore")).unwrap();
        let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
        assert_eq!(
            lines.iter().filter(|l| **l == ".wask/").count(),
            1,
            "{existing:?}: {ignore:?}"
        );
        if let Some(text) = existing {
            assert!(ignore.starts_with(text.trim_end()), "{ignore:?}");
            assert!(lines.contains(&text.lines().next().unwrap().trim()));
        }
    }
}

/// Point 2: `!PATTERN` in `inputs` takes what it matches out of the view and the key
/// (a change there is still a hit; a change elsewhere is not); in `outputs` it is
/// refused at load rather than matching nothing.
#[test]
fn an_input_exclusion_takes_files_out_of_the_key_and_an_output_one_is_refused() {
    let ws = workspace(&hostile(
        "t",
        &["copy:/src/skip/x.txt|/out/seen.txt", "write:/out/done.txt"],
        "inputs = [\"src/**\", \"!src/skip/**\"]\noutputs = [\"out/**\"]",
    ));
    ws.write("src/a.txt", "a\n");
    ws.write("src/skip/x.txt", "x\n");
    let (first, s1) = ws.run(&["p:t"]);
    first.expect_code(0);
    // Not in the view: the task could not copy it.
    assert!(!ws.path("out/seen.txt").exists(), "{}", first.stdout());
    ws.write("src/skip/x.txt", "changed\n");
    let (second, s2) = ws.run(&["p:t"]);
    second.expect_code(0);
    assert_eq!(task(&s2, "p:t")["source"], "cache", "{}", second.stderr());
    assert_eq!(task(&s1, "p:t")["key"], task(&s2, "p:t")["key"]);
    ws.write("src/a.txt", "changed\n");
    let (third, s3) = ws.run(&["p:t"]);
    third.expect_code(0);
    assert_eq!(task(&s3, "p:t")["source"], "fresh");
}

/// Point 2, outputs: what a `!` exclusion of `outputs` matches is dropped, and a hit
/// leaves exactly what the fresh run left (the scratch file neither time).
#[test]
fn an_output_exclusion_drops_what_it_matches_fresh_and_from_the_cache() {
    let ws = workspace(&hostile(
        "t",
        &["write:/out/a.txt,/out/tmp/scratch.txt"],
        "outputs = [\"out/**\", \"!out/tmp/**\"]",
    ));
    let (fresh, s1) = ws.run(&["p:t"]);
    fresh.expect_code(0);
    assert_eq!(task(&s1, "p:t")["source"], "fresh");
    assert!(ws.path("out/a.txt").is_file());
    assert!(
        !ws.path("out/tmp/scratch.txt").exists(),
        "{}",
        fresh.stdout()
    );
    std::fs::remove_dir_all(ws.path("out")).unwrap();
    let (hit, s2) = ws.run(&["p:t"]);
    hit.expect_code(0);
    assert_eq!(task(&s2, "p:t")["source"], "cache");
    assert!(ws.path("out/a.txt").is_file());
    assert!(!ws.path("out/tmp/scratch.txt").exists());
    // The exclusion is part of the key: without it the result differs.
    set_tasks(
        &ws,
        &hostile(
            "t",
            &["write:/out/a.txt,/out/tmp/scratch.txt"],
            "outputs = [\"out/**\"]",
        ),
    );
    let (third, s3) = ws.run(&["p:t"]);
    third.expect_code(0);
    assert_eq!(task(&s3, "p:t")["source"], "fresh");
    assert!(ws.path("out/tmp/scratch.txt").is_file());
}

/// A workspace of one project `web`, holding `tasks`, with the example plugins
/// `md2html` and `checksum` in `/tools`.
fn web(tasks: &str) -> Ws {
    let ws = Ws::new();
    ws.write("wask.toml", "[workspace]\nprojects = [\"web\"]\n");
    ws.write(
        "web/wask.toml",
        format!("[project]\nname = \"web\"\n\n{tasks}"),
    );
    for plugin in ["md2html", "checksum"] {
        ws.write(
            &format!("tools/{plugin}.wasm"),
            std::fs::read(plugin_wasm(plugin)).unwrap(),
        );
    }
    ws.write("web/pages/a.md", "# A\n");
    ws
}

const HTML_TASK: &str = r#"
[tasks.html]
module = "/tools/md2html.wasm"
args = ["pages", "dist/html"]
inputs = ["pages/**/*.md"]
outputs = ["dist/html/**/*.html"]
"#;

/// The paths a `checksum` manifest lists, sorted.
fn listed(ws: &Ws, manifest: &str) -> Vec<String> {
    String::from_utf8(ws.read(manifest))
        .unwrap()
        .lines()
        .map(|l| l.split_once("  ").unwrap().1.to_string())
        .collect()
}

/// Point 3: a task reads what the tasks in its `deps` wrote without listing it again,
/// and a change to it is a change to the dependent's key. (It was `checksum: 0 file(s)`.)
#[test]
fn a_dependency_s_outputs_are_inputs_of_the_dependent() {
    let ws = web(&format!(
        "{HTML_TASK}\n[tasks.sums]\nmodule = \"/tools/checksum.wasm\"\nargs = [\"SUMS\"]\ndeps = [\"~:html\"]\noutputs = [\"SUMS\"]\n"
    ));
    let (first, _) = ws.run(&["web:sums"]);
    first.expect_code(0);
    assert_eq!(
        listed(&ws, "web/SUMS"),
        ["dist/html/a.html"],
        "{}",
        first.stderr()
    );
    let before = ws.read("web/SUMS");
    ws.write("web/pages/a.md", "# A, changed\n");
    let (second, s2) = ws.run(&["web:sums"]);
    second.expect_code(0);
    assert_eq!(task(&s2, "web:sums")["source"], "fresh");
    assert_ne!(ws.read("web/SUMS"), before);
}

/// Point 2, `.gitignore`: globs skip what the workspace's `.gitignore` files ignore
/// (with `!` re-inclusion and nested files, as git reads them), but still read what a
/// predecessor wrote into an ignored directory; `gitignore = false` reads everything;
/// a `.wask` directory is never an input either way.
#[test]
fn globs_skip_what_gitignore_ignores_unless_a_predecessor_wrote_it() {
    let sums = |gitignore: &str| {
        format!(
            "{HTML_TASK}\n[tasks.all]\nmodule = \"/tools/checksum.wasm\"\nargs = [\"ALL\"]\ninputs = [\"**\"]\noutputs = [\"ALL\"]\n{gitignore}\n"
        )
    };
    let ws = web(&sums(""));
    ws.write("web/.gitignore", "dist/\nnode_modules/\n*.log\n!keep.log\n");
    ws.write("web/node_modules/x/index.js", "x\n");
    ws.write("web/b.log", "b\n");
    ws.write("web/keep.log", "k\n");
    ws.write("web/sub/.gitignore", "local.txt\n");
    ws.write("web/sub/local.txt", "l\n");
    ws.write("web/sub/kept.txt", "k\n");
    ws.write("web/sub/.wask/state", "s\n");
    let (run, _) = ws.run(&["web:all"]);
    run.expect_code(0);
    assert_eq!(
        listed(&ws, "web/ALL"),
        [
            ".gitignore",
            "dist/html/a.html",
            "keep.log",
            "pages/a.md",
            "sub/.gitignore",
            "sub/kept.txt",
            "wask.toml"
        ],
        "{}",
        run.stderr()
    );
    // An ignored file changing is no change.
    ws.write("web/b.log", "b, changed\n");
    let (again, s) = ws.run(&["web:all"]);
    again.expect_code(0);
    assert_eq!(task(&s, "web:all")["source"], "cache");

    ws.write(
        "web/wask.toml",
        format!("[project]\nname = \"web\"\n\n{}", sums("gitignore = false")),
    );
    let (all, _) = ws.run(&["web:all"]);
    all.expect_code(0);
    let listed = listed(&ws, "web/ALL");
    for path in ["b.log", "node_modules/x/index.js", "sub/local.txt"] {
        assert!(listed.contains(&path.to_string()), "{path}: {listed:?}");
    }
    assert!(!listed.iter().any(|p| p.contains(".wask")), "{listed:?}");
}

/// Point 12: `wask completions SHELL` prints a script naming the commands and their
/// flags; the bash one loads into bash and completes `wask`.
#[test]
fn completion_scripts_name_the_commands_and_bash_loads_its_own() {
    let ws = crate::support::Ws::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = ws.wask(&["completions", shell]);
        run.expect_code(0);
        let script = run.stdout();
        for word in ["audit", "new-task", "remote-cache", "why"] {
            assert!(script.contains(word), "{shell}: no `{word}`");
        }
    }
    let bash = ws.wask(&["completions", "bash"]).stdout();
    ws.write("wask.bash", &bash);
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p wask",
            ws.path("wask.bash").display()
        ))
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("_wask"));
    ws.wask(&["completions", "tcsh"]).expect_code(2);
}

/// Point 12: `wask schema` prints the JSON Schema of `wask.toml` (the file in `docs/`),
/// and a validator nobody here wrote (the `jsonschema` package) accepts every file of
/// the example workspace and a `wask init` one with it, and refuses a misspelt key.
#[test]
fn the_schema_validates_the_example_workspace_and_refuses_a_misspelt_key() {
    let Some((python, _)) = crate::audit::validator() else {
        return;
    };
    let ws = Ws::new();
    let printed = ws.wask(&["schema"]);
    printed.expect_code(0);
    let docs = crate::support::repo_root().join("docs/wask.schema.json");
    assert_eq!(printed.stdout(), std::fs::read_to_string(&docs).unwrap());
    ws.write("wask.schema.json", printed.stdout());
    let schema = ws.path("wask.schema.json");
    let script = crate::support::repo_root().join("tests/validators/schema.py");
    let example = crate::support::repo_root().join("examples/docs-site");
    let mut files: Vec<std::path::PathBuf> = walkdir::WalkDir::new(&example)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == "wask.toml")
        .map(|e| e.into_path())
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    let init = Ws::new();
    init.wask(&["init", "--name", "demo"]).expect_code(0);
    files.push(init.path("wask.toml"));
    let valid = std::process::Command::new(&python)
        .arg(&script)
        .arg(&schema)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        valid.status.success(),
        "{}{}",
        String::from_utf8_lossy(&valid.stdout),
        String::from_utf8_lossy(&valid.stderr)
    );
    ws.write(
        "bad/wask.toml",
        "[workspace]\n\n[project]\nname = \"p\"\n\n[tasks.t]\nmodule = \"/t.wasm\"\ninptus = [\"a\"]\n",
    );
    let invalid = std::process::Command::new(&python)
        .arg(&script)
        .arg(&schema)
        .arg(ws.path("bad/wask.toml"))
        .output()
        .unwrap();
    assert_eq!(invalid.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("inptus"));
    // wask itself refuses the same file.
    let loaded = ws.wask(&["-C", ws.path("bad").to_str().unwrap(), "check"]);
    loaded.expect_code(2);
}

/// Point 4: one `wask check` finds everything it can before running, each finding with
/// its file and line: every unknown key of a file (with "did you mean"), unknown
/// projects and tasks told apart (with suggestions), modules that do not exist (a
/// project-relative slip pointed at the workspace-absolute path), literal inputs that
/// are missing or directories, and globs that match nothing (a warning). A bad module
/// path is exit 2 for `check` and `run` alike, whatever its form; no hint names this
/// repository's scripts.
#[test]
fn check_finds_every_problem_with_its_line_before_running() {
    let ws = web(r#"
[tasks.a]
module = "tools/checksum.wasm"
args = ["A"]
inputs = ["src/*.txt"]
outputs = ["A"]
inptus = []

[tasks.b]
module = { path = "/tools/chcksum.wasm" }
deps = ["~:aa", "wbe:a"]
outptus = []

[tasks.c]
module = { crate = "/plugins/x" }

[tasks.d]
module = "/tools/checksum.wasm"
args = ["D"]
inputs = ["missing.txt", "pages", "nothing/**"]
outputs = ["D"]
"#);
    let first = ws.wask(&["check"]);
    first.expect_code(2);
    let out = first.stderr();
    for expected in [
        "unknown field `inptus`",
        "did you mean `inputs`?",
        "unknown field `outptus`",
        "did you mean `outputs`?",
        "project `web` has no task `aa`",
        "did you mean `~:a`?",
        "no such project `wbe`",
        "did you mean `web`?",
    ] {
        assert!(out.contains(expected), "no `{expected}` in:\n{out}");
    }
    // The references are found in the same load as the keys.
    assert!(out.contains("the workspace has 4 errors"), "{out}");
    let text = String::from_utf8(ws.read("web/wask.toml")).unwrap();
    assert!(out.contains(&at(&text, "inptus")), "{out}");

    // With the keys and references right, the files are looked at.
    let text = String::from_utf8(ws.read("web/wask.toml")).unwrap();
    let text = text
        .replace("inptus = []\n", "")
        .replace("outptus = []\n", "")
        .replace("deps = [\"~:aa\", \"wbe:a\"]\n", "");
    ws.write("web/wask.toml", &text);
    let second = ws.wask(&["check"]);
    second.expect_code(2);
    let out = second.stderr();
    for expected in [
        "module /web/tools/checksum.wasm does not exist",
        "did you mean /tools/checksum.wasm?",
        "module /tools/chcksum.wasm does not exist",
        "the guest crate /plugins/x has no Cargo.toml",
        "input /web/missing.txt does not exist",
        "input /web/pages is a directory",
        "warning: input `/web/nothing/**` of web:d matches no file",
        "warning: input `/web/src/*.txt` of web:a matches no file",
    ] {
        assert!(out.contains(expected), "no `{expected}` in:\n{out}");
    }
    for at in [
        at(&text, "\"tools/checksum.wasm\""),
        at(&text, "\"missing.txt\""),
        at(&text, "\"pages\""),
    ] {
        assert!(out.contains(&at), "no `{at}` in:\n{out}");
    }
    assert!(out.contains("the workspace has 5 errors"), "{out}");
    assert!(!out.contains("scripts/"), "{out}");
    // The same bad paths stop `run` with the same exit code, whatever their form.
    for id in ["web:a", "web:b", "web:c"] {
        let run = ws.wask(&["run", id]);
        run.expect_code(2);
        assert!(!run.stderr().contains("scripts/"), "{}", run.stderr());
    }
    // A warning alone does not fail the check.
    ws.write(
        "web/wask.toml",
        "[project]\nname = \"web\"\n\n[tasks.d]\nmodule = \"/tools/checksum.wasm\"\nargs = [\"D\"]\ninputs = [\"nothing/**\"]\noutputs = [\"D\"]\n",
    );
    let third = ws.wask(&["check"]);
    third.expect_code(0);
    assert!(
        third.stderr().contains("matches no file"),
        "{}",
        third.stderr()
    );
}

/// `web/wask.toml:LINE:COLUMN` of the first `needle` in `text`.
fn at(text: &str, needle: &str) -> String {
    let offset = text.find(needle).expect("the needle is in the file");
    let line = text[..offset].matches('\n').count() + 1;
    let column = offset - text[..offset].rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("web/wask.toml:{line}:{column}")
}

/// A workspace whose root is project `p`, with the SDK guest at `/tools/sdk.wasm` and
/// `tasks`.
fn sdk_workspace(tasks: &str) -> Ws {
    let ws = Ws::new();
    ws.write(
        "tools/sdk.wasm",
        std::fs::read(crate::support::sdk_wasm()).unwrap(),
    );
    set_tasks(&ws, tasks);
    ws
}

/// Points 8 and 9: a plugin describes itself from a custom section the SDK writes
/// (`wask describe FILE|REF`, text and JSON; a module without one says so, exit 1);
/// an argument error from the SDK ends with the usage; every example plugin carries a
/// description. `wask pin` prints the module's blake3 and `--write` puts it in the
/// task (a later change of the module is then refused until pinned again).
#[test]
fn plugins_describe_themselves_and_pin_writes_the_digest() {
    let ws = sdk_workspace(
        "[tasks.two]\nmodule = \"/tools/sdk.wasm\" # the SDK guest\nargs = [\"two\", \"a\"]\n",
    );
    let file = ws.wask(&["describe", "tools/sdk.wasm"]);
    file.expect_code(0);
    assert!(
        file.stdout()
            .starts_with("sdk: exercises the wask-guest SDK\n"),
        "{}",
        file.stdout()
    );
    assert!(
        file.stdout().contains("usage    args = [ACTION, ...]"),
        "{}",
        file.stdout()
    );
    let json = ws.wask(&["describe", "p:two", "--json"]);
    json.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(json["name"], "sdk");
    assert_eq!(json["outputs"], "what `env` writes");
    let bare = ws.path("tools/probe.wasm");
    std::fs::copy(crate::support::probe_wasm(), &bare).unwrap();
    let none = ws.wask(&["describe", "tools/probe.wasm"]);
    none.expect_code(1);
    assert!(
        none.stderr().contains("carries no description"),
        "{}",
        none.stderr()
    );
    for plugin in [
        "archive", "checksum", "convert", "index", "md2html", "template",
    ] {
        let path = plugin_wasm(plugin);
        let d = ws.wask(&["describe", path.to_str().unwrap(), "--json"]);
        d.expect_code(0);
        let d: serde_json::Value = serde_json::from_str(&d.stdout()).unwrap();
        assert_eq!(d["name"], plugin);
        assert!(!d["summary"].as_str().unwrap().is_empty());
    }

    let (usage, _) = ws.run(&["p:two"]);
    usage.expect_code(1);
    assert!(
        usage.stderr().contains("expected 3 argument(s)"),
        "{}",
        usage.stderr()
    );
    assert!(
        usage
            .stderr()
            .contains("usage of sdk: args = [ACTION, ...]"),
        "{}",
        usage.stderr()
    );

    let digest = blake3::hash(&ws.read("tools/sdk.wasm"))
        .to_hex()
        .to_string();
    let pin = ws.wask(&["pin", "p:two"]);
    pin.expect_code(0);
    assert_eq!(pin.stdout(), format!("blake3 = \"{digest}\"\n"));
    assert_eq!(ws.wask(&["pin", "tools/sdk.wasm"]).stdout(), pin.stdout());
    ws.wask(&["pin", "p:two", "--write"]).expect_code(0);
    let toml = String::from_utf8(ws.read("wask.toml")).unwrap();
    assert!(
        toml.contains(&format!(
            "module = {{ path = \"/tools/sdk.wasm\", blake3 = \"{digest}\" }}"
        )),
        "{toml}"
    );
    assert!(
        toml.contains("# the SDK guest"),
        "the comment was lost: {toml}"
    );
    ws.wask(&["check"]).expect_code(0);
    // Another module under the pinned path is refused until pinned again.
    std::fs::copy(crate::support::probe_wasm(), ws.path("tools/sdk.wasm")).unwrap();
    let refused = ws.wask(&["run", "p:two"]);
    refused.expect_code(2);
    assert!(
        refused
            .stderr()
            .contains("does not match its pinned digest"),
        "{}",
        refused.stderr()
    );
    ws.wask(&["pin", "p:two", "--write"]).expect_code(0);
    ws.wask(&["run", "p:two"]).expect_code(0);
    ws.wask(&["pin", "tools/sdk.wasm", "--write"])
        .expect_code(2);
}

/// Points 5 and 7: what the SDK says when a task goes wrong. An absent variable names
/// the `env.from_host` line to add; a panic is one line with its message and no
/// `RUST_BACKTRACE` note, and wask says the guest aborted; an I/O error is in words,
/// without WASI's errno number.
#[test]
fn the_sdk_says_what_to_do_when_a_task_goes_wrong() {
    let ws = sdk_workspace(
        "[tasks.env]\nmodule = \"/tools/sdk.wasm\"\nargs = [\"env\", \"WASK_TEST_COLOUR\", \"out.txt\"]\noutputs = [\"out.txt\"]\n\n\
         [tasks.allowed]\nmodule = \"/tools/sdk.wasm\"\nargs = [\"env\", \"WASK_TEST_COLOUR\", \"allowed.txt\"]\noutputs = [\"allowed.txt\"]\nenv = { from_host = [\"WASK_TEST_COLOUR\"] }\n\n\
         [tasks.panic]\nmodule = \"/tools/sdk.wasm\"\nargs = [\"panic\", \"the sky fell\"]\n\n\
         [tasks.read]\nmodule = \"/tools/sdk.wasm\"\nargs = [\"read\", \"nowhere.txt\"]\n",
    );
    let env = [("WASK_TEST_COLOUR", "teal")];
    let absent = ws.wask_env(&["run", "p:env"], &env);
    absent.expect_code(1);
    assert!(
        absent
            .stderr()
            .contains("add `env.from_host = [\"WASK_TEST_COLOUR\"]` to the task"),
        "{}",
        absent.stderr()
    );
    ws.wask_env(&["run", "p:allowed"], &env).expect_code(0);
    assert_eq!(ws.read("allowed.txt"), b"teal");

    let panic = ws.wask(&["run", "p:panic"]);
    panic.expect_code(1);
    let err = panic.stderr();
    assert!(err.contains("error: the task panicked at"), "{err}");
    assert!(err.contains("the sky fell"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
    assert!(err.contains("the guest aborted"), "{err}");

    let read = ws.wask(&["run", "p:read"]);
    read.expect_code(1);
    assert!(
        read.stderr()
            .contains("cannot read /nowhere.txt: No such file or directory"),
        "{}",
        read.stderr()
    );
    assert!(!read.stderr().contains("os error"), "{}", read.stderr());
}

/// Points 5 and 6: a task that succeeds after reaching outside its declarations is told
/// (reads: add to `inputs`; writes: declare in `outputs`); the run ends with the failed
/// tasks and their first error line; buffered blocks are headed `[project:task]`;
/// `--summary -` writes the JSON to stdout (the tasks' stdout then goes to stderr);
/// `--color always|never` decide colour whatever the terminal.
#[test]
fn runs_report_what_went_wrong_where_people_look() {
    let ws = workspace(&format!(
        "{}{}{}",
        hostile(
            "reads",
            &["read-undeclared:/src/secret.txt", "write:/res/a.txt"],
            "outputs = [\"res/**\"]",
        ),
        hostile(
            "writes",
            &["create-undeclared:/elsewhere/x.txt", "write:/res2/a.txt"],
            "outputs = [\"res2/**\"]",
        ),
        "[tasks.fails]\nmodule = \"/tools/probe.wasm\"\nargs = [\"exit:7\"]\n",
    ));
    ws.write("src/secret.txt", "s\n");
    let run = ws.wask(&[
        "run",
        "p:reads",
        "p:writes",
        "p:fails",
        "--output-mode",
        "buffered",
    ]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(
        err.contains("warning p:reads: succeeded, but reached outside its declarations"),
        "{err}"
    );
    assert!(err.contains("/src/secret.txt"), "{err}");
    assert!(err.contains("add them to the task's `inputs`"), "{err}");
    assert!(err.contains("warning p:writes: succeeded"), "{err}");
    assert!(err.contains("/elsewhere/x.txt"), "{err}");
    assert!(
        err.contains("declare them in the task's `outputs`"),
        "{err}"
    );
    let tail: Vec<&str> = err.lines().rev().take(3).collect();
    assert_eq!(
        tail[0].split(" in ").next().unwrap(),
        "Tasks: 2 completed (0 cached), 1 failed, 0 skipped"
    );
    assert_eq!(tail[1], "  p:fails: exited with code 7");
    assert_eq!(tail[2], "Failed task:");
    assert!(
        run.stdout().contains("[p:reads]\nheld "),
        "{}",
        run.stdout()
    );

    let summary = ws.wask(&["run", "p:reads", "--summary", "-", "--color", "always"]);
    summary.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&summary.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}", summary.stdout()));
    assert_eq!(task(&json, "p:reads")["source"], "cache");
    assert!(summary.stderr().contains("\x1b["), "{}", summary.stderr());
    let plain = ws.wask(&["run", "p:reads", "--color", "never"]);
    assert!(!plain.stderr().contains('\x1b') && !plain.stdout().contains('\x1b'));
}

/// Point 10: `wask run --affected` on a real git repository runs the tasks whose inputs
/// changed since the base (a changed, an added and a removed file; committed or not)
/// and the tasks that depend on them, nothing else; `--base` picks the commit; outside
/// a git repository it says so.
#[test]
fn affected_runs_only_what_changed_files_touch() {
    let tasks = |name: &str, inputs: &str, more: &str| {
        format!(
            "[tasks.{name}]\nmodule = \"/tools/checksum.wasm\"\nargs = [\"out/{name}.sums\"]\ninputs = [{inputs}]\noutputs = [\"out/{name}.sums\"]\n{more}\n"
        )
    };
    let ws = web(&format!(
        "{}{}{}{}",
        tasks("a", "\"a/**\"", ""),
        tasks("b", "\"b/**\"", ""),
        tasks("c", "\"c.txt\"", "deps = [\"~:a\"]"),
        tasks("d", "\"d/**\"", ""),
    ));
    ws.write(".gitignore", ".wask/\n.wask-summary.json\nweb/out/\n");
    ws.write("web/a/1.txt", "1\n");
    ws.write("web/b/1.txt", "1\n");
    ws.write("web/c.txt", "c\n");
    ws.write("web/d/1.txt", "1\n");
    let outside = ws.wask(&["run", "--affected"]);
    outside.expect_code(2);
    assert!(
        outside.stderr().contains("is not in a git repository"),
        "{}",
        outside.stderr()
    );
    ws.git(&["init", "-q", "-b", "main"]);
    ws.git(&["add", "-A"]);
    ws.git(&["commit", "-q", "-m", "first"]);

    let (none, s) = ws.run(&["--affected"]);
    none.expect_code(0);
    assert!(
        task_ids(&s).is_empty(),
        "{:?}: {}",
        task_ids(&s),
        none.stderr()
    );

    // Changed (uncommitted): a, and c which depends on it.
    ws.write("web/a/1.txt", "changed\n");
    let (changed, s) = ws.run(&["--affected"]);
    changed.expect_code(0);
    assert!(
        changed
            .stderr()
            .contains("affected since HEAD: 1 changed file, 2 tasks"),
        "{}",
        changed.stderr()
    );
    assert_eq!(task_ids(&s), ["web:a", "web:c"]);

    // Added, untracked: b only. Removed: d only (a glob that matched it).
    ws.git(&["commit", "-q", "-am", "second"]);
    ws.write("web/b/2.txt", "new\n");
    std::fs::remove_file(ws.path("web/d/1.txt")).unwrap();
    let (both, s) = ws.run(&["--affected"]);
    both.expect_code(0);
    assert_eq!(task_ids(&s), ["web:b", "web:d"], "{}", both.stderr());

    // Against the first commit, the committed change to a counts too; REFS narrow it.
    ws.git(&["tag", "first", "HEAD~1"]);
    let (since, s) = ws.run(&["--affected", "--base", "first"]);
    since.expect_code(0);
    assert_eq!(task_ids(&s), ["web:a", "web:b", "web:c", "web:d"]);
    let (narrow, s) = ws.run(&["web:b", "web:c", "--affected", "--base", "first"]);
    narrow.expect_code(0);
    // c runs with its dependency a; a itself was not asked for but must run first.
    assert_eq!(task_ids(&s), ["web:a", "web:b", "web:c"]);
    let bad = ws.wask(&["run", "--affected", "--base", "nosuchref"]);
    bad.expect_code(2);
    assert!(
        bad.stderr().contains("--base nosuchref: no such commit"),
        "{}",
        bad.stderr()
    );
}

/// The lines a running `wask` writes to one of its streams, as they come.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stream)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every line up to and including the first that contains `text`; fails the test if
/// none comes within a minute (a bound, not a measurement).
fn until(lines: &std::sync::mpsc::Receiver<String>, text: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(text);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!(
                "no line with `{text}` came; the lines were:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Point 11: `wask watch` runs the tasks, then on a change runs exactly the tasks it
/// affects (not the others, not again for its own outputs); a change while a run is
/// going cancels the stale run and starts again.
#[test]
fn watch_runs_what_a_change_affects_and_cancels_a_stale_run() {
    let ws = workspace(
        "[tasks.a]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:a ran\", \"write:/out/a.txt:x\"]\ninputs = [\"a/**\"]\noutputs = [\"out/a.txt\"]\n\n\
         [tasks.b]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:b ran\"]\ninputs = [\"b/**\"]\n\n\
         [tasks.slow]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:slow started\", \"loop\"]\ninputs = [\"s/**\"]\nlimits = { timeout = \"10m\" }\n",
    );
    ws.write("a/1.txt", "1\n");
    ws.write("b/1.txt", "1\n");
    ws.write("s/1.txt", "1\n");
    let mut child = ws.spawn(&["watch", "p:a", "p:b", "-j", "2"]);
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let first = until(&err, "watching for changes");
    assert!(
        first.iter().any(|l| l.contains("Tasks: 2 completed")),
        "{first:?}"
    );
    ws.write("a/1.txt", "changed\n");
    let second = until(&err, "watching for changes");
    let ran: Vec<&String> = second.iter().filter(|l| l.contains("done p:")).collect();
    assert_eq!(ran.len(), 1, "{second:?}");
    assert!(ran[0].contains("done p:a"), "{second:?}");
    assert!(until(&out, "a ran").last().unwrap().contains("[p:a]"));
    crate::support::terminate(child.id());
    let _ = child.wait();

    let mut child = ws.spawn(&["watch", "p:slow"]);
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    until(&out, "slow started");
    ws.write("s/1.txt", "changed\n");
    let stopped = until(&err, "cancelled p:slow");
    assert!(
        stopped
            .iter()
            .any(|l| l.contains("files changed during the run")),
        "{stopped:?}"
    );
    // The next run starts at once, with the change.
    until(&out, "slow started");
    crate::support::terminate(child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
}

/// Point 12: a task's `description` is shown by `wask query` (beside the id, and in
/// JSON); `wask --version --verbose` names wasmtime's version and features.
#[test]
fn query_shows_descriptions_and_the_version_names_what_wask_is_built_on() {
    let ws = workspace(
        "[tasks.t]\nmodule = \"/tools/probe.wasm\"\ndescription = \"renders the pages\"\n\n[tasks.u]\nmodule = \"/tools/probe.wasm\"\n",
    );
    let query = ws.wask(&["query"]);
    query.expect_code(0);
    assert_eq!(query.stdout(), "p:t  renders the pages\np:u\n");
    let json = ws.wask(&["query", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(json["tasks"][0]["description"], "renders the pages");
    assert!(json["tasks"][1]["description"].is_null());
    ws.write(
        "wask.toml",
        "[workspace]\n\n[project]\nname = \"p\"\n\n[tasks.t]\nmodule = \"/tools/probe.wasm\"\ndescription = \"two\\nlines\"\n",
    );
    let bad = ws.wask(&["check"]);
    bad.expect_code(2);
    assert!(
        bad.stderr().contains("must be one line"),
        "{}",
        bad.stderr()
    );

    let short = ws.wask(&["--version"]);
    short.expect_code(0);
    assert!(short.stdout().starts_with("wask "), "{}", short.stdout());
    assert_eq!(short.stdout().lines().count(), 1);
    let verbose = ws.wask(&["--version", "--verbose"]);
    verbose.expect_code(0);
    let text = verbose.stdout();
    assert!(text.contains("wasmtime 48."), "{text}");
    assert!(
        text.contains("cranelift") && text.contains("wasi-p1"),
        "{text}"
    );
    assert!(text.contains("cache key revision"), "{text}");
}

/// Point 12: every `WASK_*` variable the source reads is in the README's table.
#[test]
fn every_wask_variable_is_in_the_readme_table() {
    let repo = crate::support::repo_root();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let table: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `WASK_"))
        .collect();
    let mut read = std::collections::BTreeSet::new();
    for dir in ["host/src", "runtime/src", "remote/src"] {
        for entry in walkdir::WalkDir::new(repo.join(dir)).into_iter().flatten() {
            if entry.path().extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            for piece in text.split("\"WASK_").skip(1) {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if piece[name.len()..].starts_with('"') {
                    read.insert(format!("WASK_{name}"));
                }
            }
        }
    }
    assert!(read.len() >= 6, "{read:?}");
    for name in &read {
        assert!(
            table
                .iter()
                .any(|row| row.starts_with(&format!("| `{name}` |"))),
            "{name} is read by wask but not in the README's table"
        );
    }
}
