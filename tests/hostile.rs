//! vaultd against hostile local users and callers (issue 12), with the real binary. Each test
//! is named after what it guards.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `vaultd --dev` in `cwd`; returns its exit status and stderr if it exits within 20 s,
/// else kills it (by its PID) and fails.
fn dev_run(cwd: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(common::bin("vaultd"))
        .arg("--dev")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vaultd --dev");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
                .expect("stderr");
            return (status, err);
        }
        if Instant::now() > deadline {
            let pid = i32::try_from(child.id()).expect("pid");
            common::unsafe_free_kill(pid, 9);
            let _ = child.wait();
            panic!("vaultd --dev kept running on a directory it must refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dev_refuses_a_dev_directory_others_may_write_to() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let dev = cwd.path().join("vaultd-dev");
    std::fs::create_dir(&dev).expect("mkdir");
    // A local user pre-creates it for everyone: they could swap the socket.
    std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (status, err) = dev_run(cwd.path());
    assert!(!status.success());
    assert!(
        err.contains("--dev directory") && err.contains("mode 777"),
        "{err}"
    );
    assert!(
        !dev.join("vaultd.sock").exists(),
        "no socket in a refused directory"
    );
}

#[test]
fn dev_refuses_a_dev_directory_owned_by_another_user() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let dev = cwd.path().join("vaultd-dev");
    std::fs::create_dir(&dev).expect("mkdir");
    std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // Owned by nobody (the tests run as root, as CI does).
    let chown = Command::new("chown")
        .arg("65534")
        .arg(&dev)
        .status()
        .expect("chown");
    assert!(chown.success(), "chown needs root");
    let (status, err) = dev_run(cwd.path());
    assert!(!status.success());
    assert!(err.contains("owned by uid 65534"), "{err}");
}

#[tokio::test]
async fn a_tenants_key_history_holds_its_own_events_only() {
    let daemon = common::Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    for name in ["acme", "globex"] {
        c.create_tenant(name).await.expect("tenant");
        c.rotate_tenant(name).await.expect("rotate");
    }
    c.rotate_master().await.expect("rotate master");
    let acme = c.key_history(Some("acme")).await.expect("history");
    assert!(!acme.events.is_empty(), "acme's own rotation is there");
    for event in &acme.events {
        assert_eq!(event.tenant.as_deref(), Some("acme"), "{event:?}");
    }
    // The vault-wide history (keys:read on every tenant) keeps the rest.
    let all = c.key_history(None).await.expect("history");
    assert!(all.events.iter().any(|e| e.tenant.is_none()));
    assert!(
        all.events
            .iter()
            .any(|e| e.tenant.as_deref() == Some("globex"))
    );
}

/// `curl` as `uid` (group `nogroup`, which may reach the socket) sending `requests` GETs of
/// `path` over one kept-alive connection; the HTTP status of each, in order.
fn curl_as(uid: u32, socket: &std::path::Path, path: &str, requests: usize) -> Vec<u16> {
    curl_each_as(uid, socket, "", path, requests)
        .into_iter()
        .map(|(status, _)| status)
        .collect()
}

/// `curl` as `uid` sending `requests` requests of `path`, each with the curl config `options`
/// (e.g. a method and a body), over one kept-alive connection; the HTTP status and
/// `Retry-After` of each.
fn curl_each_as(
    uid: u32,
    socket: &std::path::Path,
    options: &str,
    path: &str,
    requests: usize,
) -> Vec<(u16, Option<u64>)> {
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("requests.curl");
    let one = format!("url = \"http://localhost{path}\"\noutput = \"/dev/null\"\n");
    std::fs::write(&list, format!("{options}{}", one.repeat(requests))).expect("curl config");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(socket)
        .args(["-w", "%{http_code} %header{retry-after}\\n", "-K"])
        .arg(&list)
        .uid(uid)
        .gid(common::SOCKET_GID)
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let (status, retry) = line.split_once(' ').unwrap_or((line, ""));
            (
                status.parse().expect("an HTTP status"),
                retry.trim().parse().ok(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_flood_of_denied_requests_leaves_a_bounded_log_and_gets_429() {
    const FLOOD: usize = 20_000;
    const BUDGET: u64 = 100;
    const WINDOW_SECS: u64 = 2;
    let daemon = common::Daemon::start_with_top(&format!(
        "max_refused_per_window = {BUDGET}\nrefused_window_secs = {WINDOW_SECS}"
    ));
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let started = Instant::now();
    let socket = daemon.socket.clone();
    let codes = tokio::task::spawn_blocking(move || {
        curl_as(
            common::STRANGER_UID,
            &socket,
            "/v1/tenants/acme/tokens/t1",
            FLOOD,
        )
    })
    .await
    .expect("curl");
    let took = started.elapsed();
    assert_eq!(codes.len(), FLOOD);
    let denied = codes.iter().filter(|&&c| c == 403).count() as u64;
    let limited = codes.iter().filter(|&&c| c == 429).count() as u64;
    assert_eq!(
        denied + limited,
        FLOOD as u64,
        "only 403 and 429: {codes:?}"
    );
    // The budget, and what refilled while the flood ran (BUDGET per window), with a window of
    // slack for the rounding of the clock.
    let refilled = (took.as_secs_f64() / WINDOW_SECS as f64).ceil() as u64 + 1;
    assert!(
        denied <= BUDGET * (1 + refilled),
        "{denied} denied in {took:?}"
    );
    assert!(limited > 0);
    // An authorized caller is served meanwhile.
    c.tenant("acme")
        .await
        .expect("root is not limited by another uid's flood");

    // Each denied request has its entry; the 429s are in one summary entry per window.
    tokio::time::sleep(Duration::from_secs(WINDOW_SECS + 1)).await;
    let mut entries = Vec::new();
    let mut query = vault_client::AuditQuery {
        actor: Some(common::STRANGER_UID.to_string()),
        limit: Some(10_000),
        ..Default::default()
    };
    loop {
        let page = c.audit(&query).await.expect("audit");
        entries.extend(page.entries);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let summaries: Vec<_> = entries
        .iter()
        .filter(|e| e.op == "limits.rate_limited")
        .collect();
    let summarized: u64 = summaries
        .iter()
        .map(|e| e.detail["count"].parse::<u64>().expect("a count"))
        .sum();
    let own = entries.len() as u64 - summaries.len() as u64;
    assert_eq!(own, denied, "one entry per denied request");
    assert_eq!(summarized, limited, "every 429 counted in a summary");
    let windows = took.as_secs() / WINDOW_SECS + 2;
    assert!(
        summaries.len() as u64 <= windows,
        "{} summaries",
        summaries.len()
    );
    eprintln!(
        "{FLOOD} denied requests in {took:?}: {denied} answered 403 with an entry each, {limited} \
         answered 429 in {} summary entries: {} audit entries in all",
        summaries.len(),
        entries.len()
    );
    let report = c.audit_verify(None).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
}

/// Sends a health request on `stream` and reads the status line; `None` when the daemon closed
/// the connection instead of answering.
fn health_on(stream: &mut std::os::unix::net::UnixStream) -> Option<String> {
    use std::io::{BufRead as _, Write as _};
    stream
        .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = std::io::BufReader::new(stream.try_clone().ok()?);
    let mut status = String::new();
    reader.read_line(&mut status).ok()?;
    // Read the rest of the answer: headers, then the body by its length.
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        if line == "\r\n" {
            break;
        }
    }
    std::io::Read::read_exact(&mut reader, &mut vec![0; length]).ok()?;
    (!status.is_empty()).then_some(status)
}

#[tokio::test]
async fn a_uid_holds_at_most_its_connections_while_another_uid_still_connects() {
    const CAP: usize = 4;
    let daemon = common::Daemon::start_with_top(&format!("max_connections_per_caller = {CAP}"));
    let connect = || std::os::unix::net::UnixStream::connect(&daemon.socket).expect("connect");
    // The harness's own probe of the new socket may still be counted until the daemon has seen
    // it close: a refused connection is retried until the caller's slots are all its own.
    let mut held = Vec::new();
    for _ in 0..50 {
        if held.len() == CAP {
            break;
        }
        let mut stream = connect();
        match health_on(&mut stream) {
            Some(status) => {
                assert!(status.starts_with("HTTP/1.1 501"), "{status}");
                held.push(stream);
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert_eq!(held.len(), CAP, "{}", daemon.log_text());
    // One more from the same uid is closed unanswered.
    let mut over = connect();
    assert_eq!(health_on(&mut over), None, "the cap held");
    // Another uid connects and is served.
    let socket = daemon.socket.clone();
    let other = tokio::task::spawn_blocking(move || {
        curl_as(common::STRANGER_UID, &socket, "/v1/sys/health", 1)
    })
    .await
    .expect("curl");
    assert_eq!(other, [501]);
    // A slot given back is taken again.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut again = connect();
    assert!(health_on(&mut again).is_some(), "a slot was freed");
    assert!(
        daemon
            .log_text()
            .contains("connection refused: the caller holds max_connections_per_caller already"),
        "{}",
        daemon.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_runs_while_unseals_proceed() {
    let daemon = common::Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "t1", &common::put("s", "DE01"))
        .await
        .expect("put");
    // A log long enough that reading it takes a while: 20,000 entries, each with its head.
    let writers: Vec<_> = (0..16)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..1250 {
                    c.status().await.expect("status");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    // Three full verifies at once, more than the daemon has async workers (one per core);
    // unseals go on being answered while they run.
    let verifies: Vec<_> = (0..3)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                c.audit_verify_with(None, &[], true)
                    .await
                    .expect("full verify")
            })
        })
        .collect();
    let mut during = 0;
    while !verifies.iter().all(tokio::task::JoinHandle::is_finished) {
        c.unseal_token("acme", "t1", None).await.expect("unseal");
        during += 1;
    }
    for v in verifies {
        let report = v.await.expect("verify task");
        assert!(report.ok, "{:?}", report.problems);
        assert!(report.entries > 20_000, "{report:?}");
    }
    eprintln!("{during} unseals answered while three verifies of 20,000 entries ran");
    assert!(during >= 10, "unseals stalled behind verify: {during}");
}

#[tokio::test]
async fn audit_read_can_be_limited_to_tenant_patterns() {
    let daemon = common::Daemon::start_configured(
        "",
        &format!(
            "[[policy]]\nname = \"acme-auditor\"\nuids = [{}]\ncapabilities = [\"audit:read\"]\n\
             tenants = [\"acme*\"]\n",
            common::STRANGER_UID
        ),
    );
    let c = daemon.client();
    c.init().await.expect("init");
    for t in ["acme", "globex"] {
        c.create_tenant(t).await.expect("tenant");
        c.put_token(t, "t1", &common::put("s", "DE01"))
            .await
            .expect("put");
    }
    let socket = daemon.socket.clone();
    let status = move |path: &'static str| {
        let socket = socket.clone();
        async move {
            tokio::task::spawn_blocking(move || curl_as(common::STRANGER_UID, &socket, path, 1))
                .await
                .expect("curl")[0]
        }
    };
    // The auditor of acme* reads acme's entries and nothing of another tenant's or the vault's.
    assert_eq!(status("/v1/audit?tenant=acme").await, 200);
    assert_eq!(status("/v1/audit?tenant=acme-gmbh").await, 200);
    assert_eq!(status("/v1/audit?tenant=globex").await, 403);
    assert_eq!(
        status("/v1/audit").await,
        403,
        "the whole log needs audit:read on *"
    );
    assert_eq!(status("/v1/audit/verify").await, 403);
    assert_eq!(status("/v1/audit/export").await, 403);
    assert_eq!(status("/v1/audit/pubkey").await, 200);
    assert_eq!(status("/v1/audit/chains").await, 200);
    // What it reads is acme's only.
    let page = c
        .audit(&vault_client::AuditQuery {
            actor: Some(common::STRANGER_UID.to_string()),
            ..Default::default()
        })
        .await
        .expect("audit");
    let lists: Vec<_> = page
        .entries
        .iter()
        .filter(|e| e.op == "audit.list" && e.outcome == vault_client::audit::Outcome::Ok)
        .map(|e| e.tenant.clone())
        .collect();
    assert_eq!(
        lists,
        [Some("acme".into()), Some("acme-gmbh".into())],
        "{page:?}"
    );
}

#[tokio::test]
async fn quotas_compose_and_answer_429_with_retry_after() {
    const PER_SECOND: usize = 5;
    const PER_DAY: usize = 12;
    let daemon = common::Daemon::start_configured(
        "refused_window_secs = 1",
        &format!(
            "[[policy]]\nname = \"platform\"\nuids = [{}]\n\
             capabilities = [\"token:unseal\", \"token:read\"]\ntenants = [\"acme\"]\n\
             quotas = [{{ capabilities = [\"token:unseal\"], per_second = {PER_SECOND}, per_day = {PER_DAY} }}]\n",
            common::STRANGER_UID
        ),
    );
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "t1", &common::put("s", "DE01"))
        .await
        .expect("put");
    let socket = daemon.socket.clone();
    let as_platform = move |options: &'static str, path: &'static str, n: usize| {
        let socket = socket.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                curl_each_as(common::STRANGER_UID, &socket, options, path, n)
            })
            .await
            .expect("curl")
        }
    };
    let unseal = "request = \"POST\"\ndata = \"{}\"\n";
    let path = "/v1/tenants/acme/tokens/t1/unseal";
    // Three bursts a second apart: the second's quota refills between them, the day's does not,
    // so the day's quota ends it whatever the timing.
    let mut served = 0;
    let mut limited = 0;
    for burst in 0..3 {
        let answers = as_platform(unseal, path, 20).await;
        let ok = answers.iter().filter(|(s, _)| *s == 200).count();
        assert!(
            answers.iter().all(|(s, _)| *s == 200 || *s == 429),
            "{answers:?}"
        );
        assert!(answers.iter().any(|(s, _)| *s == 429), "burst {burst}");
        assert!(
            answers
                .iter()
                .filter(|(s, _)| *s == 429)
                .all(|(_, retry)| retry.is_some_and(|r| r >= 1)),
            "every 429 says when to retry: {answers:?}"
        );
        if burst == 0 {
            assert!(ok >= PER_SECOND, "{answers:?}");
        }
        served += ok;
        limited += answers.len() - ok;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(served, PER_DAY, "the day's quota, exactly");
    // Spent for the day: the wait is the day's refill of one request (86400 / 12 s), not a second.
    let (status, retry) = as_platform(unseal, path, 1).await[0];
    assert_eq!(status, 429);
    assert!(retry.is_some_and(|r| r > 3600), "{retry:?}");
    limited += 1;
    // Other capabilities of the caller have no quota; other callers have their own.
    assert_eq!(
        as_platform("", "/v1/tenants/acme/tokens/t1", 3).await,
        [(200, None); 3]
    );
    for _ in 0..PER_DAY + 1 {
        c.unseal_token("acme", "t1", None)
            .await
            .expect("root has no quota");
    }
    // Every 429 is counted in a summary entry, none has an entry of its own.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = c
        .audit(&vault_client::AuditQuery {
            actor: Some(common::STRANGER_UID.to_string()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .expect("audit");
    let count = |op: &str| page.entries.iter().filter(|e| e.op == op).count();
    assert_eq!(count("token.unseal"), PER_DAY);
    let summarized: usize = page
        .entries
        .iter()
        .filter(|e| e.op == "limits.rate_limited")
        .map(|e| e.detail["count"].parse::<usize>().expect("a count"))
        .sum();
    assert_eq!(summarized, limited);
    eprintln!("{served} unseals served, {limited} answered 429 in summary entries");
}

/// A platform identity with a brake of 3 distinct tokens an hour on `token:unseal` in acme, and
/// 5 tokens there; `top` heads the config.
async fn braked_daemon(top: &str) -> common::Daemon {
    let daemon = common::Daemon::start_configured(
        &format!("refused_window_secs = 1\n{top}"),
        &format!(
            "[[policy]]\nname = \"platform\"\nuids = [{}]\n\
             capabilities = [\"token:unseal\", \"token:read\"]\ntenants = [\"acme\", \"globex\"]\n\
             brakes = [{{ capabilities = [\"token:unseal\"], tenants = [\"acme\"], distinct_tokens = 3, window_secs = 3600 }}]\n",
            common::STRANGER_UID
        ),
    );
    let c = daemon.client();
    c.init().await.expect("init");
    for tenant in ["acme", "globex"] {
        c.create_tenant(tenant).await.expect("tenant");
        for i in 0..5 {
            c.put_token(tenant, &format!("t{i}"), &common::put("s", "DE01"))
                .await
                .expect("put");
        }
    }
    daemon
}

/// Unseals each of `tokens` of `tenant` once as the stranger uid; status and Retry-After of each.
async fn unseal_as_stranger(
    daemon: &common::Daemon,
    tenant: &str,
    tokens: &[&str],
) -> Vec<(u16, Option<u64>)> {
    let mut out = Vec::new();
    for token in tokens {
        let socket = daemon.socket.clone();
        let path = format!("/v1/tenants/{tenant}/tokens/{token}/unseal");
        out.extend(
            tokio::task::spawn_blocking(move || {
                curl_each_as(
                    common::STRANGER_UID,
                    &socket,
                    "request = \"POST\"\ndata = \"{}\"\n",
                    &path,
                    1,
                )
            })
            .await
            .expect("curl"),
        );
    }
    out
}

#[tokio::test]
async fn the_brake_stops_a_caller_past_its_distinct_tokens_and_raises_one_alarm() {
    let daemon = braked_daemon("").await;
    let c = daemon.client();
    let answers =
        unseal_as_stranger(&daemon, "acme", &["t0", "t1", "t2", "t0", "t3", "t4", "t1"]).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    // Three distinct tokens, and the same ones again; the fourth and fifth are refused.
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 200]);
    let retry = answers[4].1.expect("Retry-After");
    assert!(
        (3500..=3600).contains(&retry),
        "until t0 leaves the hour: {retry}"
    );
    // Another tenant the brake does not list, and another identity on the same tenant: served.
    assert!(
        unseal_as_stranger(&daemon, "globex", &["t0", "t1", "t2", "t3", "t4"])
            .await
            .iter()
            .all(|(s, _)| *s == 200)
    );
    c.unseal_token("acme", "t3", None)
        .await
        .expect("root has no brake");
    c.unseal_token("acme", "t4", None).await.expect("root");

    // One alarm: an entry, the metric, the log line.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = c
        .audit(&vault_client::AuditQuery {
            actor: Some(common::STRANGER_UID.to_string()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .expect("audit");
    let alarms: Vec<_> = page
        .entries
        .iter()
        .filter(|e| e.op == "alarm.exfiltration_brake")
        .collect();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    let alarm = alarms[0];
    assert_eq!(alarm.tenant.as_deref(), Some("acme"));
    assert_eq!(alarm.token.as_deref(), Some("t3"));
    assert_eq!(alarm.outcome, vault_client::audit::Outcome::Denied);
    assert_eq!(alarm.detail["distinct_tokens"], "3");
    assert_eq!(alarm.detail["window_secs"], "3600");
    assert_eq!(alarm.detail["brake"], "platform #1");
    // The two refusals have no entry of their own: they are in the summary.
    let unseals_of_acme = page
        .entries
        .iter()
        .filter(|e| e.op == "token.unseal" && e.tenant.as_deref() == Some("acme"))
        .count();
    assert_eq!(unseals_of_acme, 5);
    let summarized: u64 = page
        .entries
        .iter()
        .filter(|e| e.op == "limits.rate_limited")
        .map(|e| e.detail["count"].parse::<u64>().expect("count"))
        .sum();
    assert_eq!(summarized, 2);
    let metrics = c.metrics().await.expect("metrics");
    assert!(
        metrics.contains("vaultd_alarms_total{kind=\"exfiltration_brake\"} 1"),
        "{metrics}"
    );
    assert!(daemon.log_text().contains("alarm raised"));
    assert_state(&c, vault_client::wire::VaultState::Unsealed).await;
}

#[tokio::test]
async fn seal_on_alarm_seals_the_vault_when_the_brake_trips() {
    let daemon = braked_daemon("seal_on_alarm = true").await;
    let c = daemon.client();
    let answers = unseal_as_stranger(&daemon, "acme", &["t0", "t1", "t2", "t3"]).await;
    assert_eq!(answers.last().expect("four").0, 429);
    assert_state(&c, vault_client::wire::VaultState::Sealed).await;
    let err = c
        .unseal_token("acme", "t0", None)
        .await
        .expect_err("sealed");
    assert_eq!(err.code(), Some(&vault_client::ApiCode::Sealed), "{err}");
    c.unseal().await.expect("an operator unseals");
    let seals: Vec<_> = common::entries_with_op(&c, "sys.seal").await;
    assert_eq!(seals.len(), 1);
    assert_eq!(seals[0].detail["reason"], "alarm.exfiltration_brake");
}

/// The stranger uid may read and unseal acme's tokens, without `keys:read`; root plants a decoy.
async fn decoy_daemon(top: &str) -> common::Daemon {
    let daemon = common::Daemon::start_configured(
        top,
        &format!(
            "[[policy]]\nname = \"platform\"\nuids = [{}]\n\
             capabilities = [\"token:unseal\", \"token:read\"]\ntenants = [\"acme\"]\n",
            common::STRANGER_UID
        ),
    );
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "consent-1", &common::put("real-token", "DE01"))
        .await
        .expect("put");
    let binding = daemon.binding_file("user-9", "DE02");
    let planted = daemon.cli(
        None,
        &[
            "token",
            "put",
            "acme",
            "consent-9",
            "--decoy",
            "--binding-file",
            &binding,
            "--bank",
            "example-bank",
            "--scope",
            "accounts",
        ],
        b"decoy-token",
    );
    assert!(planted.status.success(), "{planted:?}");
    assert!(String::from_utf8_lossy(&planted.stdout).contains("stored decoy acme/consent-9"));
    daemon
}

/// `vault-cli --json ARGS` as the stranger uid, parsed.
fn stranger_json(daemon: &common::Daemon, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = daemon.cli(Some((common::STRANGER_UID, common::SOCKET_GID)), &all, b"");
    assert!(out.status.success(), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("json")
}

fn keys_of(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_decoy_looks_like_any_token_and_unsealing_it_raises_an_alarm() {
    let daemon = decoy_daemon("").await;
    let c = daemon.client();
    // To a caller without keys:read, metadata and list rows have the same fields.
    let real = stranger_json(&daemon, &["token", "get", "acme", "consent-1", "--meta"]);
    let decoy = stranger_json(&daemon, &["token", "get", "acme", "consent-9", "--meta"]);
    assert_eq!(keys_of(&real), keys_of(&decoy));
    assert!(decoy.get("decoy").is_none(), "{decoy}");
    let list = stranger_json(&daemon, &["token", "list", "acme"]);
    let rows = list["items"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(keys_of(&rows[0]), keys_of(&rows[1]));
    assert_eq!(keys_of(&rows[0]), keys_of(&real));
    // The tenant's record count includes it.
    assert_eq!(c.tenant("acme").await.expect("tenant").tokens, 2);
    // keys:read tells them apart.
    assert_eq!(
        c.token("acme", "consent-9").await.expect("meta").decoy,
        Some(true)
    );
    assert_eq!(
        c.token("acme", "consent-1").await.expect("meta").decoy,
        Some(false)
    );

    // Unsealed, it answers like any token, and raises the alarm; a real one does not.
    let out = daemon.cli(
        Some((common::STRANGER_UID, common::SOCKET_GID)),
        &["token", "get", "acme", "consent-9"],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "decoy-token");
    let out = daemon.cli(
        Some((common::STRANGER_UID, common::SOCKET_GID)),
        &["token", "get", "acme", "consent-1"],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let alarms = common::entries_with_op(&c, "alarm.decoy_unsealed").await;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].token.as_deref(), Some("consent-9"));
    assert!(
        matches!(alarms[0].actor, vault_client::audit::Actor::Caller { uid, .. } if uid == common::STRANGER_UID),
        "{:?}",
        alarms[0].actor
    );
    let metrics = c.metrics().await.expect("metrics");
    assert!(
        metrics.contains("vaultd_alarms_total{kind=\"decoy_unsealed\"} 1"),
        "{metrics}"
    );
    assert_state(&c, vault_client::wire::VaultState::Unsealed).await;
}

#[tokio::test]
async fn with_seal_on_alarm_unsealing_a_decoy_seals_the_vault() {
    let daemon = decoy_daemon("seal_on_alarm = true").await;
    let c = daemon.client();
    let out = daemon.cli(
        Some((common::STRANGER_UID, common::SOCKET_GID)),
        &["token", "get", "acme", "consent-9"],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    assert_state(&c, vault_client::wire::VaultState::Sealed).await;
}

async fn assert_state(c: &vault_client::Client, state: vault_client::wire::VaultState) {
    assert_eq!(c.health().await.expect("health").state, state);
}

#[tokio::test]
async fn a_query_of_ten_thousand_keys_is_refused_without_parsing_past_the_cap() {
    let daemon = common::Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    // 10,000 distinct keys just under the 64 KiB header limit; the last one is malformed, so
    // a parser that went past the cap would answer a percent-encoding error instead.
    let mut query: Vec<String> = (0..9_999).map(|i| format!("{i:x}=")).collect();
    query.push("z=%ZZ".into());
    let path = format!("/v1/tenants/acme/tokens?{}", query.join("&"));
    assert!(
        path.len() > 55_000 && path.len() < 64 * 1024,
        "{}",
        path.len()
    );
    let (status, body) = c
        .raw(http::Method::GET, &path, None)
        .await
        .expect("answered");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("at most 16"), "{text}");
    // And the daemon goes on serving.
    c.tenant("acme").await.expect("served");
}
