//! Task output on the console (EXEC-016, section 9): live lines prefixed and whole while
//! tasks run side by side, buffered blocks, the same lines from a cache hit, no escape
//! codes off a terminal or under `NO_COLOR`, and a progress display on a terminal.

use crate::support::Ws;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A workspace with one project per `(name, args)`, each with a probe task `talk`.
fn projects(tasks: &[(&str, &[&str])]) -> Ws {
    let ws = Ws::new();
    ws.with_probe();
    let names: Vec<String> = tasks.iter().map(|(n, _)| format!("{n:?}")).collect();
    ws.write(
        "wask.toml",
        format!("[workspace]\nprojects = [{}]\n", names.join(", ")),
    );
    for (name, args) in tasks {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        ws.write(
            &format!("{name}/wask.toml"),
            format!(
                "[project]\nname = \"{name}\"\n\n[tasks.talk]\nmodule = \"/tools/probe.wasm\"\nargs = [{}]\n",
                args.join(", ")
            ),
        );
    }
    ws
}

/// The lines of `text` that task `id` printed in live mode, without their prefix.
fn lines_of(text: &str, id: &str) -> Vec<String> {
    let prefix = format!("[{id}] ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(String::from))
        .collect()
}

/// What `lines:N:TEXT` followed by the probe's result line prints.
fn expected_lines(n: usize, text: &str) -> Vec<String> {
    let mut v: Vec<String> = (1..=n).map(|i| format!("{text} {i}")).collect();
    v.push(format!("ok lines {n} lines"));
    v
}

/// Enough lines that two tasks at `-j 2` write at the same time.
const MANY: usize = 20000;

fn two_talkers() -> Ws {
    let (a, b) = (
        format!("lines:{MANY}:from-a"),
        format!("lines:{MANY}:from-b"),
    );
    projects(&[
        ("a", &[&a, "stderr:warn-a", "print:end-a"]),
        ("b", &[&b, "stderr:warn-b", "print:end-b"]),
    ])
}

#[test]
fn live_lines_are_prefixed_and_whole_with_tasks_running_at_once() {
    let ws = two_talkers();
    let run = ws.wask(&["run", "--workspace", "-j", "2", "--output-mode", "live"]);
    run.expect_code(0);
    let out = run.stdout();
    let mut total = 0;
    for line in out.lines() {
        assert!(
            line.starts_with("[a:talk] ") || line.starts_with("[b:talk] "),
            "a line without its prefix: {line:?}"
        );
        total += 1;
    }
    // Every line of each task, whole and in order, and nothing else: a torn or mixed
    // line would show in one of these.
    assert_eq!(total, 2 * (MANY + 4));
    for p in ["a", "b"] {
        let mut want = expected_lines(MANY, &format!("from-{p}"));
        want.extend([
            "ok stderr ".to_string(),
            format!("end-{p}"),
            "ok print ".to_string(),
        ]);
        assert_eq!(
            lines_of(&out, &format!("{p}:talk")),
            want,
            "every line of {p}, whole and in order"
        );
        assert_eq!(
            lines_of(&run.stderr(), &format!("{p}:talk")),
            [format!("warn-{p}")]
        );
    }
}

#[test]
fn live_output_reaches_the_console_while_the_task_runs() {
    let ws = Ws::new();
    ws.with_probe();
    ws.write("wask.toml", "[workspace]\nprojects = [\"p\"]\n");
    ws.write(
        "p/wask.toml",
        "[project]\nname = \"p\"\n\n[tasks.slow]\nmodule = \"/tools/probe.wasm\"\nargs = [\"print:early\", \"loop\"]\nlimits = { timeout = \"60s\" }\n",
    );
    let mut child = Command::new(crate::support::wask_binary())
        .current_dir(&ws.root)
        .args(["run", "p:slow", "--output-mode", "live"])
        .env_remove("WASK_CACHE_DIR")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first, "[p:slow] early\n");
    assert!(
        still_running && started.elapsed() < Duration::from_secs(30),
        "the line came before the task ended"
    );
}

#[test]
fn a_last_line_without_a_newline_is_printed_when_the_task_ends() {
    let ws = projects(&[("p", &["print:first", "tail:no newline here"])]);
    let run = ws.wask(&["run", "p:talk", "--output-mode", "live"]);
    run.expect_code(0);
    assert_eq!(
        run.stdout(),
        "[p:talk] first\n[p:talk] ok print \n[p:talk] no newline here\n"
    );
    let buffered = ws.wask(&["run", "p:talk", "--output-mode", "buffered"]);
    buffered.expect_code(0);
    assert_eq!(
        buffered.stdout(),
        "[p:talk]\nfirst\nok print \nno newline here\n"
    );
}

#[test]
fn buffered_mode_prints_each_task_as_one_block() {
    let ws = two_talkers();
    let run = ws.wask(&["run", "--workspace", "-j", "2", "--output-mode", "buffered"]);
    run.expect_code(0);
    // Each block is headed by its task (issue 13).
    let block = |p: &str| {
        let mut lines = vec![format!("[{p}:talk]")];
        lines.extend(expected_lines(MANY, &format!("from-{p}")));
        lines.extend([
            "ok stderr ".to_string(),
            format!("end-{p}"),
            "ok print ".to_string(),
        ]);
        lines.join("\n") + "\n"
    };
    let out = run.stdout();
    assert!(
        out == block("a") + &block("b") || out == block("b") + &block("a"),
        "stdout is two whole blocks:\n{}",
        &out[..out.len().min(2000)]
    );
    let err = run.stderr();
    for p in ["a", "b"] {
        let warn = err.find(&format!("warn-{p}\n")).expect("the stderr block");
        let done = err
            .find(&format!("done {p}:talk"))
            .expect("the status line");
        assert!(warn < done, "the block comes when the task ends:\n{err}");
    }
}

#[test]
fn a_cache_hit_prints_the_same_lines_as_the_fresh_run() {
    let ws = projects(&[
        ("a", &["lines:200:from-a", "stderr:warn-a", "tail:last-a"]),
        ("b", &["print:only-b", "stderr:warn-b"]),
    ]);
    for mode in ["live", "buffered"] {
        let _ = std::fs::remove_dir_all(ws.path(".wask"));
        let fresh = ws.wask(&["run", "--workspace", "-j", "2", "--output-mode", mode]);
        fresh.expect_code(0);
        let hit = ws.wask(&["run", "--workspace", "-j", "2", "--output-mode", mode]);
        hit.expect_code(0);
        assert!(
            hit.stderr().contains("2 completed (2 cached)"),
            "{}",
            hit.stderr()
        );
        if mode == "live" {
            for id in ["a:talk", "b:talk"] {
                assert_eq!(lines_of(&fresh.stdout(), id), lines_of(&hit.stdout(), id));
                assert_eq!(lines_of(&fresh.stderr(), id), lines_of(&hit.stderr(), id));
            }
            assert_eq!(lines_of(&hit.stdout(), "a:talk").last().unwrap(), "last-a");
        } else {
            let a = "[a:talk]\n".to_string()
                + &expected_lines(200, "from-a").join("\n")
                + "\nok stderr \nlast-a\n";
            let b = "[b:talk]\nonly-b\nok print \nok stderr \n";
            for run in [&fresh, &hit] {
                let out = run.stdout();
                assert!(out == a.clone() + b || out == b.to_string() + &a, "{out}");
            }
        }
    }
}

#[test]
fn no_escape_codes_off_a_terminal_or_under_no_color() {
    let ws = projects(&[
        ("a", &["print:hello", "stderr:warn"]),
        ("b", &["print:world", "exit:3"]),
    ]);
    for no_color in ["", "1"] {
        for mode in ["live", "buffered"] {
            let _ = std::fs::remove_dir_all(ws.path(".wask"));
            let run = ws.wask_env(
                &["run", "--workspace", "--output-mode", mode],
                &[("NO_COLOR", no_color), ("CI", "")],
            );
            run.expect_code(1);
            assert!(
                !run.stdout().contains('\x1b') && !run.stderr().contains('\x1b'),
                "NO_COLOR={no_color:?} {mode}:\n{}\n{}",
                run.stdout(),
                run.stderr()
            );
            assert!(run.stderr().contains("FAILED b:talk"), "{}", run.stderr());
        }
    }
}

/// Runs `wask ARGS` under a pseudo-terminal (util-linux `script`), outside CI; `None`
/// when `script` is not installed.
fn on_terminal(ws: &Ws, args: &str, no_color: &str) -> Option<String> {
    let wask = crate::support::wask_binary();
    let out = Command::new("script")
        .current_dir(&ws.root)
        .args(["-qec", &format!("{} {args}", wask.display()), "/dev/null"])
        .env_remove("CI")
        .env_remove("WASK_CACHE_DIR")
        .env("NO_COLOR", no_color)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_terminal_gets_colours_and_a_progress_line_unless_no_color() {
    let ws = projects(&[
        ("a", &["print:hello", "busy:400", "print:bye"]),
        ("b", &["print:world", "busy:400"]),
    ]);
    let Some(coloured) = on_terminal(&ws, "run --workspace -j 2", "") else {
        eprintln!("skipped: `script` is not installed");
        return;
    };
    assert!(
        coloured.contains("m[a:talk]\x1b[0m hello"),
        "a coloured prefix: {coloured:?}"
    );
    assert!(
        coloured.contains("running: a:talk") || coloured.contains("running: b:talk"),
        "a progress line naming the running tasks: {coloured:?}"
    );
    let _ = std::fs::remove_dir_all(ws.path(".wask"));
    let plain = on_terminal(&ws, "run --workspace -j 2", "1").unwrap();
    assert!(plain.contains("[a:talk] hello"), "{plain:?}");
    let sgr_colour = (30..=37)
        .chain(90..=97)
        .any(|c| plain.contains(&format!("\x1b[{c}m")));
    assert!(!sgr_colour, "NO_COLOR: no colours: {plain:?}");
}
