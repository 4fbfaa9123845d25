//! Retention against the real daemon (docs/retention.md): tokens that expire during the test are
//! listed by `token list --expired` / `--expiring-within`, purged by the schedule, each with its
//! `token.purge` entry, and stop appearing in lists; the auditor finds each purge in the log; a
//! purge interrupted by kill -9 resumes and purges nothing twice.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vault_client::wire::PutToken;
use vault_client::{Client, Timestamp};

use common::{AUDITOR, AUDITOR_RULE, Daemon, entries_with_op, put};

fn expiring(secret: &str, at: i64) -> PutToken {
    PutToken {
        expires_at: Some(Timestamp(at)),
        ..put(secret, "DE00")
    }
}

/// Turns retention on (a pass every second, `batch` tokens a write) and restarts.
fn restart_with_retention(daemon: &mut Daemon, batch: usize) {
    assert!(daemon.terminate().success());
    let config = std::fs::read_to_string(&daemon.config).expect("config");
    std::fs::write(
        &daemon.config,
        format!("{config}\n[retention]\ninterval_secs = 1\nbatch = {batch}\n"),
    )
    .expect("config");
    daemon.restart();
}

/// The ids `vault-cli token list` prints, with `flags`.
fn listed(daemon: &Daemon, flags: &[&str]) -> Vec<String> {
    let mut args = vec!["--json", "token", "list", "acme", "--limit", "1000"];
    args.extend(flags);
    let out = daemon.cli(None, &args, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Waits until the log holds `n` purge entries (or fails after `within`).
async fn wait_purged(c: &Client, n: usize, within: Duration) -> Vec<vault_client::audit::Entry> {
    let deadline = Instant::now() + within;
    loop {
        let purged = entries_with_op(c, "token.purge").await;
        if purged.len() >= n {
            return purged;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} purged in {within:?}",
            purged.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn expired_tokens_are_listed_then_purged_by_the_schedule_each_with_its_entry() {
    let mut daemon = Daemon::start_configured("", AUDITOR_RULE);
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let now = Timestamp::now().unix();
    for i in 0..5 {
        c.put_token("acme", &format!("a{i}"), &expiring("soon", now + 2))
            .await
            .expect("put");
    }
    for i in 0..2 {
        c.put_token(
            "acme",
            &format!("b{i}"),
            &expiring("later", now + 3 * 86_400),
        )
        .await
        .expect("put");
    }
    c.put_token("acme", "c0", &put("never", "DE00"))
        .await
        .expect("put");
    let put_entry = entries_with_op(&c, "token.put").await;
    assert_eq!(
        put_entry[0].detail.get("expires_at").map(String::as_str),
        Some(Timestamp(now + 2).to_string().as_str()),
        "token.put records expires_at"
    );
    assert_eq!(listed(&daemon, &["--expiring-within", "7d"]).len(), 7);
    assert!(listed(&daemon, &["--expired"]).is_empty());
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        listed(&daemon, &["--expired"]),
        ["a0", "a1", "a2", "a3", "a4"]
    );
    assert_eq!(listed(&daemon, &["--expiring-within", "7d"]), ["b0", "b1"]);
    assert_eq!(
        listed(&daemon, &["--expiring-within", "1h"]),
        Vec::<String>::new()
    );

    restart_with_retention(&mut daemon, 2);
    common::wait_unsealed(&c).await;
    let purged = wait_purged(&c, 5, Duration::from_secs(30)).await;
    assert_eq!(
        listed(&daemon, &[]),
        ["b0", "b1", "c0"],
        "purged tokens are gone"
    );
    let mut by_token = BTreeMap::new();
    for e in &purged {
        assert_eq!(e.tenant.as_deref(), Some("acme"));
        assert_eq!(e.detail.get("reason").map(String::as_str), Some("expired"));
        assert_eq!(
            e.detail.get("expired_at").map(String::as_str),
            Some(Timestamp(now + 2).to_string().as_str())
        );
        assert!(e.detail.contains_key("purged_at"), "{e:?}");
        *by_token.entry(e.token.clone().expect("token")).or_insert(0) += 1;
    }
    assert_eq!(by_token.len(), 5, "{by_token:?}");
    assert!(by_token.values().all(|n| *n == 1), "{by_token:?}");
    let err = c
        .unseal_token("acme", "a0", None)
        .await
        .expect_err("purged");
    assert!(err.to_string().contains("not_found"), "{err}");
    let metrics = c.metrics().await.expect("metrics");
    assert!(
        metrics.contains("vaultd_tokens_purged_total 5"),
        "{metrics}"
    );
    assert!(metrics.contains("vaultd_tokens_expiring_7d 2"), "{metrics}");
    let tenant = c.tenant("acme").await.expect("tenant");
    assert_eq!(tenant.tokens, 3, "the record counts follow the purge");

    // (5) The auditor: which consents passed their retention, and when they were purged.
    let out = daemon.cli(
        Some(AUDITOR),
        &["--format", "csv", "audit", "search", "--op", "token.purge"],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{text}");
    assert!(
        rows.iter()
            .all(|r| r.contains("expired_at=") && r.contains("purged_at=")),
        "{text}"
    );
    let verify = daemon.cli(None, &["audit", "verify", "--full"], b"");
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_killed_midway_resumes_and_purges_nothing_twice() {
    const TOKENS: usize = 600;
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let expires = Timestamp::now().unix() + 2;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let c = daemon.client();
        tasks.push(tokio::spawn(async move {
            for i in (w..TOKENS).step_by(8) {
                c.put_token("acme", &format!("t{i:04}"), &expiring("soon", expires))
                    .await
                    .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    while Timestamp::now().unix() <= expires {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Three tokens a write: the pass takes many writes, and the kill lands among them.
    restart_with_retention(&mut daemon, 3);
    common::wait_unsealed(&c).await;
    let at_kill = loop {
        let n = entries_with_op(&c, "token.purge").await.len();
        if n > 0 {
            daemon.kill();
            break n;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    daemon.restart();
    common::wait_unsealed(&c).await;
    let after_kill = entries_with_op(&c, "token.purge").await.len();
    eprintln!(
        "purge entries: {at_kill} seen before kill -9, {after_kill} after the restart, of {TOKENS}"
    );
    let purged = wait_purged(&c, TOKENS, Duration::from_secs(60)).await;
    let mut seen = BTreeMap::new();
    for e in &purged {
        *seen.entry(e.token.clone().expect("token")).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), TOKENS);
    assert!(seen.values().all(|n| *n == 1), "a token purged twice");
    assert_eq!(purged.len(), TOKENS);
    assert!(
        c.list_tokens("acme", None, Some(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let report = c.audit_verify(None).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
}
