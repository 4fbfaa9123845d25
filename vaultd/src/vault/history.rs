//! Key history (`GET /v1/keys/history`): every key event (an index `k/{seq}` into the audit
//! log, so events are chained and signed like every entry) and the live key versions.

use vault_client::Timestamp;
use vault_client::audit::Entry;
use vault_client::wire::{KeyHistory, LiveKeyVersion, MasterKeyInfo, TenantKeys};

use super::Vault;
use super::layout::{self, MasterKeyRecord};
use super::tenants::not_found;
use crate::audit::KEY_EVENTS;
use crate::error::Error;
use crate::ids::TenantId;
use crate::store::StoreError;

/// Key metadata for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyGauges {
    /// Token records under a data key version that is not its tenant's current one.
    pub records_on_old_versions: u64,
    /// Age of the oldest current data key version, in seconds.
    pub oldest_key_age_secs: i64,
    /// Rewrap jobs running, and their records done and to do.
    pub jobs_running: u64,
    /// Records the running jobs have rewrapped.
    pub job_records_done: u64,
    /// Records the running jobs cover.
    pub job_records_total: u64,
}

impl Vault {
    /// Key events (of one tenant, or all) and the live key versions with counts and ages. A
    /// tenant's history holds that tenant's events only: vault-wide events (master and KMS
    /// rotations, vault-wide rewraps) belong to the vault-wide history, which needs `keys:read`
    /// on every tenant.
    pub async fn key_history(&self, tenant: Option<&TenantId>) -> Result<KeyHistory, Error> {
        let meta = self.stored_meta().await?;
        let mk: MasterKeyRecord = layout::decode(
            &self
                .store()
                .get(&layout::master_key(meta.master_key_version))
                .await?
                .ok_or_else(|| StoreError::Corrupt("master key record".into()))?,
            "master key record",
        )?;
        let mut events = Vec::new();
        for (key, value) in self.store().scan(KEY_EVENTS, None, usize::MAX).await? {
            let entry = self.key_event(&key, &value).await?;
            if tenant.is_none_or(|t| entry.tenant.as_deref() == Some(t.as_str())) {
                events.push(entry);
            }
        }
        // Each chain's events are in order; several nodes' chains merge by time.
        events.sort_by(|a, b| (a.time, &a.node, a.seq).cmp(&(b.time, &b.node, b.seq)));
        let tenants = match tenant {
            Some(t) => {
                self.load_tenant(t).await?.ok_or_else(|| not_found(t))?;
                vec![t.clone()]
            }
            None => self.tenant_ids().await?,
        };
        let now = Timestamp::now().unix();
        let mut live = Vec::with_capacity(tenants.len());
        for t in tenants {
            let Some((record, _)) = self.load_tenant(&t).await? else {
                continue;
            };
            let counts = self.record_counts(&t).await?;
            let encryptions = self
                .version_counts(&layout::all_encryptions(t.as_str()))
                .await?;
            let find = |list: &[(u32, u64)], v: u32| {
                list.iter().find(|(lv, _)| *lv == v).map_or(0, |(_, n)| *n)
            };
            let versions = record
                .deks
                .iter()
                .map(|d| LiveKeyVersion {
                    version: d.version,
                    created_at: Timestamp(d.created_at),
                    age_days: u64::try_from((now - d.created_at) / 86_400).unwrap_or(0),
                    records: find(&counts, d.version),
                    encryptions: find(&encryptions, d.version),
                })
                .collect();
            live.push(TenantKeys {
                tenant: t.to_string(),
                current_key_version: record.current,
                min_decryption_version: record.min_decryption_version,
                versions,
            });
        }
        Ok(KeyHistory {
            master: MasterKeyInfo {
                version: mk.version,
                kms_key_id: mk.kms_key_id,
                created_at: Timestamp(mk.created_at),
            },
            events,
            tenants: live,
            rotation: None,
        })
    }

    /// What the metrics show of the keys (`docs/operator-guide.md`, "Monitoring"), from clear
    /// metadata only: the vault may be sealed.
    pub(crate) async fn key_gauges(&self) -> Result<KeyGauges, Error> {
        let now = Timestamp::now().unix();
        let mut gauges = KeyGauges::default();
        for t in self.tenant_ids().await? {
            let Some((record, _)) = self.load_tenant(&t).await? else {
                continue;
            };
            gauges.records_on_old_versions += self
                .record_counts(&t)
                .await?
                .iter()
                .filter(|(v, _)| *v != record.current)
                .map(|(_, n)| n)
                .sum::<u64>();
            if let Some(current) = record.dek(record.current) {
                gauges.oldest_key_age_secs =
                    gauges.oldest_key_age_secs.max(now - current.created_at);
            }
        }
        for (_, bytes) in self.store().scan(layout::JOBS, None, usize::MAX).await? {
            let job: layout::JobRecord = layout::decode(&bytes, "job record")?;
            if job.state == vault_client::wire::JobState::Running {
                gauges.jobs_running += 1;
                gauges.job_records_done += job.done;
                gauges.job_records_total += job.total;
            }
        }
        Ok(gauges)
    }

    /// The audit entry a key event index key (`k/{seq}`, or `k/{node}/{seq}` in a node's
    /// chain) with its value points at: the entry in the log, or, once archived, the copy
    /// the value holds (`docs/audit-log.md`, "Archiving").
    async fn key_event(&self, key: &[u8], value: &[u8]) -> Result<Entry, Error> {
        Ok(self.key_event_hashed(key, value).await?.0)
    }

    /// [`Vault::key_event`], with the entry's chain hash.
    pub(super) async fn key_event_hashed(
        &self,
        key: &[u8],
        value: &[u8],
    ) -> Result<(Entry, [u8; 32]), Error> {
        let (node, seq) = super::archive::key_event_of(key)
            .ok_or_else(|| StoreError::Corrupt("key event index".into()))?;
        let bytes = if value.is_empty() {
            let page = self.store().audit_page(node, seq - 1, 1).await?;
            let Some((_, bytes)) = page.entries.into_iter().find(|(s, _)| *s == seq) else {
                return Err(
                    StoreError::Corrupt(format!("key event {seq} has no audit entry")).into(),
                );
            };
            bytes
        } else {
            value.to_vec()
        };
        let entry = serde_json::from_slice(&bytes)
            .map_err(|_| StoreError::Corrupt(format!("audit entry {seq}")))?;
        Ok((entry, vault_client::audit::entry_hash(&bytes)))
    }

    /// The erasure receipt of `tenant`'s last destruction, signed now (`vault_client::receipt`):
    /// rebuilt from the audit entry that records it, so it is the same however often asked.
    pub async fn erasure_receipt(&self, tenant: &TenantId) -> Result<String, Error> {
        let signer = self.audit_signer()?;
        let meta = self.stored_meta().await?;
        let mut found = None;
        for (key, value) in self.store().scan(KEY_EVENTS, None, usize::MAX).await? {
            let (entry, hash) = self.key_event_hashed(&key, &value).await?;
            // The key event of the destroy, whoever wrote it (the route, or a library caller).
            if entry.detail.get("event").map(String::as_str) == Some("data_keys_destroyed")
                && entry.outcome == vault_client::audit::Outcome::Ok
                && entry.tenant.as_deref() == Some(tenant.as_str())
                && found
                    .as_ref()
                    .is_none_or(|(e, _): &(Entry, _)| e.time <= entry.time)
            {
                found = Some((entry, hash));
            }
        }
        let (entry, hash) = found.ok_or_else(|| {
            Error::NotFound(format!(
                "an erasure of tenant {tenant} (it was never destroyed)"
            ))
        })?;
        let corrupt =
            || StoreError::Corrupt(format!("erasure entry {} lacks its details", entry.seq));
        let records = entry
            .detail
            .get("records")
            .and_then(|n| n.parse().ok())
            .ok_or_else(corrupt)?;
        let key_versions = entry
            .detail
            .get("destroyed_keys")
            .ok_or_else(corrupt)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|pair| {
                let (version, sha) = pair.split_once(':')?;
                Some(vault_client::receipt::DestroyedVersion {
                    version: version.parse().ok()?,
                    wrapped_sha256: sha.to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(corrupt)?;
        let receipt = vault_client::receipt::Receipt {
            vaultd_erasure_receipt: vault_client::receipt::RECEIPT_FORMAT,
            vault_id: meta.vault_id,
            tenant: tenant.to_string(),
            destroyed_at: entry.time,
            records,
            key_versions,
            node: entry.node.clone(),
            entry_seq: entry.seq,
            entry_hash: hex::encode(hash),
        };
        Ok(signer.sign_receipt(&receipt))
    }
}
