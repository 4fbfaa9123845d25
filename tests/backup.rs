//! `vault-cli backup create|restore|verify` end to end: real daemons, real CLI processes. A
//! backup taken under concurrent writes restores every write acknowledged before it started
//! into a new directory that a second daemon serves. Damaged files and other vaults' backups are
//! refused, no file is replaced by accident, and the capability is enforced and audited.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vault_client::audit::{Entry, Outcome};
use vault_client::{ApiCode, AuditQuery, Client};

use common::{Daemon, SEAL_ONLY_UID, SOCKET_GID, cli_at, put, wait_unsealed};

/// Concurrent writers during the backup.
const WRITERS: usize = 8;
/// A secret that must not appear in clear in a backup.
const PLANTED: &str = "planted-secret-8f2e91c4";

/// A token put that the daemon acknowledged.
struct Acked {
    id: String,
    secret: String,
    /// When the request was sent.
    sent: Instant,
    /// When its answer arrived.
    acked: Instant,
}

/// Puts fresh tokens until `stop`, counting acknowledgements in `count`.
async fn writer(
    client: Client,
    w: usize,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> Vec<Acked> {
    let mut acked = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let id = format!("w{w}-{i}");
        let secret = format!("secret-{w}-{i}-{:?}", Instant::now());
        let sent = Instant::now();
        client
            .put_token("acme", &id, &put(&secret, "DE89370400440532013000"))
            .await
            .expect("put");
        acked.push(Acked {
            id,
            secret,
            sent,
            acked: Instant::now(),
        });
        count.fetch_add(1, Ordering::SeqCst);
    }
    acked
}

/// Waits (up to 60 s) until `count` reaches `n`.
async fn wait_for(count: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "writers are stuck");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An initialized daemon with tenant `acme` and `n` tokens `base-{i}`.
async fn vault_with_tokens(n: usize) -> Daemon {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    for i in 0..n {
        c.put_token(
            "acme",
            &format!("base-{i}"),
            &put(&format!("base-secret-{i}"), "DE01"),
        )
        .await
        .expect("put");
    }
    daemon
}

/// `vault-cli --json backup create FILE` as the operator: the printed report.
fn create(daemon: &Daemon, file: &Path) -> serde_json::Value {
    let out = daemon.cli(None, &["--json", "backup", "create", path(file)], b"");
    assert_eq!(code(&out), 0, "backup create: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// Names in `dir` other than `keep`: left-over partial files.
fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// Every file below `dir` with its size and a hash of its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (usize, u64)> {
    use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
    common::files(dir)
        .into_iter()
        .map(|f| {
            let bytes = fs::read(&f).expect("read");
            let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(&bytes);
            (f, (bytes.len(), hash))
        })
        .collect()
}

/// The last byte of the entry or group frame around offset `near` of a backup file (magic and
/// version are 12 bytes; each frame is kind u8, len u32 LE, payload; kind 2 is an entry, 3 a
/// group: the audit log's records, then the groups after the scan).
fn value_byte_near(file: &[u8], near: usize) -> usize {
    let mut at = 12;
    loop {
        let kind = file[at];
        let len = u32::from_le_bytes(file[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        let end = at + 5 + len;
        if end > near {
            assert!(
                kind == 2 || kind == 3,
                "the middle of the file is in an entry or a group"
            );
            return end - 1;
        }
        at = end;
    }
}

/// The entries of `op` in the daemon's log.
async fn entries(c: &Client, op: &str) -> Vec<Entry> {
    let query = AuditQuery {
        op: Some(op.into()),
        limit: Some(10_000),
        ..AuditQuery::default()
    };
    c.audit(&query).await.expect("audit").entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_concurrent_writes_restores_every_acknowledged_write() {
    let daemon = vault_with_tokens(50).await;
    let c = daemon.client();
    let vault_id = c.status().await.expect("status").vault_id.expect("id");

    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(c.clone(), w, stop.clone(), count.clone())))
        .collect();
    wait_for(&count, 200).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vault.bak");
    let (socket, args) = (
        daemon.socket.clone(),
        ["--json", "backup", "create", path(&file)].map(str::to_owned),
    );
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_at(&socket, None, &args, b"")
    })
    .await
    .expect("cli thread");
    let finished = Instant::now();
    // Writes that are sent only after the backup ended must not be in it.
    let after = count.load(Ordering::SeqCst);
    wait_for(&count, after + 50).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    assert_eq!(code(&out), 0, "backup create: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["vault_id"], vault_id.as_str());
    let position = report["position"].as_u64().expect("position");
    let sha256 = report["sha256"].as_str().expect("sha256").to_owned();
    assert!(position > 0 && report["entries"].as_u64() > Some(0));
    assert_eq!(
        report["bytes"].as_u64(),
        Some(fs::metadata(&file).expect("stat").len())
    );
    assert_eq!(mode(&file), 0o600, "a backup is owner-only");
    assert!(
        others(dir.path(), &["vault.bak"]).is_empty(),
        "no partial file left"
    );

    // Offline check: the same checksum, no daemon.
    let out = cli_at(
        Path::new("/nonexistent/vaultd.sock"),
        None,
        &["--json", "backup", "verify", path(&file)],
        b"",
    );
    assert_eq!(code(&out), 0, "verify: {}", text(&out.stderr));
    let verified: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(verified["sha256"], sha256.as_str());
    assert_eq!(verified["position"].as_u64(), Some(position));

    // Restore into a new directory and serve it with the same KMS key.
    let target = tempfile::tempdir().expect("tempdir");
    let data = target.path().join("data");
    let out = cli_at(
        Path::new("/nonexistent/vaultd.sock"),
        None,
        &[
            "--json",
            "backup",
            "restore",
            path(&file),
            "--data-dir",
            path(&data),
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "restore: {}", text(&out.stderr));
    let restored: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(restored["position"].as_u64(), Some(position));
    assert!(restored["replaced"].is_null());
    assert!(text(&out.stderr).contains("backup.restore"));
    let second = Daemon::start_on(&data, &daemon.keys);
    let c2 = second.client();
    wait_unsealed(&c2).await;
    assert_eq!(c2.status().await.expect("status").vault_id, Some(vault_id));

    for i in 0..50 {
        let token = c2
            .unseal_token("acme", &format!("base-{i}"), None)
            .await
            .expect("base token restored");
        let secret = token.secret;
        assert_eq!(
            secret.expose_secret(),
            format!("base-secret-{i}").as_bytes()
        );
    }
    let (mut before, mut during_in, mut during_out, mut later) = (0, 0, 0, 0);
    for a in &acked {
        match c2.unseal_token("acme", &a.id, None).await {
            Ok(token) => {
                let secret = token.secret;
                assert_eq!(secret.expose_secret(), a.secret.as_bytes(), "{}", a.id);
                assert!(
                    a.sent < finished,
                    "{} was sent after the backup ended, yet it is in the backup",
                    a.id
                );
                if a.acked < started {
                    before += 1;
                } else {
                    during_in += 1;
                }
            }
            Err(e) if e.code() == Some(&ApiCode::NotFound) => {
                assert!(
                    a.acked >= started,
                    "{} was acknowledged before the backup started, but is not restored",
                    a.id
                );
                if a.sent < finished {
                    during_out += 1;
                } else {
                    later += 1;
                }
            }
            Err(e) => panic!("{}: {e}", a.id),
        }
    }
    eprintln!(
        "acknowledged before the backup: {before}; during it: {during_in} restored, \
         {during_out} not; after it: {later}"
    );
    assert!(
        before >= 200 && later >= 50,
        "{before} before, {later} after"
    );

    // The restored log verifies, and says that it was restored, from which file and position.
    let out = second.cli(None, &["audit", "verify"], b"");
    assert_eq!(
        code(&out),
        0,
        "audit verify: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let restores = entries(&c2, "backup.restore").await;
    assert_eq!(restores.len(), 1, "one backup.restore entry");
    let detail = &restores[0].detail;
    assert_eq!(detail.get("sha256"), Some(&sha256));
    assert_eq!(detail.get("position"), Some(&position.to_string()));
    // The request that took the backup was audited before the backup started, so the
    // snapshot holds its entry.
    let started_entries = entries(&c2, "sys.backup").await;
    assert_eq!(
        started_entries.len(),
        1,
        "the sys.backup entry is in the backup"
    );
    assert_eq!(started_entries[0].outcome, Outcome::Ok);
}

#[tokio::test]
async fn damaged_backup_is_refused_and_changes_nothing() {
    let mut daemon = vault_with_tokens(30).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vault.bak");
    create(&daemon, &file);
    let mut bytes = fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    // One byte in the middle of the file: in a stored value, which only the checksum covers.
    let at = value_byte_near(&bytes, middle);
    bytes[at] ^= 0x01;
    let damaged = dir.path().join("damaged.bak");
    fs::write(&damaged, &bytes).expect("write");
    let cut = dir.path().join("cut.bak");
    fs::write(&cut, &bytes[..middle]).expect("write");

    let nowhere = Path::new("/nonexistent/vaultd.sock");
    for bad in [&damaged, &cut] {
        let out = cli_at(nowhere, None, &["backup", "verify", path(bad)], b"");
        assert_eq!(code(&out), 1, "verify {}", bad.display());
        assert!(
            text(&out.stderr).contains("damaged"),
            "{}",
            text(&out.stderr)
        );
    }

    daemon.terminate();
    let data = daemon.data.clone();
    let before = snapshot(&data);
    for bad in [&damaged, &cut] {
        let out = cli_at(
            nowhere,
            None,
            &[
                "backup",
                "restore",
                path(bad),
                "--data-dir",
                path(&data),
                "--force",
            ],
            b"",
        );
        let stderr = text(&out.stderr);
        assert_eq!(code(&out), 1, "restore {}: {stderr}", bad.display());
        assert!(stderr.contains("damaged"), "{stderr}");
        assert!(
            stderr.contains("was not changed"),
            "the message says nothing changed: {stderr}"
        );
    }
    let out = cli_at(
        nowhere,
        None,
        &[
            "backup",
            "restore",
            path(&damaged),
            "--data-dir",
            path(&data),
            "--force",
        ],
        b"",
    );
    assert!(
        text(&out.stderr).contains("checksum"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(snapshot(&data), before, "the data directory is unchanged");
    let parent = data.parent().expect("parent");
    assert!(
        others(parent, &["data", "keys", "vaultd.toml", "vaultd.log"]).is_empty(),
        "no staging or replaced directory beside it"
    );

    // The vault is as it was.
    daemon.restart();
    let c = daemon.client();
    wait_unsealed(&c).await;
    assert_eq!(
        c.list_tokens("acme", None, Some(1000))
            .await
            .expect("list")
            .items
            .len(),
        30
    );
}

#[tokio::test]
async fn another_vaults_backup_needs_allow_other_vault() {
    let mut first = vault_with_tokens(3).await;
    let other = vault_with_tokens(5).await;
    let first_id = first
        .client()
        .status()
        .await
        .expect("status")
        .vault_id
        .expect("id");
    let other_id = other
        .client()
        .status()
        .await
        .expect("status")
        .vault_id
        .expect("id");
    assert_ne!(first_id, other_id);
    let dir = tempfile::tempdir().expect("tempdir");
    let own = dir.path().join("own.bak");
    create(&first, &own);
    let file = dir.path().join("other.bak");
    create(&other, &file);

    let data = first.data.clone();
    let nowhere = Path::new("/nonexistent/vaultd.sock");
    // A running vault's directory is refused: its store is locked.
    let out = cli_at(
        nowhere,
        None,
        &[
            "backup",
            "restore",
            path(&own),
            "--data-dir",
            path(&data),
            "--force",
        ],
        b"",
    );
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is vaultd still running?"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        first
            .client()
            .status()
            .await
            .expect("still serving")
            .vault_id,
        Some(first_id.clone())
    );
    first.terminate();
    let restore = |backup: &Path, flags: &[&str]| {
        let mut args = vec![
            "--json",
            "backup",
            "restore",
            path(backup),
            "--data-dir",
            path(&data),
        ];
        args.extend_from_slice(flags);
        cli_at(nowhere, None, &args, b"")
    };
    // Another vault: refused, naming both, with or without --force.
    for flags in [&[][..], &["--force"]] {
        let out = restore(&file, flags);
        let stderr = text(&out.stderr);
        assert_eq!(code(&out), 2, "{flags:?}: {stderr}");
        assert!(
            stderr.contains(&first_id) && stderr.contains(&other_id),
            "names both vault ids: {stderr}"
        );
        assert!(stderr.contains("--allow-other-vault"), "{stderr}");
    }
    // Its own backup, or another vault's with --allow-other-vault alone: a vault is there.
    for (backup, flags) in [(&own, &[][..]), (&file, &["--allow-other-vault"])] {
        let out = restore(backup, flags);
        let stderr = text(&out.stderr);
        assert_eq!(code(&out), 2, "{flags:?}: {stderr}");
        assert!(stderr.contains("--force"), "{stderr}");
    }
    let parent = data.parent().expect("parent");
    assert!(
        others(parent, &["data", "keys", "vaultd.toml", "vaultd.log"]).is_empty(),
        "refusals leave no staging or replaced directory"
    );

    let out = restore(&file, &["--allow-other-vault", "--force"]);
    assert_eq!(code(&out), 0, "restore: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["vault_id"], other_id.as_str());
    let replaced = PathBuf::from(report["replaced"].as_str().expect("replaced dir"));

    // The directory now holds the other vault; it opens with that vault's KMS key.
    let served = Daemon::start_on(&data, &other.keys);
    let c = served.client();
    wait_unsealed(&c).await;
    assert_eq!(c.status().await.expect("status").vault_id, Some(other_id));
    assert_eq!(
        c.list_tokens("acme", None, None)
            .await
            .expect("list")
            .items
            .len(),
        5
    );
    let restores = entries(&c, "backup.restore").await;
    assert_eq!(restores.len(), 1);
    assert_eq!(
        restores[0].detail.get("replaced_vault_id"),
        Some(&first_id),
        "the entry names the vault that was replaced"
    );

    // The old vault, kept aside, is whole: the refusals before did not touch its contents.
    let old = Daemon::start_on(&replaced, &first.keys);
    let c = old.client();
    wait_unsealed(&c).await;
    assert_eq!(c.status().await.expect("status").vault_id, Some(first_id));
    assert_eq!(
        c.list_tokens("acme", None, None)
            .await
            .expect("list")
            .items
            .len(),
        3
    );
}

#[tokio::test]
async fn backup_create_never_replaces_a_file_without_force() {
    let daemon = vault_with_tokens(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vault.bak");
    fs::write(&file, b"keep me").expect("write");
    let out = daemon.cli(None, &["backup", "create", path(&file)], b"");
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--force"));
    assert_eq!(fs::read(&file).expect("read"), b"keep me");
    assert!(others(dir.path(), &["vault.bak"]).is_empty());

    let out = daemon.cli(None, &["backup", "create", path(&file), "--force"], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for field in [
        "vault id", "position", "entries", "groups", "sha256", "bytes",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(field)),
            "{field}: {stdout}"
        );
    }
    assert_eq!(mode(&file), 0o600);
    let out = daemon.cli(None, &["backup", "verify", path(&file)], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(others(dir.path(), &["vault.bak"]).is_empty());
}

#[tokio::test]
async fn backup_needs_sys_backup_and_works_sealed() {
    let daemon = Daemon::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Writable by the seal-only uid, which tries first.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let file = dir.path().join("vault.bak");

    // Nothing to back up before init (exit 3, like every uninitialized error).
    let out = daemon.cli(None, &["backup", "create", path(&file)], b"");
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("uninitialized"));
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "t1", &put(PLANTED, "DE01"))
        .await
        .expect("put");

    let out = daemon.cli(
        Some((SEAL_ONLY_UID, SOCKET_GID)),
        &["backup", "create", path(&file)],
        b"",
    );
    assert_eq!(code(&out), 4, "denied: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("sys:backup"));
    assert!(others(dir.path(), &[]).is_empty(), "nothing left behind");
    let denied: Vec<Entry> = entries(&c, "sys.backup")
        .await
        .into_iter()
        .filter(|e| e.outcome == Outcome::Denied)
        .collect();
    assert_eq!(denied.len(), 1, "the denial is audited");
    assert!(
        matches!(denied[0].actor, vault_client::audit::Actor::Caller { uid, .. } if uid == SEAL_ONLY_UID)
    );

    // Sealed: the backup holds ciphertext only, so it works.
    c.seal().await.expect("seal");
    let out = daemon.cli(None, &["--json", "backup", "create", path(&file)], b"");
    assert_eq!(code(&out), 0, "sealed backup: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(report["entries"].as_u64() > Some(0));
    let bytes = fs::read(&file).expect("read");
    assert!(
        !common::contains(&bytes, PLANTED.as_bytes()),
        "no secret in clear"
    );
}
