//! Where everything lives in the store, and the encoding of the small metadata values.
//!
//! ```text
//! m/vault                 VaultMeta (JSON)
//! m/mk/{version:010}      MasterKeyRecord (JSON): the KMS-wrapped master key
//! m/audit-key             AuditKeyRecord (JSON): the audit keys wrapped under the master key
//! m/restored              RestoreMarker (JSON): a restore not yet recorded in the audit log
//! m/recovery              RecoveryRecord (JSON): the recovery set and the master key
//!                         encrypted to its public key (`vault::recovery`)
//! m/tenant-creations      tenants ever created (8-byte counter): a master key rotation checks
//!                         it, so a tenant another node creates meanwhile is not left behind
//! a/e/{seq:020}, a/h/{seq:020}  audit entries and signed heads (`audit::chain`)
//! t/{tenant}              TenantRecord (JSON): the tenant's wrapped DEK chain
//! c/{tenant}/{version:010} record count of that DEK version (8-byte counter)
//! r/{tenant}/{token}      token record (record format v1)
//! s/{tenant}/{token}      TokenState (JSON): its refresh lease and reuse fingerprints
//!                         (`vault::leases`), from its first lease on
//! n/{tenant}/{version:010} encryptions made under that DEK version (8-byte counter)
//! d/{tenant}              tombstone: the tenant is being crypto-shredded
//! j/{id}                  JobRecord (JSON): a background rewrap job, its cursor and lease
//! k/{seq:020}             index of key events in the audit log
//! w/applied               the store's own: last log position applied (`store::embedded`)
//! ```
//! Ids never contain `/`, so every prefix names exactly one tenant.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::store::StoreError;

pub(crate) const META: &[u8] = b"m/vault";
pub(crate) const AUDIT_KEY: &[u8] = b"m/audit-key";
/// Left by a restore until the next unseal records it (`vault::backup`).
pub(crate) const RESTORED: &[u8] = b"m/restored";
/// The break-glass recovery set (`docs/break-glass.md`).
pub(crate) const RECOVERY: &[u8] = b"m/recovery";
/// Counts tenant creations: a master key rotation rewraps the tenants it scanned, and fails if
/// one was created since (`docs/ha.md`).
pub(crate) const TENANT_CREATIONS: &[u8] = b"m/tenant-creations";
pub(crate) const TENANTS: &[u8] = b"t/";
pub(crate) const TOMBSTONES: &[u8] = b"d/";

/// Where `chain` starts after an archive: its signed checkpoint line (`docs/audit-log.md`,
/// "Archiving").
pub(crate) fn audit_checkpoint(chain: Option<&str>) -> Vec<u8> {
    match chain {
        None => b"m/audit-checkpoint".to_vec(),
        Some(node) => format!("m/audit-checkpoint/{node}").into_bytes(),
    }
}

pub(crate) fn master_key(version: u32) -> Vec<u8> {
    format!("m/mk/{version:010}").into_bytes()
}

pub(crate) fn tenant(tenant: &str) -> Vec<u8> {
    format!("t/{tenant}").into_bytes()
}

pub(crate) fn tombstone(tenant: &str) -> Vec<u8> {
    format!("d/{tenant}").into_bytes()
}

pub(crate) fn counters(tenant: &str) -> Vec<u8> {
    format!("c/{tenant}/").into_bytes()
}

pub(crate) fn counter(tenant: &str, version: u32) -> Vec<u8> {
    format!("c/{tenant}/{version:010}").into_bytes()
}

pub(crate) fn encryptions(tenant: &str, version: u32) -> Vec<u8> {
    format!("n/{tenant}/{version:010}").into_bytes()
}

pub(crate) fn all_encryptions(tenant: &str) -> Vec<u8> {
    format!("n/{tenant}/").into_bytes()
}

pub(crate) fn job(id: &str) -> Vec<u8> {
    format!("j/{id}").into_bytes()
}

pub(crate) const JOBS: &[u8] = b"j/";

pub(crate) fn records(tenant: &str) -> Vec<u8> {
    format!("r/{tenant}/").into_bytes()
}

pub(crate) fn record(tenant: &str, token: &str) -> Vec<u8> {
    format!("r/{tenant}/{token}").into_bytes()
}

pub(crate) fn token_states(tenant: &str) -> Vec<u8> {
    format!("s/{tenant}/").into_bytes()
}

pub(crate) fn token_state(tenant: &str, token: &str) -> Vec<u8> {
    format!("s/{tenant}/{token}").into_bytes()
}

/// The DEK version a counter key names.
pub(crate) fn counter_version(key: &[u8]) -> Result<u32, StoreError> {
    let text = std::str::from_utf8(key).map_err(|_| corrupt("counter key"))?;
    text.rsplit('/')
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("counter key"))
}

/// The vault's identity and current master key version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VaultMeta {
    pub(crate) format: u32,
    pub(crate) vault_id: String,
    pub(crate) created_at: i64,
    pub(crate) kms_provider: String,
    pub(crate) master_key_version: u32,
}

/// A KMS-wrapped master key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MasterKeyRecord {
    pub(crate) version: u32,
    pub(crate) kms_key_id: String,
    pub(crate) wrapped: Bytes,
    pub(crate) created_at: i64,
}

/// The audit keys wrapped under master key `mk_version`, and the signing key's public half.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditKeyRecord {
    pub(crate) mk_version: u32,
    pub(crate) hmac: Bytes,
    pub(crate) signing: Bytes,
    pub(crate) public_key: String,
}

/// A tenant and its chain of wrapped data keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantRecord {
    pub(crate) created_at: i64,
    pub(crate) current: u32,
    /// Transit blobs under lower versions are refused.
    #[serde(default = "first_version")]
    pub(crate) min_decryption_version: u32,
    pub(crate) deks: Vec<DekRecord>,
}

fn first_version() -> u32 {
    1
}

impl TenantRecord {
    pub(crate) fn dek(&self, version: u32) -> Option<&DekRecord> {
        self.deks.iter().find(|d| d.version == version)
    }
}

/// One wrapped data key version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DekRecord {
    pub(crate) version: u32,
    pub(crate) created_at: i64,
    pub(crate) mk_version: u32,
    pub(crate) wrapped: Bytes,
}

/// A background job (`docs/key-rotation.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobRecord {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) tenant: Option<String>,
    pub(crate) state: vault_client::wire::JobState,
    /// The last record key handled (as text: ids are ASCII).
    pub(crate) cursor: Option<String>,
    pub(crate) done: u64,
    pub(crate) total: u64,
    pub(crate) rate_limit: Option<u64>,
    pub(crate) started_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) error: Option<String>,
    /// The node running the job, while it runs (`docs/ha.md`, "Jobs"); absent in records
    /// written before leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lease: Option<Lease>,
}

/// Which node runs a job, and until when unless it renews (`docs/ha.md`, "Jobs").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Lease {
    /// The holder's node id.
    pub(crate) node: String,
    /// Unix time in milliseconds, by the holder's clock.
    pub(crate) expires_at_ms: i64,
}

/// Bytes as base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("metadata types serialize infallibly")
}

pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| corrupt(what))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}
