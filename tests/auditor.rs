//! The auditor grant (`audit:read` and `keys:metadata`, docs/operator-guide.md) answers the
//! auditor's questions through `vault-cli` alone, from its output (docs/auditor-guide.md):
//! (1) when each key was last rotated and which records still sit under older versions;
//! (2) who unsealed consent X between two dates; (3) that the log was not altered. It reads no
//! token, tells no decoy apart, changes nothing. `--op` takes only operation names the daemon
//! writes, or prefixes, and `--format csv` is RFC 4180.

mod common;

use std::process::Output;

use common::{AUDITOR, AUDITOR_RULE, Daemon, put};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", stdout(out), stderr(out));
    stdout(out)
}

/// The value of the `name  value` line `name` of a CLI answer.
fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with("  ")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {name} line in:\n{text}"))
}

/// Parses CSV output into its header and rows.
fn csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[tokio::test]
async fn the_auditor_grant_answers_key_rotation_who_unsealed_and_integrity_from_the_cli() {
    let daemon = Daemon::start_configured("", AUDITOR_RULE);
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    for i in 0..3 {
        c.put_token(
            "acme",
            &format!("consent-{i}"),
            &put(&format!("s{i}"), "DE00"),
        )
        .await
        .expect("put");
    }
    c.rotate_tenant("acme").await.expect("rotate");
    c.put_token("acme", "consent-3", &put("s3", "DE00"))
        .await
        .expect("put under v2");
    let before = vault_client::Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    c.unseal_token("acme", "consent-1", None)
        .await
        .expect("unseal");
    let after = vault_client::Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    c.unseal_token("acme", "consent-1", None)
        .await
        .expect("a later unseal, outside the window");
    let auditor = |args: &[&str]| daemon.cli(Some(AUDITOR), args, b"");

    // (1) Key rotation: when, and which records sit under an older version.
    let events = ok(&auditor(&[
        "--format", "csv", "keys", "history", "--tenant", "acme",
    ]));
    let (header, rows) = csv(&events);
    assert_eq!(header[..4], ["SEQ", "TIME", "ACTOR", "EVENT"]);
    let rotated: Vec<&Vec<String>> = rows.iter().filter(|r| r[3] == "data_key_rotated").collect();
    assert_eq!(rotated.len(), 1, "{events}");
    assert_eq!(rotated[0][5], "v1->v2 m1", "{events}");
    let versions = ok(&auditor(&[
        "--format",
        "csv",
        "keys",
        "history",
        "--tenant",
        "acme",
        "--versions",
    ]));
    let (header, rows) = csv(&versions);
    assert_eq!(header[..4], ["TENANT", "VERSION", "CURRENT", "RECORDS"]);
    let by_version: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[2].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        by_version,
        [("1", "no", "3"), ("2", "yes", "1")],
        "{versions}"
    );

    // (2) Who unsealed consent-1 between two dates.
    let since = before.to_string();
    let until = after.to_string();
    let found = ok(&auditor(&[
        "--format",
        "csv",
        "audit",
        "search",
        "--op",
        "token.unseal",
        "--token",
        "consent-1",
        "--since",
        &since,
        "--until",
        &until,
    ]));
    let (header, rows) = csv(&found);
    assert_eq!(header[4], "actor");
    assert_eq!(
        rows.len(),
        1,
        "exactly the unseal inside the window: {found}"
    );
    assert_eq!(rows[0][5], "token.unseal");
    assert!(
        rows[0][4].starts_with("0:0/"),
        "the operator's uid: {found}"
    );
    assert_eq!(rows[0][8], "ok");

    // (3) The log was not altered.
    let verified = ok(&auditor(&["audit", "verify", "--full"]));
    assert!(verified.contains("verification    ok"), "{verified}");

    // --op: a misspelt name is refused (exit 2) with the names it may have meant; a prefix and
    // repeats select the union.
    let typo = auditor(&["audit", "search", "--op", "token.unsel"]);
    assert_eq!(typo.status.code(), Some(2), "{}", stderr(&typo));
    assert!(stderr(&typo).contains("token.unseal"), "{}", stderr(&typo));
    let keys = ok(&auditor(&[
        "--format",
        "csv",
        "audit",
        "search",
        "--op",
        "tenant.keys.",
        "--op",
        "tenant.create",
    ]));
    let (_, rows) = csv(&keys);
    let ops: Vec<&str> = rows.iter().map(|r| r[5].as_str()).collect();
    assert_eq!(ops, ["tenant.create", "tenant.keys.rotate"], "{keys}");
    // the daemon refuses an unknown op too, for callers other than vault-cli
    let err = daemon
        .client()
        .audit(&vault_client::AuditQuery {
            op: Some("token.unsel".into()),
            ..Default::default()
        })
        .await
        .expect_err("unknown op");
    assert!(err.to_string().contains("docs/audit-log.md"), "{err}");

    // The grant reads no token, tells no decoy apart, and changes nothing.
    let read = auditor(&["token", "get", "acme", "consent-1"]);
    assert_eq!(read.status.code(), Some(4), "{}", stderr(&read));
    let meta = auditor(&["--json", "token", "get", "acme", "consent-1", "--meta"]);
    assert_eq!(meta.status.code(), Some(4), "{}", stderr(&meta));
    let rotate = auditor(&["keys", "rotate", "tenant", "acme"]);
    assert_eq!(rotate.status.code(), Some(4), "{}", stderr(&rotate));
    // --format csv where there is no table to give is a usage error
    let status = auditor(&["--format", "csv", "status"]);
    assert_eq!(status.status.code(), Some(2), "{}", stderr(&status));
}

#[tokio::test]
async fn an_erasure_receipt_verifies_offline_and_a_changed_byte_does_not() {
    let daemon = Daemon::start_configured("", AUDITOR_RULE);
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    for i in 0..4 {
        c.put_token("acme", &format!("consent-{i}"), &put("s", "DE00"))
            .await
            .expect("put");
    }
    c.rotate_tenant("acme").await.expect("rotate");
    let dir = tempfile::tempdir().expect("tempdir");
    // The world-readable parent lets the auditor's uid write its files there.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let at = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let destroyed = ok(&daemon.cli(
        None,
        &[
            "tenant",
            "destroy",
            "acme",
            "--confirm",
            "acme",
            "--receipt",
            &at("receipt"),
        ],
        b"",
    ));
    assert!(destroyed.contains("4 tokens"), "{destroyed}");

    // (4) The auditor fetches the receipt again and checks it with the public key alone.
    let auditor = |args: &[&str]| daemon.cli(Some(AUDITOR), args, b"");
    let pubkey = ok(&auditor(&["audit", "pubkey"]));
    std::fs::write(at("audit.pub"), pubkey).expect("key file");
    ok(&auditor(&[
        "tenant",
        "receipt",
        "acme",
        "--out",
        &at("again"),
    ]));
    assert_eq!(
        std::fs::read(at("receipt")).expect("receipt"),
        std::fs::read(at("again")).expect("receipt again"),
        "the same receipt however often asked"
    );
    let checked = ok(&auditor(&[
        "audit",
        "receipt",
        "verify",
        &at("again"),
        "--pubkey",
        &at("audit.pub"),
    ]));
    assert_eq!(field(&checked, "receipt"), "verified", "{checked}");
    assert_eq!(field(&checked, "records"), "4", "{checked}");
    assert!(
        checked.contains("v1 (wrapped sha256 ") && checked.contains("v2 (wrapped sha256 "),
        "{checked}"
    );
    // The entry it names is in the log, with the record count.
    let seq = field(&checked, "audit entry")
        .split(':')
        .next()
        .expect("seq:hash")
        .to_owned();
    let entries = ok(&auditor(&[
        "--format",
        "csv",
        "audit",
        "search",
        "--op",
        "tenant.destroy",
    ]));
    let (_, rows) = csv(&entries);
    assert_eq!(rows.len(), 1, "{entries}");
    assert_eq!(rows[0][0], seq);
    assert!(rows[0][14].contains("records=4"), "{entries}");
    // A changed byte anywhere in the receipt line, or in its signature, fails (exit 8).
    let original = std::fs::read(at("again")).expect("receipt");
    for (what, from, to) in [
        ("records", "\"records\":4", "\"records\":3"),
        ("signature", "\"signature\":\"", "\"signature\":\"0"),
    ] {
        let text = String::from_utf8(original.clone()).expect("utf8");
        assert!(text.contains(from), "{what}: {text}");
        let changed = text.replacen(from, to, 1);
        let path = at(&format!("changed-{what}"));
        std::fs::write(&path, changed).expect("write");
        let out = auditor(&[
            "audit",
            "receipt",
            "verify",
            &path,
            "--pubkey",
            &at("audit.pub"),
        ]);
        assert_eq!(out.status.code(), Some(8), "{what}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("NOT VERIFIED"),
            "{what}: {}",
            stdout(&out)
        );
    }
}
