//! The vault engine: lifecycle (uninitialized → sealed ⇄ unsealed) and every operation the
//! server calls. Keys live only in [`Keys`], which exists only while unsealed; sealing drops the
//! last long-lived reference, and the master key and every cached data key are wiped.
//!
//! - `layout`: store keys and metadata encodings.
//! - `tenants`: create, list, show, destroy (crypto-shred).
//! - `tokens`: stored tokens: put with compare-and-set, unseal, metadata, list, delete.
//! - `transit`: seal and unseal blobs the caller keeps.
//! - `history`: key events and live key versions.
//! - `jobs`: background rewrap of stored records to the current key versions.
//! - `rotation`: tenant and master key rotation, retirement, KMS migration.
//! - `backup`: consistent snapshots, and restore into a stopped vault's directory.
//! - `recovery`: break-glass recovery shares, and unsealing with them without the KMS.
//! - `retention`: purging expired tokens on a schedule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use vault_client::Timestamp;
use vault_client::wire::{InitResponse, KmsInfo, Status, VaultState};

use vault_client::audit::{OP_ADOPT_UNSIGNED, OP_TRUNCATED, Outcome};

use crate::audit::chain;
use crate::audit::{AuditSigner, Event};
use crate::error::Error;
use crate::ids::TenantId;
use crate::keys::wrap::{self, AuditPurpose, DekSlot};
use crate::kms::{EncryptionContext, KmsProvider, WrappedMasterKey};
use crate::secret::{AuditKey, DataKey, KeyBytes, MasterKey};
use crate::store::{Batch, Store, StoreError};

mod archive;
mod backup;
mod history;
mod jobs;
pub(crate) mod layout;
mod leases;
mod recovery;
mod retention;
mod rotation;
mod tenants;
mod tokens;
mod transit;

use layout::{AuditKeyRecord, Bytes, MasterKeyRecord, TenantRecord, VaultMeta};

pub use crate::audit::{AuditFilter, MAX_AUDIT_PAGE};
pub use backup::{RestoreError, RestoreOptions, Restored, restore};
pub use history::KeyGauges;
pub use jobs::{DEFAULT_LEASE, JobOptions, LOCAL_NODE};
pub use leases::MAX_LEASE_SECONDS;
pub use recovery::MAX_SHARES;
pub use retention::{PurgeReport, RetentionStats};
pub use tokens::{Expiry, MAX_BINDING_FIELD_LEN, MAX_PAGE, MAX_SECRET_LEN, PutToken};
pub use transit::{MAX_BATCH, MAX_CONTEXT_LEN, MAX_PLAINTEXT_LEN};

/// The current metadata format.
const META_FORMAT: u32 = 1;

/// The vault engine. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    kms: Arc<dyn KmsProvider>,
    state: RwLock<State>,
    /// False after an audit write failed, until one succeeds (`GET /v1/sys/health`).
    audit_ok: AtomicBool,
    /// Entries an earlier run left after its last signed head, to be adopted by an explicit
    /// entry once the signer is back (`docs/audit-log.md`).
    unsigned_tail: std::sync::Mutex<Option<(u64, u64)>>,
    /// Tenant-record changes take it shared; master-key rotation takes it exclusively, so no
    /// data key is wrapped under a master key version that is being replaced.
    tenants: tokio::sync::RwLock<()>,
    /// Ids of jobs with a runner in this process.
    jobs_running: std::sync::Mutex<std::collections::HashSet<String>>,
    /// This node's id and the lease period of the jobs it runs.
    jobs: JobOptions,
    /// Serializes init, unseal and seal.
    lifecycle: tokio::sync::Mutex<()>,
    /// Recovery shares received while sealed (`vault::recovery`).
    recovery: std::sync::Mutex<recovery::Pending>,
    /// What retention purged and saw (`vault::retention`), for the metrics.
    retention: retention::RetentionStats,
    /// Serializes following another node's master key rotation (one KMS unwrap for all).
    following: tokio::sync::Mutex<()>,
    /// Serializes writers of the same token (by hash stripe), so that concurrent refreshes of
    /// one token queue instead of failing their compare-and-set against each other.
    writers: Vec<tokio::sync::Mutex<()>>,
    /// Per audit chain, the last signed head a verification of this process found sound, and
    /// its hash: where the next one resumes (`docs/audit-log.md`, "Verifying").
    verified: std::sync::Mutex<VerifiedHeads>,
}

/// Audit chains (by node) to the seq and hash of their last verified signed head.
pub(crate) type VerifiedHeads = std::collections::HashMap<Option<String>, (u64, [u8; 32])>;

/// Number of writer lock stripes.
const WRITER_STRIPES: usize = 1024;

enum State {
    Uninitialized,
    Sealed(VaultMeta),
    Unsealed(Arc<Keys>),
}

/// Key material of an unsealed vault.
pub(crate) struct Keys {
    meta: VaultMeta,
    master: MasterKey,
    pub(crate) audit_hmac: AuditKey,
    signer: Arc<AuditSigner>,
    deks: RwLock<HashMap<(TenantId, u32), Arc<DataKey>>>,
}

impl Vault {
    /// Opens the vault over `store`; it starts sealed (or uninitialized). Finishes any tenant
    /// destruction a crash interrupted. Jobs run as [`LOCAL_NODE`] with the default lease.
    pub async fn open(store: Arc<Store>, kms: Arc<dyn KmsProvider>) -> Result<Self, Error> {
        Self::open_with_jobs(store, kms, JobOptions::default()).await
    }

    /// [`Vault::open`], running jobs as the node and with the lease of `jobs` (`docs/ha.md`).
    pub async fn open_with_jobs(
        store: Arc<Store>,
        kms: Arc<dyn KmsProvider>,
        jobs: JobOptions,
    ) -> Result<Self, Error> {
        let state = match store.get(layout::META).await? {
            None => State::Uninitialized,
            Some(bytes) => State::Sealed(layout::decode(&bytes, "vault metadata")?),
        };
        let vault = Self {
            inner: Arc::new(Inner {
                store,
                kms,
                state: RwLock::new(state),
                audit_ok: AtomicBool::new(true),
                unsigned_tail: std::sync::Mutex::new(None),
                tenants: tokio::sync::RwLock::new(()),
                jobs_running: std::sync::Mutex::default(),
                jobs,
                lifecycle: tokio::sync::Mutex::new(()),
                recovery: std::sync::Mutex::default(),
                retention: retention::RetentionStats::default(),
                following: tokio::sync::Mutex::new(()),
                writers: (0..WRITER_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                verified: std::sync::Mutex::default(),
            }),
        };
        vault.check_log_tail().await?;
        vault.finish_interrupted_destroys().await?;
        vault.give_back_all_archived().await?;
        Ok(vault)
    }

    /// The audit signer of the unsealed vault.
    pub(crate) fn audit_signer(&self) -> Result<Arc<AuditSigner>, Error> {
        Ok(self.keys()?.signer.clone())
    }

    /// Where audit verifications resume ([`VerifiedHeads`]).
    pub(crate) fn verified_heads(&self) -> std::sync::MutexGuard<'_, VerifiedHeads> {
        self.inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current lifecycle state.
    pub fn state(&self) -> VaultState {
        match &*self.read_state() {
            State::Uninitialized => VaultState::Uninitialized,
            State::Sealed(_) => VaultState::Sealed,
            State::Unsealed(_) => VaultState::Unsealed,
        }
    }

    /// The KMS provider (for its call counter).
    pub fn kms(&self) -> &dyn KmsProvider {
        self.inner.kms.as_ref()
    }

    /// Creates master key v1 and the audit keys, stores their wrapped forms, and unseals. The
    /// event is recorded in the same write.
    pub async fn init(&self, ev: &mut Event) -> Result<InitResponse, Error> {
        let _guard = self.inner.lifecycle.lock().await;
        if !matches!(*self.read_state(), State::Uninitialized) {
            return Err(Error::AlreadyInitialized);
        }
        let vault_id = random_id()?;
        let now = Timestamp::now().unix();
        let meta = VaultMeta {
            format: META_FORMAT,
            vault_id: vault_id.clone(),
            created_at: now,
            kms_provider: self.inner.kms.provider().to_owned(),
            master_key_version: 1,
        };
        let context = EncryptionContext::master_key(&vault_id, 1);
        let (master, wrapped) = self
            .inner
            .kms
            .generate_master_key(self.inner.kms.key_id(), &context)
            .await?;
        let hmac = AuditKey::new(KeyBytes::random()?);
        let seed = AuditKey::new(KeyBytes::random()?);
        let signer = AuditSigner::new(seed.expose_secret(), &vault_id);
        let audit_record = AuditKeyRecord {
            mk_version: 1,
            hmac: Bytes(wrap::wrap_audit_key(
                &master,
                &hmac,
                &vault_id,
                AuditPurpose::Hmac,
                1,
            )?),
            signing: Bytes(wrap::wrap_audit_key(
                &master,
                &seed,
                &vault_id,
                AuditPurpose::Signing,
                1,
            )?),
            public_key: signer.public_key(),
        };
        ev.master_key_version = Some(1);
        ev.key_event()
            .detail
            .insert("event".into(), "master_key_created".into());
        ev.detail
            .insert("kms_provider".into(), self.inner.kms.provider().into());
        ev.detail
            .insert("kms_key_id".into(), wrapped.key_id.clone());
        let mk_record = MasterKeyRecord {
            version: 1,
            kms_key_id: wrapped.key_id,
            wrapped: Bytes(wrapped.ciphertext),
            created_at: now,
        };
        let mut batch = Batch::default();
        batch
            .check(layout::META.to_vec(), None)
            .put(layout::META.to_vec(), layout::encode(&meta))
            .put(layout::master_key(1), layout::encode(&mk_record))
            .put(layout::AUDIT_KEY.to_vec(), layout::encode(&audit_record))
            .log(ev.entry(Outcome::Ok, None));
        let keys = Arc::new(Keys::new(meta, master, hmac, Arc::new(signer)));
        self.set_signer(Some(keys.signer.clone()));
        match self.commit(batch).await {
            Ok(()) => ev.mark_recorded(),
            Err(e) => {
                self.set_signer(None);
                return Err(match e {
                    Error::Store(StoreError::Conflict) => Error::AlreadyInitialized,
                    other => other,
                });
            }
        }
        tracing::info!(vault_id = %vault_id, kms = self.inner.kms.provider(), "vault initialized");
        *self.write_state() = State::Unsealed(keys);
        self.adopt_unsigned_tail().await;
        Ok(InitResponse {
            vault_id,
            master_key_version: 1,
            state: VaultState::Unsealed,
        })
    }

    /// Unwraps the master key through the KMS. Unsealing an unsealed vault does nothing. On
    /// success the audit signer is in place before the event is recorded, so its head is signed.
    pub async fn unseal(&self, ev: &mut Event) -> Result<(), Error> {
        let _guard = self.inner.lifecycle.lock().await;
        let meta = match &*self.read_state() {
            State::Uninitialized => return Err(Error::Uninitialized),
            State::Unsealed(keys) => {
                ev.master_key_version = Some(keys.meta.master_key_version);
                return Ok(());
            }
            State::Sealed(meta) => meta.clone(),
        };
        let version = meta.master_key_version;
        ev.master_key_version = Some(version);
        let mk_record = self.stored_master_key(version).await?;
        ev.detail
            .insert("kms_key_id".into(), mk_record.kms_key_id.clone());
        let master = self.unwrap_master_key(&meta, mk_record).await?;
        self.unseal_with(meta, master).await
    }

    /// Unseals with the master key in hand (from the KMS, or from recovery shares): opens the
    /// audit keys under it, puts the signer in place, adopts what an earlier run left unsigned,
    /// and resumes jobs. The caller holds the lifecycle lock.
    async fn unseal_with(&self, meta: VaultMeta, master: MasterKey) -> Result<(), Error> {
        let store = &self.inner.store;
        let version = meta.master_key_version;
        let record: AuditKeyRecord = layout::decode(
            &store
                .get(layout::AUDIT_KEY)
                .await?
                .ok_or_else(|| missing("audit key record"))?,
            "audit key record",
        )?;
        let unwrap_audit = |wrapped: &Bytes, purpose| {
            wrap::unwrap_audit_key(
                &master,
                &wrapped.0,
                &meta.vault_id,
                purpose,
                record.mk_version,
            )
            .map_err(|_| StoreError::Corrupt("audit keys do not open under the master key".into()))
        };
        let hmac = unwrap_audit(&record.hmac, AuditPurpose::Hmac)?;
        let seed = unwrap_audit(&record.signing, AuditPurpose::Signing)?;
        let signer = Arc::new(AuditSigner::new(seed.expose_secret(), &meta.vault_id));
        if signer.public_key() != record.public_key {
            return Err(StoreError::Corrupt(
                "audit public key does not match the signing key".into(),
            )
            .into());
        }
        tracing::info!(vault_id = %meta.vault_id, master_key_version = version, "vault unsealed");
        self.set_signer(Some(signer.clone()));
        *self.write_state() = State::Unsealed(Arc::new(Keys::new(meta, master, hmac, signer)));
        self.adopt_unsigned_tail().await;
        self.record_restore().await;
        if let Err(e) = self.resume_jobs().await {
            tracing::error!(error = %e, "could not resume rewrap jobs");
        }
        Ok(())
    }

    /// At open: entries after the last signed head are adopted at the next unseal; a signed
    /// head beyond the last entry means the log was cut, which is recorded at once, before new
    /// entries reuse those sequence numbers.
    async fn check_log_tail(&self) -> Result<(), Error> {
        let seq = |entry: Option<crate::store::Entry>| {
            entry.and_then(|(k, _)| chain::seq_of(&k)).unwrap_or(0)
        };
        let last_entry = seq(self.store().last(chain::ENTRIES).await?);
        let last_head = seq(self.store().last(chain::HEADS).await?);
        if last_head > last_entry {
            tracing::error!(
                last_entry,
                last_head,
                "audit log cut off: a signed head covers entries that are missing"
            );
            let mut ev = Event::system(OP_TRUNCATED);
            ev.detail
                .insert("last_entry".into(), last_entry.to_string());
            ev.detail.insert("last_head".into(), last_head.to_string());
            self.record(&mut ev, Outcome::Error, Some("audit_truncated"))
                .await?;
        } else if last_entry > last_head {
            *self
                .inner
                .unsigned_tail
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((last_head + 1, last_entry));
        }
        Ok(())
    }

    /// Records that entries an earlier run left unsigned are now chained under this run's
    /// signatures, so that verification reports them instead of hiding them.
    async fn adopt_unsigned_tail(&self) {
        let tail = *self
            .inner
            .unsigned_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some((from, to)) = tail else { return };
        let mut ev = Event::system(OP_ADOPT_UNSIGNED);
        ev.detail.insert("from".into(), from.to_string());
        ev.detail.insert("to".into(), to.to_string());
        match self.record(&mut ev, Outcome::Ok, None).await {
            Ok(()) => {
                tracing::warn!(
                    from,
                    to,
                    "audit entries left unsigned by an earlier run were adopted; verify reports them"
                );
                *self
                    .inner
                    .unsigned_tail
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record the adoption of unsigned audit entries")
            }
        }
    }

    /// Wipes the master key and every data key. Sealing a sealed vault does nothing. The event
    /// is recorded (and signed) before the keys go; sealing is a safety action, so the keys go
    /// even when the entry cannot be written (the answer is then `audit_unavailable`).
    pub async fn seal(&self, ev: &mut Event) -> Result<(), Error> {
        let _guard = self.inner.lifecycle.lock().await;
        let meta = match &*self.read_state() {
            State::Uninitialized => return Err(Error::Uninitialized),
            State::Sealed(_) => return Ok(()),
            State::Unsealed(keys) => keys.meta.clone(),
        };
        ev.master_key_version = Some(meta.master_key_version);
        let recorded = self.record(ev, Outcome::Ok, None).await;
        self.set_signer(None);
        tracing::info!(vault_id = %meta.vault_id, "vault sealed");
        *self.write_state() = State::Sealed(meta);
        recorded
    }

    /// Records `ev` on its own, unless an operation's write already did. Fails closed: the
    /// caller must not answer with the operation's result when this fails.
    pub async fn record(
        &self,
        ev: &mut Event,
        outcome: Outcome,
        code: Option<&str>,
    ) -> Result<(), Error> {
        if ev.is_recorded() {
            return Ok(());
        }
        let mut batch = Batch::default();
        if outcome == Outcome::Ok {
            batch.ops.append(&mut ev.ops);
        }
        batch.log(ev.entry(outcome, code));
        self.commit(batch).await?;
        ev.mark_recorded();
        Ok(())
    }

    /// False after an audit entry could not be written, until one can again.
    pub fn audit_available(&self) -> bool {
        self.inner.audit_ok.load(Ordering::Relaxed)
    }

    /// False while the disk fails the store (`Store::disk_available`).
    pub fn storage_available(&self) -> bool {
        self.inner.store.disk_available()
    }

    /// Commits a batch; a storage failure marks the audit log unavailable (every batch that
    /// carries an entry is an audit write) and is reported as `AuditUnavailable` when the batch
    /// carried one.
    async fn commit(&self, batch: Batch) -> Result<(), Error> {
        let audited = !batch.log.is_empty();
        self.settle(audited, self.inner.store.commit(batch)).await
    }

    /// Waits for a commit already sent, with the error mapping of [`Vault::commit`].
    async fn settle(&self, audited: bool, commit: crate::store::CommitFuture) -> Result<(), Error> {
        match commit.await {
            Ok(()) => {
                if audited {
                    self.inner.audit_ok.store(true, Ordering::Relaxed);
                }
                Ok(())
            }
            // Nothing was written, and the audit log is not at fault.
            Err(e @ StoreError::Conflict) => Err(e.into()),
            Err(e) => {
                self.inner.audit_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "store write failed");
                Err(if audited {
                    Error::AuditUnavailable
                } else {
                    e.into()
                })
            }
        }
    }

    fn set_signer(&self, signer: Option<Arc<AuditSigner>>) {
        let signer = signer.map(|s| s as Arc<dyn crate::audit::chain::HeadSigner>);
        self.inner.store.set_head_signer(signer);
    }

    /// Identity, state, KMS, master key version and counts.
    pub async fn status(&self) -> Result<Status, Error> {
        let kms = KmsInfo {
            provider: self.inner.kms.provider().to_owned(),
            key_id: self.inner.kms.key_id().to_owned(),
            configured_key_id: Some(self.inner.kms.key_id().to_owned()),
        };
        let (meta, unsealed) = match &*self.read_state() {
            State::Uninitialized => (None, false),
            State::Sealed(meta) => (Some(meta.clone()), false),
            State::Unsealed(keys) => (Some(keys.meta.clone()), true),
        };
        let (tenants, tokens) = if unsealed {
            let (t, n) = self.count_all().await?;
            (Some(t), Some(n))
        } else {
            (None, None)
        };
        // The KMS key that wraps the current master key (it differs from the configured one
        // after a KMS migration, until the config names the new key).
        let kms = match &meta {
            Some(m) => match self
                .store()
                .get(&layout::master_key(m.master_key_version))
                .await?
            {
                Some(bytes) => {
                    let record: MasterKeyRecord = layout::decode(&bytes, "master key record")?;
                    KmsInfo {
                        key_id: record.kms_key_id,
                        ..kms
                    }
                }
                None => kms,
            },
            None => kms,
        };
        Ok(Status {
            vault_id: meta.as_ref().map(|m| m.vault_id.clone()),
            state: self.state(),
            kms,
            master_key_version: meta.map(|m| m.master_key_version),
            tenants,
            tokens,
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        })
    }

    pub(crate) fn keys(&self) -> Result<Arc<Keys>, Error> {
        match &*self.read_state() {
            State::Uninitialized => Err(Error::Uninitialized),
            State::Sealed(_) => Err(Error::Sealed),
            State::Unsealed(keys) => Ok(keys.clone()),
        }
    }

    /// The vault's metadata as stored (sealed or not).
    pub(crate) async fn stored_meta(&self) -> Result<VaultMeta, Error> {
        let bytes = self
            .store()
            .get(layout::META)
            .await?
            .ok_or(Error::Uninitialized)?;
        Ok(layout::decode(&bytes, "vault metadata")?)
    }

    /// Counts of the store's group commits.
    pub(crate) fn store_stats(&self) -> &crate::store::Stats {
        self.inner.store.stats()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The data key `version` of `tenant`: from the cache, or unwrapped under the master key.
    /// A data key wrapped under a newer master key version than this node holds was rewrapped
    /// by another node's master key rotation (a shared store, docs/ha.md): the node follows the
    /// rotation first.
    async fn dek(
        &self,
        keys: &Keys,
        tenant: &TenantId,
        record: &TenantRecord,
        version: u32,
    ) -> Result<Arc<DataKey>, Error> {
        let id = (tenant.clone(), version);
        if let Some(dek) = keys
            .deks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return Ok(dek.clone());
        }
        let entry = record
            .dek(version)
            .ok_or_else(|| Error::NotFound(format!("key version {version} of tenant")))?;
        let followed;
        let keys = if entry.mk_version > keys.meta.master_key_version {
            self.follow_master_rotation().await?;
            followed = self.keys()?;
            &*followed
        } else {
            keys
        };
        let slot = DekSlot {
            vault_id: &keys.meta.vault_id,
            tenant: tenant.as_str(),
            dek_version: version,
            mk_version: entry.mk_version,
        };
        let dek = wrap::unwrap_dek(&keys.master, &entry.wrapped.0, &slot).map_err(|_| {
            StoreError::Corrupt(format!(
                "data key {version} of tenant {tenant} does not unwrap"
            ))
        })?;
        let dek = Arc::new(dek);
        keys.deks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, dek.clone());
        Ok(dek)
    }

    /// The stored record of master key `version` (its wrapped form and KMS key).
    async fn stored_master_key(&self, version: u32) -> Result<MasterKeyRecord, Error> {
        let bytes = self
            .store()
            .get(&layout::master_key(version))
            .await?
            .ok_or_else(|| missing("master key record"))?;
        Ok(layout::decode(&bytes, "master key record")?)
    }

    /// Unwraps a stored master key through the KMS, bound to the vault and the version.
    async fn unwrap_master_key(
        &self,
        meta: &VaultMeta,
        record: MasterKeyRecord,
    ) -> Result<MasterKey, Error> {
        let wrapped = WrappedMasterKey {
            key_id: record.kms_key_id,
            ciphertext: record.wrapped.0,
        };
        let context = EncryptionContext::master_key(&meta.vault_id, meta.master_key_version);
        Ok(self.inner.kms.unwrap_master_key(&wrapped, &context).await?)
    }

    /// Moves this node to the master key version in the store, when another node rotated it:
    /// unwraps the stored version through the KMS and keeps the audit keys (the rotation
    /// rewrapped them, unchanged) and the data key cache (data keys do not change either).
    /// Takes no lifecycle or tenant lock (callers may hold one): the new keys replace exactly
    /// the ones it started from, so a seal or a rotation meanwhile wins.
    pub(super) async fn follow_master_rotation(&self) -> Result<(), Error> {
        let _following = self.inner.following.lock().await;
        let keys = self.keys()?;
        let meta = self.stored_meta().await?;
        let version = meta.master_key_version;
        if version <= keys.meta.master_key_version {
            return Ok(());
        }
        let mk_record = self.stored_master_key(version).await?;
        let master = self.unwrap_master_key(&meta, mk_record).await?;
        let deks = std::mem::take(&mut *keys.deks.write().unwrap_or_else(PoisonError::into_inner));
        let next = Keys::new(meta, master, keys.audit_hmac_copy(), keys.signer.clone());
        *next.deks.write().unwrap_or_else(PoisonError::into_inner) = deks;
        let mut state = self.write_state();
        match &*state {
            State::Unsealed(current) if Arc::ptr_eq(current, &keys) => {
                *state = State::Unsealed(Arc::new(next));
            }
            // Sealed, or moved on by this node, while the KMS answered: that stands.
            _ => return Ok(()),
        }
        drop(state);
        tracing::info!(
            master_key_version = version,
            "followed a master key rotation made by another node"
        );
        Ok(())
    }

    /// The keys to wrap a new data key under, and the check that keeps them current: this node
    /// first follows a master key rotation made by another node, and `batch` (which stores the
    /// new data key) commits only while that master key version's record is still stored; a
    /// rotation deletes it in the same write that rewraps every data key (`docs/ha.md`). Call it
    /// before taking the tenant lock.
    pub(super) async fn wrapping_keys(&self, batch: &mut Batch) -> Result<Arc<Keys>, Error> {
        self.follow_master_rotation().await?;
        let keys = self.keys()?;
        let key = layout::master_key(keys.meta.master_key_version);
        let record = self.store().get(&key).await?.ok_or_else(|| {
            Error::Conflict("the master key was rotated by another node meanwhile; retry".into())
        })?;
        batch.check(key, Some(record));
        Ok(keys)
    }

    /// The writer lock of one store key.
    async fn lock_writer(&self, key: &[u8]) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        let stripe = usize::try_from(hash % WRITER_STRIPES as u64).expect("below WRITER_STRIPES");
        self.inner.writers[stripe].lock().await
    }

    fn forget_deks(&self, tenant: &TenantId) {
        if let State::Unsealed(keys) = &*self.read_state() {
            keys.deks
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(t, _), _| t != tenant);
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Keys {
    /// A second handle on the audit HMAC key (for the key set that replaces this one).
    fn audit_hmac_copy(&self) -> AuditKey {
        AuditKey::new(KeyBytes::from_slice(self.audit_hmac.expose_secret()).expect("32 bytes"))
    }

    fn new(
        meta: VaultMeta,
        master: MasterKey,
        audit_hmac: AuditKey,
        signer: Arc<AuditSigner>,
    ) -> Self {
        Self {
            meta,
            master,
            audit_hmac,
            signer,
            deks: RwLock::new(HashMap::new()),
        }
    }
}

/// 16 random bytes as hex.
fn random_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn missing(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} is missing"))
}
