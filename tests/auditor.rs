//! The auditor grant (`audit:read` and `keys:metadata`, docs/operator-guide.md) answers the
//! auditor's questions through `vault-cli` alone, from its output (docs/auditor-guide.md):
//! (1) when each key was last rotated and which records still sit under older versions;
//! (2) who unsealed consent X between two dates; (3) that the log was not altered. It reads no
//! token, tells no decoy apart, changes nothing. `--op` takes only operation names the daemon
//! writes, or prefixes, and `--format csv` is RFC 4180.

mod common;

use std::process::Output;

use common::{Daemon, SOCKET_GID, STRANGER_UID, put};

/// The auditor: a uid in the socket's group with the documented grant only.
const AUDITOR: (u32, u32) = (STRANGER_UID, SOCKET_GID);

const AUDITOR_RULE: &str = r#"
[[policy]]
name = "auditors"
uids = [65533]
capabilities = ["audit:read", "keys:metadata"]
tenants = ["*"]
"#;

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
