//! Refresh-token leases (`docs/leases.md`) against the real daemon, with a fake bank that rotates
//! refresh tokens and revokes the consent when an old one comes back, as OAuth servers do.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vault_client::wire::PutToken;
use vault_client::{ApiCode, Client, RefreshError, Secret};

const WORKERS: usize = 8;
const REFRESHES: usize = 100;

/// A bank's token endpoint for one consent: single-use refresh tokens.
#[derive(Default)]
struct Bank {
    state: Mutex<Consent>,
    reuses: AtomicU64,
    revocations: AtomicU64,
}

#[derive(Default)]
struct Consent {
    current: String,
    issued: u64,
    revoked: bool,
}

#[derive(Debug)]
enum BankError {
    /// An old refresh token was presented: the consent is revoked.
    Reused,
    /// The consent was revoked earlier; the customer must consent again.
    Revoked,
}

impl std::fmt::Display for BankError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl Bank {
    fn new(first: &str) -> Self {
        let bank = Self::default();
        bank.state.lock().expect("bank").current = first.to_owned();
        bank
    }

    /// Exchanges `presented` for a new refresh token, after a round trip's delay.
    async fn refresh(&self, presented: &[u8]) -> Result<String, BankError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut c = self.state.lock().expect("bank");
        if c.revoked {
            return Err(BankError::Revoked);
        }
        if presented != c.current.as_bytes() {
            self.reuses.fetch_add(1, Ordering::Relaxed);
            self.revocations.fetch_add(1, Ordering::Relaxed);
            c.revoked = true;
            return Err(BankError::Reused);
        }
        c.issued += 1;
        c.current = format!("rt-{}", c.issued);
        Ok(c.current.clone())
    }

    /// What a worker does with a leased token: refreshes it here, and stores what comes back.
    async fn rotate(
        &self,
        leased: vault_client::wire::LeaseTokenResponse,
    ) -> Result<PutToken, BankError> {
        let token = leased.token;
        let old = token.secret;
        let new = self.refresh(old.expose_secret()).await?;
        Ok(next(&new, token.binding))
    }

    /// The customer consents again: a fresh refresh token.
    fn reconsent(&self) -> String {
        let mut c = self.state.lock().expect("bank");
        c.issued += 1;
        c.revoked = false;
        c.current = format!("rt-{}", c.issued);
        c.current.clone()
    }
}

fn next(secret: &str, leased_binding: vault_client::wire::Binding) -> PutToken {
    PutToken {
        secret: Secret::from(secret),
        binding: leased_binding,
        expires_at: None,
        expected_revision: None,
        lease: None,
    }
}

async fn start() -> (common::Daemon, Client) {
    let daemon = common::Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "consent-1", &common::put("rt-0", "DE01"))
        .await
        .expect("put");
    (daemon, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_refreshing_one_consent_through_leases_never_reuse_a_token() {
    let (_daemon, c) = start().await;
    let bank = std::sync::Arc::new(Bank::new("rt-0"));
    let waits = std::sync::Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (c, bank, waits) = (c.clone(), bank.clone(), waits.clone());
            tokio::spawn(async move {
                let mut done = 0;
                while done < REFRESHES {
                    let bank = bank.clone();
                    let result = c
                        .refresh("acme", "consent-1", 30, |leased| async move {
                            bank.rotate(leased).await
                        })
                        .await;
                    match result {
                        Ok(_) => done += 1,
                        // Another worker held the lease for longer than this one waited.
                        Err(RefreshError::Vault(e)) if e.code() == Some(&ApiCode::Leased) => {
                            waits.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("refresh failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let reuses = bank.reuses.load(Ordering::Relaxed);
    let revocations = bank.revocations.load(Ordering::Relaxed);
    eprintln!(
        "with leases: {} refreshes by {WORKERS} workers, {reuses} reuses, {revocations} revocations, \
         {} lease waits given up",
        WORKERS * REFRESHES,
        waits.load(Ordering::Relaxed)
    );
    assert_eq!((reuses, revocations), (0, 0));
    let token = c
        .unseal_token("acme", "consent-1", None)
        .await
        .expect("unseal");
    let stored = token.secret;
    let current = bank.state.lock().expect("bank").current.clone();
    assert_eq!(stored.expose_secret(), current.as_bytes());
    assert_eq!(token.revision, 1 + (WORKERS * REFRESHES) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_refreshing_one_consent_without_leases_get_it_revoked() {
    let (_daemon, c) = start().await;
    let bank = std::sync::Arc::new(Bank::new("rt-0"));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (c, bank) = (c.clone(), bank.clone());
            tokio::spawn(async move {
                for _ in 0..REFRESHES {
                    let token = c
                        .unseal_token("acme", "consent-1", None)
                        .await
                        .expect("unseal");
                    let old = token.secret;
                    let new = match bank.refresh(old.expose_secret()).await {
                        Ok(new) => new,
                        // The consent is gone: the customer redoes strong authentication.
                        Err(BankError::Reused | BankError::Revoked) => bank.reconsent(),
                    };
                    c.put_token("acme", "consent-1", &next(&new, token.binding))
                        .await
                        .expect("put");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let revocations = bank.revocations.load(Ordering::Relaxed);
    eprintln!(
        "without leases: {} refreshes by {WORKERS} workers, {} reuses, {revocations} revocations",
        WORKERS * REFRESHES,
        bank.reuses.load(Ordering::Relaxed)
    );
    assert!(
        revocations > 0,
        "concurrent refreshes without leases reuse tokens"
    );
}

#[tokio::test]
async fn a_lease_holds_off_other_refreshes_until_it_is_stored_released_or_lapses() {
    let (daemon, c) = start().await;
    let leased = c.lease_token("acme", "consent-1", 5).await.expect("lease");
    assert_eq!(leased.token.revision, 1);
    assert_eq!(leased.token.secret.expose_secret(), b"rt-0");
    // Others wait; reads do not.
    let err = c
        .lease_token("acme", "consent-1", 5)
        .await
        .expect_err("held");
    assert_eq!(err.code(), Some(&ApiCode::Leased), "{err}");
    let err = c
        .put_token("acme", "consent-1", &common::put("rt-x", "DE01"))
        .await
        .expect_err("a put without the lease");
    assert_eq!(err.code(), Some(&ApiCode::Leased), "{err}");
    c.unseal_token("acme", "consent-1", None)
        .await
        .expect("reads are not held");
    // Retry-After on the wire: whole seconds until the lease lapses.
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--unix-socket"])
        .arg(&daemon.socket)
        .args([
            "-X",
            "POST",
            "-d",
            r#"{"seconds":5}"#,
            "http://localhost/v1/tenants/acme/tokens/consent-1/lease",
        ])
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 409"), "{head}");
    assert!(
        ["retry-after: 5", "retry-after: 4"]
            .iter()
            .any(|h| head.contains(h)),
        "{head}"
    );

    // Released: the next lease is served; a wrong id releases nothing.
    let err = c
        .release_lease("acme", "consent-1", "00000000000000000000000000000000")
        .await
        .expect_err("not its lease");
    assert_eq!(err.code(), Some(&ApiCode::Conflict), "{err}");
    assert!(
        c.release_lease("acme", "consent-1", &leased.lease)
            .await
            .expect("release")
            .released
    );
    let second = c.lease_token("acme", "consent-1", 1).await.expect("lease");
    // Lapsed: another lease is served, and the lapsed one no longer stores.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut late = common::put("rt-late", "DE01");
    late.lease = Some(second.lease.clone());
    let err = c
        .put_token("acme", "consent-1", &late)
        .await
        .expect_err("lapsed lease");
    assert_eq!(err.code(), Some(&ApiCode::Conflict), "{err}");
    let third = c.lease_token("acme", "consent-1", 5).await.expect("lapsed");
    // A lease that is not the live one is told to wait for it.
    let err = c
        .put_token("acme", "consent-1", &late)
        .await
        .expect_err("another's lease is live");
    assert_eq!(err.code(), Some(&ApiCode::Leased), "{err}");
    // The holder stores under its lease: stored and released in one.
    let mut stored = common::put("rt-1", "DE01");
    stored.lease = Some(third.lease.clone());
    assert_eq!(
        c.put_token("acme", "consent-1", &stored)
            .await
            .expect("put")
            .revision,
        2
    );
    c.lease_token("acme", "consent-1", 5)
        .await
        .expect("released by the put");
    let puts = common::entries_with_op(&c, "token.put").await;
    let last = puts
        .iter()
        .rfind(|e| e.outcome == vault_client::audit::Outcome::Ok)
        .expect("a put");
    assert_eq!(
        last.detail.get("lease").map(String::as_str),
        Some("released")
    );
}

#[tokio::test]
async fn storing_an_earlier_refresh_token_again_is_refused_and_raises_an_alarm() {
    let (_daemon, c) = start().await;
    let bank = Bank::new("rt-0");
    for _ in 0..3 {
        c.refresh("acme", "consent-1", 30, |leased| bank.rotate(leased))
            .await
            .expect("refresh");
    }
    // rt-0 (held when first leased) and rt-1 (stored since) come back: both refused, with
    // and without a lease.
    for old in ["rt-0", "rt-1", "rt-3"] {
        let err = c
            .put_token("acme", "consent-1", &common::put(old, "DE01"))
            .await
            .expect_err("an earlier token");
        assert_eq!(err.code(), Some(&ApiCode::TokenReused), "{old}: {err}");
    }
    let result = c
        .refresh("acme", "consent-1", 30, |leased| async move {
            Ok::<_, BankError>(next("rt-2", leased.token.binding))
        })
        .await;
    assert!(
        matches!(&result, Err(RefreshError::Vault(e)) if e.code() == Some(&ApiCode::TokenReused)),
        "{result:?}"
    );
    // The lease was given back: the next refresh is served at once, with a new token.
    c.refresh("acme", "consent-1", 30, |leased| async move {
        Ok::<_, BankError>(next("rt-4", leased.token.binding))
    })
    .await
    .expect("a new token");
    let alarms = common::entries_with_op(&c, "alarm.token_reused").await;
    assert_eq!(alarms.len(), 4);
    assert!(
        alarms
            .iter()
            .all(|a| a.token.as_deref() == Some("consent-1"))
    );
    let metrics = c.metrics().await.expect("metrics");
    assert!(
        metrics.contains("vaultd_alarms_total{kind=\"token_reused\"} 4"),
        "{metrics}"
    );
    // A token without leases keeps no fingerprints: storing the same value twice is fine.
    c.put_token("acme", "plain", &common::put("same", "DE01"))
        .await
        .expect("put");
    c.put_token("acme", "plain", &common::put("same", "DE01"))
        .await
        .expect("an access token stored again");
}
