//! vaultd on the PostgreSQL backend (docs/ha.md), against the real binary and the test cluster
//! that `scripts/test` starts (`scripts/pg-cluster`: a primary with a synchronous hot standby).

mod common;

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
    let name = format!("e2e_{}", vault_client::audit::hex(&name));
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
    let secret = token.secret.expect("a text secret");
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

// Multi-threaded: the writers keep writing while the test blocks on kill and pg_ctl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_one_writer_both_serve_and_the_other_takes_over_after_kill_9() {
    let url = new_database().await;
    let mut a = Daemon::start_on_postgres(&url, "node-a", None);
    let ca = a.client();
    ca.init().await.expect("init");
    ca.create_tenant("acme").await.expect("tenant");
    // The second node unwraps the same master key through the same KMS key.
    let b = Daemon::start_on_postgres(&url, "node-b", Some(&a.keys));
    let cb = b.client();
    wait_unsealed(&cb).await;

    // Tokens put through A unseal through B.
    for i in 0..10 {
        ca.put_token(
            "acme",
            &format!("a-{i}"),
            &put(&format!("from-a-{i}"), "DE01"),
        )
        .await
        .expect("put through a");
    }
    for i in 0..10 {
        assert_eq!(
            secret_of(&cb, &format!("a-{i}")).await,
            format!("from-a-{i}")
        );
    }
    // A holds the write lock: B refuses writes, clearly, and keeps serving reads.
    let err = cb
        .put_token("acme", "b-0", &put("from-b", "DE01"))
        .await
        .expect_err("b is not the writer");
    assert_eq!(err.code(), Some(&ApiCode::NotWriter), "{err}");
    assert!(err.to_string().contains("write lock"), "{err}");
    assert!(cb.health().await.expect("health").audit_available);

    // Writers on A until it is killed; every acknowledged put must read back through B.
    let writer = {
        let ca = a.client();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let id = format!("w-{i}");
                match ca.put_token("acme", &id, &put(&id, "DE01")).await {
                    Ok(_) => acked.push(id),
                    Err(_) => break,
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill();
    let acked = writer.await.expect("writer");
    assert!(!acked.is_empty(), "a acknowledged no writes");

    // B takes the lock once A's sessions are gone.
    let mut taken = None;
    for _ in 0..100 {
        match cb.put_token("acme", "b-1", &put("from-b", "DE01")).await {
            Ok(_) => {
                taken = Some(());
                break;
            }
            Err(e) if e.code() == Some(&ApiCode::NotWriter) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("unexpected: {e}\n{}", b.log_text()),
        }
    }
    assert!(taken.is_some(), "b never took over:\n{}", b.log_text());
    for id in &acked {
        assert_eq!(&secret_of(&cb, id).await, id, "acknowledged by a");
    }
    assert_eq!(secret_of(&cb, "b-1").await, "from-b");
    eprintln!(
        "{} puts acknowledged by node a before kill -9, all read back through b",
        acked.len()
    );
    let report = cb.audit_verify(None).await.expect("verify b chain");
    assert!(report.ok, "{:?}", report.problems);
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
async fn the_node_reconnects_after_the_primary_is_killed_and_the_standby_promoted() {
    let cluster = Cluster::start();
    let mut node = Daemon::start_on_postgres(&cluster.url, "node-a", None);
    let c = node.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let c = node.client().with_timeout(Duration::from_secs(5));
        tokio::spawn(async move {
            let mut stopped = stopped;
            let (mut acked, mut refused) = (Vec::new(), 0u32);
            for i in 0.. {
                if stopped.try_recv().is_ok() {
                    break;
                }
                let id = format!("w-{i}");
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
    // The node finds the promoted standby by itself (target_session_attrs=read-write).
    let mut after = 0;
    for _ in 0..200 {
        if c.put_token("acme", "after-failover", &put("after", "DE01"))
            .await
            .is_ok()
        {
            after += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        after,
        1,
        "no write after the failover:\n{}",
        node.log_text()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).expect("stop the writer");
    let (acked, refused) = writer.await.expect("writer");
    eprintln!(
        "{} puts acknowledged across the failover ({refused} refused while the primary was gone)",
        acked.len()
    );
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
            "SELECT count(*) FROM kv WHERE position('r/acme/w-'::bytea in k) = 1",
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
    let report = c.audit_verify(None).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
    node.terminate();
}

#[tokio::test]
async fn a_reader_node_follows_a_master_key_rotation_made_by_the_writer() {
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
    let report = cb.audit_verify(None).await.expect("verify b chain");
    assert!(report.ok, "{:?}", report.problems);
}
