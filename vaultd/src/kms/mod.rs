//! KMS providers: the root of the key hierarchy. A provider creates, unwraps, rewraps and wraps
//! the master key; it is called at init, unseal, master-key rotation and KMS key migration only,
//! never on the token path ([`KmsProvider::calls`] counts every call).
//!
//! - `local`: a 256-bit key in a 0600 file (development, tests, single-machine use).
//! - `aws`: AWS KMS (or a KMS-compatible endpoint) through aws-sdk-kms.
//! - `metered`: any of them, timed and counted for the metrics.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use http::StatusCode;

use crate::secret::MasterKey;

pub mod aws;
pub mod local;
pub mod metered;

/// A boxed future, so that [`KmsProvider`] stays object-safe.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The encryption context of a master-key wrap: the KMS refuses to unwrap under any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

/// The `purpose` value of a master-key wrap.
pub(crate) const PURPOSE_MASTER_KEY: &str = "vaultd-master-key";

impl EncryptionContext {
    /// The context of master key `mk_version` of vault `vault_id`.
    pub fn master_key(vault_id: &str, mk_version: u32) -> Self {
        let mut map = BTreeMap::new();
        map.insert("vault_id".to_owned(), vault_id.to_owned());
        map.insert("purpose".to_owned(), PURPOSE_MASTER_KEY.to_owned());
        map.insert("master_key_version".to_owned(), mk_version.to_string());
        Self(map)
    }

    /// Key/value pairs in key order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A master key as the KMS wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedMasterKey {
    /// The KMS key that wrapped it.
    pub key_id: String,
    /// The provider's ciphertext blob.
    pub ciphertext: Vec<u8>,
}

/// A KMS provider. Implementations must be safe to share between tasks.
pub trait KmsProvider: Send + Sync {
    /// `local` or `aws`.
    fn provider(&self) -> &'static str;

    /// The key id new master keys are wrapped under.
    fn key_id(&self) -> &str;

    /// Creates a new random master key and its wrapped form under `key_id` (at init the
    /// configured [`KmsProvider::key_id`]; at master rotation the key that wraps the current
    /// master key, so that a KMS migration is kept).
    fn generate_master_key<'a>(
        &'a self,
        key_id: &'a str,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<(MasterKey, WrappedMasterKey), KmsError>>;

    /// Unwraps a master key; fails unless `context` is the one it was wrapped with.
    fn unwrap_master_key<'a>(
        &'a self,
        wrapped: &'a WrappedMasterKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<MasterKey, KmsError>>;

    /// Rewraps a master key under another KMS key without exposing it.
    fn rewrap_master_key<'a>(
        &'a self,
        wrapped: &'a WrappedMasterKey,
        context: &'a EncryptionContext,
        new_key_id: &'a str,
    ) -> BoxFuture<'a, Result<WrappedMasterKey, KmsError>>;

    /// Wraps a master key held in memory under `key_id` (AWS `Encrypt`), asking nothing of the
    /// key that wrapped it before: the way out after break-glass recovery, when that key is gone
    /// (`docs/break-glass.md`). The key is accepted for unwrapping from then on.
    fn wrap_master_key<'a>(
        &'a self,
        master: &'a MasterKey,
        context: &'a EncryptionContext,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<WrappedMasterKey, KmsError>>;

    /// How many KMS operations this provider has performed since start.
    fn calls(&self) -> u64;

    /// Whether `key_id`, given by a caller (`keys rotate kms`, `keys kms migrate`), can name a
    /// key of this provider at all: the reason if not, so that a malformed id is the caller's
    /// `400 invalid` and never reaches the KMS. By default 1-2048 visible ASCII characters
    /// (key ids, ARNs and aliases).
    fn check_key_id(&self, key_id: &str) -> Result<(), String> {
        let ok = (1..=2048).contains(&key_id.len()) && key_id.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(())
        } else {
            Err(
                "a KMS key id is 1-2048 visible ASCII characters (an id, an ARN or an alias)"
                    .into(),
            )
        }
    }
}

/// A KMS failure. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The KMS refused the caller's credentials or policy.
    #[error("KMS access denied: {0}")]
    AccessDenied(String),
    /// The wrapped master key did not authenticate: altered bytes or a wrong encryption context.
    #[error(
        "KMS could not decrypt the wrapped master key (altered ciphertext or wrong encryption context)"
    )]
    DecryptionFailed,
    /// The KMS key is disabled, or in another state that refuses use until an operator acts
    /// (pending import, an unavailable custom key store).
    #[error("KMS key {0} is disabled")]
    KeyDisabled(String),
    /// The local key file is missing, unreadable, or readable by others.
    #[error("KMS key file: {0}")]
    KeyFile(String),
    /// No such KMS key.
    #[error("KMS key {0} not found")]
    KeyNotFound(String),
    /// The KMS key is scheduled for deletion.
    #[error("KMS key {0} is pending deletion")]
    KeyPendingDeletion(String),
    /// The request was refused: by the KMS for a reason no other variant names (its error code
    /// and message, e.g. a key whose usage is not ENCRYPT_DECRYPT), or by vaultd before sending
    /// it (an alias as key id, plain http off this machine); or the KMS answered nonsense.
    #[error("KMS request rejected: {0}")]
    Rejected(String),
    /// The KMS asks us to slow down (after the provider's own retries).
    #[error("KMS throttled the request")]
    Throttled,
    /// The KMS could not be reached, timed out, or reported an internal failure.
    #[error("KMS unreachable: {0}")]
    Unreachable(String),
    /// The master key is wrapped under a KMS key the config does not name (the `aws` provider
    /// pins its key): refused before any KMS call. A config matter, fixed by a restart.
    #[error(
        "the master key is wrapped under KMS key {wrapping}, but kms.key_id is {configured} \
         (no KMS call was made): set kms.key_id = \"{wrapping}\" in the config and restart vaultd"
    )]
    KeyNotConfigured {
        /// The configured `kms.key_id`.
        configured: String,
        /// The key the stored master key is wrapped under.
        wrapping: String,
    },
    /// The KMS reported using a key other than the one asked for.
    #[error("KMS key id mismatch: expected {expected}, KMS used {actual}")]
    WrongKeyId {
        /// The key id we asked for.
        expected: String,
        /// The key id the KMS reported.
        actual: String,
    },
}

impl KmsError {
    /// API error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AccessDenied(_) => "kms_access_denied",
            Self::DecryptionFailed => "kms_decryption_failed",
            Self::KeyDisabled(_) => "kms_key_disabled",
            Self::KeyFile(_) => "kms_key_file",
            Self::KeyNotFound(_) => "kms_key_not_found",
            Self::KeyPendingDeletion(_) => "kms_key_pending_deletion",
            Self::Rejected(_) => "kms_rejected",
            Self::Throttled => "kms_throttled",
            Self::Unreachable(_) => "kms_unreachable",
            Self::KeyNotConfigured { .. } | Self::WrongKeyId { .. } => "kms_wrong_key_id",
        }
    }

    /// HTTP status: 503 for transient faults worth retrying, 502 for the rest.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Throttled | Self::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::AccessDenied(_)
            | Self::DecryptionFailed
            | Self::KeyDisabled(_)
            | Self::KeyFile(_)
            | Self::KeyNotFound(_)
            | Self::KeyPendingDeletion(_)
            | Self::Rejected(_)
            | Self::KeyNotConfigured { .. }
            | Self::WrongKeyId { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled | Self::Unreachable(_))
    }
}
