//! Key rotation under crashes, against the real daemon: a rewrap job resumes after SIGKILL, and
//! a master key rotation killed at random points always restarts into a consistent vault.

mod common;

use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;
use vault_client::{Client, Secret};

use common::{Daemon, put, wait_unsealed};

async fn call(c: &Client, method: Method, path: &str, body: &str) -> Value {
    let body = (!body.is_empty()).then(|| body.as_bytes().to_vec());
    let (status, answer) = c.raw(method, path, body).await.expect("answered");
    assert!(
        (200..300).contains(&status),
        "{path}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    serde_json::from_slice(&answer).expect("json")
}

/// Puts `n` tokens `tok-{i}` with secret `secret-{i}`, 8 at a time.
async fn fill(c: &Client, tenant: &str, n: usize) {
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (c, tenant) = (c.clone(), tenant.to_owned());
            tokio::spawn(async move {
                for i in (w..n).step_by(8) {
                    c.put_token(
                        &tenant,
                        &format!("tok-{i:05}"),
                        &put(&format!("secret-{i}"), "DE01"),
                    )
                    .await
                    .expect("put");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("filler");
    }
}

async fn all_open(c: &Client, tenant: &str, n: usize) {
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (c, tenant) = (c.clone(), tenant.to_owned());
            tokio::spawn(async move {
                for i in (w..n).step_by(8) {
                    let back = c
                        .unseal_token(&tenant, &format!("tok-{i:05}"), None)
                        .await
                        .expect("record opens");
                    assert_eq!(
                        back.secret.expose_secret(),
                        format!("secret-{i}").as_bytes()
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("reader");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_job_resumes_after_sigkill_and_moves_every_record() {
    const N: usize = 3000;
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    fill(&c, "acme", N).await;
    call(&c, Method::POST, "/v1/tenants/acme/keys/rotate", "").await;
    // A rate limit keeps the job running long enough to be killed in the middle.
    let job = call(
        &c,
        Method::POST,
        "/v1/keys/rewrap",
        r#"{"tenant":"acme","rate":1000}"#,
    )
    .await;
    let id = job["id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = call(&c, Method::GET, &format!("/v1/jobs/{id}"), "").await;
    let done_before = before["done"].as_u64().expect("done");
    assert!(
        done_before > 0 && done_before < N as u64,
        "killed mid-run: {before}"
    );
    daemon.kill();

    daemon.restart();
    let c = daemon.client();
    wait_unsealed(&c).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job = call(&c, Method::GET, &format!("/v1/jobs/{id}"), "").await;
        if job["state"] != "running" {
            break job;
        }
        assert!(Instant::now() < deadline, "job never finished: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(
        (job["done"].as_u64(), job["total"].as_u64()),
        (Some(N as u64), Some(N as u64)),
        "exactly once: {job}"
    );
    let info = c.tenant("acme").await.expect("tenant");
    let counts: Vec<(u32, u64)> = info
        .key_versions
        .iter()
        .map(|v| (v.version, v.records))
        .collect();
    assert_eq!(counts, [(1, 0), (2, N as u64)]);
    all_open(&c, "acme", N).await;
    call(
        &c,
        Method::POST,
        "/v1/tenants/acme/keys/retire",
        r#"{"below_version":2}"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_rotation_killed_at_random_points_always_restarts_consistent() {
    const TENANTS: usize = 1500;
    const TOKENS: usize = 40;
    const RUNS: usize = 20;
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    let creators: Vec<_> = (0..8)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in (w..TENANTS).step_by(8) {
                    c.create_tenant(&format!("tenant-{i:05}"))
                        .await
                        .expect("tenant");
                }
            })
        })
        .collect();
    for t in creators {
        t.await.expect("creator");
    }
    c.create_tenant("acme").await.expect("tenant");
    fill(&c, "acme", TOKENS).await;
    let blob = c
        .transit_seal("acme", Secret::from("transit-plain"), "ctx")
        .await
        .expect("blob");
    let timed = call(&c, Method::POST, "/v1/keys/master/rotate", "").await;
    let millis = timed["millis"].as_u64().expect("millis").max(5);
    let mut version = timed["master_key_version"].as_u64().expect("version");
    eprintln!(
        "one master rotation over {} data keys: {millis} ms",
        TENANTS + 1
    );

    let mut seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let (mut old_state, mut new_state) = (0, 0);
    for run in 0..RUNS {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_millis((seed >> 33) % (millis * 3 / 2 + 1));
        let rotating = {
            let c = daemon.client();
            tokio::spawn(async move { c.raw(Method::POST, "/v1/keys/master/rotate", None).await })
        };
        tokio::time::sleep(delay).await;
        daemon.kill();
        let _ = rotating.await;
        daemon.restart();
        let c = daemon.client();
        wait_unsealed(&c).await;
        let status = c.status().await.expect("status");
        let now = u64::from(status.master_key_version.expect("initialized"));
        assert!(
            now == version || now == version + 1,
            "run {run}: master key version {now} after {version}"
        );
        if now == version {
            old_state += 1
        } else {
            new_state += 1
        }
        version = now;
        assert_eq!(status.tenants, Some(TENANTS as u64 + 1), "run {run}");
        assert_eq!(
            c.transit_unseal("acme", &blob, "ctx")
                .await
                .expect("blob opens")
                .expose_secret(),
            b"transit-plain"
        );
        all_open(&c, "acme", TOKENS).await;
        let report = call(&c, Method::GET, "/v1/audit/verify", "").await;
        let chain_broken = report["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| {
                let p = p.as_str().unwrap_or("");
                !p.contains("adopted") && !p.starts_with("unsigned_tail")
            });
        assert!(!chain_broken, "run {run}: {report}");
        eprintln!("run {run}: killed after {delay:?}: master key version {now}");
    }
    eprintln!(
        "{RUNS} kills: {old_state} restarted on the old master key, {new_state} on the new one"
    );
    // Every data key of every tenant still unwraps under the final master key.
    call(&c, Method::POST, "/v1/keys/master/rotate", "").await;
}
