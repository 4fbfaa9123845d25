//! The endpoints: one file per operation group of the API, each an `impl Client` block with one
//! method per endpoint (as `vaultd/src/server/api/` is on the daemon's side), and here the
//! helpers they share.

mod audit;
mod keys;
mod sys;
mod tenants;
mod tokens;
mod transit;

use http::Method;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::Client;
use crate::error::Error;

pub use audit::AuditQuery;
pub use tokens::ExpiryFilter;

impl Client {
    /// Sends any request and returns the status and body as they are, error statuses included.
    /// `path` is sent verbatim (`/v1/…` with its query). For tests and tools; the returned body is
    /// not zeroized.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), Error> {
        let answer = self
            .call(method, path.to_owned(), body.map(Zeroizing::new))
            .await?;
        Ok((answer.status, answer.body.to_vec()))
    }

    /// A GET answered with JSON.
    async fn get<T: DeserializeOwned>(&self, path: String) -> Result<T, Error> {
        self.request(Method::GET, path, None).await
    }

    /// A POST without a body, answered with JSON.
    async fn post_empty<T: DeserializeOwned>(&self, path: String) -> Result<T, Error> {
        self.request(Method::POST, path, Some(Zeroizing::new(Vec::new())))
            .await
    }

    /// A request with an optional JSON body, answered with JSON; a `GET` is retried as the
    /// client's [`Retry`](crate::Retry) says.
    pub(crate) async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<T, Error> {
        let idempotent = method == Method::GET;
        self.request_retrying(method, path, body, idempotent).await
    }

    /// A request that changes nothing, though not a `GET` (a token or transit unseal): retried
    /// as a `GET` is.
    pub(crate) async fn request_idempotent<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<T, Error> {
        self.request_retrying(method, path, body, true).await
    }

    async fn request_retrying<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Zeroizing<Vec<u8>>>,
        idempotent: bool,
    ) -> Result<T, Error> {
        let retry = self.inner.retry;
        let mut tries = 1;
        loop {
            let result = match self.call(method.clone(), path.clone(), body.clone()).await {
                Ok(answer) => answer.json(&path),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if idempotent && tries < retry.attempts && e.retried_by_client() => {
                    tokio::time::sleep(jitter(retry.ceiling(tries))).await;
                    tries += 1;
                }
                done => return done,
            }
        }
    }
}

/// A wait in `[0, ceiling)`, so that clients that failed together do not retry together. Not a
/// secret: the clock's nanoseconds are random enough.
fn jitter(ceiling: std::time::Duration) -> std::time::Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX).max(1);
    std::time::Duration::from_nanos(nanos.wrapping_mul(0x9e37_79b9_7f4a_7c15) % ceiling_nanos)
}
