//! The remote cache (issue 12) against real servers: nginx serving the Bazel HTTP cache
//! layout and BuildGrid serving REAPI v2, both started by `scripts/test.sh` on loopback
//! ports (`scripts/servers.sh`). Every test runs against each server. Under `CI=true` a
//! missing server fails the test; elsewhere it says it was skipped.

use crate::hardening::{hostile, workspace};
use crate::support::{Run, Ws, task};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wask_remote::DigestFunction;

/// A server the tests use.
pub(crate) struct Server {
    pub(crate) name: &'static str,
    pub(crate) url: String,
    /// Where nginx keeps the layout's files (HTTP only).
    pub(crate) store: Option<PathBuf>,
    /// A script that starts another such server: `SCRIPT PORT [STORE]`.
    runner: Option<PathBuf>,
}

pub(crate) fn servers() -> Vec<Server> {
    let mut found = Vec::new();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match env("WASK_TEST_HTTP_CACHE") {
        Some(url) => found.push(Server {
            name: "nginx (HTTP)",
            url,
            store: env("WASK_TEST_HTTP_STORE").map(PathBuf::from),
            runner: env("WASK_TEST_NGINX").map(PathBuf::from),
        }),
        None => missing("WASK_TEST_HTTP_CACHE (nginx)"),
    }
    match env("WASK_TEST_REAPI") {
        Some(url) => found.push(Server {
            name: "BuildGrid (REAPI)",
            url,
            store: None,
            runner: env("WASK_TEST_BGD").map(PathBuf::from),
        }),
        None => missing("WASK_TEST_REAPI (BuildGrid)"),
    }
    found
}

pub(crate) fn missing(what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is not set: run the tests with scripts/test.sh, which starts the servers");
    }
    eprintln!("skipped: no {what}; scripts/test.sh starts it");
}

/// Someone with a key of their own (their own state directory).
pub(crate) struct User {
    state: tempfile::TempDir,
}

impl User {
    pub(crate) fn new() -> User {
        User {
            state: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn env<'a>(&'a self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![("WASK_STATE_DIR", self.state.path().to_str().unwrap())];
        env.extend_from_slice(more);
        env
    }

    pub(crate) fn wask(&self, ws: &Ws, args: &[&str], more: &[(&str, &str)]) -> Run {
        ws.wask_env(args, &self.env(more))
    }

    /// `wask run ARGS --summary` as this user: the run and its summary.
    pub(crate) fn run(
        &self,
        ws: &Ws,
        args: &[&str],
        more: &[(&str, &str)],
    ) -> (Run, serde_json::Value) {
        let summary = ws.path(".wask-summary.json");
        let _ = std::fs::remove_file(&summary);
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--summary", summary.to_str().unwrap()]);
        let run = self.wask(ws, &all, more);
        let json = std::fs::read(&summary)
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(serde_json::Value::Null);
        (run, json)
    }

    pub(crate) fn public_pem(&self, ws: &Ws) -> String {
        let key = self.wask(ws, &["audit", "key"], &[]);
        key.expect_code(0);
        key.stdout()
    }
}

pub(crate) const WRITE: (&str, &str) = ("WASK_REMOTE_CACHE_WRITE", "true");
const TASKS: [&str; 3] = ["p:gen", "p:use", "p:talk"];

/// A workspace of three tasks (an output, an output made from it, interleaved streams),
/// all reading `nonce.txt` (so no other test shares their keys), whose remote cache is
/// `url`, trusting the keys in `trusted` (files under `keys/`).
pub(crate) fn remote_workspace(url: &str, nonce: &str, trusted: &[String], more: &str) -> Ws {
    let mut tasks = String::new();
    // Outputs hold the nonce: blobs, which the server keeps by content, are this
    // test's own too (one test replaces a blob's bytes on the server).
    tasks.push_str(&hostile(
        "gen",
        &["copy:/nonce.txt|/out/a.txt"],
        "inputs = [\"nonce.txt\"]\noutputs = [\"out/a.txt\"]",
    ));
    tasks.push_str(&hostile(
        "use",
        &["copy:/out/a.txt|/res/b.txt"],
        "deps = [\"~:gen\"]\ninputs = [\"nonce.txt\", \"out/a.txt\"]\noutputs = [\"res/b.txt\"]",
    ));
    tasks.push_str(&hostile(
        "talk",
        &["interleave:3"],
        "inputs = [\"nonce.txt\"]",
    ));
    let names: Vec<String> = (0..trusted.len())
        .map(|i| format!("\"keys/k{i}.pem\""))
        .collect();
    tasks.push_str(&format!(
        "[cache.remote]\nurl = \"{url}\"\ntrusted_keys = [{}]\n{more}\n",
        names.join(", ")
    ));
    let ws = workspace(&tasks);
    ws.write("nonce.txt", nonce);
    for (i, pem) in trusted.iter().enumerate() {
        ws.write(&format!("keys/k{i}.pem"), pem);
    }
    ws
}

pub(crate) fn nonce() -> String {
    format!(
        "{:?} {}\n",
        std::time::SystemTime::now(),
        std::process::id()
    )
}

fn outputs(ws: &Ws) -> Vec<(String, Vec<u8>)> {
    ["out/a.txt", "res/b.txt"]
        .iter()
        .map(|p| (p.to_string(), std::fs::read(ws.path(p)).unwrap_or_default()))
        .collect()
}

/// The task lines a run printed, sorted: the same for a fresh run and a hit.
fn task_lines(run: &Run) -> Vec<String> {
    let mut lines: Vec<String> = run
        .stdout()
        .lines()
        .chain(run.stderr().lines())
        .filter(|l| l.starts_with("[p:"))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// When each of the entries of `summary`'s tasks was last written on the server (HTTP:
/// nginx's files; other tests write the same server at the same time, so only these
/// entries' own files say whether a run wrote them).
fn entry_stamps(server: &Server, summary: &serde_json::Value) -> Vec<std::time::SystemTime> {
    let Some(store) = &server.store else {
        return Vec::new();
    };
    TASKS
        .iter()
        .map(|id| {
            let key = task(summary, id)["key"].as_str().unwrap().to_string();
            let file = store.join("ac").join(&action(&key).hash);
            std::fs::metadata(&file).unwrap().modified().unwrap()
        })
        .collect()
}

/// A workspace a writer ran fresh and uploaded to `server`, and a reader who trusts the
/// writer's key: what most tests start from.
pub(crate) struct Uploaded {
    pub(crate) reader: User,
    pub(crate) nonce: String,
    /// The writer's public key, for `trusted_keys`.
    pub(crate) trusted: [String; 1],
    pub(crate) a: Ws,
    pub(crate) run: Run,
    pub(crate) summary: serde_json::Value,
}

pub(crate) fn uploaded(server: &Server) -> Uploaded {
    let (writer, reader) = (User::new(), User::new());
    let nonce = nonce();
    let probe = remote_workspace(&server.url, &nonce, &[], "");
    let trusted = [writer.public_pem(&probe)];
    let a = remote_workspace(&server.url, &nonce, &trusted, "");
    let (run, summary) = writer.run(&a, &["--workspace"], &[WRITE]);
    run.expect_code(0);
    Uploaded {
        reader,
        nonce,
        trusted,
        a,
        run,
        summary,
    }
}

/// A workspace run fresh by a writer, and a copy of it at another path, with an empty
/// local cache, whose user trusts the writer: every task of the copy is a remote hit,
/// with the writer's bytes and streams, and no task runs. The reader, who may not
/// write, sends nothing to the server.
#[test]
fn every_task_of_a_copy_elsewhere_is_a_remote_hit() {
    for server in servers() {
        let Uploaded {
            reader,
            nonce,
            trusted,
            a,
            run,
            summary,
            ..
        } = uploaded(&server);
        assert_eq!(
            summary["remote"]["uploaded"], 3,
            "{}: {summary:#}",
            server.name
        );

        let b = remote_workspace(&server.url, &nonce, &trusted, "");
        assert_ne!(a.root, b.root);
        let stamps_before = entry_stamps(&server, &summary);
        let why = reader.wask(&b, &["why", "p:gen"], &[]);
        assert!(
            why.stdout()
                .contains("holds an entry signed by trusted key"),
            "{}: {}",
            server.name,
            why.stdout()
        );
        let info = reader.wask(&b, &["cache", "info"], &[]);
        assert!(
            info.stdout().contains("reachable: "),
            "{}: {}",
            server.name,
            info.stdout()
        );
        let (hit, summary) = reader.run(&b, &["--workspace"], &[]);
        hit.expect_code(0);
        for id in TASKS {
            let t = task(&summary, id);
            assert_eq!(
                t["source"],
                "cache",
                "{}: {id}: {t:#}\n{}",
                server.name,
                hit.stderr()
            );
            assert_eq!(t["hit"], "remote", "{}: {id}", server.name);
        }
        assert!(
            task(&summary, "p:gen")["remote_bytes_down"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert_eq!(outputs(&a), outputs(&b), "{}", server.name);
        assert_eq!(task_lines(&run), task_lines(&hit), "{}", server.name);
        assert_eq!(summary["remote"]["bytes_up"], 0, "{}", server.name);
        assert_eq!(summary["remote"]["uploaded"], 0, "{}", server.name);
        // Over HTTP a small entry travels whole in its action result: one request a hit
        // (and one to see that the server answers).
        if server.store.is_some() {
            assert_eq!(
                summary["remote"]["requests"],
                1 + TASKS.len(),
                "{}",
                summary["remote"]
            );
        }
        assert_eq!(
            entry_stamps(&server, &summary),
            stamps_before,
            "{}: a reader wrote",
            server.name
        );
        assert!(
            hit.stderr().contains("from the remote cache"),
            "{}",
            hit.stderr()
        );

        // Again: now local hits, and the server is not asked; `wask why` says where the
        // local copy came from.
        let (again, summary) = reader.run(&b, &["--workspace"], &[]);
        again.expect_code(0);
        assert_eq!(task(&summary, "p:gen")["hit"], "local", "{}", server.name);
        let why = reader.wask(&b, &["why", "p:gen"], &[]);
        assert!(
            why.stdout()
                .contains(&format!("downloaded from {}", server.url)),
            "{}: {}",
            server.name,
            why.stdout()
        );
    }
}

/// The server's copy of a result, as the library reads it.
pub(crate) fn client(server: &Server) -> Box<dyn wask_remote::RemoteStore> {
    wask_remote::connect(&wask_remote::Options::new(&server.url)).unwrap()
}

pub(crate) fn action(key: &str) -> wask_remote::Digest {
    wask_remote::entry::action_digest(DigestFunction::Sha256, "blake3", key)
}

/// A run that may not write leaves nothing on the server.
#[test]
fn a_reader_that_may_not_write_uploads_nothing() {
    for server in servers() {
        let reader = User::new();
        let ws = remote_workspace(&server.url, &nonce(), &[], "");
        let (run, summary) = reader.run(&ws, &["--workspace"], &[]);
        run.expect_code(0);
        let remote = client(&server);
        for id in TASKS {
            let key = task(&summary, id)["key"].as_str().unwrap().to_string();
            assert_eq!(task(&summary, id)["source"], "fresh");
            let found = remote.get_action_result(&action(&key)).unwrap();
            assert!(found.is_none(), "{}: {id} was uploaded", server.name);
        }
    }
}

/// Changes the action result the server holds for task `id` of `summary` with `change`.
pub(crate) fn rewrite_result(
    server: &Server,
    summary: &serde_json::Value,
    id: &str,
    change: impl FnOnce(&mut wask_remote::ActionResult),
) {
    let remote = client(server);
    let key = task(summary, id)["key"].as_str().unwrap().to_string();
    let mut result = remote.get_action_result(&action(&key)).unwrap().unwrap();
    change(&mut result);
    remote.update_action_result(&action(&key), &result).unwrap();
}

/// An entry signed by a key the reader does not trust, an entry whose output names
/// another (valid) blob, and (HTTP) a blob whose bytes were replaced on the server: each
/// is a miss with a warning, the task runs fresh, and the workspace holds the right
/// bytes.
#[test]
fn a_changed_blob_or_an_untrusted_signer_is_a_miss_never_a_wrong_restore() {
    for server in servers() {
        let Uploaded {
            reader,
            nonce,
            trusted,
            a,
            summary,
            ..
        } = uploaded(&server);
        let stranger = User::new();
        let right = outputs(&a);

        // Signed by a key this reader does not trust (the stranger trusts only itself).
        let c = remote_workspace(&server.url, &nonce, &[], "");
        let (run, s) = stranger.run(&c, &["--workspace"], &[]);
        run.expect_code(0);
        for id in TASKS {
            assert_eq!(task(&s, id)["source"], "fresh", "{}: {id}", server.name);
        }
        assert!(
            run.stderr().contains("not to be trusted"),
            "{}: {}",
            server.name,
            run.stderr()
        );
        assert_eq!(outputs(&c), right);

        // gen's entry now names other valid bytes for its output.
        let remote = client(&server);
        let key = task(&summary, "p:gen")["key"].as_str().unwrap().to_string();
        let mut result = remote.get_action_result(&action(&key)).unwrap().unwrap();
        let other = b"other bytes, a valid blob\n".to_vec();
        let digest = wask_remote::Digest::of(DigestFunction::Sha256, &other);
        remote
            .write_small_blobs(&[(digest.clone(), other)])
            .unwrap();
        let file = result
            .output_files
            .iter_mut()
            .find(|f| f.path == "out/a.txt")
            .unwrap();
        file.digest = Some(
            bazel_remote_apis::build::bazel::remote::execution::v2::Digest {
                hash: digest.hash.clone(),
                size_bytes: digest.size as i64,
            },
        );
        remote.update_action_result(&action(&key), &result).unwrap();
        // (HTTP) use's output blob overwritten with other bytes under its name, and the
        // copy its result carries gone, so the reader must fetch the blob; talk's result
        // carries other bytes as its stdout.
        if let Some(store) = &server.store {
            let b = std::fs::read(a.path("res/b.txt")).unwrap();
            let name = wask_remote::Digest::of(DigestFunction::Sha256, &b).hash;
            std::fs::write(store.join("cas").join(name), b"tampered on the server\n").unwrap();
            rewrite_result(&server, &summary, "p:use", |r| {
                assert!(r.output_files.iter().any(|f| !f.contents.is_empty()));
                for f in &mut r.output_files {
                    f.contents.clear();
                }
            });
            rewrite_result(&server, &summary, "p:talk", |r| {
                assert!(!r.stdout_raw.is_empty());
                r.stdout_raw = b"tampered stdout".to_vec();
            });
        }
        let b = remote_workspace(&server.url, &nonce, &trusted, "");
        let (run, s) = reader.run(&b, &["--workspace"], &[]);
        run.expect_code(0);
        assert_eq!(
            task(&s, "p:gen")["source"],
            "fresh",
            "{}: {}",
            server.name,
            run.stderr()
        );
        if server.store.is_some() {
            assert_eq!(task(&s, "p:use")["source"], "fresh", "{}", server.name);
            assert_eq!(task(&s, "p:talk")["source"], "fresh", "{}", server.name);
        }
        assert!(
            run.stderr().contains("was not used"),
            "{}: {}",
            server.name,
            run.stderr()
        );
        assert_eq!(outputs(&b), right, "{}: a wrong restore", server.name);
    }
}

/// `--remote-cache URL` in a workspace with no `[cache.remote]`: the run reads the
/// server, and `WASK_REMOTE_CACHE_WRITE=true` makes it upload (the variable is not
/// only for URLs the workspace names). A copy elsewhere, same user (who trusts their
/// own key by default), then hits it.
#[test]
fn the_command_line_url_uploads_when_the_environment_says_write() {
    for server in servers() {
        let user = User::new();
        let nonce = nonce();
        let make = || {
            let ws = workspace(&hostile(
                "gen",
                &["copy:/nonce.txt|/out/a.txt"],
                "inputs = [\"nonce.txt\"]\noutputs = [\"out/a.txt\"]",
            ));
            ws.write("nonce.txt", &nonce);
            ws
        };
        let a = make();
        let flag = ["--workspace", "--remote-cache", server.url.as_str()];
        let (run, summary) = user.run(&a, &flag, &[WRITE]);
        run.expect_code(0);
        assert_eq!(
            summary["remote"]["uploaded"], 1,
            "{}: {summary:#}",
            server.name
        );
        let b = make();
        let (hit, summary) = user.run(&b, &flag, &[]);
        hit.expect_code(0);
        assert_eq!(
            task(&summary, "p:gen")["hit"],
            "remote",
            "{}: {}",
            server.name,
            hit.stderr()
        );
        assert_eq!(
            std::fs::read(b.path("out/a.txt")).unwrap(),
            nonce.as_bytes()
        );
    }
}

/// An entry with an output above the in-memory budget and REAPI's batch limit (6 MiB,
/// streamed through ByteStream into a staged file) beside small ones (in memory): a
/// remote hit in a copy elsewhere, every byte as written.
#[test]
fn an_entry_with_a_large_output_is_a_remote_hit_byte_for_byte() {
    for server in servers() {
        let user = User::new();
        let nonce = nonce();
        let make = || {
            let ws = workspace(&format!(
                "{}[cache.remote]\nurl = \"{}\"\n",
                hostile(
                    "big",
                    &["fill:/out/big.bin|6291456", "copy:/nonce.txt|/out/a.txt"],
                    "inputs = [\"nonce.txt\"]\noutputs = [\"out/big.bin\", \"out/a.txt\"]",
                ),
                server.url
            ));
            ws.write("nonce.txt", &nonce);
            ws
        };
        let a = make();
        let (run, summary) = user.run(&a, &["p:big"], &[WRITE]);
        run.expect_code(0);
        assert_eq!(
            summary["remote"]["uploaded"], 1,
            "{}: {summary:#}",
            server.name
        );
        let b = make();
        let (hit, summary) = user.run(&b, &["p:big"], &[]);
        hit.expect_code(0);
        let t = task(&summary, "p:big");
        assert_eq!(t["hit"], "remote", "{}: {}", server.name, hit.stderr());
        assert!(t["remote_bytes_down"].as_u64().unwrap() >= 6 << 20, "{t:#}");
        for path in ["out/big.bin", "out/a.txt"] {
            assert_eq!(
                std::fs::read(b.path(path)).unwrap(),
                std::fs::read(a.path(path)).unwrap(),
                "{}: {path}",
                server.name
            );
        }
        assert_eq!(
            std::fs::metadata(b.path("out/big.bin")).unwrap().len(),
            6 << 20
        );
    }
}

/// A port no server listens on, and a server that accepts connections and never
/// answers: the run succeeds, says so in one warning, and ends within the timeout.
#[test]
fn a_server_that_is_down_or_never_answers_fails_no_run() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    for url in [
        format!("http://127.0.0.1:{closed_port}"),
        format!("grpc://127.0.0.1:{closed_port}"),
        format!("http://127.0.0.1:{silent_port}"),
        format!("grpc://127.0.0.1:{silent_port}"),
    ] {
        let user = User::new();
        let ws = remote_workspace(&url, &nonce(), &[], "timeout = \"1s\"");
        let mut cmd = ws.command(&["run", "--workspace"]);
        for (k, v) in user.env(&[WRITE]) {
            cmd.env(k, v);
        }
        let out = run_bounded(cmd, Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{url}: {stderr}");
        let warnings = stderr.matches("the remote cache failed").count();
        assert!(
            (1..=2).contains(&warnings),
            "{url}: {warnings} warnings:\n{stderr}"
        );
        for p in ["out/a.txt", "res/b.txt"] {
            assert!(ws.path(p).is_file(), "{url}: {p}");
        }
    }
}

/// Runs `cmd` to its end, killing it (and failing) if it takes longer than `limit`.
pub(crate) fn run_bounded(mut cmd: std::process::Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(child.wait_with_output().unwrap()));
    match receive.recv_timeout(limit) {
        Ok(out) => out,
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(id.to_string())
                .status();
            panic!("the run did not end within {limit:?}");
        }
    }
}

/// A server of its own, killed while a run uploads to it: the run succeeds.
#[test]
fn a_server_killed_in_the_middle_of_a_run_fails_no_run() {
    for server in servers() {
        let Some(runner) = &server.runner else {
            missing("a script to start a private server");
            continue;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        let mut start = std::process::Command::new(runner);
        start.arg(port.to_string()).arg(store.path());
        let mut private = Private(
            start
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let up = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(60),
                "{}: no private server",
                server.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let scheme = if server.store.is_some() {
            "http"
        } else {
            "grpc"
        };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let mut tasks = String::new();
        for i in 0..12 {
            tasks.push_str(&hostile(
                &format!("t{i}"),
                &[&format!("write:/out/{i}.txt")],
                &format!("outputs = [\"out/{i}.txt\"]\ninputs = [\"nonce.txt\"]"),
            ));
        }
        tasks.push_str(&format!(
            "[cache.remote]\nurl = \"{url}\"\ntimeout = \"2s\"\n"
        ));
        let ws = workspace(&tasks);
        ws.write("nonce.txt", nonce());
        let user = User::new();
        let mut cmd = ws.command(&["run", "--workspace", "-j", "1"]);
        for (k, v) in user.env(&[WRITE]) {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = String::new();
        // The server dies as the first task is done, its upload under way.
        for line in lines.by_ref() {
            let line = line.unwrap();
            said.push_str(&line);
            said.push('\n');
            if line.contains("done p:t") {
                private.kill();
                break;
            }
        }
        for line in lines {
            said.push_str(&line.unwrap());
            said.push('\n');
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{}: {said}", server.name);
        for i in 0..12 {
            assert!(
                ws.path(&format!("out/{i}.txt")).is_file(),
                "{}: t{i}",
                server.name
            );
        }
    }
}

/// A private server: its process group is killed, and waited for, when it is dropped
/// if not before.
struct Private(std::process::Child);

impl Private {
    fn kill(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.kill();
    }
}

use std::os::unix::process::CommandExt as _;
