//! `vault-cli audit …` end to end: real daemon, real CLI processes. An export verifies offline
//! with the public key alone, and each kind of tampering with it is found (exit code 8).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use vault_client::audit::{Entry, Report};
use vault_client::wire::{Binding, Expect, PutToken};
use vault_client::{Client, Secret};

use common::{Daemon, SOCKET_GID, STRANGER_UID, contains};

/// Personal data and a secret that must never appear in the log in clear.
const ACCOUNT: &str = "DE89370400440532013000";
const SUBJECT: &str = "planted-subject-5521";
const SECRET: &str = "planted-secret-eyJhbGciOiJFUzI1NiJ9.c2VjcmV0";
/// Another token's account, so the account search has something to leave out.
const OTHER_ACCOUNT: &str = "GB29NWBK60161331926819";

/// The verification exit code (`docs/cli.md`).
const EXIT_PROBLEMS: i32 = 8;

/// A daemon with some traffic and a scratch directory for exports.
struct Vault {
    daemon: Daemon,
    dir: tempfile::TempDir,
}

impl Vault {
    async fn start() -> Self {
        let daemon = Daemon::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let c = daemon.client();
        c.init().await.expect("init");
        c.create_tenant("acme").await.expect("tenant");
        c.create_tenant("globex").await.expect("tenant");
        c.put_token("acme", "consent-1", &put(SECRET, ACCOUNT))
            .await
            .expect("put");
        c.put_token("acme", "consent-1", &put(SECRET, ACCOUNT))
            .await
            .expect("put again");
        c.put_token("globex", "other", &put("other-secret", OTHER_ACCOUNT))
            .await
            .expect("put");
        for _ in 0..2 {
            let expect = Expect {
                account: Some(ACCOUNT.into()),
                ..Expect::default()
            };
            c.unseal_token("acme", "consent-1", Some(expect))
                .await
                .expect("unseal");
        }
        let vault = Self { daemon, dir };
        // A caller the policy does not name: denied, and audited as denied.
        let out = vault.daemon.cli(
            Some((STRANGER_UID, SOCKET_GID)),
            &["token", "get", "acme", "consent-1"],
            b"",
        );
        assert_eq!(
            code(&out),
            4,
            "stranger must be denied: {}",
            text(&out.stderr)
        );
        vault
    }

    fn client(&self) -> Client {
        self.daemon.client()
    }

    /// `vault-cli ARGS` as the operator (root), with `stdin`.
    fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.daemon.cli(None, args, stdin)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `audit export` to a new file in the scratch directory.
    fn export(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        let out = self.cli(&["audit", "export", path.to_str().expect("utf8 path")], b"");
        assert_eq!(code(&out), 0, "export: {}", text(&out.stderr));
        path
    }

    /// `audit pubkey > KEYFILE`.
    fn pubkey(&self) -> PathBuf {
        let out = self.cli(&["audit", "pubkey"], b"");
        assert_eq!(code(&out), 0, "pubkey: {}", text(&out.stderr));
        let path = self.path("audit.pub");
        fs::write(&path, &out.stdout).expect("key file");
        path
    }

    /// `audit verify --offline FILE --pubkey KEYFILE [--since-head H]`, pointed at a socket that
    /// does not exist: offline verification must not need the daemon.
    fn verify_offline(
        &self,
        file: &Path,
        key: &Path,
        since_head: Option<&str>,
        json: bool,
    ) -> Output {
        let mut args = vec!["--socket", "/nonexistent/vaultd.sock", "audit", "verify"];
        args.extend([
            "--offline",
            file.to_str().expect("utf8"),
            "--pubkey",
            key.to_str().expect("utf8"),
        ]);
        if let Some(head) = since_head {
            args.extend(["--since-head", head]);
        }
        if json {
            args.push("--json");
        }
        self.cli(&args, b"")
    }

    /// The head of an export as `SEQ:HASH`, from its offline verification.
    fn head_of(&self, file: &Path, key: &Path) -> String {
        let out = self.verify_offline(file, key, None, true);
        assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
        let report: Report = serde_json::from_slice(&out.stdout).expect("report JSON");
        let head = report.head.expect("a head");
        assert_eq!(
            report.signed_through,
            Some(head.seq),
            "the export ends at a signed head"
        );
        format!("{}:{}", head.seq, head.hash)
    }

    /// An export and its key, verified intact.
    fn intact_export(&self) -> (Vec<Vec<u8>>, PathBuf) {
        let file = self.export("audit.ndjson");
        let key = self.pubkey();
        let out = self.verify_offline(&file, &key, None, false);
        assert_eq!(
            code(&out),
            0,
            "intact export must verify: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        (lines(&fs::read(&file).expect("read export")), key)
    }

    /// Writes `lines` as a tampered copy and asserts offline verification finds it.
    fn assert_found(&self, name: &str, lines: &[Vec<u8>], key: &Path, since_head: Option<&str>) {
        let file = self.path(name);
        fs::write(&file, join(lines)).expect("write tampered copy");
        let out = self.verify_offline(&file, key, since_head, false);
        let stdout = text(&out.stdout);
        assert_eq!(
            code(&out),
            EXIT_PROBLEMS,
            "{name} not found:\n{stdout}{}",
            text(&out.stderr)
        );
        assert!(
            field(&stdout, "verification").starts_with("FAILED"),
            "{name}:\n{stdout}"
        );
        assert!(
            stdout.lines().any(|l| l.starts_with("problem ")),
            "{name}: no problem line:\n{stdout}"
        );
        assert!(
            text(&out.stderr).contains("audit verification found"),
            "{name}"
        );
    }
}

fn put(secret: &str, account: &str) -> PutToken {
    PutToken {
        secret: Secret::from(secret),
        binding: Binding {
            subject: SUBJECT.into(),
            bank: "example-bank".into(),
            account: account.into(),
            scope: "accounts".into(),
        },
        expires_at: None,
        expected_revision: None,
        lease: None,
    }
}

/// The value of a `key  value` line of human output.
fn field(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key).filter(|rest| rest.starts_with("  ")))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{output}"))
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of an export, without their newlines.
fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect()
}

fn is_head(line: &[u8]) -> bool {
    line.starts_with(b"{\"head\"")
}

/// The signed statement that ends an export (`docs/audit-log.md`, "Sealed exports").
fn is_statement(line: &[u8]) -> bool {
    line.starts_with(b"{\"statement\"")
}

/// Indexes (into `lines`) of the entry lines.
fn entry_indexes(lines: &[Vec<u8>]) -> Vec<usize> {
    (0..lines.len())
        .filter(|&i| !is_head(&lines[i]) && !is_statement(&lines[i]))
        .collect()
}

fn entry(line: &[u8]) -> Entry {
    serde_json::from_slice(line).expect("entry line")
}

#[tokio::test]
async fn intact_export_verifies_offline_without_the_daemon() {
    let vault = Vault::start().await;
    let (lines, key) = vault.intact_export();
    let entries = entry_indexes(&lines);
    assert!(
        entries.len() >= 9,
        "every request was recorded: {}",
        entries.len()
    );
    assert!(
        lines.iter().any(|l| is_head(l)),
        "signed heads are exported"
    );
    for (n, &i) in entries.iter().enumerate() {
        assert_eq!(
            entry(&lines[i]).seq,
            n as u64 + 1,
            "entries in order, from 1"
        );
    }
    let out = vault.verify_offline(&vault.path("audit.ndjson"), &key, None, false);
    let stdout = text(&out.stdout);
    assert_eq!(field(&stdout, "verification"), "ok", "{stdout}");
    assert_eq!(
        field(&stdout, "entries"),
        entries.len().to_string(),
        "{stdout}"
    );
    assert_eq!(
        field(&stdout, "signed through"),
        entries.len().to_string(),
        "{stdout}"
    );
    assert!(stdout.contains("Record this head"), "{stdout}");
    // The key file is exactly what `audit pubkey` printed; --json gives the vault id as well.
    let out = vault.cli(&["audit", "pubkey", "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pubkey JSON");
    assert_eq!(
        json["public_key"].as_str().map(|k| format!("{k}\n")),
        Some(fs::read_to_string(&key).expect("key"))
    );
    assert!(json["vault_id"].is_string());
}

#[tokio::test]
async fn offline_verify_finds_an_edited_entry() {
    let vault = Vault::start().await;
    let (mut lines, key) = vault.intact_export();
    let denied = lines
        .iter()
        .position(|l| contains(l, b"\"outcome\":\"denied\""))
        .expect("the stranger's denied request is in the log");
    let edited = text(&lines[denied]).replace("\"outcome\":\"denied\"", "\"outcome\":\"ok\"");
    lines[denied] = edited.into_bytes();
    vault.assert_found("edited.ndjson", &lines, &key, None);
}

#[tokio::test]
async fn offline_verify_finds_a_removed_entry() {
    let vault = Vault::start().await;
    let (mut lines, key) = vault.intact_export();
    let third = entry_indexes(&lines)[2];
    lines.remove(third);
    vault.assert_found("removed.ndjson", &lines, &key, None);
}

#[tokio::test]
async fn offline_verify_finds_swapped_entries() {
    let vault = Vault::start().await;
    let (mut lines, key) = vault.intact_export();
    let entries = entry_indexes(&lines);
    lines.swap(entries[3], entries[4]);
    vault.assert_found("swapped.ndjson", &lines, &key, None);
}

#[tokio::test]
async fn offline_verify_finds_a_forged_inserted_entry() {
    let vault = Vault::start().await;
    let (mut lines, key) = vault.intact_export();
    // A copy of an entry that claims the next sequence number, inserted right after it.
    let i = entry_indexes(&lines)[4];
    let original = entry(&lines[i]);
    let forged = text(&lines[i]).replacen(
        &format!("\"seq\":{}", original.seq),
        &format!("\"seq\":{}", original.seq + 1),
        1,
    );
    assert_eq!(entry(forged.as_bytes()).seq, original.seq + 1);
    lines.insert(i + 1, forged.into_bytes());
    vault.assert_found("forged.ndjson", &lines, &key, None);
}

#[tokio::test]
async fn offline_verify_finds_a_cut_tail_by_its_signed_heads() {
    let vault = Vault::start().await;
    let (lines, key) = vault.intact_export();
    // The last two entries dropped, every head kept: the last head names entries that are gone.
    let entries = entry_indexes(&lines);
    let dropped = &entries[entries.len() - 2..];
    let cut: Vec<Vec<u8>> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, l)| l.clone())
        .collect();
    vault.assert_found("cut-heads-kept.ndjson", &cut, &key, None);
}

#[tokio::test]
async fn offline_verify_finds_a_tail_cut_at_a_head_by_the_exports_statement() {
    let vault = Vault::start().await;
    let (lines, key) = vault.intact_export();
    let recorded = vault.head_of(&vault.path("audit.ndjson"), &key);
    let statement = lines.last().expect("lines").clone();
    assert!(
        is_statement(&statement),
        "the export ends with its statement"
    );
    // Cut right after an earlier head, heads and entries alike: a valid prefix of the log,
    // which the export's signed statement no longer describes.
    let last_head = lines.iter().rposition(|l| is_head(l)).expect("a head");
    let earlier_head = lines[..last_head - 1]
        .iter()
        .rposition(|l| is_head(l))
        .expect("an earlier head");
    let prefix = &lines[..=earlier_head];
    assert!(
        entry_indexes(prefix).len() < entry_indexes(&lines).len(),
        "entries were cut"
    );
    let with_statement: Vec<_> = prefix.iter().cloned().chain([statement.clone()]).collect();
    let without_statement = lines[..lines.len() - 1].to_vec();
    let appended: Vec<_> = lines.iter().cloned().chain([lines[0].clone()]).collect();
    for (name, cut, says) in [
        (
            "cut-keeping-statement.ndjson",
            with_statement.as_slice(),
            "the export's statement says it ends at entry",
        ),
        (
            "cut-at-head.ndjson",
            prefix,
            "no signed statement ends the export",
        ),
        (
            "statement-removed.ndjson",
            without_statement.as_slice(),
            "no signed statement ends the export",
        ),
        (
            "line-after-statement.ndjson",
            appended.as_slice(),
            "after the export's statement",
        ),
        ("empty.ndjson", &[], "the export is empty"),
    ] {
        vault.assert_found(name, cut, &key, None);
        let out = vault.verify_offline(&vault.path(name), &key, None, false);
        assert!(
            text(&out.stdout).contains(says),
            "{name}: {}",
            text(&out.stdout)
        );
    }
    // Against the head recorded from the whole export, the prefix is found as before.
    vault.assert_found("cut-at-head-anchored.ndjson", prefix, &key, Some(&recorded));
    // A statement with a changed byte does not verify.
    let mut forged = lines.clone();
    let last = forged.len() - 1;
    let text_line = String::from_utf8(forged[last].clone()).expect("utf-8");
    forged[last] = text_line
        .replacen("\"entries\":", "\"entries\":1", 1)
        .into_bytes();
    vault.assert_found("statement-edited.ndjson", &forged, &key, None);
}

#[tokio::test]
async fn offline_verify_finds_an_older_copy_against_a_newer_recorded_head() {
    let vault = Vault::start().await;
    let old = vault.export("old.ndjson");
    let key = vault.pubkey();
    let c = vault.client();
    c.put_token("acme", "consent-2", &put("later-secret", ACCOUNT))
        .await
        .expect("put");
    c.unseal_token("acme", "consent-2", None)
        .await
        .expect("unseal");
    let new = vault.export("new.ndjson");
    let recorded = vault.head_of(&new, &key);
    let out = vault.verify_offline(&new, &key, Some(&recorded), false);
    assert_eq!(
        code(&out),
        0,
        "the newer copy holds its own head: {}",
        text(&out.stdout)
    );
    let out = vault.verify_offline(&old, &key, None, false);
    assert_eq!(
        code(&out),
        0,
        "the older copy is valid on its own: {}",
        text(&out.stdout)
    );
    let old_lines = lines(&fs::read(&old).expect("read"));
    vault.assert_found("old-copy.ndjson", &old_lines, &key, Some(&recorded));
    let out = vault.verify_offline(&old, &key, Some(&recorded), false);
    assert!(
        text(&out.stdout).contains("is not in this log"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn offline_verify_refuses_a_wrong_key() {
    let vault = Vault::start().await;
    let (_, _key) = vault.intact_export();
    let file = vault.path("audit.ndjson");
    // Another valid Ed25519 point (the base point's encoding), not this vault's key.
    let other = vault.path("other.pub");
    fs::write(
        &other,
        "5866666666666666666666666666666666666666666666666666666666666666\n",
    )
    .expect("write");
    let out = vault.verify_offline(&file, &other, None, false);
    assert_eq!(code(&out), EXIT_PROBLEMS, "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("signature does not verify"));
    // Not a key at all: an error, not a verdict.
    fs::write(&other, "not hex").expect("write");
    let out = vault.verify_offline(&file, &other, None, false);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
}

#[tokio::test]
async fn export_holds_no_planted_account_subject_or_secret() {
    let vault = Vault::start().await;
    let file = vault.export("audit.ndjson");
    let bytes = fs::read(&file).expect("read");
    assert!(
        contains(&bytes, b"\"account_hmac\""),
        "puts and unseals carry the account's HMAC"
    );
    for planted in [ACCOUNT, SUBJECT, SECRET, OTHER_ACCOUNT] {
        assert!(
            !contains(&bytes, planted.as_bytes()),
            "{planted} is in the export in clear"
        );
    }
    // Nor anywhere the daemon keeps its data, audit log included.
    for path in common::files(vault.daemon.root.path()) {
        let data = fs::read(&path).expect("read");
        for planted in [ACCOUNT, SUBJECT, SECRET] {
            assert!(
                !contains(&data, planted.as_bytes()),
                "{planted} in clear in {}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn export_is_private_and_never_overwrites_by_accident() {
    use std::os::unix::fs::PermissionsExt as _;
    let vault = Vault::start().await;
    let file = vault.export("audit.ndjson");
    assert_eq!(
        fs::metadata(&file).expect("stat").permissions().mode() & 0o777,
        0o600
    );
    let summary = vault.cli(&["audit", "export", file.to_str().expect("utf8")], b"");
    assert_eq!(code(&summary), 2, "refused: {}", text(&summary.stderr));
    assert!(text(&summary.stderr).contains("--force"));
    fs::write(&file, b"old").expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = vault.cli(
        &[
            "--json",
            "audit",
            "export",
            "--force",
            file.to_str().expect("utf8"),
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        fs::metadata(&file).expect("stat").permissions().mode() & 0o777,
        0o600
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    let written = lines(&fs::read(&file).expect("read"));
    assert_eq!(
        summary["entries"].as_u64(),
        Some(entry_indexes(&written).len() as u64)
    );
    let statements = written.iter().filter(|l| is_statement(l)).count();
    assert_eq!(statements, 1, "one chain, one statement");
    assert_eq!(summary["statements"].as_u64(), Some(1));
    assert_eq!(
        summary["heads"].as_u64(),
        Some((written.len() - entry_indexes(&written).len() - statements) as u64)
    );
    assert!(summary["last_head"]["signature"].is_string());
    let leftovers: Vec<_> = fs::read_dir(vault.dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers,
        [std::ffi::OsString::from("audit.ndjson")],
        "no partial file left behind"
    );
}

#[tokio::test]
async fn search_by_account_from_stdin_finds_the_tokens_puts() {
    let vault = Vault::start().await;
    let out = vault.cli(
        &["--json", "audit", "search", "--account-stdin"],
        format!("{ACCOUNT}\n").as_bytes(),
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let found: Vec<Entry> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON entry per line"))
        .collect();
    let hmac = vault.client().audit_hash(ACCOUNT).await.expect("hash");
    assert!(
        found
            .iter()
            .all(|e| e.account_hmac.as_deref() == Some(hmac.as_str())),
        "{found:?}"
    );
    let puts = found
        .iter()
        .filter(|e| e.op == "token.put" && e.token.as_deref() == Some("consent-1"))
        .count();
    assert_eq!(puts, 2, "both puts of acme/consent-1: {found:?}");
    assert!(
        found.iter().all(|e| e.tenant.as_deref() == Some("acme")),
        "globex's token has another account"
    );
    // The same search by the HMAC itself, narrowed to puts, as a table.
    let out = vault.cli(
        &[
            "audit",
            "search",
            "--account-hmac",
            &hmac,
            "--op",
            "token.put",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("SEQ "), "{table}");
    assert_eq!(table.lines().count(), 3, "header and two puts:\n{table}");
    assert!(!table.contains(ACCOUNT));
    // Other filters reach the daemon too.
    let out = vault.cli(
        &[
            "--json",
            "audit",
            "search",
            "--outcome",
            "denied",
            "--actor",
            &STRANGER_UID.to_string(),
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "the stranger's one denied request"
    );
    // The account never goes on the command line.
    let out = vault.cli(&["audit", "search", "--account", ACCOUNT], b"");
    assert_eq!(code(&out), 2);
}

#[tokio::test]
async fn search_since_takes_a_date_alone_and_a_time_back_from_now() {
    let vault = Vault::start().await;
    // The puts of acme/consent-1 among the entries that `--since`/`--until` let through.
    let puts = |filters: &[&str]| -> usize {
        let mut args = vec!["--json", "audit", "search", "--op", "token.put"];
        args.extend(filters);
        let out = vault.cli(&args, b"");
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Entry>(l).expect("one JSON entry per line"))
            .filter(|e| e.token.as_deref() == Some("consent-1"))
            .count()
    };
    assert_eq!(puts(&[]), 2);
    let first = vault
        .client()
        .audit(&vault_client::AuditQuery {
            op: Some("token.put".into()),
            ..vault_client::AuditQuery::default()
        })
        .await
        .expect("audit")
        .entries[0]
        .time;
    // A date alone is 00:00:00Z that day: the puts' own day lets them through, the next one not.
    let day = first.to_string()[..10].to_owned();
    let next_day = vault_client::Timestamp(first.unix() + 86_400).to_string()[..10].to_owned();
    assert_eq!(puts(&["--since", &day]), 2, "--since {day}");
    assert_eq!(puts(&["--since", &next_day]), 0, "--since {next_day}");
    assert_eq!(puts(&["--until", &next_day]), 2, "--until {next_day}");
    // A time back from now: the puts were made seconds ago.
    assert_eq!(puts(&["--since", "1h"]), 2);
    assert_eq!(puts(&["--since", "2w", "--until", "1h"]), 0);
    // Anything else is a usage error that says why, before any request.
    let out = vault.cli(&["audit", "search", "--since", "2026-02-31"], b"");
    assert_eq!(code(&out), 2);
    let err = text(&out.stderr);
    assert!(err.contains("\"2026-02-31\" is not a date"), "{err}");
    let out = vault.cli(&["audit", "search", "--since", "1y"], b"");
    assert_eq!(code(&out), 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("a time back from now (90s, 30m, 12h, 1d, 2w)"),
        "{err}"
    );
}

#[tokio::test]
async fn tail_prints_the_last_entries_without_its_own_reads() {
    let vault = Vault::start().await;
    let out = vault.cli(&["audit", "tail", "-n", "5", "--json"], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let entries: Vec<Entry> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON entry per line"))
        .collect();
    assert_eq!(entries.len(), 5, "{}", text(&out.stdout));
    assert!(
        entries.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "consecutive: {entries:?}"
    );
    assert!(
        entries.iter().all(|e| e.op != "audit.list"),
        "tail's own reads are hidden: {entries:?}"
    );
    assert_eq!(
        entries[4].outcome,
        vault_client::audit::Outcome::Denied,
        "the last request was the stranger's"
    );
    let out = vault.cli(&["audit", "tail"], b"");
    let table = text(&out.stdout);
    assert!(table.starts_with("SEQ "), "{table}");
    assert!(
        table.lines().count() > 10,
        "header and up to 20 entries:\n{table}"
    );
}

#[tokio::test]
async fn tail_follow_prints_new_entries_as_they_come() {
    use std::io::Read as _;
    let vault = Vault::start().await;
    let mut child = std::process::Command::new(common::bin("vault-cli"))
        .args(["audit", "tail", "-n", "0", "-f", "--json"])
        .env("VAULT_SOCKET", &vault.daemon.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tail -f");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    vault.client().create_tenant("late").await.expect("tenant");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let exited = child.try_wait().expect("wait");
    child.kill().expect("stop tail -f");
    let _ = child.wait();
    assert!(exited.is_none(), "tail -f kept running");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    let entries: Vec<Entry> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON entry"))
        .collect();
    assert!(
        entries
            .iter()
            .any(|e| e.op == "tenant.create" && e.tenant.as_deref() == Some("late")),
        "the new request shows: {stdout}"
    );
    assert!(
        entries.iter().all(|e| e.op != "audit.list"),
        "its own polls are hidden: {stdout}"
    );
}

#[tokio::test]
async fn daemon_verify_prints_a_head_that_later_verifies_against() {
    let vault = Vault::start().await;
    let out = vault.cli(&["--json", "audit", "verify"], b"");
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
    let report: Report = serde_json::from_slice(&out.stdout).expect("report");
    assert!(report.ok && report.problems.is_empty(), "{report:?}");
    let head = report.head.expect("head");
    let recorded = format!("{}:{}", head.seq, head.hash);
    vault
        .client()
        .create_tenant("later")
        .await
        .expect("more traffic");
    let out = vault.cli(&["audit", "verify", "--since-head", &recorded], b"");
    assert_eq!(
        code(&out),
        0,
        "the log still holds the recorded head: {}",
        text(&out.stdout)
    );
    assert_eq!(field(&text(&out.stdout), "verification"), "ok");
    // A head this log never had (the hash of another history) is found.
    let forged = format!("{}:{}", head.seq, "ab".repeat(32));
    let out = vault.cli(&["audit", "verify", "--since-head", &forged], b"");
    assert_eq!(code(&out), EXIT_PROBLEMS, "{}", text(&out.stdout));
    assert!(text(&out.stdout).lines().any(|l| l.starts_with("problem ")));
    // A malformed head is a usage error, found before anything is sent.
    let out = vault.cli(&["audit", "verify", "--since-head", "12"], b"");
    assert_eq!(code(&out), 2);
}
