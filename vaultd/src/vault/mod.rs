//! The vault engine: lifecycle (uninitialized → sealed ⇄ unsealed) and every operation the
//! server calls. Keys live only in [`Keys`], which exists only while unsealed; sealing drops the
//! last long-lived reference, and the master key and every cached data key are wiped.
//!
//! - `layout`: store keys and metadata encodings.
//! - `tenants`: create, list, show, destroy (crypto-shred).
//! - `tokens`: stored tokens: put with compare-and-set, unseal, metadata, list, delete.
//! - `transit`: seal and unseal blobs the caller keeps.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use vault_client::Timestamp;
use vault_client::wire::{InitResponse, KmsInfo, Status, VaultState};

use crate::error::Error;
use crate::ids::TenantId;
use crate::keys::wrap::{self, DekSlot};
use crate::kms::{EncryptionContext, KmsProvider, WrappedMasterKey};
use crate::secret::{AuditKey, DataKey, KeyBytes, MasterKey};
use crate::store::{Batch, Store, StoreError};

pub(crate) mod layout;
mod tenants;
mod tokens;
mod transit;

use layout::{AuditKeyRecord, Bytes, MasterKeyRecord, TenantRecord, VaultMeta};

pub use tokens::{MAX_BINDING_FIELD_LEN, MAX_PAGE, MAX_SECRET_LEN, PutToken};
pub use transit::{MAX_BATCH, MAX_CONTEXT_LEN, MAX_PLAINTEXT_LEN};

/// The current metadata format.
const META_FORMAT: u32 = 1;

/// The vault engine. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    kms: Arc<dyn KmsProvider>,
    state: RwLock<State>,
    /// Serializes init, unseal and seal.
    lifecycle: tokio::sync::Mutex<()>,
    /// Serializes writers of the same token (by hash stripe), so that concurrent refreshes of
    /// one token queue instead of failing their compare-and-set against each other.
    writers: Vec<tokio::sync::Mutex<()>>,
}

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
    #[allow(dead_code)] // read by the audit trail
    audit: AuditKey,
    deks: RwLock<HashMap<(TenantId, u32), Arc<DataKey>>>,
}

impl Vault {
    /// Opens the vault over `store`; it starts sealed (or uninitialized). Finishes any tenant
    /// destruction a crash interrupted.
    pub async fn open(store: Arc<dyn Store>, kms: Arc<dyn KmsProvider>) -> Result<Self, Error> {
        let state = match store.get(layout::META)? {
            None => State::Uninitialized,
            Some(bytes) => State::Sealed(layout::decode(&bytes, "vault metadata")?),
        };
        let vault = Self {
            inner: Arc::new(Inner {
                store,
                kms,
                state: RwLock::new(state),
                lifecycle: tokio::sync::Mutex::new(()),
                writers: (0..WRITER_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            }),
        };
        vault.finish_interrupted_destroys().await?;
        Ok(vault)
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

    /// Creates master key v1 and the audit key, stores their wrapped forms, and unseals.
    pub async fn init(&self) -> Result<InitResponse, Error> {
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
        let (master, wrapped) = self.inner.kms.generate_master_key(&context).await?;
        let audit = AuditKey::new(KeyBytes::random()?);
        let audit_record = AuditKeyRecord {
            mk_version: 1,
            wrapped: Bytes(wrap::wrap_audit_key(&master, &audit, &vault_id, 1)?),
        };
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
            .put(layout::AUDIT_KEY.to_vec(), layout::encode(&audit_record));
        match self.inner.store.commit(batch).await {
            Err(StoreError::Conflict) => return Err(Error::AlreadyInitialized),
            other => other?,
        }
        tracing::info!(vault_id = %vault_id, kms = self.inner.kms.provider(), "vault initialized");
        *self.write_state() = State::Unsealed(Arc::new(Keys::new(meta, master, audit)));
        Ok(InitResponse {
            vault_id,
            master_key_version: 1,
            state: VaultState::Unsealed,
        })
    }

    /// Unwraps the master key through the KMS. Unsealing an unsealed vault does nothing.
    pub async fn unseal(&self) -> Result<(), Error> {
        let _guard = self.inner.lifecycle.lock().await;
        let meta = match &*self.read_state() {
            State::Uninitialized => return Err(Error::Uninitialized),
            State::Unsealed(_) => return Ok(()),
            State::Sealed(meta) => meta.clone(),
        };
        let store = &self.inner.store;
        let version = meta.master_key_version;
        let mk_record: MasterKeyRecord = layout::decode(
            &store
                .get(&layout::master_key(version))?
                .ok_or_else(|| missing("master key record"))?,
            "master key record",
        )?;
        let wrapped = WrappedMasterKey {
            key_id: mk_record.kms_key_id,
            ciphertext: mk_record.wrapped.0,
        };
        let context = EncryptionContext::master_key(&meta.vault_id, version);
        let master = self.inner.kms.unwrap_master_key(&wrapped, &context).await?;
        let audit_record: AuditKeyRecord = layout::decode(
            &store
                .get(layout::AUDIT_KEY)?
                .ok_or_else(|| missing("audit key record"))?,
            "audit key record",
        )?;
        let audit = wrap::unwrap_audit_key(
            &master,
            &audit_record.wrapped.0,
            &meta.vault_id,
            audit_record.mk_version,
        )
        .map_err(|_| StoreError::Corrupt("audit key does not open under the master key".into()))?;
        tracing::info!(vault_id = %meta.vault_id, master_key_version = version, "vault unsealed");
        *self.write_state() = State::Unsealed(Arc::new(Keys::new(meta, master, audit)));
        Ok(())
    }

    /// Wipes the master key and every data key. Sealing a sealed vault does nothing.
    pub async fn seal(&self) -> Result<(), Error> {
        let _guard = self.inner.lifecycle.lock().await;
        let mut state = self.write_state();
        match &*state {
            State::Uninitialized => Err(Error::Uninitialized),
            State::Sealed(_) => Ok(()),
            State::Unsealed(keys) => {
                let meta = keys.meta.clone();
                tracing::info!(vault_id = %meta.vault_id, "vault sealed");
                *state = State::Sealed(meta);
                Ok(())
            }
        }
    }

    /// Identity, state, KMS, master key version and counts.
    pub fn status(&self) -> Result<Status, Error> {
        let kms = KmsInfo {
            provider: self.inner.kms.provider().to_owned(),
            key_id: self.inner.kms.key_id().to_owned(),
        };
        let (meta, unsealed) = match &*self.read_state() {
            State::Uninitialized => (None, false),
            State::Sealed(meta) => (Some(meta.clone()), false),
            State::Unsealed(keys) => (Some(keys.meta.clone()), true),
        };
        let (tenants, tokens) = if unsealed {
            let (t, n) = self.count_all()?;
            (Some(t), Some(n))
        } else {
            (None, None)
        };
        Ok(Status {
            vault_id: meta.as_ref().map(|m| m.vault_id.clone()),
            state: self.state(),
            kms,
            master_key_version: meta.map(|m| m.master_key_version),
            tenants,
            tokens,
        })
    }

    fn keys(&self) -> Result<Arc<Keys>, Error> {
        match &*self.read_state() {
            State::Uninitialized => Err(Error::Uninitialized),
            State::Sealed(_) => Err(Error::Sealed),
            State::Unsealed(keys) => Ok(keys.clone()),
        }
    }

    fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The data key `version` of `tenant`: from the cache, or unwrapped under the master key.
    fn dek(
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
    fn new(meta: VaultMeta, master: MasterKey, audit: AuditKey) -> Self {
        Self {
            meta,
            master,
            audit,
            deks: RwLock::new(HashMap::new()),
        }
    }
}

/// 16 random bytes as hex.
fn random_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn missing(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} is missing"))
}
