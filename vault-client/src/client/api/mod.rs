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

    /// A request with an optional JSON body, answered with JSON.
    pub(crate) async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<T, Error> {
        let answer = self.call(method, path.clone(), body).await?;
        answer.json(&path)
    }
}
