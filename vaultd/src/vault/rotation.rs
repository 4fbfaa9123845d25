//! Key rotation (`docs/key-rotation.md`): tenant data keys (rotate, retire, minimum decryption
//! version), the master key (one atomic switch), and moving it to another KMS key: by the KMS
//! (`rotate_kms`, the old key must work) or from memory (`migrate_kms`, it need not).

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use vault_client::Timestamp;
use vault_client::audit::Outcome;
use vault_client::wire::{KeyConfig, KmsRotated, MasterRotated, Retired, TenantRotated};

use super::layout::{self, AuditKeyRecord, Bytes, MasterKeyRecord, TenantRecord, VaultMeta};
use super::tenants::{new_dek, not_found};
use super::{Keys, State, Vault};
use crate::audit::Event;
use crate::config::RotationPolicy;
use crate::error::Error;
use crate::ids::TenantId;
use crate::keys::wrap::{self, AuditPurpose, DekSlot};
use crate::kms::{EncryptionContext, WrappedMasterKey};
use crate::store::{Batch, StoreError};

impl Vault {
    /// Makes a new data key version current for `tenant`; older versions still decrypt.
    pub async fn rotate_tenant(
        &self,
        tenant: &TenantId,
        ev: &mut Event,
    ) -> Result<TenantRotated, Error> {
        let mut batch = Batch::default();
        let keys = self.wrapping_keys(&mut batch).await?;
        let _tenants = self.inner.tenants.read().await;
        let (mut record, bytes) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(|| not_found(tenant))?;
        let version = record
            .current
            .checked_add(1)
            .ok_or_else(|| Error::Conflict("key version space exhausted".into()))?;
        record
            .deks
            .push(new_dek(&keys, tenant, version, Timestamp::now().unix())?);
        record.current = version;
        ev.key_version = Some(version);
        ev.master_key_version = Some(keys.meta.master_key_version);
        ev.key_event()
            .detail
            .insert("event".into(), "data_key_rotated".into());
        ev.detail
            .insert("previous_version".into(), (version - 1).to_string());
        batch
            .check(layout::tenant(tenant.as_str()), Some(bytes))
            .put(layout::tenant(tenant.as_str()), layout::encode(&record))
            .log(ev.entry(Outcome::Ok, None));
        self.commit_tenant_change(batch, ev).await?;
        tracing::info!(tenant = %tenant, key_version = version, "tenant data key rotated");
        Ok(TenantRotated {
            tenant: tenant.to_string(),
            key_version: version,
        })
    }

    /// Destroys every data key version below `below`, refusing while a stored record uses one.
    pub async fn retire(
        &self,
        tenant: &TenantId,
        below: u32,
        ev: &mut Event,
    ) -> Result<Retired, Error> {
        let _tenants = self.inner.tenants.read().await;
        let keys = self.keys()?;
        let (mut record, bytes) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(|| not_found(tenant))?;
        if below == 0 || below > record.current {
            return Err(Error::Invalid(format!(
                "below_version must be 1-{} (the current version)",
                record.current
            )));
        }
        let counts = self.record_counts(tenant).await?;
        let retired: Vec<u32> = record
            .deks
            .iter()
            .map(|d| d.version)
            .filter(|v| *v < below)
            .collect();
        for v in &retired {
            if let Some((_, n)) = counts.iter().find(|(cv, n)| cv == v && *n > 0) {
                return Err(Error::Conflict(format!(
                    "key version {v} still encrypts {n} stored records; run `keys rewrap` first"
                )));
            }
        }
        record.deks.retain(|d| d.version >= below);
        record.min_decryption_version = record.min_decryption_version.max(below);
        let versions: Vec<String> = retired.iter().map(u32::to_string).collect();
        ev.master_key_version = Some(keys.meta.master_key_version);
        ev.key_event()
            .detail
            .insert("event".into(), "data_keys_retired".into());
        ev.detail
            .insert("retired_versions".into(), versions.join(","));
        let mut batch = Batch::default();
        batch
            .check(layout::tenant(tenant.as_str()), Some(bytes))
            .put(layout::tenant(tenant.as_str()), layout::encode(&record));
        for v in &retired {
            // The counts must still be zero when the keys go: one atomic check-and-destroy.
            batch.check(layout::counter(tenant.as_str(), *v), None);
        }
        batch.log(ev.entry(Outcome::Ok, None));
        self.commit_tenant_change(batch, ev).await?;
        let mut cache = keys.deks.write().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|(t, v), _| t != tenant || *v >= below);
        drop(cache);
        tracing::info!(tenant = %tenant, retired = ?retired, "tenant data keys retired");
        Ok(Retired {
            tenant: tenant.to_string(),
            retired_versions: retired,
            min_decryption_version: record.min_decryption_version,
        })
    }

    /// Sets the lowest key version transit unseal accepts (no key is destroyed).
    pub async fn set_key_config(
        &self,
        tenant: &TenantId,
        config: &KeyConfig,
        ev: &mut Event,
    ) -> Result<KeyConfig, Error> {
        let _tenants = self.inner.tenants.read().await;
        let keys = self.keys()?;
        let (mut record, bytes) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(|| not_found(tenant))?;
        let min = config.min_decryption_version;
        let lowest = record.deks.first().map_or(1, |d| d.version);
        if min < lowest || min > record.current {
            return Err(Error::Invalid(format!(
                "min_decryption_version must be {lowest}-{} (live versions)",
                record.current
            )));
        }
        record.min_decryption_version = min;
        ev.master_key_version = Some(keys.meta.master_key_version);
        ev.key_event()
            .detail
            .insert("event".into(), "min_decryption_version_set".into());
        ev.detail
            .insert("min_decryption_version".into(), min.to_string());
        let mut batch = Batch::default();
        batch
            .check(layout::tenant(tenant.as_str()), Some(bytes))
            .put(layout::tenant(tenant.as_str()), layout::encode(&record))
            .log(ev.entry(Outcome::Ok, None));
        self.commit_tenant_change(batch, ev).await?;
        Ok(KeyConfig {
            min_decryption_version: min,
        })
    }

    /// A new master key version: every data key and both audit keys are rewrapped under it and
    /// the old one is deleted, all in one atomic write (`docs/key-rotation.md`).
    pub async fn rotate_master(&self, ev: &mut Event) -> Result<MasterRotated, Error> {
        let started = Instant::now();
        self.follow_master_rotation().await?;
        let _lifecycle = self.inner.lifecycle.lock().await;
        let _tenants = self.inner.tenants.write().await;
        let keys = self.keys()?;
        let old = keys.meta.master_key_version;
        let new = old
            .checked_add(1)
            .ok_or_else(|| Error::Conflict("master key version space exhausted".into()))?;
        let vault_id = keys.meta.vault_id.clone();
        let meta_bytes = self
            .store()
            .get(layout::META)
            .await?
            .ok_or_else(|| StoreError::Corrupt("vault metadata".into()))?;
        if layout::decode::<VaultMeta>(&meta_bytes, "vault metadata")?.master_key_version != old {
            return Err(Error::Conflict(
                "another node rotated the master key meanwhile; nothing was changed, retry".into(),
            ));
        }
        // Every tenant created before the scan below; the write fails if another is created
        // meanwhile (by another node: this one holds the tenant lock).
        let creations = self.store().get(layout::TENANT_CREATIONS).await?;
        // Under the KMS key that wraps the current master key: a KMS migration stays in force.
        let current: MasterKeyRecord = layout::decode(
            &self
                .store()
                .get(&layout::master_key(old))
                .await?
                .ok_or_else(|| StoreError::Corrupt("master key record".into()))?,
            "master key record",
        )?;
        let context = EncryptionContext::master_key(&vault_id, new);
        let (new_master, wrapped) = self
            .inner
            .kms
            .generate_master_key(&current.kms_key_id, &context)
            .await?;
        let now = Timestamp::now().unix();

        let mut batch = Batch::default();
        batch.check(layout::TENANT_CREATIONS.to_vec(), creations);
        let mut rewrapped = 0u64;
        for (key, value) in self.store().scan(layout::TENANTS, None, usize::MAX).await? {
            let tenant = std::str::from_utf8(&key[layout::TENANTS.len()..])
                .map_err(|_| StoreError::Corrupt("tenant key".into()))?
                .to_owned();
            let mut record: TenantRecord = layout::decode(&value, "tenant record")?;
            for dek in &mut record.deks {
                let from = DekSlot {
                    vault_id: &vault_id,
                    tenant: &tenant,
                    dek_version: dek.version,
                    mk_version: dek.mk_version,
                };
                let to = DekSlot {
                    mk_version: new,
                    ..from
                };
                let plain =
                    wrap::unwrap_dek(&keys.master, &dek.wrapped.0, &from).map_err(|_| {
                        StoreError::Corrupt(format!(
                            "data key {} of tenant {tenant} does not unwrap",
                            dek.version
                        ))
                    })?;
                dek.wrapped = Bytes(wrap::wrap_dek(&new_master, &plain, &to)?);
                dek.mk_version = new;
                rewrapped += 1;
            }
            batch
                .check(key.clone(), Some(value))
                .put(key, layout::encode(&record));
        }
        let audit: AuditKeyRecord = layout::decode(
            &self
                .store()
                .get(layout::AUDIT_KEY)
                .await?
                .ok_or_else(|| StoreError::Corrupt("audit key record".into()))?,
            "audit key record",
        )?;
        let rewrap_audit = |wrapped: &Bytes, purpose| -> Result<Bytes, Error> {
            let key = wrap::unwrap_audit_key(
                &keys.master,
                &wrapped.0,
                &vault_id,
                purpose,
                audit.mk_version,
            )
            .map_err(|_| {
                StoreError::Corrupt("audit keys do not open under the master key".into())
            })?;
            Ok(Bytes(wrap::wrap_audit_key(
                &new_master,
                &key,
                &vault_id,
                purpose,
                new,
            )?))
        };
        let new_audit = AuditKeyRecord {
            mk_version: new,
            hmac: rewrap_audit(&audit.hmac, AuditPurpose::Hmac)?,
            signing: rewrap_audit(&audit.signing, AuditPurpose::Signing)?,
            public_key: audit.public_key.clone(),
        };
        self.reseal_recovery(&mut batch, &vault_id, new, &new_master)
            .await?;
        let meta = VaultMeta {
            master_key_version: new,
            ..keys.meta.clone()
        };
        let kms_key_id = wrapped.key_id.clone();
        let mk_record = MasterKeyRecord {
            version: new,
            kms_key_id: wrapped.key_id,
            wrapped: Bytes(wrapped.ciphertext),
            created_at: now,
        };
        ev.master_key_version = Some(new);
        ev.key_event()
            .detail
            .insert("event".into(), "master_key_rotated".into());
        ev.detail
            .insert("previous_master_key_version".into(), old.to_string());
        ev.detail.insert("kms_key_id".into(), kms_key_id.clone());
        ev.detail
            .insert("rewrapped_data_keys".into(), rewrapped.to_string());
        batch
            .check(layout::META.to_vec(), Some(meta_bytes))
            .put(layout::META.to_vec(), layout::encode(&meta))
            .put(layout::master_key(new), layout::encode(&mk_record))
            .delete(layout::master_key(old))
            .put(layout::AUDIT_KEY.to_vec(), layout::encode(&new_audit))
            .log(ev.entry(Outcome::Ok, None));
        match self.commit(batch).await {
            Ok(()) => ev.mark_recorded(),
            Err(Error::Store(StoreError::Conflict)) => {
                return Err(Error::Conflict(
                    "the vault changed during the rotation; nothing was changed, retry".into(),
                ));
            }
            Err(e) => return Err(e),
        }
        // The data keys themselves did not change: the cache moves to the new key set.
        let deks = std::mem::take(&mut *keys.deks.write().unwrap_or_else(PoisonError::into_inner));
        let next = Keys::new(
            meta,
            new_master,
            keys.audit_hmac_copy(),
            keys.signer.clone(),
        );
        *next.deks.write().unwrap_or_else(PoisonError::into_inner) = deks;
        *self.write_state() = State::Unsealed(Arc::new(next));
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            master_key_version = new,
            rewrapped,
            millis,
            "master key rotated; the old version is destroyed"
        );
        Ok(MasterRotated {
            master_key_version: new,
            kms_key_id,
            rewrapped_data_keys: rewrapped,
            millis,
        })
    }

    /// Rewraps the current master key under another KMS key, by the KMS (`ReEncrypt`): the
    /// key that wraps it now must work.
    pub async fn rotate_kms(&self, new_key_id: &str, ev: &mut Event) -> Result<KmsRotated, Error> {
        self.move_master_key(KmsMove::Rewrap, new_key_id, ev).await
    }

    /// Wraps the master key held in memory under another KMS key (AWS `Encrypt`), without
    /// asking the key that wraps it now: after break-glass recovery, that key may be gone
    /// (`docs/break-glass.md`).
    pub async fn migrate_kms(&self, new_key_id: &str, ev: &mut Event) -> Result<KmsRotated, Error> {
        self.move_master_key(KmsMove::Wrap, new_key_id, ev).await
    }

    /// Puts the current master key under `new_key_id` the way `how` says, and stores it with
    /// its key event in one write.
    async fn move_master_key(
        &self,
        how: KmsMove,
        new_key_id: &str,
        ev: &mut Event,
    ) -> Result<KmsRotated, Error> {
        self.inner
            .kms
            .check_key_id(new_key_id)
            .map_err(Error::Invalid)?;
        let _lifecycle = self.inner.lifecycle.lock().await;
        let keys = self.keys()?;
        let version = keys.meta.master_key_version;
        let key = layout::master_key(version);
        let bytes = self
            .store()
            .get(&key)
            .await?
            .ok_or_else(|| StoreError::Corrupt("master key record".into()))?;
        let mut record: MasterKeyRecord = layout::decode(&bytes, "master key record")?;
        let old_key_id = record.kms_key_id.clone();
        let context = EncryptionContext::master_key(&keys.meta.vault_id, version);
        let kms = &self.inner.kms;
        let (moved, event) = match how {
            KmsMove::Rewrap => {
                let wrapped = WrappedMasterKey {
                    key_id: record.kms_key_id.clone(),
                    ciphertext: record.wrapped.0.clone(),
                };
                let moved = kms
                    .rewrap_master_key(&wrapped, &context, new_key_id)
                    .await?;
                (moved, "master_key_moved_to_kms_key")
            }
            KmsMove::Wrap => {
                let moved = kms
                    .wrap_master_key(&keys.master, &context, new_key_id)
                    .await?;
                (moved, "master_key_migrated_to_kms_key")
            }
        };
        record.kms_key_id = moved.key_id.clone();
        record.wrapped = Bytes(moved.ciphertext);
        ev.master_key_version = Some(version);
        ev.key_event().detail.insert("event".into(), event.into());
        ev.detail
            .insert("old_kms_key_id".into(), old_key_id.clone());
        ev.detail.insert("kms_key_id".into(), moved.key_id.clone());
        let mut batch = Batch::default();
        batch
            .check(key.clone(), Some(bytes))
            .put(key, layout::encode(&record))
            .log(ev.entry(Outcome::Ok, None));
        self.commit(batch).await?;
        ev.mark_recorded();
        tracing::info!(old = %old_key_id, new = %moved.key_id, event, "master key put under another KMS key; set kms.key_id in the config");
        Ok(KmsRotated {
            master_key_version: version,
            old_kms_key_id: old_key_id,
            kms_key_id: moved.key_id,
        })
    }

    /// Rotates every tenant whose current data key is past the policy's age or use limit;
    /// returns the tenants rotated.
    pub async fn rotate_due(&self, policy: &RotationPolicy) -> Result<Vec<TenantId>, Error> {
        let now = Timestamp::now().unix();
        let mut rotated = Vec::new();
        for tenant in self.tenant_ids().await? {
            let Some((record, _)) = self.load_tenant(&tenant).await? else {
                continue;
            };
            let Some(current) = record.dek(record.current) else {
                continue;
            };
            let age_days = u64::try_from((now - current.created_at) / 86_400).unwrap_or(0);
            let used = match self
                .store()
                .get(&layout::encryptions(tenant.as_str(), record.current))
                .await?
            {
                Some(bytes) => u64::try_from(crate::store::decode_counter(&bytes)?).unwrap_or(0),
                None => 0,
            };
            let too_old = policy.max_dek_age_days.is_some_and(|max| age_days >= max);
            let too_used = policy
                .max_encryptions_per_version
                .is_some_and(|max| used >= max);
            if too_old || too_used {
                let mut ev = Event::system("tenant.keys.rotate.auto");
                ev.tenant = Some(tenant.to_string());
                ev.detail.insert(
                    "reason".into(),
                    if too_old { "age" } else { "encryptions" }.into(),
                );
                match self.rotate_tenant(&tenant, &mut ev).await {
                    Ok(_) => rotated.push(tenant),
                    Err(Error::Conflict(_)) => {} // changed meanwhile: next check
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(rotated)
    }

    /// Commits a change of one tenant record; a concurrent change is a conflict to retry.
    async fn commit_tenant_change(&self, batch: Batch, ev: &mut Event) -> Result<(), Error> {
        match self.commit(batch).await {
            Ok(()) => {
                ev.mark_recorded();
                Ok(())
            }
            Err(Error::Store(StoreError::Conflict)) => Err(Error::Conflict(
                "the tenant changed concurrently; retry".into(),
            )),
            Err(e) => Err(e),
        }
    }
}

/// How [`Vault::move_master_key`] puts the master key under another KMS key.
#[derive(Debug, Clone, Copy)]
enum KmsMove {
    /// The KMS re-encrypts the stored wrap (`ReEncrypt`): the old key must work.
    Rewrap,
    /// The KMS encrypts the master key held in memory (`Encrypt`): the old key is not asked.
    Wrap,
}
