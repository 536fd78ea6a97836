//! The tenth outside review (remote cache: inline blobs, lookups beyond `--jobs`, TLS,
//! RESOURCE_EXHAUSTED): each attack that worked on the binary it attacked, as a test
//! that fails there and passes now.

use crate::eighth_review::slow_proxy_telling;
use crate::remote::{
    Uploaded, User, remote_workspace, rewrite_result, run_bounded, servers, uploaded,
};
use crate::support::{Ws, task};
use std::time::Duration;

/// 1 (medium-high): a `client_key` inside the workspace was an ordinary file a task
/// could declare as an input, copy into an output and so upload. Now a client key
/// inside the workspace (or reached from it through a link) is refused at load.
#[test]
fn a_client_key_inside_the_workspace_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("me.key"), "not really a key\n").unwrap();
    for (key, link) in [("certs/me.key", false), ("certs/linked.key", true)] {
        let ws = Ws::new();
        ws.write("certs/me.pem", "a certificate\n");
        if link {
            std::os::unix::fs::symlink(outside.path().join("me.key"), ws.path(key)).unwrap();
        } else {
            ws.write(key, "-----BEGIN PRIVATE KEY-----\n");
        }
        ws.write(
            "wask.toml",
            format!("[workspace]\n\n[cache.remote]\nurl = \"https://127.0.0.1:9\"\nclient_cert = \"certs/me.pem\"\nclient_key = \"{key}\"\n"),
        );
        let out = run_bounded(ws.command(&["check"]), Duration::from_secs(60));
        let err = String::from_utf8_lossy(&out.stderr);
        if link {
            // A link out of the workspace is where the key really is: allowed.
            assert!(!err.contains("lies inside the workspace"), "{key}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{key}: {err}");
            assert!(err.contains("lies inside the workspace"), "{key}: {err}");
        }
    }
}

/// 2 (medium): `ca_file`, `client_cert` and `client_key` were read without a bound and
/// opened blocking: a FIFO hung the run past SIGTERM, `/dev/zero` took all memory. Now
/// each is a small regular file, or the run stops at once with an error naming it.
#[test]
fn tls_files_are_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = crate::support::fifo(dir.path());
    // The FIFO first: the attacked binary hangs on it (and is killed) before it can
    // reach `/dev/zero`, which would take all its memory.
    for (setting, path) in [
        ("ca_file", fifo.to_str().unwrap()),
        ("ca_file", "/dev/zero"),
        ("client_cert", "/dev/zero"),
    ] {
        let ws = Ws::new();
        let more = if setting == "client_cert" {
            format!("client_cert = \"{path}\"\nclient_key = \"{path}\"\n")
        } else {
            format!("{setting} = \"{path}\"\n")
        };
        ws.write(
            "wask.toml",
            format!("[workspace]\n\n[project]\nname = \"p\"\n\n[cache.remote]\nurl = \"https://127.0.0.1:9\"\ntimeout = \"1s\"\n{more}"),
        );
        let out = run_bounded(ws.command(&["run", "--workspace"]), Duration::from_secs(60));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{setting} = {path}: {err}");
        assert!(
            err.contains("not a regular file") && err.contains(setting),
            "{setting} = {path}: {err}"
        );
    }
}

/// The entries in a workspace's local cache.
fn local_entries(ws: &Ws) -> usize {
    walkdir::WalkDir::new(ws.path(".wask/cache"))
        .min_depth(2)
        .max_depth(2)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_dir() && e.file_name().len() == 64)
        .count()
}

/// 3 (low-medium): a SIGTERM while lookups were in flight was ignored until they ended,
/// and the hits they brought were stored after it. Now a cancelled run asks nothing
/// more, stores nothing it downloads after the signal, and does not wait for uploads.
#[test]
fn a_cancelled_run_stores_nothing_the_remote_sends_after_the_signal() {
    for server in servers() {
        if server.store.is_none() {
            continue; // the proxy speaks HTTP/1.1
        }
        let Uploaded {
            reader,
            nonce,
            trusted,
            ..
        } = uploaded(&server);
        let (tell, told) = std::sync::mpsc::channel();
        let upstream = server.url.trim_start_matches("http://").to_string();
        let port = slow_proxy_telling(upstream, Duration::from_secs(3), Some(tell));
        let b = remote_workspace(
            &format!("http://127.0.0.1:{port}"),
            &nonce,
            &trusted,
            "timeout = \"20s\"",
        );
        let mut cmd = b.command(&["run", "--workspace"]);
        for (k, v) in reader.env(&[]) {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A lookup is in flight once the proxy holds a request for an action result.
        loop {
            let line = told
                .recv_timeout(Duration::from_secs(60))
                .expect("no lookup reached the server");
            if line.starts_with("GET /ac/") {
                break;
            }
        }
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(143),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            local_entries(&b),
            0,
            "entries stored after the signal: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// 4 (low-medium): the requests of one entry could take more than the timeout in all
/// (each started before the deadline was allowed to run its own timeout) and the entry
/// was still a hit. Now a request that ends past the entry's deadline makes the lookup
/// a failure.
#[test]
fn an_entry_whose_requests_end_past_the_timeout_is_a_failure() {
    for server in servers() {
        if server.store.is_none() {
            continue;
        }
        let Uploaded {
            reader,
            nonce,
            trusted,
            summary,
            ..
        } = uploaded(&server);
        // gen's output no longer travels in its result: a hit of it is two requests.
        rewrite_result(&server, &summary, "p:gen", |r| {
            for f in &mut r.output_files {
                if f.path == "out/a.txt" {
                    f.contents.clear();
                }
            }
        });
        let upstream = server.url.trim_start_matches("http://").to_string();
        let port = slow_proxy_telling(upstream, Duration::from_millis(650), None);
        let b = remote_workspace(
            &format!("http://127.0.0.1:{port}"),
            &nonce,
            &trusted,
            "timeout = \"1s\"",
        );
        let (run, s) = reader.run(&b, &["p:gen"], &[]);
        run.expect_code(0);
        assert_eq!(
            task(&s, "p:gen")["source"],
            "fresh",
            "{}: {}",
            server.name,
            run.stderr()
        );
        assert!(
            run.stderr().contains("the remote cache failed"),
            "{}",
            run.stderr()
        );
    }
}

/// 5 (low, a design note): `WASK_REMOTE_CACHE_TOKEN` went in clear text to whatever
/// `http://` or `grpc://` server a workspace named. Now a token is sent only over TLS or
/// to a server on this machine; otherwise the run says so before any request.
#[test]
fn a_token_is_never_sent_in_clear_text_across_a_network() {
    for url in ["http://192.0.2.1:8080", "grpc://192.0.2.1:9092"] {
        let user = User::new();
        let ws = remote_workspace(url, &crate::remote::nonce(), &[], "timeout = \"1s\"");
        let out = run_bounded(
            {
                let mut cmd = ws.command(&["run", "--workspace"]);
                for (k, v) in user.env(&[("WASK_REMOTE_CACHE_TOKEN", "s3cret-token")]) {
                    cmd.env(k, v);
                }
                cmd
            },
            Duration::from_secs(60),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{url}: {err}");
        assert!(err.contains("clear text"), "{url}: {err}");
        assert!(!err.contains("s3cret-token"), "{url}: {err}");
    }
    // A loopback server may be plain.
    let user = User::new();
    let ws = remote_workspace(
        "http://127.0.0.1:9",
        &crate::remote::nonce(),
        &[],
        "timeout = \"1s\"",
    );
    let (run, _) = user.run(&ws, &["--workspace"], &[("WASK_REMOTE_CACHE_TOKEN", "t")]);
    run.expect_code(0);
}
