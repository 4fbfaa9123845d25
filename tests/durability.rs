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
                back.secret.expect("text").expose_secret(),
                format!("{t}-secret-{i}").as_bytes()
            );
        }
    }
}

#[tokio::test]
async fn sigkill_mid_run_loses_no_acknowledged_write() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = daemon.client();
            let acked = acked.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    let id = format!("w{w}-{n}");
                    let secret = format!("secret-{w}-{n}");
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
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.kill();
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "writers made progress before the kill ({} acked)",
        acked.len()
    );
    eprintln!("acknowledged before SIGKILL: {}", acked.len());

    daemon.restart();
    wait_unsealed(&daemon.client()).await;
    let c = daemon.client();
    for (id, secret) in &acked {
        let back = c
            .unseal_token("acme", id, None)
            .await
            .unwrap_or_else(|e| panic!("acknowledged {id} lost: {e}"));
        assert_eq!(
            back.secret.expect("text").expose_secret(),
            secret.as_bytes()
        );
    }
    let info = c.tenant("acme").await.expect("tenant");
    let listed = {
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
                None => break n,
            }
        }
    };
    assert_eq!(
        info.tokens, listed,
        "record counts stay exact across a crash"
    );
    assert!(info.tokens >= acked.len() as u64);
}
