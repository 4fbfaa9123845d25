//! `/v1/tenants/{tenant}/seal|unseal|rewrap`: transit encryption, one blob or a batch.

use http::Method;

use crate::client::Client;
use crate::client::body::to_json;
use crate::client::path::segment;
use crate::error::Error;
use crate::secret::Secret;
use crate::wire::{
    Batch, BatchItem, Plaintext, Sealed, TransitSeal, TransitSealItem, TransitUnseal,
    TransitUnsealItem,
};

impl Client {
    /// `POST /v1/tenants/{tenant}/seal`: seals `plaintext` under the tenant's current data key,
    /// bound to `context`, and returns the blob (`vault:v{N}:…`). The daemon keeps nothing.
    pub async fn transit_seal(
        &self,
        tenant: &str,
        plaintext: Secret,
        context: &str,
    ) -> Result<String, Error> {
        let body = to_json(&TransitSeal::one(plaintext, context))?;
        let path = format!("/v1/tenants/{}/seal", segment(tenant));
        let sealed: Sealed = self.request(Method::POST, path, Some(body)).await?;
        Ok(sealed.sealed)
    }

    /// `POST /v1/tenants/{tenant}/unseal`: opens a blob made by [`Client::transit_seal`] with
    /// the same `context`.
    pub async fn transit_unseal(
        &self,
        tenant: &str,
        sealed: &str,
        context: &str,
    ) -> Result<Secret, Error> {
        let body = to_json(&TransitUnseal {
            sealed: Some(sealed.to_owned()),
            context: Some(context.to_owned()),
            items: None,
        })?;
        let path = format!("/v1/tenants/{}/unseal", segment(tenant));
        let answer: Plaintext = self
            .request_idempotent(Method::POST, path.clone(), Some(body))
            .await?;
        Ok(answer.plaintext)
    }

    /// Batch form of [`Client::transit_seal`]: one result per item, in order; an item's failure
    /// does not fail the others.
    pub async fn transit_seal_batch(
        &self,
        tenant: &str,
        items: Vec<TransitSealItem>,
    ) -> Result<Vec<BatchItem<Sealed>>, Error> {
        let body = to_json(&TransitSeal::batch(items))?;
        let path = format!("/v1/tenants/{}/seal", segment(tenant));
        let batch: Batch<Sealed> = self.request(Method::POST, path, Some(body)).await?;
        Ok(batch.items)
    }

    /// Batch form of [`Client::transit_unseal`].
    pub async fn transit_unseal_batch(
        &self,
        tenant: &str,
        items: Vec<TransitUnsealItem>,
    ) -> Result<Vec<BatchItem<Plaintext>>, Error> {
        let body = to_json(&TransitUnseal {
            items: Some(items),
            ..TransitUnseal::default()
        })?;
        let path = format!("/v1/tenants/{}/unseal", segment(tenant));
        let batch: Batch<Plaintext> = self
            .request_idempotent(Method::POST, path, Some(body))
            .await?;
        Ok(batch.items)
    }

    /// `POST /v1/tenants/{tenant}/rewrap`: re-encrypts a blob made by [`Client::transit_seal`]
    /// (same `context`) under the tenant's current data key version and returns the new blob.
    /// The plaintext never leaves the daemon. Needs `transit:unseal`.
    pub async fn transit_rewrap(
        &self,
        tenant: &str,
        sealed: &str,
        context: &str,
    ) -> Result<String, Error> {
        let body = to_json(&TransitUnseal {
            sealed: Some(sealed.to_owned()),
            context: Some(context.to_owned()),
            items: None,
        })?;
        let path = format!("/v1/tenants/{}/rewrap", segment(tenant));
        let rewrapped: Sealed = self.request(Method::POST, path, Some(body)).await?;
        Ok(rewrapped.sealed)
    }

    /// Batch form of [`Client::transit_rewrap`]: one result per item, in order; an item's
    /// failure does not fail the others.
    pub async fn transit_rewrap_batch(
        &self,
        tenant: &str,
        items: Vec<TransitUnsealItem>,
    ) -> Result<Vec<BatchItem<Sealed>>, Error> {
        let body = to_json(&TransitUnseal {
            items: Some(items),
            ..TransitUnseal::default()
        })?;
        let path = format!("/v1/tenants/{}/rewrap", segment(tenant));
        let batch: Batch<Sealed> = self.request(Method::POST, path, Some(body)).await?;
        Ok(batch.items)
    }
}
