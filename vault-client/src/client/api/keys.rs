//! `/v1/keys/…` and `/v1/tenants/{tenant}/keys/…`: rotation, retirement, rewrap jobs, history.

use http::Method;

use crate::client::Client;
use crate::client::body::to_json;
use crate::client::path::{query, segment};
use crate::error::Error;
use crate::wire::{
    Job, JobStarted, KeyConfig, KeyHistory, KmsRotate, KmsRotated, MasterRotated, Retire, Retired,
    RewrapStart, TenantRotated,
};

impl Client {
    /// `POST /v1/tenants/{tenant}/keys/rotate`: a new data key version becomes current; new
    /// seals use it and every older version still decrypts.
    pub async fn rotate_tenant(&self, tenant: &str) -> Result<TenantRotated, Error> {
        self.post_empty(format!("/v1/tenants/{}/keys/rotate", segment(tenant)))
            .await
    }

    /// `POST /v1/keys/master/rotate`: a new master key version; every data key and the audit keys
    /// are rewrapped under it and the old version is destroyed, in one atomic switch. Needs
    /// `keys:rotate` on every tenant.
    ///
    /// On a large vault this takes seconds, well within the default timeout. A timeout (or a
    /// lost connection) says nothing about the outcome: the rotation goes on in the daemon, so
    /// read [`Client::status`] before trying again.
    pub async fn rotate_master(&self) -> Result<MasterRotated, Error> {
        self.post_empty("/v1/keys/master/rotate".to_owned()).await
    }

    /// `POST /v1/keys/kms/rotate`: the KMS rewraps the current master key under `key_id`. The
    /// daemon's configured `kms.key_id` must then be changed to it before the next restart.
    pub async fn rotate_kms(&self, key_id: &str) -> Result<KmsRotated, Error> {
        let body = to_json(&KmsRotate {
            key_id: key_id.to_owned(),
        })?;
        self.request(Method::POST, "/v1/keys/kms/rotate".to_owned(), Some(body))
            .await
    }

    /// `POST /v1/keys/kms/migrate`: the daemon wraps the master key it holds under `key_id`,
    /// without the KMS key that wraps it now (after break-glass recovery, that one may be gone).
    /// Set the daemon's `kms.key_id` to it before the next restart.
    pub async fn migrate_kms(&self, key_id: &str) -> Result<KmsRotated, Error> {
        let body = to_json(&KmsRotate {
            key_id: key_id.to_owned(),
        })?;
        self.request(Method::POST, "/v1/keys/kms/migrate".to_owned(), Some(body))
            .await
    }

    /// `POST /v1/tenants/{tenant}/keys/retire`: destroys every data key version below
    /// `below_version`. Refused ([`ApiCode::Conflict`](crate::ApiCode)) while a stored record
    /// still uses one: rewrap first ([`Client::start_rewrap`]).
    pub async fn retire(&self, tenant: &str, below_version: u32) -> Result<Retired, Error> {
        let body = to_json(&Retire { below_version })?;
        let path = format!("/v1/tenants/{}/keys/retire", segment(tenant));
        self.request(Method::POST, path, Some(body)).await
    }

    /// `POST /v1/tenants/{tenant}/keys/config`: transit blobs under versions below
    /// `min_decryption_version` are refused from now on; no key is destroyed.
    pub async fn set_key_config(
        &self,
        tenant: &str,
        min_decryption_version: u32,
    ) -> Result<KeyConfig, Error> {
        let body = to_json(&KeyConfig {
            min_decryption_version,
        })?;
        let path = format!("/v1/tenants/{}/keys/config", segment(tenant));
        self.request(Method::POST, path, Some(body)).await
    }

    /// `POST /v1/keys/rewrap` (answered `202 Accepted`): starts a background job that
    /// re-encrypts the stored records of `tenant` (`None`: of every tenant) under each tenant's
    /// current data key version, at most `rate` records per second. Follow it with
    /// [`Client::job`].
    pub async fn start_rewrap(
        &self,
        tenant: Option<&str>,
        rate: Option<u64>,
    ) -> Result<JobStarted, Error> {
        let body = to_json(&RewrapStart {
            tenant: tenant.map(str::to_owned),
            rate,
        })?;
        self.request(Method::POST, "/v1/keys/rewrap".to_owned(), Some(body))
            .await
    }

    /// `GET /v1/jobs/{id}`: a background job's state and progress.
    pub async fn job(&self, id: &str) -> Result<Job, Error> {
        self.get(format!("/v1/jobs/{}", segment(id))).await
    }

    /// `GET /v1/keys/history[?tenant=T]`: every key event (of `tenant` and the vault-wide ones,
    /// or all), the live data key versions with their record counts and ages, and the master
    /// key.
    pub async fn key_history(&self, tenant: Option<&str>) -> Result<KeyHistory, Error> {
        self.get(format!(
            "/v1/keys/history{}",
            query(tenant.map(|t| ("tenant", t)))
        ))
        .await
    }
}
