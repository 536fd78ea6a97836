//! The remote cache over TLS (issue 12): nginx (`https://`) and BuildGrid (`grpcs://`)
//! started by `scripts/test.sh` with certificates of a CA made for the run, each
//! requiring a client certificate. A workspace naming the CA file and its client
//! certificate writes and hits them; a server its roots do not vouch for, or one that
//! refuses it for want of a client certificate, costs a warning, never the run.

use crate::remote::{User, WRITE, missing, nonce, remote_workspace};
use crate::support::{Ws, task};
use std::path::PathBuf;

struct TlsServer {
    name: &'static str,
    url: String,
}

fn tls_servers() -> Option<(Vec<TlsServer>, PathBuf)> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(dir) = env("WASK_TEST_TLS_DIR") else {
        missing("WASK_TEST_TLS_DIR (the TLS servers' certificates)");
        return None;
    };
    let mut found = Vec::new();
    for (name, var) in [
        ("nginx (HTTPS)", "WASK_TEST_HTTPS_CACHE"),
        ("BuildGrid (gRPC over TLS)", "WASK_TEST_GRPCS"),
    ] {
        match env(var) {
            Some(url) => found.push(TlsServer { name, url }),
            None => missing(var),
        }
    }
    Some((found, PathBuf::from(dir)))
}

/// The workspace's TLS lines, with the files copied in under `certs/`.
fn tls_settings(ws: &Ws, tls: &std::path::Path, ca: Option<&str>, client: bool) -> String {
    let mut lines = String::new();
    if let Some(ca) = ca {
        ws.write(
            "certs/ca.pem",
            std::fs::read_to_string(tls.join(ca)).unwrap(),
        );
        lines.push_str("ca_file = \"certs/ca.pem\"\n");
    }
    if client {
        ws.write(
            "certs/client.pem",
            std::fs::read_to_string(tls.join("client.pem")).unwrap(),
        );
        // The private key stays outside the workspace (wask refuses one inside).
        lines.push_str(&format!(
            "client_cert = \"certs/client.pem\"\nclient_key = \"{}\"\n",
            tls.join("client.key").display()
        ));
    }
    lines
}

/// The workspace of `remote_workspace` whose `[cache.remote]` also holds TLS settings.
fn tls_workspace(
    url: &str,
    nonce: &str,
    trusted: &[String],
    tls: &std::path::Path,
    ca: Option<&str>,
    client: bool,
) -> Ws {
    let ws = remote_workspace(url, nonce, trusted, "");
    let lines = tls_settings(&ws, tls, ca, client);
    let toml = std::fs::read_to_string(ws.path("wask.toml")).unwrap();
    ws.write("wask.toml", format!("{toml}{lines}"));
    ws
}

/// With the CA file and a client certificate: a writer uploads over mutual TLS, and a
/// copy elsewhere gets every task as a remote hit with the writer's bytes.
#[test]
fn a_cache_over_mutual_tls_is_written_and_hit() {
    let Some((servers, tls)) = tls_servers() else {
        return;
    };
    for server in servers {
        let (writer, reader) = (User::new(), User::new());
        let nonce = nonce();
        let probe = remote_workspace(&server.url, &nonce, &[], "");
        let trusted = [writer.public_pem(&probe)];
        let a = tls_workspace(&server.url, &nonce, &trusted, &tls, Some("ca.pem"), true);
        let (run, summary) = writer.run(&a, &["--workspace"], &[WRITE]);
        run.expect_code(0);
        assert_eq!(
            summary["remote"]["uploaded"],
            3,
            "{}: {summary:#}\n{}",
            server.name,
            run.stderr()
        );
        let b = tls_workspace(&server.url, &nonce, &trusted, &tls, Some("ca.pem"), true);
        let (hit, summary) = reader.run(&b, &["--workspace"], &[]);
        hit.expect_code(0);
        for id in ["p:gen", "p:use", "p:talk"] {
            assert_eq!(
                task(&summary, id)["hit"],
                "remote",
                "{}: {id}\n{}",
                server.name,
                hit.stderr()
            );
        }
        assert_eq!(
            std::fs::read(b.path("out/a.txt")).unwrap(),
            std::fs::read(a.path("out/a.txt")).unwrap()
        );
    }
}

/// No CA file (the system's roots do not know the run's CA), another CA's file, and
/// the right CA without a client certificate: each run succeeds with every task run
/// locally, says the remote failed with a hint at the setting to change, and uploads
/// nothing.
#[test]
fn a_server_not_vouched_for_or_refusing_a_client_without_a_certificate_costs_a_warning() {
    let Some((servers, tls)) = tls_servers() else {
        return;
    };
    for server in servers {
        for (ca, client, case, hint) in [
            (None, true, "no CA file", "name its CA in `ca_file`"),
            (
                Some("other-ca.pem"),
                true,
                "another CA",
                "not signed by the CA in `ca_file`",
            ),
            (
                Some("ca.pem"),
                false,
                "no client certificate",
                "set `client_cert`",
            ),
        ] {
            let user = User::new();
            let ws = tls_workspace(&server.url, &nonce(), &[], &tls, ca, client);
            let (run, summary) = user.run(&ws, &["--workspace"], &[WRITE]);
            run.expect_code(0);
            let what = format!("{} ({case})", server.name);
            assert!(
                run.stderr().contains("the remote cache failed"),
                "{what}: {}",
                run.stderr()
            );
            assert!(run.stderr().contains(hint), "{what}: {}", run.stderr());
            assert_eq!(summary["remote"]["uploaded"], 0, "{what}: {summary:#}");
            for id in ["p:gen", "p:use", "p:talk"] {
                assert_eq!(task(&summary, id)["source"], "fresh", "{what}: {id}");
            }
        }
    }
}
