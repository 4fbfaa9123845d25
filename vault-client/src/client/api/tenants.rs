//! `/v1/tenants/{tenant}`: create, read, list, destroy, and the erasure receipt.

use http::Method;
use zeroize::Zeroizing;

use crate::client::Client;
use crate::client::path::{query_value, segment};
use crate::error::Error;
use crate::wire::{DestroyResponse, TenantInfo, TenantList};

impl Client {
    /// `PUT /v1/tenants/{tenant}`: creates the tenant (idempotent).
    pub async fn create_tenant(&self, tenant: &str) -> Result<TenantInfo, Error> {
        let path = format!("/v1/tenants/{}", segment(tenant));
        self.request(Method::PUT, path, Some(Zeroizing::new(Vec::new())))
            .await
    }

    /// `GET /v1/tenants/{tenant}/receipt`: the erasure receipt of the tenant's last
    /// destruction, a file that [`crate::receipt::verify`] checks with the audit public key.
    pub async fn erasure_receipt(&self, tenant: &str) -> Result<String, Error> {
        let path = format!("/v1/tenants/{}/receipt", segment(tenant));
        let answer = self.call(Method::GET, path.clone(), None).await?;
        let body = answer.success()?;
        String::from_utf8(body.to_vec())
            .map_err(|_| Error::Protocol(format!("answer to {path} is not UTF-8")))
    }

    /// `GET /v1/tenants`: every tenant, in name order.
    pub async fn list_tenants(&self) -> Result<TenantList, Error> {
        self.get("/v1/tenants".to_owned()).await
    }

    /// `GET /v1/tenants/{tenant}`: one tenant with its key versions and token counts.
    pub async fn tenant(&self, tenant: &str) -> Result<TenantInfo, Error> {
        self.get(format!("/v1/tenants/{}", segment(tenant))).await
    }

    /// `DELETE /v1/tenants/{tenant}?confirm={tenant}`: crypto-shreds the tenant: its data keys
    /// and records are destroyed. Irreversible.
    pub async fn destroy_tenant(&self, tenant: &str) -> Result<DestroyResponse, Error> {
        let path = format!(
            "/v1/tenants/{}?confirm={}",
            segment(tenant),
            query_value(tenant)
        );
        self.request(Method::DELETE, path, None).await
    }
}
