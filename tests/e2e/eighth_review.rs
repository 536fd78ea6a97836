//! The eighth outside review: the remote cache, attacked through the release binary
//! and the tests' servers. Each test is one attack that worked, and fails on the
//! binary it worked on.

use crate::remote::{Uploaded, User, nonce, remote_workspace, run_bounded, servers, uploaded};
use crate::support::{Ws, task};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A proxy in front of `upstream` (host:port) that waits `delay` before passing each
/// request on: a server that answers every request, each just within the timeout.
pub(crate) fn slow_proxy(upstream: String, delay: Duration) -> u16 {
    slow_proxy_telling(upstream, delay, None)
}

/// [`slow_proxy`], which also sends the first line of each request to `told` as it
/// comes in (before the delay).
pub(crate) fn slow_proxy_telling(
    upstream: String,
    delay: Duration,
    told: Option<std::sync::mpsc::Sender<String>>,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, told) = (upstream.clone(), told.clone());
            std::thread::spawn(move || relay(client, &upstream, delay, told));
        }
    });
    port
}

/// Passes HTTP/1.1 requests from `client` to `upstream` one at a time, each after
/// `delay`; bodies by Content-Length.
fn relay(
    client: TcpStream,
    upstream: &str,
    delay: Duration,
    told: Option<std::sync::mpsc::Sender<String>>,
) {
    let mut from = BufReader::new(client.try_clone().unwrap());
    let mut to_client = client;
    let up = TcpStream::connect(upstream).unwrap();
    let mut up_read = BufReader::new(up.try_clone().unwrap());
    let mut up_write = up;
    let read_message = |r: &mut BufReader<TcpStream>, no_body: bool| -> Option<Vec<u8>> {
        let mut head = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.extend_from_slice(line.as_bytes());
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; if no_body { 0 } else { length }];
        r.read_exact(&mut body).ok()?;
        head.extend(body);
        Some(head)
    };
    while let Some(request) = read_message(&mut from, false) {
        if let Some(told) = &told {
            let first = request.split(|b| *b == b'\r').next().unwrap_or_default();
            let _ = told.send(String::from_utf8_lossy(first).into_owned());
        }
        std::thread::sleep(delay);
        if up_write.write_all(&request).is_err() {
            return;
        }
        // The answer to a HEAD has a length and no body.
        let Some(answer) = read_message(&mut up_read, request.starts_with(b"HEAD ")) else {
            return;
        };
        if to_client.write_all(&answer).is_err() {
            return;
        }
    }
}

/// 1 (medium): a server answering every request just within the timeout was never
/// counted as failing, and a hit of many blobs took a timeout per blob. Now one entry's
/// requests together get one timeout, and going past it counts as a failure: after
/// three the run stops asking.
#[test]
fn a_server_that_answers_each_request_just_in_time_is_counted_as_failing() {
    for server in servers() {
        if server.store.is_none() {
            continue; // the proxy speaks HTTP/1.1
        }
        let Uploaded {
            reader,
            nonce,
            trusted,
            summary,
            ..
        } = uploaded(&server);
        // Entries that need several requests (nothing carried in the result itself):
        // each request just within the timeout, all of them not.
        for id in ["p:gen", "p:use", "p:talk"] {
            crate::remote::rewrite_result(&server, &summary, id, |r| {
                for f in &mut r.output_files {
                    f.contents.clear();
                }
                r.stdout_raw.clear();
                r.stderr_raw.clear();
            });
        }

        let upstream = server.url.trim_start_matches("http://").to_string();
        let port = slow_proxy(upstream, Duration::from_millis(700));
        let slow = format!("http://127.0.0.1:{port}");
        let b = remote_workspace(&slow, &nonce, &trusted, "timeout = \"1s\"");
        let mut cmd = b.command(&["run", "--workspace", "-j", "1", "--summary"]);
        let summary = b.path("s.json");
        cmd.arg(&summary);
        for (k, v) in reader.env(&[]) {
            cmd.env(k, v);
        }
        let out = run_bounded(cmd, Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains("the remote cache failed"),
            "no warning: {stderr}"
        );
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        assert!(s["remote"]["last_error"].is_string(), "{}", s["remote"]);
        for id in ["p:gen", "p:use", "p:talk"] {
            assert_eq!(task(&s, id)["state"], "succeeded", "{id}");
        }
    }
}

/// 2 (medium): a trusted key that is a link to `/dev/zero` took all memory at load, a
/// FIFO hung it, and paths outside the workspace were read. A trusted key file is a
/// regular file in the workspace, read no further than a key's size.
#[test]
fn a_trusted_key_file_is_a_small_regular_file_in_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = crate::support::fifo(dir.path());
    for (name, make) in [
        (
            "zero",
            Box::new(|ws: &Ws| {
                std::os::unix::fs::symlink("/dev/zero", ws.path("keys/zero")).unwrap()
            }) as Box<dyn Fn(&Ws)>,
        ),
        (
            "fifo",
            Box::new(move |ws: &Ws| {
                std::os::unix::fs::symlink(&fifo, ws.path("keys/fifo")).unwrap()
            }),
        ),
        ("../outside.pem", Box::new(|_: &Ws| {})),
    ] {
        let ws = Ws::new();
        std::fs::create_dir_all(ws.path("keys")).unwrap();
        make(&ws);
        let key = if name.starts_with("..") {
            name.to_string()
        } else {
            format!("keys/{name}")
        };
        ws.write(
            "wask.toml",
            format!("[workspace]\n\n[cache.remote]\nurl = \"http://127.0.0.1:9\"\ntrusted_keys = [\"{key}\"]\n"),
        );
        let out = run_bounded(ws.command(&["check"]), Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("trusted key"), "{name}: {err}");
    }
}

/// 3 (medium): a user name and password in the URL were taken, from `wask.toml` too,
/// and shown in every warning, the summary, `cache info` and `why`.
#[test]
fn a_url_with_a_password_is_refused() {
    let ws = Ws::new();
    ws.write(
        "wask.toml",
        "[workspace]\n\n[cache.remote]\nurl = \"http://user:hunter2@127.0.0.1:9\"\n",
    );
    let out = ws.wask(&["check"]);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("no user name or password"),
        "{}",
        out.stderr()
    );
    let bare = Ws::new();
    bare.write("wask.toml", "[workspace]\n");
    let env = bare.wask_env(
        &["check"],
        &[("WASK_REMOTE_CACHE", "grpc://u:hunter2@127.0.0.1:9")],
    );
    assert_eq!(env.code(), 2);
    assert!(
        env.stderr().contains("no user name or password"),
        "{}",
        env.stderr()
    );
    // The environment's value is not in any file: it is not echoed.
    assert!(!env.stderr().contains("hunter2"), "{}", env.stderr());
}

/// 4 (medium): text the server controls (a path in an action result) went into wask's
/// warnings raw: escape sequences drew a fake line on the terminal. It is shown
/// escaped, and clipped.
#[test]
fn what_a_server_says_is_never_printed_raw() {
    for server in servers() {
        let user = User::new();
        let ws = remote_workspace(&server.url, &nonce(), &[], "");
        let (run, summary) = user.run(&ws, &["--workspace"], &[]);
        run.expect_code(0);
        let key = task(&summary, "p:gen")["key"].as_str().unwrap().to_string();
        let remote = crate::remote::client(&server);
        let digest = wask_remote::Digest::of(wask_remote::DigestFunction::Sha256, b"x");
        remote
            .write_small_blobs(&[(digest.clone(), b"x".to_vec())])
            .unwrap();
        let entry = wask_remote::entry::RemoteEntry {
            files: vec![],
            stdout: digest.clone(),
            stderr: digest.clone(),
            seal: digest,
            inline: Default::default(),
        };
        let mut result = entry.to_action_result();
        result.output_files[0].path = format!("/\x1b[2K\r    cached p:gen{}", "A".repeat(5000));
        remote
            .update_action_result(&crate::remote::action(&key), &result)
            .unwrap();
        std::fs::remove_dir_all(ws.path(".wask/cache")).unwrap();
        let (run, _) = user.run(&ws, &["p:gen"], &[]);
        run.expect_code(0);
        let err = run.stderr();
        assert!(
            err.contains("not a relative path"),
            "{}: {err}",
            server.name
        );
        assert!(
            !err.contains('\x1b'),
            "{}: an escape sequence reached the terminal",
            server.name
        );
        assert!(
            err.lines().all(|l| l.len() < 2000),
            "{}: a line of {} bytes",
            server.name,
            err.len()
        );
    }
}

/// 6 (low): credential headers other than `Authorization` (a cookie, an API key, a
/// proxy's) and `Host` were taken from `wask.toml`.
#[test]
fn credential_headers_are_refused_in_the_workspace_file() {
    for header in ["Proxy-Authorization", "Cookie", "X-Api-Key", "Host"] {
        let ws = Ws::new();
        ws.write(
            "wask.toml",
            format!("[workspace]\n\n[cache.remote]\nurl = \"http://127.0.0.1:9\"\nheaders = {{ \"{header}\" = \"v\" }}\n"),
        );
        let out = ws.wask(&["check"]);
        assert_eq!(out.code(), 2, "{header}");
        assert!(
            out.stderr().contains("WASK_REMOTE_CACHE_TOKEN"),
            "{header}: {}",
            out.stderr()
        );
    }
}
