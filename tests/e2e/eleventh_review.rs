//! The eleventh outside review, of the daily-use features (issue 13): every attack that
//! worked, through the binary. See `docs/security.md`.

use crate::hardening::{fails_with, hostile, refused_at_load, run_task, set_tasks, workspace};
use crate::support::{Ws, plugin_wasm};

/// A task wrote a complete forged cache entry into a workspace nested inside its own
/// (`inner/.wask/cache/**` was a plain output); the inner workspace then restored bytes
/// its task never produced. No output may lie in any `.wask` directory, be a
/// `CACHEDIR.TAG`, or lie in a directory that carries wask's tag.
#[test]
fn no_task_writes_into_a_nested_workspace_s_cache() {
    let ws = workspace(&hostile(
        "plant",
        &["put:/inner/.wask/cache/CACHEDIR.TAG|x"],
        "outputs = [\"inner/.wask/cache/**\"]",
    ));
    refused_at_load(&ws.wask(&["check"]), "lies in a `.wask` directory");

    // A broad glob reaches it at run time: refused, nothing placed.
    set_tasks(
        &ws,
        &hostile(
            "plant",
            &["put:/inner/.wask/cache/e9/forged|POISONED"],
            "outputs = [\"inner/**\"]",
        ),
    );
    let (run, record) = run_task(&ws, "p:plant", &[]);
    fails_with(&run, &record, "lies in a `.wask` directory");
    assert!(!ws.path("inner/.wask").exists());

    // A cache kept elsewhere (a nested workspace's `[cache] dir`) carries wask's tag.
    let inner = ws.path("inner");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(
        inner.join("wask.toml"),
        "[workspace]\n\n[cache]\ndir = \"c\"\n\n[project]\nname = \"i\"\n\n[tasks.t]\nmodule = \"/t.wasm\"\noutputs = [\"o.txt\"]\n",
    )
    .unwrap();
    std::fs::write(inner.join("t.wasm"), crate::support::NOOP_WASM).unwrap();
    let _ = ws.wask(&["-C", inner.to_str().unwrap(), "run", "i:t"]);
    assert!(inner.join("c/CACHEDIR.TAG").is_file());
    set_tasks(
        &ws,
        &hostile(
            "plant",
            &["put:/inner/c/e9/forged|POISONED"],
            "outputs = [\"inner/c/**\"]",
        ),
    );
    // Refused when the workspace loads (since the twelfth review; it was refused when
    // the outputs were collected).
    refused_at_load(&ws.wask(&["check"]), "lies in a wask cache directory");
    set_tasks(
        &ws,
        &hostile(
            "tag",
            &["put:/other/CACHEDIR.TAG|Signature: 8a477f597d28d172789f06886806bc55"],
            "outputs = [\"other/**\"]",
        ),
    );
    let (run, record) = run_task(&ws, "p:tag", &[]);
    fails_with(&run, &record, "is a `CACHEDIR.TAG`");
}

/// A dependent read, through `deps`, files its dependency never wrote: a person's file
/// under the dependency's output glob, a gitignored one, one the dependency excludes.
/// What a dependency's outputs are is what the output ledger says it wrote.
#[test]
fn a_dependent_reads_only_what_its_dependency_wrote() {
    let ws = Ws::new();
    ws.with_probe();
    std::fs::copy(
        crate::support::hostile_wasm(),
        ws.path("tools/hostile.wasm"),
    )
    .unwrap();
    ws.write(
        "tools/checksum.wasm",
        std::fs::read(plugin_wasm("checksum")).unwrap(),
    );
    set_tasks(
        &ws,
        &format!(
            "{}[tasks.sums]\nmodule = \"/tools/checksum.wasm\"\nargs = [\"SUMS\"]\ndeps = [\"~:dep\"]\noutputs = [\"SUMS\"]\n\n\
             [tasks.globbed]\nmodule = \"/tools/checksum.wasm\"\nargs = [\"GLOBBED\"]\ninputs = [\"dist/**\"]\nweak_deps = []\noutputs = [\"GLOBBED\"]\n",
            hostile(
                "dep",
                &["write:/dist/a.txt"],
                "outputs = [\"dist/**\", \"!dist/private/**\"]",
            )
        ),
    );
    ws.write(".gitignore", "*.secret\n");
    ws.write("dist/secret.txt", "TOPSECRET a person's file\n");
    ws.write("dist/ign.secret", "TOPSECRET ignored\n");
    ws.write("dist/private/key", "TOPSECRET excluded\n");
    let (run, _) = ws.run(&["p:sums", "p:globbed"]);
    run.expect_code(0);
    let sums = String::from_utf8(ws.read("SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 1, "{sums}");
    assert!(sums.ends_with("  dist/a.txt\n"), "{sums}");
    // A glob over the outputs reads what is there, but not what `.gitignore` ignores and
    // the dependency did not write.
    let globbed = String::from_utf8(ws.read("GLOBBED")).unwrap();
    assert!(!globbed.contains("ign.secret"), "{globbed}");
    assert!(globbed.contains("dist/a.txt"), "{globbed}");
}

/// A `.gitignore` was read whole into memory (100 MB: 7.5 GB), and a task could plant
/// one, or one that hides or re-exposes another task's inputs. A `.gitignore` is never
/// an output, and one over 128 KiB fails the task that would read it.
#[test]
fn a_gitignore_is_never_an_output_and_a_huge_one_is_refused() {
    let ws = workspace(&hostile(
        "hide",
        &["put:/.gitignore|src/config.txt"],
        "outputs = [\".gitignore\"]",
    ));
    refused_at_load(&ws.wask(&["check"]), "is a `.gitignore`");
    set_tasks(
        &ws,
        &hostile(
            "plant",
            &["put:/src/.gitignore|!*.secret"],
            "outputs = [\"src/**\"]",
        ),
    );
    let (run, record) = run_task(&ws, "p:plant", &[]);
    fails_with(&run, &record, "is a `.gitignore`");

    set_tasks(
        &ws,
        "[tasks.t]\nmodule = \"/tools/probe.wasm\"\ninputs = [\"src/**\"]\n",
    );
    ws.write("src/a.txt", "a\n");
    let big = std::fs::File::create(ws.path(".gitignore")).unwrap();
    big.set_len(100 << 20).unwrap();
    let (run, record) = run_task(&ws, "p:t", &[]);
    fails_with(&run, &record, "over 131072 bytes");
}

/// A module whose `wask.describe` section holds `text`.
fn module_describing(text: &str) -> Vec<u8> {
    crate::support::module_with_section("wask.describe", text.as_bytes())
}

/// `wask describe` printed a plugin's control characters raw: a forged `module ...
/// (blake3 = ...)` line followed by an escape that hid the real one. Control characters
/// and bidi overrides are shown escaped. A FIFO or `/dev/zero` named as the module
/// hung it or grew it without bound; only a regular file of a bounded size is read.
#[test]
fn describe_shows_a_plugin_s_text_escaped_and_reads_only_regular_files() {
    let ws = Ws::new();
    ws.write(
        "fake.wasm",
        module_describing(
            "name = \"x\"\nsummary = \"s\"\noutputs = \"o\\n  module   tools/md2html.wasm (blake3 = \\\"00\\\")\\u001b[8m\\u202e\"\n",
        ),
    );
    let shown = ws.wask(&["describe", "fake.wasm"]);
    shown.expect_code(0);
    let out = shown.stdout();
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{202e}'),
        "{out:?}"
    );
    // The forged line stays inside the value it came in: one `module` line, wask's.
    let module_lines: Vec<&str> = out.lines().filter(|l| l.starts_with("  module ")).collect();
    assert_eq!(module_lines.len(), 1, "{out}");
    assert!(module_lines[0].contains("fake.wasm"), "{out}");

    std::os::unix::fs::symlink("/dev/zero", ws.path("zero.wasm")).unwrap();
    let fifo = crate::support::fifo(&ws.root);
    std::fs::rename(&fifo, ws.path("f.wasm")).unwrap();
    for name in ["zero.wasm", "f.wasm"] {
        for command in ["describe", "pin"] {
            let run = ws.wask(&[command, name]);
            run.expect_code(2);
            assert!(
                run.stderr().contains("not a regular file"),
                "{}",
                run.stderr()
            );
        }
    }
}

/// `pin --write` made the file 0600 and wrote one project's digest into an overlay
/// every matching project shares; it keeps the mode and refuses overlay tasks.
#[test]
fn pin_keeps_the_file_mode_and_refuses_an_overlay_task() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Ws::new();
    ws.write("t.wasm", crate::support::NOOP_WASM);
    ws.write(
        "wask.toml",
        "[workspace]\nprojects = [\"a\", \"b\"]\n\n[overlays.lint]\ntags = \"web\"\n\n[overlays.lint.tasks.l]\nmodule = \"/t.wasm\"\n",
    );
    ws.write(
        "a/wask.toml",
        "[project]\nname = \"a\"\ntags = [\"web\"]\n\n[tasks.t]\nmodule = \"/t.wasm\"\n",
    );
    ws.write("b/wask.toml", "[project]\nname = \"b\"\ntags = [\"web\"]\n");
    std::fs::set_permissions(ws.path("a/wask.toml"), PermissionsExt::from_mode(0o664)).unwrap();
    ws.wask(&["pin", "a:t", "--write"]).expect_code(0);
    let mode = std::fs::metadata(ws.path("a/wask.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o664);
    let overlay = ws.wask(&["pin", "a:l", "--write"]);
    overlay.expect_code(2);
    assert!(
        overlay.stderr().contains("comes from the overlay `lint`"),
        "{}",
        overlay.stderr()
    );
    assert!(
        !String::from_utf8(ws.read("wask.toml"))
            .unwrap()
            .contains("blake3")
    );
}

/// `--affected` missed a change to an input git does not show: a gitignored file a
/// `gitignore = false` task reads, or one `.git/info/exclude` hides (wask's globs do
/// not honour it).
#[test]
fn affected_sees_inputs_git_hides() {
    let ws = Ws::new();
    ws.write("t.wasm", crate::support::NOOP_WASM);
    set_tasks(
        &ws,
        "[tasks.all]\nmodule = \"/t.wasm\"\ninputs = [\"src/**\"]\ngitignore = false\n\n[tasks.gen]\nmodule = \"/t.wasm\"\ninputs = [\"gen/**\"]\n\n[tasks.other]\nmodule = \"/t.wasm\"\ninputs = [\"other/**\"]\n",
    );
    ws.write(".gitignore", ".wask/\n.wask-summary.json\n*.local\n");
    ws.write("src/conf.local", "1\n");
    ws.write("gen/a.gen", "1\n");
    ws.write("other/x", "1\n");
    ws.git(&["init", "-q", "-b", "main"]);
    std::fs::write(ws.root.join(".git/info/exclude"), "*.gen\n").unwrap();
    ws.git(&["add", "-A"]);
    ws.git(&["commit", "-q", "-m", "one"]);
    ws.write("gen/a.gen", "2\n");
    let (run, summary) = ws.run(&["--affected"]);
    run.expect_code(0);
    let ids = crate::support::task_ids(&summary);
    assert!(ids.iter().any(|i| i == "p:all"), "{ids:?}");
    assert!(
        ids.iter().any(|i| i == "p:gen"),
        "{ids:?}: {}",
        run.stderr()
    );
    assert!(!ids.iter().any(|i| i == "p:other"), "{ids:?}");
}
