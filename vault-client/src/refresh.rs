//! Refresh-token leases (`docs/leases.md`): one worker at a time refreshes a token at its bank,
//! so a single-use refresh token is never presented twice.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use http::Method;

use crate::client::{Client, to_json, token_path};
use crate::wire::{
    LeaseToken, LeaseTokenResponse, PutToken, PutTokenResponse, ReleaseLease, Released,
};
use crate::{ApiCode, Error};

/// First and longest pause between lease attempts while another worker holds the lease.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_millis(250);

/// Why [`Client::refresh`] failed.
#[derive(Debug)]
pub enum RefreshError<E> {
    /// The vault refused or could not be reached (the lease, if taken, was given back).
    Vault(Error),
    /// The refresh itself failed (the lease was given back, the token is unchanged).
    Refresh(E),
}

impl<E: fmt::Display> fmt::Display for RefreshError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vault(e) => write!(f, "vault: {e}"),
            Self::Refresh(e) => write!(f, "refresh: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for RefreshError<E> {}

impl Client {
    /// `POST /v1/tenants/{tenant}/tokens/{id}/lease`: the token, held for this caller's refresh
    /// for `seconds` (1-300). While it is held, other lease requests are
    /// [`ApiCode::Leased`].
    pub async fn lease_token(
        &self,
        tenant: &str,
        id: &str,
        seconds: u32,
    ) -> Result<LeaseTokenResponse, Error> {
        let body = to_json(&LeaseToken { seconds })?;
        let path = format!("{}/lease", token_path(tenant, id));
        self.request(Method::POST, path, Some(body)).await
    }

    /// `DELETE /v1/tenants/{tenant}/tokens/{id}/lease`: gives a lease back unused.
    pub async fn release_lease(
        &self,
        tenant: &str,
        id: &str,
        lease: &str,
    ) -> Result<Released, Error> {
        let body = to_json(&ReleaseLease {
            lease: lease.to_owned(),
        })?;
        let path = format!("{}/lease", token_path(tenant, id));
        self.request(Method::DELETE, path, Some(body)).await
    }

    /// Refreshes a token under a lease of `seconds`: leases it (waiting, with backoff, up to
    /// `seconds` while another worker holds it), calls `refresh` with the leased token, and
    /// stores the token `refresh` returns under the lease, expecting the leased revision. If
    /// `refresh` or the store fails, the lease is given back.
    ///
    /// ```no_run
    /// # async fn demo(client: vault_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn bank_refresh(_: &[u8]) -> Result<String, std::io::Error> { Ok("rt-2".into()) }
    /// use vault_client::Secret;
    /// use vault_client::wire::PutToken;
    /// client
    ///     .refresh("acme", "consent-1", 30, |leased| async move {
    ///         let token = leased.token;
    ///         let new = bank_refresh(token.secret().expose_secret()).await?;
    ///         let mut put = PutToken::new(Secret::from(new), token.binding);
    ///         put.expires_at = token.expires_at;
    ///         Ok::<_, std::io::Error>(put)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn refresh<F, Fut, E>(
        &self,
        tenant: &str,
        id: &str,
        seconds: u32,
        refresh: F,
    ) -> Result<PutTokenResponse, RefreshError<E>>
    where
        F: FnOnce(LeaseTokenResponse) -> Fut,
        Fut: Future<Output = Result<PutToken, E>>,
    {
        let leased = self
            .lease_waiting(tenant, id, seconds)
            .await
            .map_err(RefreshError::Vault)?;
        let (lease, revision) = (leased.lease.clone(), leased.token.revision);
        let mut next = match refresh(leased).await {
            Ok(next) => next,
            Err(e) => {
                let _ = self.release_lease(tenant, id, &lease).await;
                return Err(RefreshError::Refresh(e));
            }
        };
        next.lease = Some(lease.clone());
        next.expected_revision = Some(revision);
        match self.put_token(tenant, id, &next).await {
            Ok(stored) => Ok(stored),
            Err(e) => {
                let _ = self.release_lease(tenant, id, &lease).await;
                Err(RefreshError::Vault(e))
            }
        }
    }

    /// [`Client::lease_token`], retried with backoff while another caller holds the lease.
    async fn lease_waiting(
        &self,
        tenant: &str,
        id: &str,
        seconds: u32,
    ) -> Result<LeaseTokenResponse, Error> {
        let deadline = Instant::now() + Duration::from_secs(u64::from(seconds));
        let mut pause = FIRST_PAUSE;
        loop {
            match self.lease_token(tenant, id, seconds).await {
                Err(e) if e.code() == Some(&ApiCode::Leased) && Instant::now() < deadline => {
                    tokio::time::sleep(jittered(pause)).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
                answer => return answer,
            }
        }
    }
}

/// `pause` scaled by a factor in [0.5, 1.5) from the clock's nanoseconds, so that waiting
/// workers do not retry in step.
fn jittered(pause: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    pause.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}
