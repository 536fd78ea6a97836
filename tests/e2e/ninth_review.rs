//! The ninth outside review: the remote cache again, against the eighth review's fixes.
//! Each test is one attack that worked, and fails on the binary it worked on.

use crate::remote::{Uploaded, action, client, remote_workspace, servers, uploaded};
use crate::support::{Ws, task};

/// R1 (medium): a stream's size was taken from the server, and checked against the
/// signed manifest only after it was downloaded: any size, in memory. Now the sizes
/// are checked first.
#[test]
fn a_stream_of_another_size_than_signed_is_never_downloaded() {
    for server in servers() {
        let Uploaded {
            reader,
            nonce,
            trusted,
            summary,
            ..
        } = uploaded(&server);
        let remote = client(&server);
        let key = task(&summary, "p:talk")["key"]
            .as_str()
            .unwrap()
            .to_string();
        let mut result = remote.get_action_result(&action(&key)).unwrap().unwrap();
        let big = vec![b'x'; 3 << 20];
        let digest = wask_remote::Digest::of(wask_remote::DigestFunction::Sha256, &big);
        remote.write_small_blobs(&[(digest.clone(), big)]).unwrap();
        result.stdout_digest = Some(
            bazel_remote_apis::build::bazel::remote::execution::v2::Digest {
                hash: digest.hash.clone(),
                size_bytes: digest.size as i64,
            },
        );
        remote.update_action_result(&action(&key), &result).unwrap();

        let b = remote_workspace(&server.url, &nonce, &trusted, "");
        let (run, s) = reader.run(&b, &["p:talk"], &[]);
        run.expect_code(0);
        let t = task(&s, "p:talk");
        assert_eq!(t["source"], "fresh", "{}: {}", server.name, run.stderr());
        assert!(
            run.stderr().contains("other sizes"),
            "{}: {}",
            server.name,
            run.stderr()
        );
        assert!(
            t["remote_bytes_down"].as_u64().unwrap() < 1 << 20,
            "{}: the stream was downloaded: {t}",
            server.name
        );
    }
}

/// R3 (low-medium): a trusted key file that is a link out of the workspace was
/// followed and trusted: whoever can write the link's target is trusted.
#[test]
fn a_trusted_key_linked_from_outside_the_workspace_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let pem = outside.path().join("ci.pub.pem");
    std::fs::write(
        &pem,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let ws = Ws::new();
    std::fs::create_dir_all(ws.path("keys")).unwrap();
    std::os::unix::fs::symlink(&pem, ws.path("keys/ci.pem")).unwrap();
    ws.write(
        "wask.toml",
        "[workspace]\n\n[cache.remote]\nurl = \"http://127.0.0.1:9\"\ntrusted_keys = [\"keys/ci.pem\"]\n",
    );
    let out = ws.wask(&["check"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(
        out.stderr().contains("outside the workspace"),
        "{}",
        out.stderr()
    );
}

/// R6, R7 (low): credential headers the deny-list did not name (`x-goog-api-key`,
/// `private-token`) were sent, and a URL's query string (where signed URLs keep their
/// credentials) was taken and shown everywhere.
#[test]
fn credentials_in_header_names_or_url_queries_are_refused() {
    for (line, text) in [
        (
            "headers = { \"X-Goog-Api-Key\" = \"v\" }",
            "WASK_REMOTE_CACHE_TOKEN",
        ),
        (
            "headers = { \"Private-Token\" = \"v\" }",
            "WASK_REMOTE_CACHE_TOKEN",
        ),
    ] {
        let ws = Ws::new();
        ws.write(
            "wask.toml",
            format!("[workspace]\n\n[cache.remote]\nurl = \"http://127.0.0.1:9\"\n{line}\n"),
        );
        let out = ws.wask(&["check"]);
        assert_eq!(out.code(), 2, "{line}");
        assert!(out.stderr().contains(text), "{line}: {}", out.stderr());
    }
    let ws = Ws::new();
    ws.write("wask.toml", "[workspace]\n");
    let out = ws.wask_env(
        &["check"],
        &[(
            "WASK_REMOTE_CACHE",
            "https://bucket.example/cache?X-Amz-Signature=s3cret",
        )],
    );
    assert_eq!(out.code(), 2);
    assert!(out.stderr().contains("no query"), "{}", out.stderr());
    assert!(!out.stderr().contains("s3cret"), "{}", out.stderr());
}

/// R8 (low): a task could list `WASK_REMOTE_CACHE_TOKEN` in `env.from_host` and read
/// the token (and print it into a stream that is uploaded).
#[test]
fn no_task_may_read_wasks_own_credentials() {
    for name in ["WASK_REMOTE_CACHE_TOKEN", "WASK_SIGNING_KEY"] {
        let ws = Ws::new();
        ws.write(
            "wask.toml",
            format!("[workspace]\n\n[project]\nname = \"p\"\n\n[tasks.t]\nmodule = \"x.wasm\"\nenv = {{ from_host = [\"{name}\"] }}\n"),
        );
        let out = ws.wask(&["check"]);
        assert_eq!(out.code(), 2, "{name}");
        assert!(
            out.stderr().contains("wask's own credential"),
            "{name}: {}",
            out.stderr()
        );
    }
}
