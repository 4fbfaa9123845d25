//! Scale figures for key rotation (issue 6), on the engine over a real sled directory and the
//! local KMS provider, in release mode:
//! - master key rotation with `TENANTS` tenants (default 100,000): wall time, 3 runs;
//! - rewrap rate of `RECORDS` stored records (default 1,000,000) across 100 tenants.
//!
//! `cargo bench --bench rotation_scale` (sizes: `VAULTD_BENCH_TENANTS`, `VAULTD_BENCH_RECORDS`).
//! Prints one JSON line per figure. Not run in CI (only compiled).

use std::sync::Arc;
use std::time::{Duration, Instant};

use vault_client::wire::{Binding, JobState};
use vaultd::Vault;
use vaultd::audit::Event;
use vaultd::ids::{TenantId, TokenId};
use vaultd::kms::local::LocalKms;
use vaultd::secret::Secret;
use vaultd::store::embedded;
use vaultd::vault::PutToken;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ev() -> Event {
    Event::system("bench")
}

async fn open(dir: &std::path::Path) -> Vault {
    let kms = LocalKms::open(&dir.join("keys"), "bench", true).expect("kms");
    let store = embedded::open_store(
        &dir.join("data"),
        embedded::Options {
            cache_bytes: 256 << 20,
            ..embedded::Options::default()
        },
    )
    .await
    .expect("store");
    let vault = Vault::open(Arc::new(store), Arc::new(kms))
        .await
        .expect("open");
    vault.init(&mut ev()).await.expect("init");
    vault
}

/// Runs `n` jobs `f(i)` with `width` in flight.
async fn parallel<F, Fut>(n: usize, width: usize, f: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tasks: Vec<_> = (0..width)
        .map(|w| {
            let f = f.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(width) {
                    f(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        master_rotation(size("VAULTD_BENCH_TENANTS", 100_000)).await;
        rewrap(size("VAULTD_BENCH_RECORDS", 1_000_000)).await;
    });
}

async fn master_rotation(tenants: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open(dir.path()).await;
    let started = Instant::now();
    let v = vault.clone();
    parallel(tenants, 64, move |i| {
        let v = v.clone();
        async move {
            v.create_tenant(
                &TenantId::parse(&format!("t{i:06}")).expect("id"),
                &mut ev(),
            )
            .await
            .expect("tenant");
        }
    })
    .await;
    let setup = started.elapsed();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let rotated = vault.rotate_master(&mut ev()).await.expect("rotate");
        assert_eq!(rotated.rewrapped_data_keys, tenants as u64);
        runs.push(rotated.millis);
    }
    runs.sort_unstable();
    println!(
        "{{\"figure\":\"master_rotation\",\"tenants\":{tenants},\"millis_runs\":{runs:?},\"median_millis\":{},\"setup_secs\":{:.1}}}",
        runs[1],
        setup.as_secs_f64()
    );
}

async fn rewrap(records: usize) {
    const TENANTS: usize = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open(dir.path()).await;
    for t in 0..TENANTS {
        vault
            .create_tenant(
                &TenantId::parse(&format!("r{t:03}")).expect("id"),
                &mut ev(),
            )
            .await
            .expect("tenant");
    }
    let started = Instant::now();
    let v = vault.clone();
    parallel(records, 128, move |i| {
        let v = v.clone();
        async move {
            let req = PutToken {
                secret: Secret::new(vec![b'x'; 1024]),
                binding: Binding {
                    subject: "u".into(),
                    bank: "b".into(),
                    account: format!("DE{i:020}"),
                    scope: "accounts".into(),
                },
                expires_at: None,
                expected_revision: None,
                lease: None,
                decoy: false,
            };
            let tenant = TenantId::parse(&format!("r{:03}", i % TENANTS)).expect("id");
            v.put_token(
                &tenant,
                &TokenId::parse(&format!("tok{i:08}")).expect("id"),
                &req,
                &mut ev(),
            )
            .await
            .expect("put");
        }
    })
    .await;
    let load = started.elapsed();
    for t in 0..TENANTS {
        vault
            .rotate_tenant(
                &TenantId::parse(&format!("r{t:03}")).expect("id"),
                &mut ev(),
            )
            .await
            .expect("rotate");
    }
    let started = Instant::now();
    let job = vault
        .start_rewrap(None, None, &mut ev())
        .await
        .expect("start");
    let done = loop {
        let j = vault.job(&job.id).await.expect("job");
        if j.state != JobState::Running {
            assert_eq!(j.state, JobState::Completed, "{j:?}");
            break j.done;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done, records as u64);
    println!(
        "{{\"figure\":\"rewrap\",\"records\":{records},\"secs\":{secs:.2},\"records_per_sec\":{:.0},\"load_secs\":{:.1},\"load_puts_per_sec\":{:.0}}}",
        records as f64 / secs,
        load.as_secs_f64(),
        records as f64 / load.as_secs_f64()
    );
}
