//! Break-glass recovery against a real KMS API server (moto) and the real `vaultd` and
//! `vault-cli` binaries (`docs/break-glass.md`): with the KMS key disabled and then scheduled for
//! deletion the vault does not unseal; K of N shares open it without a KMS call and every token
//! reads back; `keys kms migrate` moves it to a new key, and the next start auto-unseals with
//! it. K-1 shares, a share of another vault and a changed share are each refused.

mod moto;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use age::secrecy::ExposeSecret as _;
use vault_client::audit::Outcome;
use vault_client::wire::{Binding, PutToken, VaultState};
use vault_client::{ApiCode, AuditQuery, Client, Secret};

use moto::{Daemon, Moto};

/// What the test's uid may do.
const CAPABILITIES: &[&str] = &[
    "sys:init",
    "sys:unseal",
    "sys:seal",
    "sys:status",
    "keys:read",
    "keys:rotate",
    "tenant:create",
    "token:seal",
    "token:unseal",
    "audit:read",
];

const TOKENS: usize = 20;

/// `vault-cli` beside the `vaultd` under test (`cargo build --workspace --bins` builds both).
fn vault_cli() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_vaultd")).with_file_name("vault-cli");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs `vault-cli` against `daemon` with `stdin`.
fn cli(daemon: &Daemon, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(vault_cli())
        .args(args)
        .env_clear()
        .env("VAULT_SOCKET", daemon.socket())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vault-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("vault-cli output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An operator's age identity in a 0600 file, and its recipient.
fn holder(dir: &Path, name: &str) -> (PathBuf, String) {
    let identity = age::x25519::Identity::generate();
    let path = dir.join(format!("{name}.key"));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{}", identity.to_string().expose_secret()))
        .expect("identity file");
    (path, identity.to_public().to_string())
}

/// Decrypts share file `share` with the identity file `key`, as its holder would.
fn decrypt_share(key: &Path, share: &Path) -> String {
    let identity: age::x25519::Identity = std::fs::read_to_string(key)
        .expect("key")
        .trim()
        .parse()
        .expect("identity");
    let armored = std::fs::read(share).expect("share file");
    let plain = age::decrypt(&identity, &armored).expect("the holder decrypts the share");
    String::from_utf8(plain).expect("a share is one line of text")
}

fn token(i: usize) -> PutToken {
    PutToken {
        secret: Secret::from(format!("refresh-token-{i}-of-acme").as_str()),
        binding: Binding {
            subject: format!("user-{i}"),
            bank: "example-bank".into(),
            account: format!("DE00{i:018}"),
            scope: "accounts".into(),
        },
        expires_at: None,
        expected_revision: None,
        lease: None,
    }
}

async fn wait_state(daemon: &Daemon, state: VaultState) {
    daemon
        .wait_for(&format!("{state:?}"), Duration::from_secs(30), async || {
            daemon.state().await == Some(state)
        })
        .await;
}

/// The daemon's KMS call counter, from its metrics.
async fn kms_calls(c: &Client) -> u64 {
    let metrics = c.metrics().await.expect("metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("vaultd_kms_calls_total{provider=\"aws\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no KMS call counter in:\n{metrics}"))
}

async fn every_token_reads_back(c: &Client) {
    for i in 0..TOKENS {
        let got = c
            .unseal_token("acme", &format!("consent-{i}"), None)
            .await
            .expect("unseal token");
        assert_eq!(
            got.secret.expose_str(),
            Some(format!("refresh-token-{i}-of-acme").as_str())
        );
    }
}

/// A refused share: exit 1, `share_refused`, and the reason named.
fn assert_refused(out: &Output, reason: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("share_refused"), "{err}");
    assert!(err.contains(reason), "wanted {reason:?} in: {err}");
}

#[tokio::test]
async fn k_of_n_shares_open_a_vault_whose_kms_key_is_gone_and_migration_restores_auto_unseal() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_with(dir.path(), moto.port(), &key, CAPABILITIES);
    wait_state(&daemon, VaultState::Uninitialized).await;
    let c = daemon.client();
    let vault_id = c.init().await.expect("init").vault_id;
    c.create_tenant("acme").await.expect("tenant");
    for i in 0..TOKENS {
        c.put_token("acme", &format!("consent-{i}"), &token(i))
            .await
            .expect("put");
    }

    // Three holders, two of whom open the vault.
    let holders: Vec<(PathBuf, String)> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| holder(dir.path(), n))
        .collect();
    let shares_dir = dir.path().join("shares");
    let shares_arg = shares_dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "operator",
        "recovery",
        "create",
        "--threshold",
        "2",
        "--out",
        shares_arg,
    ];
    for (_, recipient) in &holders {
        args.extend(["--recipient", recipient.as_str()]);
    }
    let out = cli(&daemon, &args, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.contains("2 of 3 shares open vault"), "{listing}");
    let share_file = |i: usize| shares_dir.join(format!("share-{i}.age"));
    for i in 1..=3 {
        let armored = std::fs::read_to_string(share_file(i)).expect("share file");
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains("vaultd-share-v1"), "no share in clear");
    }
    // The envelope follows a master key rotation made after the shares.
    assert_eq!(
        c.rotate_master().await.expect("rotate").master_key_version,
        2
    );
    c.seal().await.expect("seal");

    // The KMS key goes: disabled, then scheduled for deletion. Neither unseals.
    moto.disable_key(&key).await;
    let err = c.unseal().await.expect_err("disabled key");
    assert!(err.to_string().contains("kms_key_disabled"), "{err}");
    moto.schedule_key_deletion(&key).await;
    let err = c.unseal().await.expect_err("key pending deletion");
    assert!(
        err.to_string().contains("kms_key_pending_deletion"),
        "{err}"
    );
    assert_eq!(daemon.state().await, Some(VaultState::Sealed));
    let calls = kms_calls(&c).await;

    // Another vault's share, for the same holder, is refused.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other_key = moto.create_key().await;
    let other = Daemon::start_with(other_dir.path(), moto.port(), &other_key, CAPABILITIES);
    wait_state(&other, VaultState::Uninitialized).await;
    other.client().init().await.expect("init the other vault");
    let recipients: Vec<String> = holders.iter().map(|(_, r)| r.clone()).collect();
    let foreign = other
        .client()
        .create_recovery(2, &recipients)
        .await
        .expect("the other vault's shares");
    let foreign_file = dir.path().join("foreign.age");
    std::fs::write(&foreign_file, &foreign.shares[0].share).expect("write");
    let alice_key = holders[0].0.to_str().expect("utf-8 path");
    let out = cli(
        &daemon,
        &[
            "operator",
            "recover",
            "--identity",
            alice_key,
            "--share",
            foreign_file.to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_refused(&out, &format!("this is vault {vault_id}"));
    drop(other);

    // A changed share is refused: one character of its data differs.
    let line = decrypt_share(&holders[1].0, &share_file(2));
    let mut changed: Vec<char> = line.trim_end().chars().collect();
    let at = changed.len() - 10;
    changed[at] = if changed[at] == 'A' { 'B' } else { 'A' };
    let changed: String = changed.into_iter().collect();
    let out = cli(&daemon, &["operator", "recover"], changed.as_bytes());
    assert_refused(&out, "does not match the one issued");

    // K-1 shares: accepted, and the vault stays sealed.
    let out = cli(
        &daemon,
        &["operator", "recover", "--identity", alice_key],
        &std::fs::read(share_file(1)).expect("share"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(1 of 2)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("stays sealed"),
        "{}",
        text(&out.stdout)
    );
    let err = c
        .unseal_token("acme", "consent-0", None)
        .await
        .expect_err("sealed");
    assert_eq!(err.code(), Some(&ApiCode::Sealed));
    // The same share twice does not count twice.
    let out = cli(
        &daemon,
        &["operator", "recover", "--identity", alice_key],
        &std::fs::read(share_file(1)).expect("share"),
    );
    assert_refused(&out, "already accepted");
    // A holder's identity does not open another holder's share.
    let out = cli(
        &daemon,
        &["operator", "recover", "--identity", alice_key],
        &std::fs::read(share_file(3)).expect("share"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not decrypt"),
        "{}",
        text(&out.stderr)
    );

    // The K-th share (its decrypted line on stdin) opens the vault, with no KMS call.
    let out = cli(
        &daemon,
        &["operator", "recover"],
        decrypt_share(&holders[2].0, &share_file(3)).as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("unsealed"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("keys kms migrate"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(daemon.state().await, Some(VaultState::Unsealed));
    assert_eq!(kms_calls(&c).await, calls, "recovery makes no KMS call");
    every_token_reads_back(&c).await;

    // Every step is in the audit log; no share is.
    let recovers = c
        .audit(&AuditQuery {
            op: Some("sys.recover".into()),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .expect("audit")
        .entries;
    let outcomes: Vec<(Outcome, Option<&str>)> = recovers
        .iter()
        .map(|e| (e.outcome, e.detail.get("share").map(String::as_str)))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Outcome::Error, None),
            (Outcome::Error, Some("2")),
            (Outcome::Ok, Some("1")),
            (Outcome::Error, Some("1")),
            (Outcome::Ok, Some("3")),
        ],
        "{recovers:#?}"
    );
    assert_eq!(
        recovers[4].detail.get("unsealed_by").map(String::as_str),
        Some("recovery")
    );
    let created = c
        .audit(&AuditQuery {
            op: Some("sys.recovery.create".into()),
            ..Default::default()
        })
        .await
        .expect("audit")
        .entries;
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0].detail.get("threshold").map(String::as_str),
        Some("2")
    );
    let log = daemon.log();
    assert!(!log.contains("vaultd-share-v1"), "no share in the log");

    // Migration to a new KMS key, without the old one.
    let new_key = moto.create_key().await;
    let out = cli(&daemon, &["keys", "kms", "migrate", &new_key], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("migrated"),
        "{}",
        text(&out.stdout)
    );
    let history = c.key_history(None).await.expect("history");
    let events: Vec<&str> = history
        .events
        .iter()
        .filter_map(|e| e.detail.get("event").map(String::as_str))
        .collect();
    assert!(events.contains(&"recovery_shares_created"), "{events:?}");
    assert_eq!(events.last(), Some(&"master_key_migrated_to_kms_key"));

    // The next start, configured with the new key, auto-unseals through it.
    drop(c);
    drop(daemon);
    let daemon = Daemon::start_with(dir.path(), moto.port(), &new_key, CAPABILITIES);
    daemon
        .wait_for("auto-unseal", Duration::from_secs(30), async || {
            daemon.state().await == Some(VaultState::Unsealed)
        })
        .await;
    every_token_reads_back(&daemon.client()).await;
}
