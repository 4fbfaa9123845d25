//! Audit archiving against the real daemon (`docs/audit-log.md`, "Archiving"): `vault-cli audit
//! archive` writes the oldest entries to a sealed archive, the daemon leaves a signed
//! checkpoint and removes the log segments the archive covers; the live log verifies from the
//! checkpoint, archives and the live export verify together offline, a missing or cut archive
//! does not, and the key history still shows the archived key events.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use vault_client::Client;
use vault_client::audit::{CheckpointLine, Report};
use vault_client::wire::AuditArchiveRequest;

use common::{Daemon, entries_with_op, put};

/// The verification exit code (`docs/cli.md`).
const EXIT_PROBLEMS: i32 = 8;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `n` audited requests, 16 at a time.
async fn traffic(c: &Client, n: usize) {
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..n).step_by(16) {
                if i % 4 == 0 {
                    c.unseal_token("acme", "consent-1", None)
                        .await
                        .expect("unseal");
                } else {
                    c.status().await.expect("status");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
}

/// The log segment files of the daemon's store.
fn segments(daemon: &Daemon) -> usize {
    fs::read_dir(daemon.data_dir_seen_from_tests().join("wal"))
        .expect("wal dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        })
        .count()
}

/// `vault-cli --json audit verify …` (offline when `files` is not empty) and its report.
fn verify(daemon: &Daemon, files: &[&Path], key: &Path) -> (Option<i32>, Report) {
    let mut args = vec!["--json", "audit", "verify"];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    if !files.is_empty() {
        args.push("--offline");
        args.extend(names.iter().map(String::as_str));
        args.extend(["--pubkey", key.to_str().expect("utf8")]);
    }
    let out = daemon.cli(None, &args, b"");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("report: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), report)
}

/// `vault-cli audit export FILE`.
fn export(daemon: &Daemon, file: &Path) {
    let args = ["audit", "export", file.to_str().expect("utf8")];
    ok(&daemon.cli(None, &args, b""), "export");
}

/// `vault-cli audit archive --before SEQ --out FILE`: the checkpoint it left.
fn archive(daemon: &Daemon, before: u64, out: &Path) -> CheckpointLine {
    let before = before.to_string();
    let args = [
        "--json",
        "audit",
        "archive",
        "--before",
        &before,
        "--out",
        out.to_str().expect("utf8"),
    ];
    let printed = ok(&daemon.cli(None, &args, b""), "audit archive");
    let answer: serde_json::Value = serde_json::from_str(&printed).expect("archive JSON");
    serde_json::from_value(answer["checkpoint"].clone()).expect("checkpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_entries_leave_the_live_log_and_verify_with_it_offline() {
    let mut daemon = Daemon::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "consent-1", &put("secret-one", "DE00"))
        .await
        .expect("put");
    c.rotate_tenant("acme").await.expect("rotate: a key event");
    let key = path("audit.pub");
    fs::write(
        &key,
        ok(&daemon.cli(None, &["audit", "pubkey"], b""), "pubkey"),
    )
    .expect("key");

    // 2 MiB segments (tests/common), half of each for audit records: several segments' worth.
    traffic(&c, 10_000).await;
    let before_archive = segments(&daemon);
    assert!(before_archive >= 3, "{before_archive} segments");
    let last = c.audit_chains().await.expect("chains").chains[0].last_seq;

    let first = path("archive-1.jsonl");
    let checkpoint = archive(&daemon, last * 2 / 3, &first).checkpoint;
    assert!(checkpoint.through < last * 2 / 3 && checkpoint.through > last / 2);
    let mode = fs::metadata(&first).expect("archive").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // The archive covers whole segments, which the next checkpoints remove: killed now, the
    // daemon removes them after its restart, whether or not it had begun.
    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    common::wait_unsealed(&c).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while segments(&daemon) >= before_archive {
        assert!(Instant::now() < deadline, "no segment was removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The live log verifies from the checkpoint, and serves nothing before it.
    let (code, report) = verify(&daemon, &[], &key);
    assert_eq!(code, Some(0), "{:?}", report.problems);
    assert_eq!(report.checkpoint, Some(checkpoint.through));
    let page = c
        .audit(&vault_client::AuditQuery {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .expect("page");
    assert_eq!(page.entries[0].seq, checkpoint.through + 1);
    let recorded = entries_with_op(&c, "audit.archive").await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].detail.get("through"),
        Some(&checkpoint.through.to_string())
    );
    // The key history still shows the archived rotation.
    let history = c.key_history(Some("acme")).await.expect("history");
    assert!(
        history
            .events
            .iter()
            .any(|e| e.seq <= checkpoint.through && e.op == "tenant.keys.rotate"),
        "{:?}",
        history.events
    );

    // Archive and live export verify together; the live export alone from its checkpoint.
    let live = path("live.jsonl");
    export(&daemon, &live);
    let (code, report) = verify(&daemon, &[&first, &live], &key);
    assert_eq!(code, Some(0), "{:?}", report.problems);
    assert_eq!(report.checkpoint, None, "verified from entry 1");
    let (code, report) = verify(&daemon, &[&live], &key);
    assert_eq!(code, Some(0), "{:?}", report.problems);
    assert_eq!(report.checkpoint, Some(checkpoint.through));
    let (code, _) = verify(&daemon, &[&first], &key);
    assert_eq!(code, Some(0), "the archive alone is a sealed export");

    // A restart removes nothing more and changes nothing; a second archive goes on from the
    // checkpoint.
    assert!(daemon.terminate().success());
    daemon.restart();
    let c = daemon.client();
    common::wait_unsealed(&c).await;
    traffic(&c, 200).await;
    // A verification now leaves a resume point that the next archive covers: the one after
    // it must start at the new checkpoint, not resume there.
    let (code, report) = verify(&daemon, &[], &key);
    assert_eq!(code, Some(0), "{:?}", report.problems);
    let last = c.audit_chains().await.expect("chains").chains[0].last_seq;
    let second = path("archive-2.jsonl");
    let checkpoint_2 = archive(&daemon, last + 1, &second).checkpoint;
    assert!(checkpoint_2.through > checkpoint.through);
    let live = path("live-2.jsonl");
    export(&daemon, &live);
    let (code, report) = verify(&daemon, &[&first, &second, &live], &key);
    assert_eq!(code, Some(0), "{:?}", report.problems);
    let (code, report) = verify(&daemon, &[], &key);
    assert_eq!(code, Some(0), "{:?}", report.problems);
    assert_eq!(report.checkpoint, Some(checkpoint_2.through));

    // A missing archive, archives out of order, or a cut archive: exit 8, naming the problem.
    let (code, report) = verify(&daemon, &[&first, &live], &key);
    assert_eq!(code, Some(EXIT_PROBLEMS));
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("does not start where the previous one's statement ended")),
        "{:?}",
        report.problems
    );
    let (code, _) = verify(&daemon, &[&second, &first, &live], &key);
    assert_eq!(code, Some(EXIT_PROBLEMS));
    let cut = path("cut.jsonl");
    let lines = fs::read_to_string(&first).expect("archive");
    let kept: Vec<&str> = lines.lines().collect();
    fs::write(&cut, kept[..kept.len() - 3].join("\n") + "\n").expect("cut");
    let (code, _) = verify(&daemon, &[&cut, &second, &live], &key);
    assert_eq!(code, Some(EXIT_PROBLEMS));

    // Refused, changing nothing: an archive that does not end where the live log does, and
    // one of what is archived already.
    let last = c.audit_chains().await.expect("chains").chains[0].last_seq;
    let wrong = AuditArchiveRequest {
        node: None,
        through: last,
        last_hash: "00".repeat(32),
        archive_sha256: "11".repeat(32),
    };
    let err = c.audit_archive(&wrong).await.expect_err("a wrong hash");
    assert!(err.to_string().contains("nothing was archived"), "{err}");
    let again = AuditArchiveRequest {
        through: checkpoint.through,
        ..wrong
    };
    let err = c.audit_archive(&again).await.expect_err("archived already");
    assert!(err.to_string().contains("archived already"), "{err}");
    let out = daemon.cli(None, &["--json", "audit", "verify", "--full"], b"");
    let report: Report = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(out.status.code(), Some(0), "{:?}", report.problems);
    assert_eq!(report.checkpoint, Some(checkpoint_2.through));

    // A backup of the archived vault carries the checkpoint: restored, it verifies from it.
    let backup = path("vault.backup");
    let name = |p: &Path| p.to_str().expect("utf8").to_owned();
    ok(
        &daemon.cli(None, &["backup", "create", &name(&backup)], b""),
        "backup",
    );
    let data = path("restored");
    ok(
        &common::cli_at(
            Path::new("/nonexistent/vaultd.sock"),
            None,
            &[
                "backup",
                "restore",
                &name(&backup),
                "--data-dir",
                &name(&data),
            ],
            b"",
        ),
        "restore",
    );
    let restored = Daemon::start_on(&data, &daemon.keys);
    common::wait_unsealed(&restored.client()).await;
    let out = restored.cli(None, &["--json", "audit", "verify", "--full"], b"");
    let report: Report = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(out.status.code(), Some(0), "{:?}", report.problems);
    assert_eq!(report.checkpoint, Some(checkpoint_2.through));
    let history = restored
        .client()
        .key_history(Some("acme"))
        .await
        .expect("history");
    assert!(history.events.iter().any(|e| e.op == "tenant.keys.rotate"));
}
