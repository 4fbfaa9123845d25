//! A planted secret and a planted account number appear in no file of the data directory, no log
//! line (debug level), and no error answer, whatever the daemon is asked.

mod common;

use http::Method;
use vault_client::Secret;
use vault_client::wire::{Binding, Expect, PutToken};

use common::{Daemon, contains, files};

const PLANTED: &str = "PLANTED-SECRET-c0ffee-4711";
const ACCOUNT: &str = "DE44500105175407324931";

#[tokio::test]
async fn planted_secret_never_reaches_disk_logs_or_errors() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let binding = Binding {
        subject: "user-9".into(),
        bank: "b".into(),
        account: ACCOUNT.into(),
        scope: "payments".into(),
    };
    for i in 0..20 {
        let req = PutToken {
            secret: Secret::from(PLANTED),
            binding: binding.clone(),
            expires_at: None,
            expected_revision: None,
            lease: None,
        };
        c.put_token("acme", &format!("t{i}"), &req)
            .await
            .expect("put");
    }
    let back = c
        .unseal_token(
            "acme",
            "t0",
            Some(Expect {
                account: Some(ACCOUNT.into()),
                ..Expect::default()
            }),
        )
        .await;
    assert_eq!(
        back.expect("unseal").secret.expose_secret(),
        PLANTED.as_bytes()
    );
    let blob = c
        .transit_seal("acme", Secret::from(PLANTED), ACCOUNT)
        .await
        .expect("transit");
    c.transit_unseal("acme", &blob, ACCOUNT)
        .await
        .expect("transit unseal");
    assert!(!blob.contains(PLANTED));

    // Requests that fail while carrying the secret in odd places.
    let bad_bodies = [
        format!(r#"{{"secret":"{PLANTED}","bogus":"{PLANTED}"}}"#),
        format!(r#"{{"secret":{{"x":"{PLANTED}"}},"binding":"{ACCOUNT}"}}"#),
        format!(
            r#"{{"secret":"{PLANTED}","binding":{{"subject":"u","bank":"b","account":"{ACCOUNT}","scope":"s"}},"expected_revision":"{PLANTED}"}}"#
        ),
        format!(
            r#"{{"secret_b64":"{PLANTED}","binding":{{"subject":"u","bank":"b","account":"{ACCOUNT}","scope":"s"}}}}"#
        ),
        format!(
            r#"{{"secret":"{PLANTED}","binding":{{"subject":"u","bank":"b","account":"{ACCOUNT}","scope":"s"}}"#
        ),
    ];
    for body in bad_bodies {
        let (status, answer) = c
            .raw(
                Method::PUT,
                "/v1/tenants/acme/tokens/bad",
                Some(body.into_bytes()),
            )
            .await
            .expect("answered");
        assert_eq!(status, 400);
        for needle in [PLANTED, ACCOUNT] {
            assert!(
                !contains(&answer, needle.as_bytes()),
                "error answer echoes {needle}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    let wrong = Expect {
        account: Some(ACCOUNT.replace('4', "5")),
        ..Expect::default()
    };
    let err = c
        .unseal_token("acme", "t1", Some(wrong))
        .await
        .expect_err("mismatch");
    assert!(!err.to_string().contains(ACCOUNT));

    assert!(daemon.terminate().success());
    let log = daemon.log_text();
    assert!(
        log.contains("route=\"token.put\"") || log.contains("token.put"),
        "debug access lines were written"
    );
    for needle in [PLANTED, ACCOUNT] {
        assert!(!log.contains(needle), "log holds {needle}");
    }
    let data = files(&daemon.root.path().join("data"));
    assert!(!data.is_empty());
    for path in data {
        let bytes = std::fs::read(&path).expect("read");
        for needle in [PLANTED, ACCOUNT] {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{} holds {needle}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn cli_round_trip_reads_secrets_from_stdin_only() {
    let daemon = Daemon::start();
    daemon.client().init().await.expect("init");
    let ok = |args: &[&str], stdin: &[u8]| {
        let out = daemon.cli(None, args, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    ok(&["tenant", "create", "acme"], b"");
    let binding = daemon.binding_file("u", ACCOUNT);
    ok(
        &[
            "token",
            "put",
            "acme",
            "c1",
            "--binding-file",
            &binding,
            "--bank",
            "b",
            "--scope",
            "accounts",
        ],
        format!("{PLANTED}\n").as_bytes(),
    );
    assert_eq!(
        ok(
            &["token", "get", "acme", "c1", "--expect-account-stdin"],
            format!("{ACCOUNT}\n").as_bytes()
        ),
        PLANTED.as_bytes()
    );
    let json: serde_json::Value = serde_json::from_slice(&ok(
        &["--json", "token", "get", "acme", "c1", "--meta"],
        b"",
    ))
    .expect("json");
    assert_eq!(json["revision"], 1);
    assert!(
        !json.to_string().contains(PLANTED),
        "metadata never holds the secret"
    );
    let listed: serde_json::Value =
        serde_json::from_slice(&ok(&["--json", "tenant", "list"], b"")).expect("json");
    assert_eq!(listed["tenants"][0]["tokens"], 1);
    let blob = ok(
        &["transit", "seal", "acme", "--context", "inv-1"],
        b"hello transit",
    );
    let blob = String::from_utf8(blob).expect("utf-8");
    assert_eq!(
        ok(
            &[
                "transit",
                "unseal",
                "acme",
                "--context",
                "inv-1",
                "--sealed",
                blob.trim()
            ],
            b""
        ),
        b"hello transit"
    );
    let out = daemon.cli(
        None,
        &["token", "get", "acme", "c1", "--expect-account-stdin"],
        b"DE00\n",
    );
    assert_eq!(out.status.code(), Some(6), "binding mismatch exit code");
    let out = daemon.cli(
        None,
        &["tenant", "destroy", "acme", "--confirm", "other"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "refused locally");
    ok(&["tenant", "destroy", "acme", "--confirm", "acme"], b"");
    ok(&["completions", "bash"], b"");
}
