//! Tenants: create (idempotent), list, show, destroy by crypto-shredding.

use vault_client::Timestamp;
use vault_client::wire::{DestroyResponse, KeyVersionInfo, TenantInfo, TenantList};

use super::layout::{self, Bytes, DekRecord, TenantRecord};
use super::{Keys, Vault};
use crate::audit::Event;
use crate::error::Error;
use crate::ids::TenantId;
use crate::keys::wrap::{self, DekSlot};
use crate::secret::{DataKey, KeyBytes};
use crate::store::{Batch, StoreError, decode_counter};
use vault_client::audit::Outcome;

/// Records deleted per batch while shredding.
const SHRED_BATCH: usize = 1000;

impl Vault {
    /// Creates `tenant` with data key version 1; creating an existing tenant returns it as is.
    pub async fn create_tenant(
        &self,
        tenant: &TenantId,
        ev: &mut Event,
    ) -> Result<TenantInfo, Error> {
        let mut batch = Batch::default();
        let keys = self.wrapping_keys(&mut batch).await?;
        let _tenants = self.inner.tenants.read().await;
        if self
            .store()
            .get(&layout::tombstone(tenant.as_str()))
            .await?
            .is_some()
        {
            self.shred_records(tenant).await?;
        }
        if let Some((record, _)) = self.load_tenant(tenant).await? {
            return self.tenant_info_of(tenant, &record).await;
        }
        let now = Timestamp::now().unix();
        let record = TenantRecord {
            created_at: now,
            current: 1,
            min_decryption_version: 1,
            deks: vec![new_dek(&keys, tenant, 1, now)?],
        };
        ev.key_version = Some(1);
        ev.master_key_version = Some(keys.meta.master_key_version);
        ev.key_event()
            .detail
            .insert("event".into(), "data_key_created".into());
        batch
            .check(layout::tenant(tenant.as_str()), None)
            .put(layout::tenant(tenant.as_str()), layout::encode(&record))
            .add(layout::TENANT_CREATIONS.to_vec(), 1)
            .log(ev.entry(Outcome::Ok, None));
        match self.commit(batch).await {
            Ok(()) => {
                ev.mark_recorded();
                tracing::info!(tenant = %tenant, key_version = 1, "tenant created: data key v1");
            }
            // Created concurrently: answer with what is stored.
            Err(Error::Store(StoreError::Conflict))
                if self.load_tenant(tenant).await?.is_some() => {}
            Err(Error::Store(StoreError::Conflict)) => {
                return Err(Error::Conflict(
                    "the master key was rotated meanwhile; nothing was created, retry".into(),
                ));
            }
            Err(e) => return Err(e),
        }
        self.tenant_info(tenant).await
    }

    /// The tenant with its key versions and record counts.
    pub async fn tenant_info(&self, tenant: &TenantId) -> Result<TenantInfo, Error> {
        self.keys()?;
        let (record, _) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(|| not_found(tenant))?;
        self.tenant_info_of(tenant, &record).await
    }

    /// Every tenant, in name order.
    pub async fn list_tenants(&self) -> Result<TenantList, Error> {
        self.keys()?;
        let mut tenants = Vec::new();
        for (key, value) in self.store().scan(layout::TENANTS, None, usize::MAX).await? {
            let name = std::str::from_utf8(&key[layout::TENANTS.len()..])
                .ok()
                .and_then(|n| TenantId::parse(n).ok())
                .ok_or_else(|| StoreError::Corrupt("tenant key".into()))?;
            let record: TenantRecord = layout::decode(&value, "tenant record")?;
            tenants.push(self.tenant_info_of(&name, &record).await?);
        }
        Ok(TenantList { tenants })
    }

    /// Crypto-shreds `tenant`: its data keys are destroyed first (one atomic, durable batch),
    /// then its records are deleted. A crash in between is finished at the next start.
    pub async fn destroy_tenant(
        &self,
        tenant: &TenantId,
        ev: &mut Event,
    ) -> Result<DestroyResponse, Error> {
        let _tenants = self.inner.tenants.read().await;
        let keys = self.keys()?;
        let (record, bytes) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(|| not_found(tenant))?;
        let destroyed = u32::try_from(record.deks.len()).unwrap_or(u32::MAX);
        // The erasure's entry names its tenant whoever calls (its receipt is found by it).
        ev.tenant = Some(tenant.to_string());
        ev.master_key_version = Some(keys.meta.master_key_version);
        let versions: Vec<String> = record.deks.iter().map(|d| d.version.to_string()).collect();
        ev.detail
            .insert("destroyed_key_versions".into(), versions.join(","));
        // For the erasure receipt: each destroyed key by the hash of its wrapped form.
        let hashes: Vec<String> = record
            .deks
            .iter()
            .map(|d| {
                use sha2::Digest as _;
                let sha: [u8; 32] = sha2::Sha256::digest(&d.wrapped.0).into();
                format!("{}:{}", d.version, hex::encode(sha))
            })
            .collect();
        ev.detail.insert("destroyed_keys".into(), hashes.join(","));
        ev.key_event()
            .detail
            .insert("event".into(), "data_keys_destroyed".into());
        let mut batch = Batch::default();
        batch
            .check(layout::tenant(tenant.as_str()), Some(bytes))
            .delete(layout::tenant(tenant.as_str()))
            .put(layout::tombstone(tenant.as_str()), Vec::new());
        let mut records = 0i64;
        for (prefix, counts_records) in [
            (layout::counters(tenant.as_str()), true),
            (layout::all_encryptions(tenant.as_str()), false),
        ] {
            for (key, value) in self.store().scan(&prefix, None, usize::MAX).await? {
                if counts_records {
                    records += crate::store::decode_counter(&value)?;
                    // The count must not change before the keys go: a put meanwhile fails.
                    batch.check(key.clone(), Some(value));
                }
                batch.delete(key);
            }
        }
        ev.detail.insert("records".into(), records.to_string());
        batch.log(ev.entry(Outcome::Ok, None));
        match self.commit(batch).await {
            Err(Error::Store(StoreError::Conflict)) => {
                return Err(Error::Conflict(
                    "tenant changed during destroy; retry".into(),
                ));
            }
            other => other?,
        }
        ev.mark_recorded();
        self.forget_deks(tenant);
        tracing::info!(tenant = %tenant, destroyed_key_versions = destroyed, "tenant data keys destroyed");
        let deleted = self.shred_records(tenant).await?;
        tracing::info!(tenant = %tenant, deleted_tokens = deleted, "tenant destroyed");
        Ok(DestroyResponse {
            tenant: tenant.to_string(),
            destroyed_key_versions: destroyed,
            deleted_tokens: deleted,
            receipt: Some(self.erasure_receipt(tenant).await?),
        })
    }

    /// Deletes the records of a tenant whose keys are gone, then its tombstone.
    /// The count is of records; their lease states (`s/`) go with them.
    async fn shred_records(&self, tenant: &TenantId) -> Result<u64, Error> {
        let mut deleted = 0u64;
        for (prefix, counted) in [
            (layout::records(tenant.as_str()), true),
            (layout::token_states(tenant.as_str()), false),
        ] {
            loop {
                let page = self.store().scan(&prefix, None, SHRED_BATCH).await?;
                if page.is_empty() {
                    break;
                }
                let mut batch = Batch::default();
                for (key, _) in page {
                    batch.delete(key);
                    deleted += u64::from(counted);
                }
                self.commit(batch).await?;
            }
        }
        let mut batch = Batch::default();
        batch.delete(layout::tombstone(tenant.as_str()));
        self.commit(batch).await?;
        Ok(deleted)
    }

    pub(super) async fn finish_interrupted_destroys(&self) -> Result<(), Error> {
        for (key, _) in self
            .store()
            .scan(layout::TOMBSTONES, None, usize::MAX)
            .await?
        {
            let name = std::str::from_utf8(&key[layout::TOMBSTONES.len()..])
                .ok()
                .and_then(|n| TenantId::parse(n).ok())
                .ok_or_else(|| StoreError::Corrupt("tombstone key".into()))?;
            let deleted = self.shred_records(&name).await?;
            tracing::info!(tenant = %name, deleted_tokens = deleted, "finished interrupted tenant destroy");
            let mut ev = Event::system("tenant.destroy.resume");
            ev.tenant = Some(name.to_string());
            ev.detail
                .insert("deleted_tokens".into(), deleted.to_string());
            self.record(&mut ev, Outcome::Ok, None).await?;
        }
        Ok(())
    }

    /// The tenant record and its exact stored bytes (for compare-and-set).
    pub(super) async fn load_tenant(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<(TenantRecord, Vec<u8>)>, Error> {
        match self.store().get(&layout::tenant(tenant.as_str())).await? {
            None => Ok(None),
            Some(bytes) => Ok(Some((layout::decode(&bytes, "tenant record")?, bytes))),
        }
    }

    /// Record counts per DEK version.
    pub(super) async fn record_counts(&self, tenant: &TenantId) -> Result<Vec<(u32, u64)>, Error> {
        self.version_counts(&layout::counters(tenant.as_str()))
            .await
    }

    /// The per-version counters under `prefix` (`c/{tenant}/` or `n/{tenant}/`).
    pub(super) async fn version_counts(&self, prefix: &[u8]) -> Result<Vec<(u32, u64)>, Error> {
        let mut counts = Vec::new();
        for (key, value) in self.store().scan(prefix, None, usize::MAX).await? {
            let n = u64::try_from(decode_counter(&value)?)
                .map_err(|_| StoreError::Corrupt("negative count".into()))?;
            counts.push((layout::counter_version(&key)?, n));
        }
        Ok(counts)
    }

    async fn tenant_info_of(
        &self,
        tenant: &TenantId,
        record: &TenantRecord,
    ) -> Result<TenantInfo, Error> {
        let counts = self.record_counts(tenant).await?;
        let count = |v: u32| {
            counts
                .iter()
                .find(|(cv, _)| *cv == v)
                .map_or(0, |(_, n)| *n)
        };
        let key_versions = record
            .deks
            .iter()
            .map(|d| KeyVersionInfo {
                version: d.version,
                created_at: Timestamp(d.created_at),
                records: count(d.version),
            })
            .collect();
        Ok(TenantInfo {
            name: tenant.to_string(),
            created_at: Timestamp(record.created_at),
            current_key_version: record.current,
            key_versions,
            tokens: counts.iter().map(|(_, n)| n).sum(),
        })
    }

    /// (tenants, tokens) over the whole vault.
    pub(super) async fn count_all(&self) -> Result<(u64, u64), Error> {
        let tenants = self
            .store()
            .scan(layout::TENANTS, None, usize::MAX)
            .await?
            .len() as u64;
        let mut tokens = 0u64;
        for (_, value) in self.store().scan(b"c/", None, usize::MAX).await? {
            tokens += u64::try_from(decode_counter(&value)?).unwrap_or(0);
        }
        Ok((tenants, tokens))
    }
}

/// A fresh random data key, wrapped under the current master key.
pub(super) fn new_dek(
    keys: &Keys,
    tenant: &TenantId,
    version: u32,
    now: i64,
) -> Result<DekRecord, Error> {
    let dek = DataKey::new(KeyBytes::random()?);
    let mk_version = keys.meta.master_key_version;
    let slot = DekSlot {
        vault_id: &keys.meta.vault_id,
        tenant: tenant.as_str(),
        dek_version: version,
        mk_version,
    };
    let wrapped = wrap::wrap_dek(&keys.master, &dek, &slot)?;
    Ok(DekRecord {
        version,
        created_at: now,
        mk_version,
        wrapped: Bytes(wrapped),
    })
}

pub(super) fn not_found(tenant: &TenantId) -> Error {
    Error::NotFound(format!("tenant {tenant}"))
}
