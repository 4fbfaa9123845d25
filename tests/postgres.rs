//! vaultd on the PostgreSQL backend (docs/ha.md), against the real binary and the test cluster
//! that `scripts/test` starts (`scripts/pg-cluster`: a primary with a synchronous hot standby).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vault_client::wire::JobState;
use vault_client::{ApiCode, AuditQuery, Client};

use common::{Daemon, put, wait_unsealed};

/// A new, empty database on the test cluster; its connection string.
async fn new_database() -> String {
    let url = std::env::var("VAULTD_TEST_PG").expect(
        "VAULTD_TEST_PG names the test PostgreSQL cluster: run scripts/test, or \
         eval \"$(scripts/pg-cluster start DIR)\"",
    );
    let mut name = [0u8; 8];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("urandom"),
        &mut name,
    )
    .expect("random");
    let name = format!("e2e_{}", hex::encode(name));
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    format!("{url} dbname={name}")
}

async fn secret_of(c: &Client, id: &str) -> String {
    let token = c.unseal_token("acme", id, None).await.expect("unseal");
    let secret = token.secret;
    String::from_utf8(secret.expose_secret().to_vec()).expect("utf-8")
}

#[tokio::test]
async fn a_vault_in_postgres_survives_a_restart_with_its_audit_chain() {
    let url = new_database().await;
    let mut node = Daemon::start_on_postgres(&url, "node-a", None);
    let c = node.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    for i in 0..20 {
        c.put_token("acme", &format!("t-{i}"), &put(&format!("s-{i}"), "DE01"))
            .await
            .expect("put");
    }
    node.kill();
    node.restart();
    let c = node.client();
    wait_unsealed(&c).await;
    for i in 0..20 {
        assert_eq!(secret_of(&c, &format!("t-{i}")).await, format!("s-{i}"));
    }
    let report = c.audit_verify(None).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
    assert!(report.entries > 40, "{report:?}");
    assert!(
        node.log_text().contains("store: PostgreSQL"),
        "{}",
        node.log_text()
    );
}

/// Two unsealed nodes on one database (the second unwraps the same master key through the same
/// KMS key), with tenant `acme`.
async fn two_nodes(url: &str) -> (Daemon, Daemon) {
    let a = Daemon::start_on_postgres(url, "node-a", None);
    let ca = a.client();
    ca.init().await.expect("init");
    ca.create_tenant("acme").await.expect("tenant");
    let b = Daemon::start_on_postgres(url, "node-b", Some(&a.keys));
    wait_unsealed(&b.client()).await;
    (a, b)
}

/// One compare-and-set writer: `attempts` times, reads a token's revision and puts the next
/// one; returns the revisions it won as (token, revision, key version).
async fn cas_writer(
    c: Client,
    writer: usize,
    attempts: usize,
) -> Result<Vec<(String, u64, u32)>, String> {
    let mut won = Vec::new();
    for i in 0..attempts {
        let id = format!("cas-{}", (writer + i) % CAS_TOKENS);
        let seen = c
            .unseal_token("acme", &id, None)
            .await
            .map_err(|e| format!("writer {writer}: unseal: {e}"))?;
        let mut req = put(&format!("{id} by {writer} at {i}"), "DE01");
        req.expected_revision = Some(seen.revision);
        match c.put_token("acme", &id, &req).await {
            Ok(done) => {
                assert_eq!(done.revision, seen.revision + 1);
                won.push((id, done.revision, done.key_version));
            }
            Err(e) if e.code() == Some(&ApiCode::Conflict) => {}
            Err(e) => return Err(format!("writer {writer}: {e}")),
        }
    }
    Ok(won)
}

/// Tokens the compare-and-set writers share.
const CAS_TOKENS: usize = 3;

// Multi-threaded: 8 writers over two nodes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_write_at_once_and_compare_and_set_is_exact_across_them() {
    let url = new_database().await;
    let (a, b) = two_nodes(&url).await;
    let (ca, cb) = (a.client(), b.client());

    // Tokens put through one node unseal through the other, both ways.
    for i in 0..5 {
        let id = format!("a-{i}");
        ca.put_token("acme", &id, &put(&id, "DE01"))
            .await
            .expect("put through a");
        let id = format!("b-{i}");
        cb.put_token("acme", &id, &put(&id, "DE01"))
            .await
            .expect("put through b");
    }
    for i in 0..5 {
        let id = format!("a-{i}");
        assert_eq!(secret_of(&cb, &id).await, id);
        let id = format!("b-{i}");
        assert_eq!(secret_of(&ca, &id).await, id);
    }

    // 8 compare-and-set writers, 4 on each node, on the same 3 tokens; node a rotates the
    // tenant's data key while they run.
    for t in 0..CAS_TOKENS {
        ca.put_token("acme", &format!("cas-{t}"), &put("initial", "DE01"))
            .await
            .expect("initial put");
    }
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let c = if w % 2 == 0 { a.client() } else { b.client() };
            tokio::spawn(cas_writer(c, w, 40))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ca.rotate_tenant("acme").await.expect("rotate on a");
    let mut won = Vec::new();
    for w in writers {
        match w.await.expect("writer") {
            Ok(w) => won.extend(w),
            Err(e) => panic!("{e}\nnode a:\n{}\nnode b:\n{}", a.log_text(), b.log_text()),
        }
    }
    // Every revision of every token was won exactly once, from 2 up to its last.
    for t in 0..CAS_TOKENS {
        let id = format!("cas-{t}");
        let mut revisions: Vec<u64> = won.iter().filter(|w| w.0 == id).map(|w| w.1).collect();
        revisions.sort_unstable();
        let last = secret_and_revision(&cb, &id).await.1;
        assert_eq!(revisions, (2..=last).collect::<Vec<_>>(), "{id}");
    }
    eprintln!(
        "{} compare-and-set wins over two nodes, each revision once",
        won.len()
    );

    // A rotation made on a is used by b's next put.
    let rotated = ca.rotate_tenant("acme").await.expect("rotate on a");
    let done = cb
        .put_token("acme", "after-rotation", &put("x", "DE01"))
        .await
        .expect("put through b");
    assert_eq!(
        done.key_version, rotated.key_version,
        "b used a's new data key"
    );

    // Counts per key version are exact: what the nodes counted is what is stored.
    let mut stored = std::collections::BTreeMap::<u32, u64>::new();
    for id in all_token_ids() {
        *stored.entry(key_version_of(&url, &id).await).or_default() += 1;
    }
    let info = cb.tenant("acme").await.expect("tenant info");
    let counted: std::collections::BTreeMap<u32, u64> = info
        .key_versions
        .iter()
        .filter(|v| v.records > 0)
        .map(|v| (v.version, v.records))
        .collect();
    assert_eq!(counted, stored, "{info:?}");
    assert_eq!(info.tokens, stored.values().sum::<u64>());
}

/// The ids `two_nodes_write_at_once…` stores.
fn all_token_ids() -> Vec<String> {
    let mut ids: Vec<String> = (0..5)
        .flat_map(|i| [format!("a-{i}"), format!("b-{i}")])
        .collect();
    ids.extend((0..CAS_TOKENS).map(|t| format!("cas-{t}")));
    ids.push("after-rotation".into());
    ids
}

async fn secret_and_revision(c: &Client, id: &str) -> (String, u64) {
    let token = c.unseal_token("acme", id, None).await.expect("unseal");
    let secret = token.secret;
    let text = String::from_utf8(secret.expose_secret().to_vec()).expect("utf-8");
    (text, token.revision)
}

/// The data key version a stored record is sealed under, read from the database.
async fn key_version_of(url: &str, id: &str) -> u32 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let key = format!("r/acme/{id}").into_bytes();
    let row = client
        .query_one("SELECT v FROM kv WHERE k = $1", &[&key])
        .await
        .expect("a stored record");
    let record: Vec<u8> = row.get(0);
    record_key_version(&record)
}

// Multi-threaded: the writers keep writing while the test blocks on kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_node_is_killed_under_load_the_other_keeps_serving_every_acknowledged_write() {
    let url = new_database().await;
    let (mut a, b) = two_nodes(&url).await;
    let writer = |c: Client, prefix: &'static str| {
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..400 {
                let id = format!("{prefix}-{i}");
                match c.put_token("acme", &id, &put(&id, "DE01")).await {
                    Ok(_) => acked.push(id),
                    Err(_) if prefix == "a" => break,
                    Err(e) => panic!("node b refused a write: {e}"),
                }
            }
            acked
        })
    };
    let on_a = writer(a.client(), "a");
    let on_b = writer(b.client(), "b");
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.kill();
    let acked_a = on_a.await.expect("writer on a");
    let acked_b = on_b.await.expect("writer on b");
    assert!(!acked_a.is_empty(), "a acknowledged no writes");
    assert_eq!(acked_b.len(), 400, "b kept serving while a died");
    let cb = b.client();
    for id in acked_a.iter().chain(&acked_b) {
        assert_eq!(
            &secret_of(&cb, id).await,
            id,
            "acknowledged, read back through b"
        );
    }
    eprintln!(
        "{} puts acknowledged by node a before kill -9 and {} by b, all read back through b",
        acked_a.len(),
        acked_b.len()
    );
    assert_every_chain_verifies(&cb, &["node-a", "node-b"]).await;
}

/// `audit verify` through `c` is ok, over a chain of each of `nodes` and nothing else.
async fn assert_every_chain_verifies(c: &Client, nodes: &[&str]) {
    let report = c.audit_verify(None).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
    let chains: Vec<&str> = report.chains.iter().map(|c| c.node.as_str()).collect();
    assert_eq!(chains, nodes, "{report:?}");
    assert!(
        report.chains.iter().all(|c| c.ok && c.entries > 0),
        "{report:?}"
    );
    assert_eq!(
        report.entries,
        report.chains.iter().map(|c| c.entries).sum::<u64>()
    );
}

#[tokio::test]
async fn every_nodes_chain_is_verified_exported_and_searched_from_any_node() {
    let url = new_database().await;
    let (a, b) = two_nodes(&url).await;
    let (ca, cb) = (a.client(), b.client());
    ca.put_token("acme", "t-a", &put("secret-a", "DE01"))
        .await
        .expect("put a");
    cb.put_token("acme", "t-b", &put("secret-b", "DE01"))
        .await
        .expect("put b");
    ca.rotate_tenant("acme").await.expect("rotate on a");
    cb.rotate_tenant("acme").await.expect("rotate on b");

    // Either node verifies both chains; the entries and heads name their node.
    assert_every_chain_verifies(&ca, &["node-a", "node-b"]).await;
    let chains = cb.audit_chains().await.expect("chains");
    assert_eq!(chains.own.as_deref(), Some("node-b"));
    let page = cb
        .audit(&vault_client::AuditQuery {
            node: Some("node-a".into()),
            op: Some("token.put".into()),
            ..Default::default()
        })
        .await
        .expect("a's chain through b");
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].node.as_deref(), Some("node-a"));
    assert_eq!(page.entries[0].token.as_deref(), Some("t-a"));

    // The key history merges both chains' key events.
    let history = cb.key_history(Some("acme")).await.expect("history");
    let rotations: Vec<Option<&str>> = history
        .events
        .iter()
        .filter(|e| e.op == "tenant.keys.rotate")
        .map(|e| e.node.as_deref())
        .collect();
    assert_eq!(rotations, [Some("node-a"), Some("node-b")], "{history:?}");

    // Search merges the chains by time; --node reads one.
    let search = |args: &[&str]| {
        let out = b.cli(None, args, b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let merged = search(&["--json", "audit", "search", "--op", "token.put"]);
    let tokens: Vec<String> = merged
        .lines()
        .map(|l| {
            let e: vault_client::audit::Entry = serde_json::from_str(l).expect("an entry");
            e.token.expect("a token")
        })
        .collect();
    assert_eq!(tokens, ["t-a", "t-b"], "{merged}");
    let one = search(&[
        "--json",
        "audit",
        "search",
        "--op",
        "token.put",
        "--node",
        "node-b",
    ]);
    assert_eq!(one.lines().count(), 1, "{one}");

    // The export holds every chain and verifies offline with the public key alone.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("audit.jsonl");
    let exported = b.cli(None, &["audit", "export", &file.to_string_lossy()], b"");
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let key = dir.path().join("audit.pub");
    std::fs::write(&key, cb.audit_pubkey().await.expect("pubkey").public_key).expect("key");
    let verify_offline = |json: &str| {
        let args = [json, "audit", "verify", "--offline"];
        let (file, key) = (file.to_string_lossy(), key.to_string_lossy());
        let args: Vec<&str> = args.iter().copied().filter(|a| !a.is_empty()).collect();
        let args = [&args[..], &[file.as_ref(), "--pubkey", key.as_ref()]].concat();
        b.cli(None, &args, b"")
    };
    let offline = verify_offline("--json");
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stdout)
    );
    let report: vault_client::audit::Report =
        serde_json::from_slice(&offline.stdout).expect("a report");
    let nodes: Vec<&str> = report.chains.iter().map(|c| c.node.as_str()).collect();
    assert_eq!(nodes, ["node-a", "node-b"]);
    // A head moved from one chain to the other fails: it signs its node.
    let text = std::fs::read_to_string(&file).expect("export");
    let forged: String = text
        .lines()
        .map(
            |l| match l.starts_with("{\"head\"") && l.contains("\"node\":\"node-a\"") {
                true => l.replace("\"node\":\"node-a\"", "\"node\":\"node-b\""),
                false => l.to_owned(),
            },
        )
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&file, forged).expect("write");
    let offline = verify_offline("");
    assert!(!offline.status.success(), "a forged export verified");
}

/// A cluster of this test's own (the shared one must not lose its primary), stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
    /// PostgreSQL's programs.
    bin: String,
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new("scripts/pg-cluster")
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("scripts/pg-cluster");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let export = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .and_then(|l| l.strip_suffix('\''))
                .unwrap_or_else(|| panic!("{name} in the output of scripts/pg-cluster"))
                .to_owned()
        };
        Self {
            url: export("VAULTD_TEST_PG"),
            bin: export("VAULTD_TEST_PG_BIN"),
            dir,
        }
    }

    /// Runs a PostgreSQL program as the user that owns the cluster.
    fn pg(&self, program: &str, args: &[&str]) -> std::process::Output {
        let bin = &self.bin;
        let mut cmd = if is_root() {
            let mut cmd = std::process::Command::new("setpriv");
            cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
            cmd.arg(format!("{bin}/{program}"));
            cmd
        } else {
            std::process::Command::new(format!("{bin}/{program}"))
        };
        cmd.args(args).current_dir(self.dir.path());
        cmd.output().expect(program)
    }

    fn primary_pid(&self) -> i32 {
        let pid = std::fs::read_to_string(self.dir.path().join("primary/postmaster.pid"))
            .expect("postmaster.pid");
        pid.lines()
            .next()
            .expect("pid")
            .trim()
            .parse()
            .expect("a pid")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("scripts/pg-cluster")
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the effective uid).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

// Multi-threaded: the writers keep writing while the test blocks on kill and pg_ctl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_reconnect_after_the_primary_is_killed_and_the_standby_promoted() {
    let cluster = Cluster::start();
    let (a, b) = two_nodes(&cluster.url).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = |c: Client, prefix: &'static str| {
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0u32);
            for i in 0.. {
                if *stopped.borrow() {
                    break;
                }
                let id = format!("{prefix}-{i}");
                match c.put_token("acme", &id, &put(&id, "DE01")).await {
                    Ok(_) => acked.push(id),
                    Err(_) => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (acked, refused)
        })
    };
    let timeout = Duration::from_secs(5);
    let writers = [
        writer(a.client().with_timeout(timeout), "a"),
        writer(b.client().with_timeout(timeout), "b"),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;
    // kill -9 the primary, all of it (as a crash of its machine would): the postmaster's
    // children first, found by their parent's PID, then the postmaster. The synchronous
    // standby has every acknowledged commit.
    let primary = cluster.primary_pid();
    let _ = std::process::Command::new("pkill")
        .args(["-KILL", "-P", &primary.to_string()])
        .status();
    assert_eq!(common::unsafe_free_kill(primary, 9), 0);
    let standby = cluster.dir.path().join("standby");
    let promoted = cluster.pg(
        "pg_ctl",
        &["promote", "-w", "-D", &standby.to_string_lossy()],
    );
    assert!(promoted.status.success(), "{promoted:?}");
    // Alone now: commits must not wait for a standby that is gone.
    let sock = cluster.dir.path().join("sock-standby");
    let relaxed = cluster.pg(
        "psql",
        &[
            "-h",
            &sock.to_string_lossy(),
            "-U",
            "postgres",
            "-c",
            "ALTER SYSTEM SET synchronous_standby_names = ''",
            "-c",
            "SELECT pg_reload_conf()",
        ],
    );
    assert!(relaxed.status.success(), "{relaxed:?}");
    // Each node finds the promoted standby by itself (target_session_attrs=read-write).
    for (node, name) in [(&a, "a"), (&b, "b")] {
        let c = node.client();
        let id = format!("after-failover-{name}");
        let mut written = false;
        for _ in 0..200 {
            if c.put_token("acme", &id, &put(&id, "DE01")).await.is_ok() {
                written = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            written,
            "no write through {name} after the failover:\n{}",
            node.log_text()
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).expect("stop the writers");
    let mut acked = Vec::new();
    for w in writers {
        let (mut done, refused) = w.await.expect("writer");
        eprintln!(
            "{} puts acknowledged across the failover ({refused} refused while the primary was gone)",
            done.len()
        );
        acked.append(&mut done);
    }
    let c = b.client();
    for id in &acked {
        assert_eq!(
            &secret_of(&c, id).await,
            id,
            "acknowledged before or after the failover"
        );
    }
    // And they are in the promoted standby, the only server left.
    let standby_url = format!("host={} user=postgres", sock.display());
    let (direct, connection) = tokio_postgres::connect(&standby_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the promoted standby");
    tokio::spawn(connection);
    let stored: i64 = direct
        .query_one(
            "SELECT count(*) FROM kv WHERE position('r/acme/'::bytea in k) = 1",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert!(
        stored >= i64::try_from(acked.len()).expect("fits"),
        "{stored} records in the promoted standby for {} acknowledged puts",
        acked.len()
    );
    assert_every_chain_verifies(&a.client(), &["node-a", "node-b"]).await;
}

#[tokio::test]
async fn a_node_follows_a_master_key_rotation_made_by_another() {
    let url = new_database().await;
    let a = Daemon::start_on_postgres(&url, "node-a", None);
    let ca = a.client();
    ca.init().await.expect("init");
    ca.create_tenant("acme").await.expect("tenant");
    ca.put_token("acme", "t-1", &put("before", "DE01"))
        .await
        .expect("put");
    let b = Daemon::start_on_postgres(&url, "node-b", Some(&a.keys));
    let cb = b.client();
    wait_unsealed(&cb).await;
    // A rotates the master key: every data key is rewrapped under version 2, which B, unsealed
    // under version 1, does not hold.
    let rotated = ca.rotate_master().await.expect("rotate master");
    assert_eq!(rotated.master_key_version, 2);
    assert_eq!(secret_of(&cb, "t-1").await, "before", "{}", b.log_text());
    assert!(
        b.log_text()
            .contains("followed a master key rotation made by another node"),
        "{}",
        b.log_text()
    );
    let status = cb.status().await.expect("status");
    assert_eq!(status.master_key_version, Some(2), "{status:?}");
}

/// The key version in a stored record's header (docs/record-format.md: big-endian u32 at 1).
fn record_key_version(record: &[u8]) -> u32 {
    assert_eq!(record[0], 2, "record format 2");
    u32::from_be_bytes(record[1..5].try_into().expect("4 bytes"))
}

/// The test cluster's primary over TCP with TLS (`VAULTD_TEST_PG_TLS`: host 127.0.0.1, its port,
/// a password) and the CA that signed its certificate (`VAULTD_TEST_PG_TLS_CA`).
fn tls_primary() -> (String, PathBuf) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} names the test cluster's TLS listener: run scripts/test, or \
                 eval \"$(scripts/pg-cluster start DIR)\""
            )
        })
    };
    (
        var("VAULTD_TEST_PG_TLS"),
        PathBuf::from(var("VAULTD_TEST_PG_TLS_CA")),
    )
}

/// A new, empty database made over the Unix socket; its name, and the admin connection (which
/// sees every session in `pg_stat_ssl`).
async fn new_database_for_tls() -> (tokio_postgres::Client, String) {
    let url = new_database().await;
    let name = url
        .rsplit_once(" dbname=")
        .map(|(_, name)| name.to_owned())
        .expect("dbname");
    let admin_url = std::env::var("VAULTD_TEST_PG").expect("VAULTD_TEST_PG");
    let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(connection);
    (admin, name)
}

#[tokio::test]
async fn a_node_on_postgres_over_verified_tls_serves_and_its_sessions_are_tls() {
    let (tls_url, ca) = tls_primary();
    let (admin, name) = new_database_for_tls().await;
    // channel_binding=require: SCRAM bound to this TLS session (SCRAM-SHA-256-PLUS), or no
    // connection.
    let url = format!("{tls_url} dbname={name} channel_binding=require");
    let node = Daemon::try_start_on_postgres_tls(&url, "node-a", &ca)
        .unwrap_or_else(|log| panic!("vaultd did not start over TLS:\n{log}"));
    let c = node.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "t-1", &put("over-tls", "DE01"))
        .await
        .expect("put");
    assert_eq!(secret_of(&c, "t-1").await, "over-tls");
    let report = c.audit_verify(None).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);

    // Every session vaultd holds on its database is TLS 1.3, as the server sees it.
    let sessions = admin
        .query(
            "SELECT s.ssl, s.version FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname::text = $1",
            &[&name],
        )
        .await
        .expect("pg_stat_ssl");
    assert!(!sessions.is_empty(), "no session of vaultd on {name}");
    for row in &sessions {
        let (ssl, version): (bool, Option<String>) = (row.get(0), row.get(1));
        assert!(ssl, "a session of vaultd without TLS");
        assert_eq!(version.as_deref(), Some("TLSv1.3"));
    }
    eprintln!("{} sessions of vaultd, all TLS 1.3", sessions.len());
    let log = node.log_text();
    assert!(
        log.contains("store: PostgreSQL") && log.contains("ca_file"),
        "{log}"
    );
    assert!(!log.contains("password="), "{log}");
}

#[tokio::test]
async fn a_node_refuses_a_postgres_server_certified_by_another_ca_or_for_another_name() {
    let (tls_url, ca) = tls_primary();
    let (_admin, name) = new_database_for_tls().await;
    let url = format!("{tls_url} dbname={name}");

    // A CA of its own, which did not sign the server's certificate.
    let dir = tempfile::tempdir().expect("tempdir");
    let other_ca = dir.path().join("other-ca.pem");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other_ca, params.self_signed(&key).expect("ca").pem()).expect("write");
    let log = Daemon::try_start_on_postgres_tls(&url, "node-a", &other_ca)
        .err()
        .expect("a server certified by another CA is refused");
    assert!(
        log.contains("opening the PostgreSQL store")
            && log.contains("TLS handshake")
            && log.contains("invalid peer certificate")
            && log.contains("UnknownIssuer"),
        "{log}"
    );

    // The right CA, but the connection string names another host than the certificate's
    // (hostaddr still reaches the server).
    let other_name = format!(
        "{} dbname={name}",
        tls_url.replace("host=127.0.0.1", "host=db.invalid hostaddr=127.0.0.1")
    );
    let log = Daemon::try_start_on_postgres_tls(&other_name, "node-a", &ca)
        .err()
        .expect("a certificate for another name is refused");
    assert!(
        log.contains("invalid peer certificate") && log.contains("not valid for name"),
        "{log}"
    );
}

/// Records per data key version of `tenant`.
async fn per_version(c: &Client, tenant: &str) -> Vec<(u32, u64)> {
    let info = c.tenant(tenant).await.expect("tenant");
    info.key_versions
        .iter()
        .map(|v| (v.version, v.records))
        .collect()
}

// Multi-threaded: the test blocks on kill while the nodes work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_job_of_a_killed_node_is_resumed_by_another_when_its_lease_lapses() {
    const N: usize = 2000;
    const LEASE_SECS: u64 = 3;
    let jobs = format!("\n[jobs]\nlease_seconds = {LEASE_SECS}\n");
    let url = new_database().await;
    let mut a = Daemon::start_on_postgres_with(&url, "node-a", None, &jobs);
    let ca = a.client();
    ca.init().await.expect("init");
    ca.create_tenant("acme").await.expect("tenant");
    let b = Daemon::start_on_postgres_with(&url, "node-b", Some(&a.keys), &jobs);
    let cb = b.client();
    wait_unsealed(&cb).await;
    let fillers: Vec<_> = (0..8)
        .map(|w| {
            let ca = ca.clone();
            tokio::spawn(async move {
                for i in (w..N).step_by(8) {
                    let id = format!("tok-{i:05}");
                    ca.put_token("acme", &id, &put(&id, "DE01"))
                        .await
                        .expect("put");
                }
            })
        })
        .collect();
    for f in fillers {
        f.await.expect("filler");
    }
    ca.rotate_tenant("acme").await.expect("rotate");
    // 500 records/s: a page of 125 four times a second, for about four seconds.
    let id = ca
        .start_rewrap(Some("acme"), Some(500))
        .await
        .expect("rewrap")
        .id;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = ca.job(&id).await.expect("job");
    assert!(
        before.state == JobState::Running && before.done > 0 && before.done < N as u64,
        "killed mid-run: {before:?}"
    );
    // B saw the job and left it alone: A's lease was live.
    assert!(
        !b.log_text().contains("took over a rewrap job"),
        "{}",
        b.log_text()
    );
    a.kill();
    let killed = Instant::now();
    let at_kill = cb.job(&id).await.expect("job through b").done;

    // B takes the lease once it lapsed (a lease, and at most a third of one for its watcher),
    // and goes on from the cursor A left.
    let resumed_within = loop {
        let job = cb.job(&id).await.expect("job");
        if job.done > at_kill || job.state != JobState::Running {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(LEASE_SECS * 2 + 3),
            "b did not resume the job: {job:?}\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job = cb.job(&id).await.expect("job");
        if job.state != JobState::Running {
            break job;
        }
        assert!(Instant::now() < deadline, "job never finished: {job:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "node a killed at {at_kill}/{N}; node b resumed the job after {resumed_within:?} and finished it"
    );
    assert_eq!(job.state, JobState::Completed, "{job:?}");
    assert_eq!(
        (job.done, job.total),
        (N as u64, N as u64),
        "exactly once: {job:?}"
    );
    assert_eq!(per_version(&cb, "acme").await, [(1, 0), (2, N as u64)]);
    let readers: Vec<_> = (0..8)
        .map(|w| {
            let cb = cb.clone();
            tokio::spawn(async move {
                for i in (w..N).step_by(8) {
                    let id = format!("tok-{i:05}");
                    assert_eq!(secret_of(&cb, &id).await, id);
                }
            })
        })
        .collect();
    for r in readers {
        r.await.expect("reader");
    }

    // The takeover is in B's audit chain, naming the node it was taken from.
    let query = AuditQuery {
        op: Some("keys.rewrap.resumed".into()),
        limit: Some(100),
        ..AuditQuery::default()
    };
    let resumed = cb.audit(&query).await.expect("audit").entries;
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    let detail = &resumed[0].detail;
    assert_eq!(
        detail.get("event").map(String::as_str),
        Some("records_rewrap_resumed")
    );
    assert_eq!(detail.get("job"), Some(&id));
    assert_eq!(
        detail.get("previous_node").map(String::as_str),
        Some("node-a")
    );
    assert_eq!(detail.get("node").map(String::as_str), Some("node-b"));
    assert!(
        b.log_text()
            .contains("took over a rewrap job whose lease lapsed"),
        "{}",
        b.log_text()
    );
    assert_every_chain_verifies(&cb, &["node-a", "node-b"]).await;
}

/// Rows of `table` in `node`'s chain with `seq <= through`.
async fn rows_through(url: &str, table: &str, node: &str, through: u64) -> i64 {
    let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let through = i64::try_from(through).expect("seq");
    db.query_one(
        &format!("SELECT count(*) FROM {table} WHERE node = $1 AND seq <= $2"),
        &[&node, &through],
    )
    .await
    .expect("count")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_a_nodes_chain_deletes_its_rows_and_every_chain_still_verifies() {
    let url = new_database().await;
    let (a, b) = two_nodes(&url).await;
    let (ca, cb) = (a.client(), b.client());
    for i in 0..30 {
        cb.put_token("acme", &format!("t-{i}"), &put("s", "DE01"))
            .await
            .expect("put on b");
    }
    ca.put_token("acme", "on-a", &put("s", "DE01"))
        .await
        .expect("put on a");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("node-b.jsonl");
    // From node a, the chain of node b.
    let out = a.cli(
        None,
        &[
            "--json",
            "audit",
            "archive",
            "--node",
            "node-b",
            "--before",
            "20",
            "--out",
            archive.to_str().expect("utf8"),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let through = answer["through"].as_u64().expect("through");
    assert!((1..20).contains(&through), "{answer}");
    for table in ["audit_entry", "audit_head"] {
        assert_eq!(
            rows_through(&url, table, "node-b", through).await,
            0,
            "{table}"
        );
        assert!(
            rows_through(&url, table, "node-a", through).await > 0,
            "{table}: a's chain stays"
        );
    }
    assert_every_chain_verifies(&ca, &["node-a", "node-b"]).await;
    let report = cb.audit_verify_with(None, &[], true).await.expect("verify");
    let chain = report
        .chains
        .iter()
        .find(|c| c.node == "node-b")
        .expect("b's chain");
    assert_eq!(chain.checkpoint, Some(through));
    // Node b's own reads start after the checkpoint; its tokens are all there.
    assert_eq!(secret_of(&cb, "t-0").await, "s");
}
