//! The audit log (`docs/audit-log.md`), in one place: what the daemon records — one [`Event`]
//! per request or key event, personal data only as an HMAC under the audit key — and the
//! Ed25519 signer of chain heads; the chain (`chain`, sequenced and hashed by the store's
//! commit core in commit order); and reading it back (`read`: filtered pages, verification,
//! export). The verifier itself is `vault_client::audit`, shared with the offline
//! `vault-cli audit verify`.

pub mod chain;
mod read;

pub use read::{AuditFilter, MAX_AUDIT_PAGE};

use std::collections::BTreeMap;

use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use vault_client::Timestamp;
use vault_client::audit::{Actor, Entry, Head, HeadLine, Outcome, SystemActor, head_message};

use crate::policy::Identity;
use crate::secret::AuditKey;
use chain::{HeadSigner, LogEntry};

/// One audit event being assembled: the server creates it, the engine fills in key versions and
/// binding HMACs, and it is recorded exactly once, inside the operation's own write when there
/// is one, else on its own before the answer is sent.
#[derive(Debug, Clone)]
pub struct Event {
    request: String,
    actor: Actor,
    op: String,
    /// Tenant the request names.
    pub tenant: Option<String>,
    /// Token id the request names.
    pub token: Option<String>,
    /// Data key version used (by a batch: the one version all its items used).
    pub key_version: Option<u32>,
    /// Items per data key version, for a batch (`used_key_version`).
    key_versions: BTreeMap<u32, u32>,
    /// Master key version in force.
    pub master_key_version: Option<u32>,
    /// HMAC of the binding's subject.
    pub subject_hmac: Option<String>,
    /// HMAC of the binding's account.
    pub account_hmac: Option<String>,
    /// Key-event details.
    pub detail: BTreeMap<String, String>,
    /// Writes that go into the same atomic batch as the entry (e.g. encryption counters).
    pub(crate) ops: Vec<crate::store::Op>,
    /// A key event: also listed by `GET /v1/keys/history`.
    key_event: bool,
    recorded: bool,
}

impl Event {
    /// Notes that one item of the request used data key `version`. A batch whose items used
    /// several versions records no single `key_version` but every version with its count in
    /// the detail `key_versions` (`"2:200,3:50"`), so no version in use is hidden behind the
    /// last item's.
    pub(crate) fn used_key_version(&mut self, version: u32) {
        *self.key_versions.entry(version).or_default() += 1;
        self.key_version = match self.key_versions.len() {
            1 => Some(version),
            _ => None,
        };
    }

    /// An event caused by a caller on the socket or the TCP listener.
    pub fn caller(who: &Identity, op: &str, request: String) -> Self {
        let actor = match who {
            Identity::Certificate(subject) => Actor::Certificate {
                cert: subject.as_str().to_owned(),
            },
            Identity::Local(peer) => Actor::Caller {
                uid: peer.uid,
                gid: peer.gid,
                pid: peer.pid,
            },
        };
        Self::new(actor, op, request)
    }

    /// An event the daemon causes itself.
    pub fn system(op: &str) -> Self {
        Self::new(Actor::System(SystemActor::System), op, request_id())
    }

    fn new(actor: Actor, op: &str, request: String) -> Self {
        Self {
            request,
            actor,
            op: op.to_owned(),
            tenant: None,
            token: None,
            key_version: None,
            key_versions: BTreeMap::new(),
            master_key_version: None,
            subject_hmac: None,
            account_hmac: None,
            detail: BTreeMap::new(),
            ops: Vec::new(),
            key_event: false,
            recorded: false,
        }
    }

    /// Marks this event as a key event (created, rotated, rewrapped, retired, destroyed).
    pub(crate) fn key_event(&mut self) -> &mut Self {
        self.key_event = true;
        self
    }

    /// Renames the operation (e.g. a request that turned out to create a key).
    pub fn set_op(&mut self, op: &str) {
        op.clone_into(&mut self.op);
    }

    /// The request id.
    pub fn request(&self) -> &str {
        &self.request
    }

    /// Whether it has been written.
    pub(crate) fn is_recorded(&self) -> bool {
        self.recorded
    }

    pub(crate) fn mark_recorded(&mut self) {
        self.recorded = true;
    }

    /// The detail, with `key_versions` when the items used more than one.
    fn detail_with_key_versions(&self) -> BTreeMap<String, String> {
        let mut detail = self.detail.clone();
        if self.key_versions.len() > 1 {
            let versions: Vec<String> = self
                .key_versions
                .iter()
                .map(|(version, items)| format!("{version}:{items}"))
                .collect();
            detail.insert("key_versions".into(), versions.join(","));
        }
        detail
    }

    /// The log entry of this event with `outcome`; its sequence number and chain hash are
    /// filled in by the store's writer.
    pub fn entry(&self, outcome: Outcome, code: Option<&str>) -> LogEntry {
        let mut entry = Entry {
            seq: 0,
            node: None,
            time: Timestamp::now(),
            request: self.request.clone(),
            actor: self.actor.clone(),
            op: self.op.clone(),
            tenant: self.tenant.clone(),
            token: self.token.clone(),
            outcome,
            code: code.map(str::to_owned),
            key_version: self.key_version,
            master_key_version: self.master_key_version,
            subject_hmac: self.subject_hmac.clone(),
            account_hmac: self.account_hmac.clone(),
            detail: self.detail_with_key_versions(),
            prev: String::new(),
        };
        let entry = LogEntry::new(move |seq, prev, node| {
            entry.seq = seq;
            entry.node = node.map(str::to_owned);
            entry.prev = hex::encode(prev);
            serde_json::to_vec(&entry).expect("audit entries serialize infallibly")
        });
        if self.key_event {
            entry.indexed(KEY_EVENTS)
        } else {
            entry
        }
    }
}

/// Index prefix of key events in the store (`k/{seq:020}` → the audit entry `a/e/{seq:020}`).
pub(crate) const KEY_EVENTS: &[u8] = b"k/";

/// A random request id (16 bytes, hex).
pub fn request_id() -> String {
    let mut bytes = [0u8; 16];
    // An all-zero id on RNG failure still leaves the entry chained and sequenced.
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// HMAC-SHA256 of `value` under the audit key, hex: how personal data appears in the log.
pub fn hmac(key: &AuditKey, value: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose_secret())
        .expect("HMAC accepts 32-byte keys");
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Signs chain heads with the vault's Ed25519 audit key (held only while unsealed; the
/// `zeroize` feature of ed25519-dalek wipes it on drop).
pub struct AuditSigner {
    key: SigningKey,
    vault_id: String,
}

impl AuditSigner {
    /// A signer from the 32-byte seed.
    pub fn new(seed: &[u8; 32], vault_id: &str) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
            vault_id: vault_id.to_owned(),
        }
    }

    /// Signs the statement that ends an export of `node`'s chain, entries `first..=last`
    /// whose last has chain hash `last_hash` (`docs/audit-log.md`, "Sealed exports").
    pub(crate) fn sign_statement(
        &self,
        node: Option<&str>,
        first: u64,
        last: u64,
        last_hash: &[u8; 32],
    ) -> vault_client::audit::StatementLine {
        let mut statement = vault_client::audit::Statement {
            vault_id: self.vault_id.clone(),
            node: node.map(str::to_owned),
            first,
            last,
            last_hash: hex::encode(last_hash),
            entries: last + 1 - first,
            time: Timestamp::now(),
            signature: String::new(),
        };
        let message = vault_client::audit::statement_message(&statement, last_hash);
        statement.signature = hex::encode(self.key.sign(&message).to_bytes());
        vault_client::audit::StatementLine { statement }
    }

    /// Signs the checkpoint where `node`'s chain starts once its entries up to `through`
    /// (whose last has chain hash `hash`) were archived in a file of digest `archive_sha256`
    /// (`docs/audit-log.md`, "Archiving").
    pub(crate) fn sign_checkpoint(
        &self,
        node: Option<&str>,
        through: u64,
        hash: &[u8; 32],
        archive_sha256: &[u8; 32],
    ) -> vault_client::audit::CheckpointLine {
        let mut checkpoint = vault_client::audit::Checkpoint {
            vault_id: self.vault_id.clone(),
            node: node.map(str::to_owned),
            through,
            hash: hex::encode(hash),
            archive_sha256: hex::encode(archive_sha256),
            time: Timestamp::now(),
            signature: String::new(),
        };
        let message = vault_client::audit::checkpoint_message(&checkpoint, hash, archive_sha256);
        checkpoint.signature = hex::encode(self.key.sign(&message).to_bytes());
        vault_client::audit::CheckpointLine { checkpoint }
    }

    /// A receipt file: the receipt line as signed, then its signature line
    /// (`vault_client::receipt`).
    pub(crate) fn sign_receipt(&self, receipt: &vault_client::receipt::Receipt) -> String {
        let line = serde_json::to_string(receipt).expect("a receipt serializes");
        let message = vault_client::receipt::receipt_message(line.as_bytes());
        let signature = vault_client::receipt::ReceiptSignature {
            signature: hex::encode(self.key.sign(&message).to_bytes()),
        };
        let signature = serde_json::to_string(&signature).expect("a signature serializes");
        format!("{line}\n{signature}\n")
    }

    /// The public key, hex.
    pub fn public_key(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }
}

impl HeadSigner for AuditSigner {
    fn sign_head(&self, node: Option<&str>, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        let time = Timestamp::now();
        let signature = self
            .key
            .sign(&head_message(&self.vault_id, node, seq, hash, time));
        StoredHead {
            seq,
            time,
            hash: *hash,
            signature: signature.to_bytes(),
        }
        .encode()
    }
}

/// A signed head as the store keeps it: 112 bytes (sequence number and time big-endian, the
/// chain hash, the Ed25519 signature) instead of the 330 of its JSON line, which is rendered
/// with the vault id when the log is read (`docs/audit-log.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredHead {
    /// The last entry it covers.
    pub seq: u64,
    /// When it was signed.
    pub time: Timestamp,
    /// That entry's chain hash.
    pub hash: [u8; 32],
    /// The signature over [`head_message`].
    pub signature: [u8; 64],
}

impl StoredHead {
    /// Bytes of the stored form.
    pub(crate) const LEN: usize = 112;

    /// The stored form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time.0.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.signature);
        out
    }

    /// The head in `bytes` (`None`: not a stored head).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        Some(Self {
            seq: u64::from_be_bytes(bytes[0..8].try_into().ok()?),
            time: Timestamp(i64::from_be_bytes(bytes[8..16].try_into().ok()?)),
            hash: bytes[16..48].try_into().ok()?,
            signature: bytes[48..112].try_into().ok()?,
        })
    }

    /// The head's line in the export format, `{"head": {…}}`.
    pub(crate) fn line(&self, vault_id: &str, node: Option<&str>) -> Vec<u8> {
        let head = Head {
            seq: self.seq,
            hash: hex::encode(self.hash),
            time: self.time,
            vault_id: vault_id.to_owned(),
            node: node.map(str::to_owned),
            signature: hex::encode(self.signature),
        };
        serde_json::to_vec(&HeadLine { head }).expect("heads serialize infallibly")
    }
}
