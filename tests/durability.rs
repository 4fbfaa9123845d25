//! Restarts: SIGTERM keeps every token; SIGKILL under 8 concurrent writers loses no
//! acknowledged write.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Daemon, put, wait_unsealed};

#[tokio::test]
async fn sigterm_then_restart_keeps_every_token() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    for t in ["acme", "globex"] {
        c.create_tenant(t).await.expect("tenant");
        for i in 0..40 {
            c.put_token(
                t,
                &format!("tok-{i}"),
                &put(&format!("{t}-secret-{i}"), "DE01"),
            )
            .await
            .expect("put");
        }
    }
    let status = daemon.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert!(
        daemon.log_text().contains("vault sealed"),
        "sealed before exit"
    );
    assert!(!daemon.socket.exists(), "socket removed at exit");

    daemon.restart();
    wait_unsealed(&daemon.client()).await;
    let c = daemon.client();
    for t in ["acme", "globex"] {
        assert_eq!(c.tenant(t).await.expect("tenant").tokens, 40);
        for i in 0..40 {
            let back = c
                .unseal_token(t, &format!("tok-{i}"), None)
                .await
                .expect("unseal");
            assert_eq!(
                back.secret.expose_secret(),
                format!("{t}-secret-{i}").as_bytes()
            );
        }
    }
}

/// Kill cycles: `VAULTD_TEST_CRASH_CYCLES` (10 by default; `scripts/crash-loop` runs 100).
fn crash_cycles() -> usize {
    std::env::var("VAULTD_TEST_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

#[tokio::test]
async fn sigkill_under_eight_writers_loses_no_acknowledged_write() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let mut all: Vec<(String, String)> = Vec::new();
    let cycles = crash_cycles();
    for cycle in 0..cycles {
        let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let client = daemon.client();
                let acked = acked.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let id = format!("c{cycle}-w{w}-{n}");
                        let secret = format!("secret-{cycle}-{w}-{n}");
                        // Also rewrite a shared token, so revisions race across writers.
                        let shared = client
                            .put_token("acme", "shared", &put(&secret, "DE01"))
                            .await;
                        match client.put_token("acme", &id, &put(&secret, "DE01")).await {
                            Ok(_) => acked.lock().expect("lock").push((id, secret)),
                            Err(_) => break,
                        }
                        if shared.is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        // Kill at a different point of the run each cycle.
        tokio::time::sleep(Duration::from_millis(300 + 97 * (cycle as u64 % 11))).await;
        daemon.kill();
        for w in writers {
            w.await.expect("writer task");
        }
        let acked = acked.lock().expect("lock").clone();
        assert!(
            !acked.is_empty(),
            "cycle {cycle}: writers made progress before the kill"
        );
        all.extend(acked);
        daemon.restart();
        wait_unsealed(&daemon.client()).await;
        let c = daemon.client();
        // This cycle's writes every cycle; everything acknowledged so far at the end.
        let check = if cycle + 1 == cycles {
            &all[..]
        } else {
            &all[all.len() - 50.min(all.len())..]
        };
        for (id, secret) in check {
            let back = c
                .unseal_token("acme", id, None)
                .await
                .unwrap_or_else(|e| panic!("cycle {cycle}: acknowledged {id} lost: {e}"));
            assert_eq!(back.secret.expose_secret(), secret.as_bytes());
        }
        let info = c.tenant("acme").await.expect("tenant");
        assert_eq!(
            info.tokens,
            count_tokens(&c).await,
            "cycle {cycle}: record counts stay exact across a crash"
        );
        assert!(info.tokens >= all.len() as u64);
    }
    // Verifying every entry and head signature of a long loop's log, in a debug build, can take
    // longer than the usual client timeout.
    let report = daemon
        .client()
        .with_timeout(Duration::from_secs(300))
        .audit_verify(None)
        .await
        .expect("verify");
    assert!(
        report.ok,
        "audit chain after {cycles} kills: {:?}",
        report.problems
    );
    eprintln!(
        "kill -9 cycles: {cycles}, acknowledged writes: {}, lost: 0",
        all.len()
    );
}

async fn count_tokens(c: &vault_client::Client) -> u64 {
    let mut n = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = c
            .list_tokens("acme", after.as_deref(), Some(1000))
            .await
            .expect("list");
        n += page.items.len() as u64;
        match page.next {
            Some(next) => after = Some(next),
            None => return n,
        }
    }
}
