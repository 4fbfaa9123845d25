//! `/v1/tenants/{tenant}/tokens/…` and decoys: store, unseal, read, list, delete.

use std::time::Duration;

use http::Method;

use crate::client::Client;
use crate::client::body::to_json;
use crate::client::path::{query_value, segment, token_path};
use crate::error::Error;
use crate::wire::{
    Deleted, Expect, PutToken, PutTokenResponse, TokenList, TokenMeta, UnsealToken,
    UnsealTokenResponse,
};

/// Which tokens a list shows by their `expires_at` (`docs/retention.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryFilter {
    /// Past `expires_at`, not purged yet.
    Expired,
    /// Expiring after now and within this time.
    Within(Duration),
}

impl Client {
    /// `PUT /v1/tenants/{tenant}/tokens/{id}`: seals and stores a consent token.
    pub async fn put_token(
        &self,
        tenant: &str,
        id: &str,
        token: &PutToken,
    ) -> Result<PutTokenResponse, Error> {
        self.put_at(token_path(tenant, id), token).await
    }

    /// `PUT /v1/tenants/{tenant}/decoys/{id}`: plants a decoy token (`docs/alarms.md`): it
    /// looks like any token to callers without `keys:read`, and unsealing it raises an alarm.
    pub async fn put_decoy(
        &self,
        tenant: &str,
        id: &str,
        token: &PutToken,
    ) -> Result<PutTokenResponse, Error> {
        let path = format!("/v1/tenants/{}/decoys/{}", segment(tenant), segment(id));
        self.put_at(path, token).await
    }

    async fn put_at(&self, path: String, token: &PutToken) -> Result<PutTokenResponse, Error> {
        let body = to_json(token)?;
        self.request(Method::PUT, path, Some(body)).await
    }

    /// `POST /v1/tenants/{tenant}/tokens/{id}/unseal`: the token and its binding. With `expect`,
    /// any difference from the stored binding is [`ApiCode::BindingMismatch`](crate::ApiCode).
    pub async fn unseal_token(
        &self,
        tenant: &str,
        id: &str,
        expect: Option<Expect>,
    ) -> Result<UnsealTokenResponse, Error> {
        let body = to_json(&UnsealToken { expect })?;
        let path = format!("{}/unseal", token_path(tenant, id));
        self.request_idempotent(Method::POST, path, Some(body))
            .await
    }

    /// `GET /v1/tenants/{tenant}/tokens/{id}`: metadata, never the secret.
    pub async fn token(&self, tenant: &str, id: &str) -> Result<TokenMeta, Error> {
        self.get(token_path(tenant, id)).await
    }

    /// `GET /v1/tenants/{tenant}/tokens?after=&limit=`: one page of metadata in id order; pass
    /// [`TokenList::next`] as `after` for the next page.
    pub async fn list_tokens(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<TokenList, Error> {
        self.list_tokens_where(tenant, after, limit, None).await
    }

    /// [`Client::list_tokens`], only the tokens `expiry` selects (`?expired=true`,
    /// `?expiring_within=SECS`): a page may then hold fewer than `limit`; continue with `next`.
    pub async fn list_tokens_where(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: Option<u32>,
        expiry: Option<ExpiryFilter>,
    ) -> Result<TokenList, Error> {
        let mut path = format!("/v1/tenants/{}/tokens", segment(tenant));
        let mut sep = '?';
        match expiry {
            None => {}
            Some(ExpiryFilter::Expired) => {
                path.push_str("?expired=true");
                sep = '&';
            }
            Some(ExpiryFilter::Within(within)) => {
                path.push_str(&format!("?expiring_within={}", within.as_secs()));
                sep = '&';
            }
        }
        if let Some(after) = after {
            path.push(sep);
            path.push_str("after=");
            path.push_str(&query_value(after));
            sep = '&';
        }
        if let Some(limit) = limit {
            path.push(sep);
            path.push_str(&format!("limit={limit}"));
        }
        self.get(path).await
    }

    /// `DELETE /v1/tenants/{tenant}/tokens/{id}`.
    pub async fn delete_token(&self, tenant: &str, id: &str) -> Result<Deleted, Error> {
        self.request(Method::DELETE, token_path(tenant, id), None)
            .await
    }
}
