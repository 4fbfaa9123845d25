//! Every endpoint of the API, through `vault-client`, against the real daemon.

mod common;

use http::Method;
use vault_client::wire::{BatchItem, Expect, TransitSealItem, TransitUnsealItem, VaultState};
use vault_client::{ApiCode, Error, Secret, Timestamp};

use common::{Daemon, put};

fn code(e: &Error) -> Option<&ApiCode> {
    e.code()
}

#[tokio::test]
async fn lifecycle_endpoints() {
    let daemon = Daemon::start();
    let c = daemon.client();
    assert_eq!(
        c.health().await.expect("health").state,
        VaultState::Uninitialized
    );
    let (status, _) = c
        .raw(Method::GET, "/v1/sys/health", None)
        .await
        .expect("raw");
    assert_eq!(status, 501);
    let err = c.create_tenant("acme").await.expect_err("uninitialized");
    assert_eq!(code(&err), Some(&ApiCode::Uninitialized));

    let init = c.init().await.expect("init");
    assert_eq!(init.master_key_version, 1);
    assert_eq!(
        code(&c.init().await.expect_err("twice")),
        Some(&ApiCode::Conflict)
    );
    let status = c.status().await.expect("status");
    assert_eq!(status.vault_id.as_deref(), Some(init.vault_id.as_str()));
    assert_eq!(
        (status.kms.provider.as_str(), status.kms.key_id.as_str()),
        ("local", "test")
    );
    assert_eq!(status.tenants, Some(0));

    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "tok", &put("s3cret", "DE01"))
        .await
        .expect("put");
    assert_eq!(c.seal().await.expect("seal").state, VaultState::Sealed);
    let (status, _) = c
        .raw(Method::GET, "/v1/sys/health", None)
        .await
        .expect("raw");
    assert_eq!(status, 503);
    let err = c
        .unseal_token("acme", "tok", None)
        .await
        .expect_err("sealed");
    assert_eq!(code(&err), Some(&ApiCode::Sealed));
    if let Error::Api { status, .. } = err {
        assert_eq!(status, 503);
    }
    assert_eq!(
        c.unseal().await.expect("unseal").state,
        VaultState::Unsealed
    );
    let back = c
        .unseal_token("acme", "tok", None)
        .await
        .expect("works again");
    assert_eq!(back.secret.expose_secret(), b"s3cret");

    let metrics = c.metrics().await.expect("metrics");
    assert!(
        metrics.contains("vaultd_requests_total{route=\"token.put\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vaultd_kms_calls_total{provider=\"local\"} 2"),
        "init + unseal: {metrics}"
    );
    assert!(metrics.contains("vaultd_state 2"));
}

#[tokio::test]
async fn tenant_and_token_endpoints() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    let acme = c.create_tenant("acme").await.expect("create");
    assert_eq!(acme.current_key_version, 1);
    assert_eq!(
        c.create_tenant("acme")
            .await
            .expect("idempotent")
            .created_at,
        acme.created_at
    );
    c.create_tenant("globex").await.expect("create");

    let mut req = put("access-1", "DE01");
    req.expires_at = Some(Timestamp(Timestamp::now().unix() + 3600));
    req.expected_revision = Some(0);
    let stored = c.put_token("acme", "consent-1", &req).await.expect("put");
    assert_eq!((stored.revision, stored.key_version), (1, 1));
    let err = c
        .put_token("acme", "consent-1", &req)
        .await
        .expect_err("exists");
    assert_eq!(code(&err), Some(&ApiCode::Conflict));
    req.expected_revision = Some(1);
    req.secret = Secret::new(vec![0, 159, 146, 150]);
    assert_eq!(
        c.put_token("acme", "consent-1", &req)
            .await
            .expect("cas")
            .revision,
        2
    );

    let expect = Expect {
        account: Some("DE01".into()),
        ..Expect::default()
    };
    let back = c
        .unseal_token("acme", "consent-1", Some(expect))
        .await
        .expect("unseal");
    assert_eq!(back.secret.expose_secret(), [0, 159, 146, 150]);
    assert_eq!(back.revision, 2);
    let wrong = Expect {
        account: Some("DE02".into()),
        ..Expect::default()
    };
    let err = c
        .unseal_token("acme", "consent-1", Some(wrong))
        .await
        .expect_err("mismatch");
    assert_eq!(code(&err), Some(&ApiCode::BindingMismatch));

    let meta = c.token("acme", "consent-1").await.expect("meta");
    assert_eq!(
        (
            meta.revision,
            meta.key_version,
            meta.binding.account.as_str()
        ),
        (2, 1, "DE01")
    );
    for i in 0..5 {
        c.put_token("acme", &format!("t{i}"), &put("x", "DE01"))
            .await
            .expect("put");
    }
    let page = c.list_tokens("acme", None, Some(4)).await.expect("list");
    assert_eq!(page.items.len(), 4);
    let rest = c
        .list_tokens("acme", page.next.as_deref(), Some(4))
        .await
        .expect("list");
    assert_eq!(rest.items.len(), 2);
    assert!(rest.next.is_none());

    // Another tenant sees nothing of acme's tokens.
    let err = c
        .unseal_token("globex", "consent-1", None)
        .await
        .expect_err("other tenant");
    assert_eq!(code(&err), Some(&ApiCode::NotFound));
    assert_eq!(
        code(&c.tenant("nobody").await.expect_err("missing")),
        Some(&ApiCode::NotFound)
    );

    assert!(c.delete_token("acme", "t0").await.expect("delete").deleted);
    assert_eq!(
        code(&c.token("acme", "t0").await.expect_err("gone")),
        Some(&ApiCode::NotFound)
    );
    let info = c.tenant("acme").await.expect("show");
    assert_eq!((info.tokens, info.key_versions[0].records), (5, 5));
    assert_eq!(c.list_tenants().await.expect("list").tenants.len(), 2);

    let (status, _) = c
        .raw(Method::DELETE, "/v1/tenants/acme", None)
        .await
        .expect("raw");
    assert_eq!(status, 400, "destroy needs ?confirm=acme");
    let gone = c.destroy_tenant("acme").await.expect("destroy");
    assert_eq!((gone.destroyed_key_versions, gone.deleted_tokens), (1, 5));
    assert_eq!(
        code(&c.tenant("acme").await.expect_err("destroyed")),
        Some(&ApiCode::NotFound)
    );
}

#[tokio::test]
async fn transit_endpoints_single_and_batch() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.create_tenant("globex").await.expect("tenant");
    let blob = c
        .transit_seal("acme", Secret::from("iban DE89"), "invoice-1")
        .await
        .expect("seal");
    assert!(blob.starts_with("vault:v1:"), "{blob}");
    let back = c
        .transit_unseal("acme", &blob, "invoice-1")
        .await
        .expect("unseal");
    assert_eq!(back.expose_secret(), b"iban DE89");
    let err = c
        .transit_unseal("acme", &blob, "invoice-2")
        .await
        .expect_err("other context");
    assert_eq!(code(&err), Some(&ApiCode::DecryptionFailed));
    let err = c
        .transit_unseal("globex", &blob, "invoice-1")
        .await
        .expect_err("other tenant");
    assert_eq!(code(&err), Some(&ApiCode::DecryptionFailed));

    // A malformed item (neither form) is a malformed body: refused whole, nothing sealed.
    let (status, body) = c
        .raw(
            Method::POST,
            "/v1/tenants/acme/seal",
            Some(br#"{"items":[{"plaintext":"a","context":"c1"},{"context":"bad"}]}"#.to_vec()),
        )
        .await
        .expect("raw");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("plaintext (UTF-8 text) or plaintext_b64"),
        "{text}"
    );
    // An item that fails when sealed fails alone.
    let items = vec![
        TransitSealItem::new("a", "c1"),
        TransitSealItem::new("b", "x".repeat(2000)),
        TransitSealItem::new(Secret::new(vec![0xff, 0]), "c3"),
    ];
    let sealed = c
        .transit_seal_batch("acme", items)
        .await
        .expect("batch seal");
    let blobs: Vec<String> = sealed
        .iter()
        .map(|r| match r {
            BatchItem::Done(s) => s.sealed.clone(),
            BatchItem::Failed { error } => format!("error:{}", error.code),
        })
        .collect();
    assert_eq!(blobs[1], "error:invalid");
    let unseal = vec![
        TransitUnsealItem {
            sealed: blobs[0].clone(),
            context: "c1".into(),
        },
        TransitUnsealItem {
            sealed: blobs[2].clone(),
            context: "c3".into(),
        },
        TransitUnsealItem {
            sealed: blobs[0].clone(),
            context: "wrong".into(),
        },
    ];
    let opened = c
        .transit_unseal_batch("acme", unseal)
        .await
        .expect("batch unseal");
    match &opened[0] {
        BatchItem::Done(p) => assert_eq!(p.plaintext.expose_secret(), b"a"),
        BatchItem::Failed { error } => panic!("{error:?}"),
    }
    match &opened[1] {
        BatchItem::Done(p) => assert_eq!(p.plaintext.expose_secret(), [0xff, 0]),
        BatchItem::Failed { error } => panic!("{error:?}"),
    }
    assert!(matches!(&opened[2], BatchItem::Failed { error } if error.code == "decryption_failed"));
}

/// method, path, body, expected status, expected error code.
type BadCase = (Method, &'static str, Option<Vec<u8>>, u16, &'static str);

#[tokio::test]
async fn bad_input_gets_its_error_and_leaves_the_vault_healthy() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "keep", &put("kept-secret", "DE01"))
        .await
        .expect("put");

    let good = br#"{"secret":"s","binding":{"subject":"u","bank":"b","account":"a","scope":"s"}}"#
        .to_vec();
    let cases: Vec<BadCase> = vec![
        (Method::PUT, "/v1/tenants/acme/tokens/big", Some(vec![b' '; 64 * 1024 + 1]), 413, "too_large"),
        (Method::PUT, "/v1/tenants/acme/tokens/x", Some(b"{not json".to_vec()), 400, "invalid"),
        (Method::PUT, "/v1/tenants/acme/tokens/x", Some([good.as_slice(), b"trailing"].concat()), 400, "invalid"),
        (
            Method::PUT,
            "/v1/tenants/acme/tokens/x",
            Some(br#"{"secret":"s","extra":1,"binding":{"subject":"u","bank":"b","account":"a","scope":"s"}}"#.to_vec()),
            400,
            "invalid",
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/tokens/x",
            Some(br#"{"secret":"s","secret_b64":"cw==","binding":{"subject":"u","bank":"b","account":"a","scope":"s"}}"#.to_vec()),
            400,
            "invalid",
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/tokens/x",
            Some(br#"{"secret_b64":"!!","binding":{"subject":"u","bank":"b","account":"a","scope":"s"}}"#.to_vec()),
            400,
            "invalid",
        ),
        (Method::PUT, "/v1/tenants/acme/tokens/x", Some(br#"{"secret":"s"}"#.to_vec()), 400, "invalid"),
        (Method::PUT, "/v1/tenants/a%2Fb/tokens/x", Some(good.clone()), 400, "invalid"),
        (Method::PUT, "/v1/tenants/../tokens/x", Some(good.clone()), 400, "invalid"),
        (Method::PUT, "/v1/tenants/acme/tokens/..", Some(good.clone()), 400, "invalid"),
        (Method::PUT, "/v1/tenants/acme/tokens/a%00b", Some(good.clone()), 400, "invalid"),
        (Method::PUT, "/v1/tenants/acme/tokens/a%0Ab", Some(good.clone()), 400, "invalid"),
        (Method::GET, "/v1/tenants/acme/tokens?limit=0", None, 400, "invalid"),
        (Method::GET, "/v1/tenants/acme/tokens?limit=x", None, 400, "invalid"),
        (Method::GET, "/v1/tenants/acme/tokens?bogus=1", None, 400, "invalid"),
        (Method::POST, "/v1/tenants/acme/unseal", Some(br#"{"sealed":"nope"}"#.to_vec()), 400, "invalid"),
        (Method::POST, "/v1/sys/init", Some(br#"{"x":1}"#.to_vec()), 400, "invalid"),
        (Method::PATCH, "/v1/tenants/acme/tokens/keep", None, 405, "method_not_allowed"),
        (Method::GET, "/v1/nothing/here", None, 404, "not_found"),
        (Method::GET, "/v2/sys/health", None, 404, "not_found"),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let (status, answer) = c.raw(method.clone(), path, body).await.expect("answered");
        let json: serde_json::Value = serde_json::from_slice(&answer).expect("error body is JSON");
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{method} {path}: {json}"
        );
    }
    let (status, _) = c
        .raw(Method::GET, "/v1/sys/health", None)
        .await
        .expect("health");
    assert_eq!(status, 200);
    let info = c.tenant("acme").await.expect("show");
    assert_eq!(info.tokens, 1, "bad requests stored nothing");
    let back = c
        .unseal_token("acme", "keep", None)
        .await
        .expect("still there");
    assert_eq!(back.secret.expose_secret(), b"kept-secret");
}

/// docs/api.md's table of error codes lists exactly the codes the daemon answers with
/// (`vault_client::API_CODES`, which the daemon's errors are held to).
#[test]
fn the_api_docs_list_every_error_code_and_no_other() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let table = docs
        .split("| code | HTTP status | meaning |")
        .nth(1)
        .expect("the error table");
    let mut documented: Vec<String> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    documented.sort();
    let mut codes: Vec<String> = vault_client::API_CODES
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    codes.sort();
    assert_eq!(documented, codes);
}

/// One INFO access line per request (`target: access`): its request id, route, status, caller
/// and duration, and never the token it carried; no colour codes when stderr is a file.
#[tokio::test]
async fn every_request_has_one_access_log_line_with_its_request_id_and_no_secret() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let planted = "PLANTED-ACCESS-LOG-SECRET-7781";
    c.put_token("acme", "t1", &put(planted, "DE00"))
        .await
        .expect("put");
    let (_, request) = c
        .audit_with_request_id(&vault_client::AuditQuery {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .expect("audit");
    let request = request.expect("x-request-id");
    let log = daemon.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" access: request") && l.contains(&format!("request=\"{request}\"")))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains("route=\"audit.list\"") || line.contains("route=audit.list"),
        "{line}"
    );
    assert!(line.contains("status=200"), "{line}");
    assert!(line.contains("micros="), "{line}");
    assert!(line.contains("uid=0"), "{line}");
    assert!(
        log.contains("route=\"token.put\"") || log.contains("route=token.put"),
        "{log}"
    );
    assert!(!log.contains(planted), "a secret in the log");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file");
}

/// Stopping a daemon that was never initialized is a clean stop: nothing to seal, no warning.
#[tokio::test]
async fn stopping_an_uninitialized_daemon_warns_of_nothing() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    assert_eq!(
        c.health().await.expect("health").state,
        VaultState::Uninitialized
    );
    assert!(daemon.terminate().success());
    let log = daemon.log_text();
    assert!(!log.contains("sealing at shutdown failed"), "{log}");
    assert!(!log.contains(" WARN "), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// `vaultd --check-config` with `VAULTD_*` variables: a key set by one takes effect, and a bad
/// value or an unknown variable stops it with the variable's name (docs/operator-guide.md,
/// "Environment").
#[tokio::test]
async fn check_config_takes_keys_from_the_environment_and_names_a_bad_one() {
    let mut daemon = Daemon::start();
    assert!(daemon.terminate().success());
    let check = |vars: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(common::bin("vaultd"));
        cmd.arg("--check-config")
            .arg("--config")
            .arg(&daemon.config)
            .env_remove("VAULTD_SOCKET")
            .env_remove("VAULT_SOCKET");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("vaultd --check-config");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let elsewhere = daemon.socket.with_file_name("from-env.sock");
    let (code, said) = check(&[
        ("VAULTD_SOCKET", elsewhere.to_str().expect("utf8")),
        ("VAULTD_MAX_CONNECTIONS", "64"),
        ("VAULTD_SEAL_ON_ALARM", "true"),
    ]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("socket {}", elsewhere.display())),
        "{said}"
    );
    // A section's key: the KMS key the file names is replaced, and then it is missing.
    let (code, said) = check(&[("VAULTD_KMS__KEY_ID", "missing")]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("missing not found"), "{said}");
    for (vars, why) in [
        (&[("VAULTD_MAX_CONNECTIONS", "lots")][..], "invalid type"),
        (&[("VAULTD_SEAL_ON_ALARMS", "true")], "unknown field"),
        (&[("VAULTD_POLICY", "[{ name = ")], "is not a TOML value"),
        (&[("VAULTD_kms__key_id", "x")], "VAULTD_SECTION__KEY"),
    ] {
        let (code, said) = check(vars);
        assert_eq!(code, Some(1), "{said}");
        assert!(
            said.contains("would not start") && said.contains(vars[0].0) && said.contains(why),
            "{why}: {said}"
        );
    }
}

/// `vaultd --check-config` says whether the configuration would start, and binds nothing.
#[tokio::test]
async fn check_config_says_whether_the_daemon_would_start_and_binds_nothing() {
    // Stopped, not dropped: its directory (and the KMS key file the config names) stays.
    let mut daemon = Daemon::start();
    assert!(daemon.terminate().success());
    let config = std::fs::read_to_string(&daemon.config).expect("config");
    let socket = daemon.socket.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |text: &str| {
        let path = dir.path().join("vaultd.toml");
        std::fs::write(&path, text).expect("write");
        std::process::Command::new(common::bin("vaultd"))
            .arg("--check-config")
            .arg("--config")
            .arg(&path)
            .env_remove("VAULTD_SOCKET")
            .env_remove("VAULT_SOCKET")
            .output()
            .expect("vaultd --check-config")
    };
    let good = check(&config);
    let said = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(said.contains("configuration OK"), "{said}");
    assert!(said.contains("KMS local, key test"), "{said}");
    assert!(!socket.exists(), "no socket bound");
    for (broken, why) in [
        (format!("{config}\nno_such_key = 1\n"), "unknown field"),
        (
            config.replace("uids = [0]", "users = [\"no-such-user-4711\"]"),
            "no user named \"no-such-user-4711\"",
        ),
        (
            config.replace("key_id = \"test\"", "key_id = \"missing\""),
            "missing not found",
        ),
    ] {
        let out = check(&broken);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("would not start") && err.contains(why),
            "{why}: {err}"
        );
    }
}
