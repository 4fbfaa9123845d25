//! The audit log format (`docs/audit-log.md`) and its verification. The daemon writes and
//! verifies its log with this module; `vault-cli audit verify --offline` checks an export with
//! it and the public key alone.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::Signature;
/// The audit public key type (Ed25519), as [`public_key`] parses it.
pub use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::Timestamp;

/// Label of an entry's chain hash.
pub const ENTRY_LABEL: &[u8] = b"vaultd/v1/audit-entry";
/// Label of a signed head's message.
pub const HEAD_LABEL: &[u8] = b"vaultd/v1/audit-head";
/// Label of the signed message of a head of a node's chain.
pub const NODE_HEAD_LABEL: &[u8] = b"vaultd/v1/audit-head-node";
/// Domain label of the signed statement that ends an export (`docs/audit-log.md`, "Sealed
/// exports").
pub const STATEMENT_LABEL: &[u8] = b"vaultd/v1/export-statement";
/// Domain label of a chain's signed checkpoint, where its live part starts after an archive
/// (`docs/audit-log.md`, "Archiving").
pub const CHECKPOINT_LABEL: &[u8] = b"vaultd/v1/audit-checkpoint";
/// The `prev` of entry 1.
pub const GENESIS: [u8; 32] = [0; 32];
/// The `op` of the entry a run writes at start when a signed head names entries beyond the
/// last stored one: the log was cut (`detail.last_entry`, `detail.last_head`).
pub const OP_TRUNCATED: &str = "audit.truncated";
/// The `op` of the entry a run writes when it finds entries that an earlier run left unsigned:
/// `detail.from` ..= `detail.to` are then chained but not signed by the run that wrote them.
pub const OP_ADOPT_UNSIGNED: &str = "audit.adopt_unsigned";

/// Every `op` the daemon writes, in name order (`docs/audit-log.md`, "Every operation"): the
/// route names, the daemon's own events, and `invalid` for a request that names no endpoint.
/// A test holds it to the code and to the docs.
pub const OPS: &[&str] = &[
    "alarm.decoy_unsealed",
    "alarm.exfiltration_brake",
    "alarm.token_reused",
    "audit.adopt_unsigned",
    "audit.archive",
    "audit.chains",
    "audit.export",
    "audit.export.statement",
    "audit.hash",
    "audit.list",
    "audit.pubkey",
    "audit.truncated",
    "audit.verify",
    "backup.restore",
    "invalid",
    "job.show",
    "keys.history",
    "keys.kms.migrate",
    "keys.kms.rotate",
    "keys.master.rotate",
    "keys.rewrap",
    "keys.rewrap.batch",
    "keys.rewrap.completed",
    "keys.rewrap.failed",
    "keys.rewrap.resumed",
    "limits.rate_limited",
    "sys.backup",
    "sys.health",
    "sys.init",
    "sys.metrics",
    "sys.openapi",
    "sys.recover",
    "sys.recovery.create",
    "sys.seal",
    "sys.seal.shutdown",
    "sys.status",
    "sys.unseal",
    "sys.unseal.auto",
    "tenant.create",
    "tenant.destroy",
    "tenant.destroy.resume",
    "tenant.keys.config",
    "tenant.keys.retire",
    "tenant.keys.rotate",
    "tenant.keys.rotate.auto",
    "tenant.list",
    "tenant.receipt",
    "tenant.show",
    "token.delete",
    "token.lease",
    "token.lease.release",
    "token.list",
    "token.purge",
    "token.put",
    "token.put.decoy",
    "token.show",
    "token.unseal",
    "transit.rewrap",
    "transit.seal",
    "transit.unseal",
];

/// Whether `pattern` names an operation of [`OPS`], or (ending with `.`) a prefix of one.
pub fn is_op_pattern(pattern: &str) -> bool {
    OPS.iter().any(|op| op_matches(pattern, op))
}

/// Whether `op` is the operation `pattern` names, or starts with it when it ends with `.`
/// (`keys.` matches `keys.history` and `keys.master.rotate`).
pub fn op_matches(pattern: &str, op: &str) -> bool {
    if pattern.ends_with('.') {
        op.starts_with(pattern)
    } else {
        op == pattern
    }
}

/// The operations a sealed vault can complete (outcome `ok`): they need no key. Every other
/// operation needs the keys, so its `ok` entry is signed in the write that records it
/// (`docs/audit-log.md`, "Sealed periods").
pub const SEALED_OPS: &[&str] = &[
    "audit.chains",
    "audit.export",
    "audit.export.statement",
    "audit.list",
    "audit.pubkey",
    "audit.verify",
    "keys.history",
    "sys.backup",
    "sys.metrics",
    "sys.recover",
    "sys.seal",
    "sys.status",
    "tenant.destroy.resume",
];

/// Whether a sealed vault could have written `entry`: a refusal, a failure, or an operation of
/// [`SEALED_OPS`]. An unsigned range of such entries is a sealed period, not a finding.
pub fn sealed_may_write(entry: &Entry) -> bool {
    entry.outcome != Outcome::Ok || SEALED_OPS.contains(&entry.op.as_str())
}

/// Who caused an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Actor {
    /// A caller on the socket, as the kernel reported it.
    Caller {
        /// User id.
        uid: u32,
        /// Primary group id.
        gid: u32,
        /// Process id at connect time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<i32>,
    },
    /// A caller on the TCP listener, named by its verified client certificate
    /// (`docs/tls.md`): `{"cert": "payments-app"}`.
    Certificate {
        /// The certificate's subject name (its CN, else its first DNS SAN).
        cert: String,
    },
    /// The daemon itself (auto-unseal, recovery).
    System(SystemActor),
}

/// The literal `"system"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SystemActor {
    /// The daemon.
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Caller {
                uid,
                gid,
                pid: Some(pid),
            } => write!(f, "uid={uid} gid={gid} pid={pid}"),
            Self::Caller {
                uid,
                gid,
                pid: None,
            } => write!(f, "uid={uid} gid={gid}"),
            Self::Certificate { cert } => write!(f, "cert={cert}"),
            Self::System(_) => f.write_str("system"),
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Refused by policy.
    Denied,
    /// Failed with an error code.
    Error,
    /// Done.
    Ok,
}

/// One audit entry. Field order is the serialization order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// 1, 2, 3, … without gaps, in the chain of its node.
    pub seq: u64,
    /// The node whose chain this entry is in, when several vaultd nodes share one PostgreSQL
    /// database (`docs/ha.md`); absent for the one chain of an embedded store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When the entry was made.
    pub time: Timestamp,
    /// Request id.
    pub request: String,
    /// Who.
    pub actor: Actor,
    /// What (route name or system event).
    pub op: String,
    /// Tenant named by the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Token id named by the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The API error code, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Tenant data key version used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// Master key version in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key_version: Option<u32>,
    /// HMAC of the binding's subject under the audit key (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_hmac: Option<String>,
    /// HMAC of the binding's account under the audit key (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_hmac: Option<String>,
    /// Key-event details (KMS key ids, versions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
    /// Chain hash of the previous entry (hex).
    pub prev: String,
}

/// A signed chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The last entry it covers.
    pub seq: u64,
    /// That entry's chain hash (hex).
    pub hash: String,
    /// When it was signed.
    pub time: Timestamp,
    /// The vault whose log this is.
    pub vault_id: String,
    /// The node whose chain it signs (absent: the one chain of an embedded store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Ed25519 signature over [`head_message`] (hex).
    pub signature: String,
}

/// A head as stored and exported: `{"head": {…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeadLine {
    /// The head.
    pub head: Head,
}

/// The signed statement that ends the export of one chain: what the export holds, so that an
/// export cut anywhere never verifies (`docs/audit-log.md`, "Sealed exports").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The vault whose log this is.
    pub vault_id: String,
    /// The node whose chain was exported (absent: the one chain of an embedded store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The first entry exported.
    pub first: u64,
    /// The last entry exported.
    pub last: u64,
    /// That entry's chain hash (hex).
    pub last_hash: String,
    /// Entries exported: `last - first + 1`.
    pub entries: u64,
    /// When the export was made.
    pub time: Timestamp,
    /// Ed25519 signature over [`statement_message`] (hex), by the audit signing key.
    pub signature: String,
}

/// A statement as exported: `{"statement": {…}}`, the last line of a chain's export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StatementLine {
    /// The statement.
    pub statement: Statement,
}

/// The message a statement's signature covers.
pub fn statement_message(s: &Statement, last_hash: &[u8; 32]) -> Vec<u8> {
    let node = s.node.as_deref().unwrap_or("");
    let mut m = Vec::with_capacity(STATEMENT_LABEL.len() + s.vault_id.len() + node.len() + 72);
    m.extend_from_slice(STATEMENT_LABEL);
    for field in [s.vault_id.as_bytes(), node.as_bytes()] {
        let len = u32::try_from(field.len()).expect("ids are short");
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(field);
    }
    m.extend_from_slice(&s.first.to_be_bytes());
    m.extend_from_slice(&s.last.to_be_bytes());
    m.extend_from_slice(last_hash);
    m.extend_from_slice(&s.entries.to_be_bytes());
    m.extend_from_slice(&s.time.unix().to_be_bytes());
    m
}

/// A chain's signed checkpoint: its entries up to `through` were archived, the last of them
/// with chain hash `hash`, in the archive file of digest `archive_sha256`. Every export of the
/// chain starts with it (`docs/audit-log.md`, "Archiving").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The vault whose log this is.
    pub vault_id: String,
    /// The node whose chain it is (absent: the one chain of an embedded store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The last archived entry.
    pub through: u64,
    /// That entry's chain hash (hex).
    pub hash: String,
    /// SHA-256 of the archive file (hex).
    pub archive_sha256: String,
    /// When the archive was made.
    pub time: Timestamp,
    /// Ed25519 signature over [`checkpoint_message`] (hex), by the audit signing key.
    pub signature: String,
}

/// A checkpoint as stored and exported: `{"checkpoint": {…}}`, the first line of a chain's
/// export once part of it was archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

/// The message a checkpoint's signature covers.
pub fn checkpoint_message(c: &Checkpoint, hash: &[u8; 32], archive_sha256: &[u8; 32]) -> Vec<u8> {
    let node = c.node.as_deref().unwrap_or("");
    let mut m = Vec::with_capacity(CHECKPOINT_LABEL.len() + c.vault_id.len() + node.len() + 88);
    m.extend_from_slice(CHECKPOINT_LABEL);
    for field in [c.vault_id.as_bytes(), node.as_bytes()] {
        let len = u32::try_from(field.len()).expect("ids are short");
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(field);
    }
    m.extend_from_slice(&c.through.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(archive_sha256);
    m.extend_from_slice(&c.time.unix().to_be_bytes());
    m
}

/// The chain hash of an entry: SHA-256(label || exact entry bytes).
pub fn entry_hash(line: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ENTRY_LABEL);
    h.update(line);
    h.finalize().into()
}

/// The message a head signature covers; a head of a node's chain (`docs/audit-log.md`,
/// "Several chains") signs the node id too, under a label of its own.
pub fn head_message(
    vault_id: &str,
    node: Option<&str>,
    seq: u64,
    hash: &[u8; 32],
    time: Timestamp,
) -> Vec<u8> {
    let label = match node {
        None => HEAD_LABEL,
        Some(_) => NODE_HEAD_LABEL,
    };
    let mut m = Vec::with_capacity(label.len() + vault_id.len() + 52 + node.map_or(0, str::len));
    m.extend_from_slice(label);
    m.extend_from_slice(vault_id.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&time.unix().to_be_bytes());
    if let Some(node) = node {
        let len = u32::try_from(node.len()).expect("node ids are at most 64 bytes");
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(node.as_bytes());
    }
    m
}

/// Parses lower- or upper-case hex of exactly `N` bytes, around it white space.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}

/// Parses an Ed25519 public key given as hex.
pub fn public_key(text: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&unhex::<32>(text)?).ok()
}

/// A head to expect: `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Sequence number.
    pub seq: u64,
    /// Chain hash at it.
    pub hash: [u8; 32],
}

impl std::str::FromStr for Anchor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (seq, hash) = s.split_once(':').ok_or("expected SEQ:HASH")?;
        Ok(Self {
            seq: seq.parse().map_err(|_| "SEQ must be a number")?,
            hash: unhex(hash).ok_or("HASH must be 64 hex digits")?,
        })
    }
}

/// The result of a verification (`GET /v1/audit/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    /// No problems.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The chain head after the last entry.
    pub head: Option<HeadRef>,
    /// The last entry covered by a valid signed head.
    pub signed_through: Option<u64>,
    /// Everything wrong, in log order.
    pub problems: Vec<String>,
    /// Adopted unsigned ranges the auditor accepted (`accept`), for the record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<String>,
    /// Unsigned ranges written while the vault was sealed: not problems (`docs/audit-log.md`,
    /// "Sealed periods").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sealed_periods: Vec<String>,
    /// Each node's chain, when the log is kept in chains of named nodes (`docs/audit-log.md`,
    /// "Several chains"); their problems are in `problems`, prefixed with the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<ChainReport>,
    /// Verification resumed after this signed head, which an earlier verification by the same
    /// daemon process found sound: the entries up to it were not reread this time, and
    /// `entries` counts the entries after it (`docs/audit-log.md`, "Verifying").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<u64>,
    /// The chain starts at this signed checkpoint: the entries up to it were archived
    /// (`docs/audit-log.md`, "Archiving"), and `entries` counts those after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
}

/// One node's chain in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainReport {
    /// The node whose chain it is.
    pub node: String,
    /// No problems in this chain.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The chain head after its last entry.
    pub head: Option<HeadRef>,
    /// The last entry covered by a valid signed head.
    pub signed_through: Option<u64>,
    /// As [`Report::resumed_after`], for this chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<u64>,
    /// As [`Report::checkpoint`], for this chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
}

/// A position in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeadRef {
    /// Sequence number.
    pub seq: u64,
    /// Chain hash (hex).
    pub hash: String,
}

/// Checks a log line by line: entries and heads in sequence order.
#[derive(Debug)]
pub struct Verifier {
    key: VerifyingKey,
    vault_id: Option<String>,
    /// The node whose chain this is, from its first line (`None` inside: the unnamed chain).
    node: Option<Option<String>>,
    next_seq: u64,
    prev: [u8; 32],
    entries: u64,
    signed_through: Option<u64>,
    /// Sequence numbers of heads seen whose hash matched, for anchor checks.
    anchors_seen: Vec<(u64, [u8; 32])>,
    /// Sequence numbers of `audit.adopt_unsigned` entries the auditor has reviewed.
    accept: Vec<u64>,
    accepted: Vec<String>,
    problems: Vec<String>,
    /// Entries since the last valid head that a sealed vault could not have written (seq and
    /// op), the first [`MAX_PROBLEMS`]; `None` once there were more.
    unsealed_unsigned: Option<Vec<(u64, String)>>,
    sealed_periods: Vec<String>,
    resumed_after: Option<u64>,
    /// The export's statement was read: nothing may follow it.
    sealed: bool,
    /// First entry fed since the start or the last checkpoint, for the statement's check.
    first: Option<u64>,
    /// Entries fed since then.
    part_entries: u64,
    /// The checkpoint the chain starts at.
    checkpoint: Option<u64>,
    /// The last statement's end (seq and hash): a checkpoint that follows must start there.
    statement_end: Option<(u64, [u8; 32])>,
}

/// Most problems listed; later ones are counted only.
const MAX_PROBLEMS: usize = 100;

impl Verifier {
    /// A verifier for a log that starts at entry 1, signed by `key`.
    pub fn new(key: VerifyingKey) -> Self {
        Self {
            key,
            vault_id: None,
            node: None,
            next_seq: 1,
            prev: GENESIS,
            entries: 0,
            signed_through: None,
            anchors_seen: Vec::new(),
            accept: Vec::new(),
            accepted: Vec::new(),
            problems: Vec::new(),
            unsealed_unsigned: Some(Vec::new()),
            sealed_periods: Vec::new(),
            resumed_after: None,
            sealed: false,
            first: None,
            part_entries: 0,
            checkpoint: None,
            statement_end: None,
        }
    }

    /// A verifier for the rest of a log whose entries up to `seq` were verified before, up to
    /// a signed head of hash `hash` at `seq`: it starts at entry `seq + 1`, chained to `hash`.
    pub fn resuming(key: VerifyingKey, seq: u64, hash: [u8; 32]) -> Self {
        Self {
            next_seq: seq.saturating_add(1),
            prev: hash,
            signed_through: Some(seq),
            anchors_seen: vec![(seq, hash)],
            resumed_after: Some(seq),
            ..Self::new(key)
        }
    }

    /// The last signed head that matched the chain, if the log so far has no problem: where a
    /// later verification may resume ([`Verifier::resuming`]).
    pub fn sound_head(&self) -> Option<(u64, [u8; 32])> {
        if self.problems.is_empty() {
            self.anchors_seen.last().copied()
        } else {
            None
        }
    }

    /// Accepts the adoptions recorded by these `audit.adopt_unsigned` entries: an auditor who
    /// has reviewed the adopted range lists it here, and verification reports it as accepted
    /// instead of as a problem.
    #[must_use]
    pub fn accepting(mut self, seqs: &[u64]) -> Self {
        self.accept = seqs.to_vec();
        self
    }

    /// Feeds one line of an export: an entry, a head, or the statement that ends it.
    pub fn line(&mut self, line: &[u8]) {
        if line.starts_with(b"{\"checkpoint\"") {
            match serde_json::from_slice::<CheckpointLine>(line) {
                Ok(c) => self.checkpoint(&c.checkpoint),
                Err(_) => self.problem("unreadable checkpoint line".into()),
            }
            return;
        }
        if self.sealed {
            self.problem(
                "after the export's statement: a line that no statement covers (appended to the export)"
                    .into(),
            );
            return;
        }
        if line.starts_with(b"{\"statement\"") {
            match serde_json::from_slice::<StatementLine>(line) {
                Ok(s) => self.statement(&s.statement),
                Err(_) => self.problem("unreadable statement line".into()),
            }
            return;
        }
        if line.starts_with(b"{\"head\"") {
            match serde_json::from_slice::<HeadLine>(line) {
                Ok(h) => self.head(&h.head),
                Err(_) => self.problem(format!(
                    "after seq {}: unreadable head line",
                    self.next_seq - 1
                )),
            }
        } else {
            self.entry(line);
        }
    }

    /// Feeds one entry, as its exact stored bytes.
    pub fn entry(&mut self, line: &[u8]) {
        let expected = self.next_seq;
        let entry: Entry = match serde_json::from_slice(line) {
            Ok(e) => e,
            Err(_) => {
                self.problem(format!("seq {expected}: unreadable entry"));
                // Still chain over the bytes, so one bad line is one problem.
                self.prev = entry_hash(line);
                self.next_seq += 1;
                return;
            }
        };
        if entry.seq != expected {
            self.problem(format!(
                "seq {expected}: found seq {} (entry removed, reordered or inserted)",
                entry.seq
            ));
        }
        self.same_chain(format!("seq {}", entry.seq), entry.node.as_deref());
        if entry.op == OP_TRUNCATED {
            let at = |k: &str| entry.detail.get(k).cloned().unwrap_or_else(|| "?".into());
            self.problem(format!(
                "seq {}: at start the daemon found the log cut off: the last entry was {} but a signed head covered {}",
                entry.seq,
                at("last_entry"),
                at("last_head")
            ));
        }
        if entry.op == OP_ADOPT_UNSIGNED {
            self.adoption(&entry);
        }
        if !sealed_may_write(&entry)
            && let Some(list) = &mut self.unsealed_unsigned
        {
            if list.len() < MAX_PROBLEMS {
                list.push((entry.seq, entry.op.clone()));
            } else {
                self.unsealed_unsigned = None;
            }
        }
        if unhex::<32>(&entry.prev) != Some(self.prev) {
            self.problem(format!("seq {}: prev does not match the previous entry's hash (edited, removed, reordered or forged)", entry.seq));
        }
        self.prev = entry_hash(line);
        self.entries += 1;
        self.part_entries += 1;
        self.first.get_or_insert(entry.seq);
        // An export that claims seq u64::MAX has no next entry; saturate rather than overflow
        // (the next entry, if any, is then reported out of sequence).
        self.next_seq = entry.seq.max(expected).saturating_add(1);
    }

    /// An `audit.adopt_unsigned` entry: a sealed period when every adopted entry is one a
    /// sealed vault writes, else a problem until accepted.
    fn adoption(&mut self, entry: &Entry) {
        let bound = |k: &str| entry.detail.get(k).and_then(|v| v.parse::<u64>().ok());
        let (Some(from), Some(to)) = (bound("from"), bound("to")) else {
            self.problem(format!(
                "seq {}: an adoption of unsigned entries without a readable range",
                entry.seq
            ));
            return;
        };
        let first_unsealed = match &self.unsealed_unsigned {
            Some(list) => list
                .iter()
                .find(|(seq, _)| (from..=to).contains(seq))
                .cloned(),
            None => Some((from, "more entries than listed".to_owned())),
        };
        let Some((seq, op)) = first_unsealed else {
            self.sealed_periods.push(format!(
                "entries {from}..={to} were written while the vault was sealed and adopted at \
                 unseal (seq {}); each is a refusal, a failure or a keyless read",
                entry.seq
            ));
            return;
        };
        let text = format!(
            "seq {}: entries {from}..={to} were left unsigned by an earlier run and adopted at \
             unseal, and seq {seq} ({op}, ok) is not what a sealed vault writes; they are chained \
             but not signed by the run that wrote them",
            entry.seq
        );
        if self.accept.contains(&entry.seq) {
            self.accepted.push(text);
        } else {
            self.problem(text);
        }
    }

    /// Feeds one signed head; it must cover exactly the last entry fed.
    pub fn head(&mut self, head: &Head) {
        let last = self.next_seq - 1;
        if let Some(id) = &self.vault_id
            && *id != head.vault_id
        {
            self.problem(format!(
                "head {}: vault id {} differs from {id}",
                head.seq, head.vault_id
            ));
        }
        self.vault_id.get_or_insert_with(|| head.vault_id.clone());
        self.same_chain(format!("head {}", head.seq), head.node.as_deref());
        let Some(hash) = unhex::<32>(&head.hash) else {
            self.problem(format!("head {}: unreadable hash", head.seq));
            return;
        };
        let message = head_message(
            &head.vault_id,
            head.node.as_deref(),
            head.seq,
            &hash,
            head.time,
        );
        let signature_ok = unhex::<64>(&head.signature)
            .map(|s| Signature::from_bytes(&s))
            .is_some_and(|s| self.key.verify_strict(&message, &s).is_ok());
        if !signature_ok {
            self.problem(format!(
                "head {}: signature does not verify with the audit public key",
                head.seq
            ));
            return;
        }
        if head.seq > last {
            self.problem(format!(
                "head {}: signed for entries up to {} but the log ends at {last} (tail cut off)",
                head.seq, head.seq
            ));
            return;
        }
        if head.seq < last || hash != self.prev {
            self.problem(format!(
                "head {}: does not match the chain at that point",
                head.seq
            ));
            return;
        }
        self.signed_through = Some(head.seq);
        self.anchors_seen.push((head.seq, hash));
        self.unsealed_unsigned = Some(Vec::new());
    }

    /// Feeds the signed statement that ends an export: it must verify with the audit key and
    /// describe exactly the entries fed, from the first to the last.
    pub fn statement(&mut self, s: &Statement) {
        self.sealed = true;
        let last = self.next_seq - 1;
        self.same_chain("the export's statement".into(), s.node.as_deref());
        let Some(hash) = unhex::<32>(&s.last_hash) else {
            self.problem("the export's statement: unreadable hash".into());
            return;
        };
        let signature_ok = unhex::<64>(&s.signature)
            .map(|sig| Signature::from_bytes(&sig))
            .is_some_and(|sig| {
                self.key
                    .verify_strict(&statement_message(s, &hash), &sig)
                    .is_ok()
            });
        if !signature_ok {
            self.problem(
                "the export's statement: signature does not verify with the audit public key"
                    .into(),
            );
            return;
        }
        if self.vault_id.as_ref().is_some_and(|id| *id != s.vault_id) {
            self.problem(format!(
                "the export's statement: vault id {} differs from the heads'",
                s.vault_id
            ));
        }
        let first = self.first.unwrap_or(self.next_seq);
        if s.last != last || hash != self.prev {
            self.problem(format!(
                "the export's statement says it ends at entry {} but the export ends at {last} \
                 (entries cut off the end, or the statement moved)",
                s.last
            ));
        } else if s.first != first
            || s.entries != self.part_entries
            || s.entries != last + 1 - first
        {
            self.problem(format!(
                "the export's statement says it holds {} entries from {}, the export holds {} from \
                 {first}",
                s.entries, s.first, self.part_entries
            ));
        } else {
            self.anchors_seen.push((last, hash));
            self.statement_end = Some((last, hash));
        }
    }

    /// Feeds a signed checkpoint (`docs/audit-log.md`, "Archiving"). As the first line of a
    /// chain it is where the chain starts: entry `through + 1` must chain to its hash. After
    /// an archive's statement it must start where that ended, and the next part of the log
    /// follows; anywhere else it must match the chain at that point.
    pub fn checkpoint(&mut self, c: &Checkpoint) {
        let at = format!("checkpoint {}", c.through);
        self.same_chain(at.clone(), c.node.as_deref());
        let (Some(hash), Some(digest)) = (unhex::<32>(&c.hash), unhex::<32>(&c.archive_sha256))
        else {
            self.problem(format!("{at}: unreadable hash"));
            return;
        };
        let signature_ok = unhex::<64>(&c.signature)
            .map(|sig| Signature::from_bytes(&sig))
            .is_some_and(|sig| {
                self.key
                    .verify_strict(&checkpoint_message(c, &hash, &digest), &sig)
                    .is_ok()
            });
        if !signature_ok {
            self.problem(format!(
                "{at}: signature does not verify with the audit public key"
            ));
            return;
        }
        if self.vault_id.as_ref().is_some_and(|id| *id != c.vault_id) {
            self.problem(format!(
                "{at}: vault id {} differs from the heads'",
                c.vault_id
            ));
        }
        self.vault_id.get_or_insert_with(|| c.vault_id.clone());
        let fresh = self.entries == 0 && self.next_seq == 1 && self.problems.is_empty();
        if fresh {
            self.next_seq = c.through.saturating_add(1);
            self.prev = hash;
            self.checkpoint = Some(c.through);
        } else if self.sealed {
            if self.statement_end != Some((c.through, hash)) {
                self.problem(format!(
                    "{at}: the next part of the log does not start where the previous one's \
                     statement ended (an archive missing, cut or out of order)"
                ));
                return;
            }
            self.sealed = false;
        } else if c.through != self.next_seq - 1 || hash != self.prev {
            self.problem(format!("{at}: does not match the chain at that point"));
            return;
        }
        self.signed_through = Some(c.through);
        self.anchors_seen.push((c.through, hash));
        self.unsealed_unsigned = Some(Vec::new());
        self.first = None;
        self.part_entries = 0;
    }

    /// Whether the export's statement was read.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// The report; with `anchor`, the log must contain that head.
    pub fn finish(mut self, anchor: Option<&Anchor>) -> Report {
        let last = self.next_seq - 1;
        if let Some(a) = anchor
            && !self
                .anchors_seen
                .iter()
                .any(|(s, h)| *s == a.seq && *h == a.hash)
        {
            self.problem(format!(
                "the recorded head {}:{} is not in this log (older copy, or the tail cut off)",
                a.seq,
                hex::encode(a.hash)
            ));
        }
        if last > 0 && self.signed_through.is_none_or(|s| s < last) {
            let from = self.signed_through.map_or(1, |s| s + 1);
            match self.unsealed_unsigned.as_deref() {
                Some([]) => self.sealed_periods.push(format!(
                    "entries {from}..={last} were written while the vault is sealed; the next \
                     unseal signs them"
                )),
                Some([(seq, op), ..]) => self.problems.push(format!(
                    "unsigned_tail: entries {from}..={last} are not covered by a signed head, \
                     and seq {seq} ({op}, ok) is not what a sealed vault writes"
                )),
                None => self.problems.push(format!(
                    "unsigned_tail: entries {from}..={last} are not covered by a signed head, \
                     and many of them are not what a sealed vault writes"
                )),
            }
        }
        let ok = self.problems.is_empty();
        Report {
            ok,
            entries: self.entries,
            head: (last > 0).then(|| HeadRef {
                seq: last,
                hash: hex::encode(self.prev),
            }),
            signed_through: self.signed_through,
            problems: self.problems,
            accepted: self.accepted,
            sealed_periods: self.sealed_periods,
            chains: Vec::new(),
            resumed_after: self.resumed_after,
            checkpoint: self.checkpoint,
        }
    }

    /// Whether a head at `anchor` that matched the chain was seen.
    fn saw(&self, anchor: &Anchor) -> bool {
        self.anchors_seen
            .iter()
            .any(|(s, h)| *s == anchor.seq && *h == anchor.hash)
    }

    /// Every line of a chain names the node of its first line.
    fn same_chain(&mut self, what: String, node: Option<&str>) {
        let chain = self.node.get_or_insert_with(|| node.map(str::to_owned));
        if chain.as_deref() != node {
            let name = |n: Option<&str>| n.map_or_else(|| "(none)".to_owned(), str::to_owned);
            let text = format!(
                "{what}: names node {} in the chain of node {} (chains mixed)",
                name(node),
                name(chain.as_deref())
            );
            self.problem(text);
        }
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        } else if self.problems.len() == MAX_PROBLEMS {
            self.problems.push("… more problems not listed".into());
        }
    }
}

/// Verifies a log of one chain or several (`docs/audit-log.md`, "Several chains"): one
/// [`Verifier`] per chain.
#[derive(Debug)]
pub struct LogVerifier {
    key: VerifyingKey,
    accept: Vec<u64>,
    chains: BTreeMap<Option<String>, Verifier>,
    /// An export: every chain must end with its signed statement.
    statements: bool,
}

impl LogVerifier {
    /// A verifier for logs signed by `key`.
    pub fn new(key: VerifyingKey) -> Self {
        Self {
            key,
            accept: Vec::new(),
            chains: BTreeMap::new(),
            statements: false,
        }
    }

    /// Verifies an export: each chain must end with the export's signed statement
    /// ([`Statement`]), so a cut export never verifies.
    #[must_use]
    pub fn requiring_statements(mut self) -> Self {
        self.statements = true;
        self
    }

    /// [`Verifier::accepting`], in every chain.
    #[must_use]
    pub fn accepting(mut self, seqs: &[u64]) -> Self {
        self.accept = seqs.to_vec();
        self
    }

    /// Resumes the chain of `node` after its signed head `seq` of hash `hash`, found sound by
    /// an earlier verification ([`Verifier::resuming`]); call before its first line.
    pub fn resume(&mut self, node: Option<&str>, seq: u64, hash: [u8; 32]) {
        let verifier = Verifier {
            node: Some(node.map(str::to_owned)),
            ..Verifier::resuming(self.key, seq, hash).accepting(&self.accept)
        };
        self.chains.insert(node.map(str::to_owned), verifier);
    }

    /// Each chain's [`Verifier::sound_head`], where it has one.
    pub fn sound_heads(&self) -> Vec<(Option<String>, u64, [u8; 32])> {
        self.chains
            .iter()
            .filter_map(|(node, v)| v.sound_head().map(|(seq, hash)| (node.clone(), seq, hash)))
            .collect()
    }

    /// Feeds one line of an export, to the chain its `node` names (a line without one, or
    /// unreadable, to the unnamed chain).
    pub fn line(&mut self, line: &[u8]) {
        self.chain_line(node_of(line).as_deref(), line);
    }

    /// Feeds one line read from the chain of `node`; a line that names another node is a
    /// problem of this chain.
    pub fn chain_line(&mut self, node: Option<&str>, line: &[u8]) {
        let (key, accept) = (self.key, &self.accept);
        self.chains
            .entry(node.map(str::to_owned))
            .or_insert_with(|| Verifier {
                node: Some(node.map(str::to_owned)),
                ..Verifier::new(key).accepting(accept)
            })
            .line(line);
    }

    /// The report. One unnamed chain (an embedded store) reports as [`Verifier::finish`];
    /// named chains report together, each in `chains`, every problem prefixed with its node.
    /// With `anchor`, one of the chains must hold that head.
    pub fn finish(mut self, anchor: Option<&Anchor>) -> Report {
        if self.statements {
            for verifier in self.chains.values_mut().filter(|v| !v.is_sealed()) {
                verifier.problem(
                    "no signed statement ends the export: it is cut off or incomplete \
                     (`vault-cli audit export` writes one per chain)"
                        .into(),
                );
            }
        }
        // Node ids are never empty: "" is the unnamed chain, first in the map's order.
        let mut named: Vec<(String, Verifier)> = self
            .chains
            .into_iter()
            .map(|(node, verifier)| (node.unwrap_or_default(), verifier))
            .collect();
        match named.as_slice() {
            [] => {
                let mut empty = Verifier::new(self.key);
                if self.statements {
                    empty.problem("the export is empty: no entry, no signed statement".into());
                }
                return empty.finish(anchor);
            }
            [(node, _)] if node.is_empty() => {
                let (_, verifier) = named.pop().expect("one chain");
                return verifier.finish(anchor);
            }
            _ => {}
        }
        let anchor_problem = anchor.filter(|a| !named.iter().any(|(_, v)| v.saw(a))).map(|a| {
            format!(
                "the recorded head {}:{} is in none of the chains (older copy, or a tail cut off)",
                a.seq,
                hex::encode(a.hash)
            )
        });
        let mut report = Report {
            ok: anchor_problem.is_none(),
            entries: 0,
            head: None,
            signed_through: None,
            problems: anchor_problem.into_iter().collect(),
            accepted: Vec::new(),
            sealed_periods: Vec::new(),
            chains: Vec::new(),
            resumed_after: None,
            checkpoint: None,
        };
        let single = named.len() == 1;
        for (node, verifier) in named {
            let name = if node.is_empty() { "(none)" } else { &node };
            let chain = verifier.finish(None);
            report.ok &= chain.ok;
            report.entries += chain.entries;
            let prefixed =
                |list: Vec<String>| list.into_iter().map(|p| format!("node {name}: {p}"));
            report.problems.extend(prefixed(chain.problems));
            report.accepted.extend(prefixed(chain.accepted));
            report.sealed_periods.extend(prefixed(chain.sealed_periods));
            if single {
                report.head.clone_from(&chain.head);
                report.signed_through = chain.signed_through;
                report.resumed_after = chain.resumed_after;
                report.checkpoint = chain.checkpoint;
            }
            report.chains.push(ChainReport {
                node,
                ok: chain.ok,
                entries: chain.entries,
                head: chain.head,
                signed_through: chain.signed_through,
                resumed_after: chain.resumed_after,
                checkpoint: chain.checkpoint,
            });
        }
        report
    }
}

/// The node a line names: an entry's `node`, or its head's, statement's or checkpoint's.
fn node_of(line: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Named {
        #[serde(default)]
        node: Option<String>,
        #[serde(default)]
        head: Option<Box<Named>>,
        #[serde(default)]
        statement: Option<Box<Named>>,
        #[serde(default)]
        checkpoint: Option<Box<Named>>,
    }
    let named: Named = serde_json::from_slice(line).ok()?;
    named
        .node
        .or_else(|| named.head.and_then(|h| h.node))
        .or_else(|| named.statement.and_then(|s| s.node))
        .or_else(|| named.checkpoint.and_then(|c| c.node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn hex_is_lower_case_and_round_trips() {
        assert_eq!(hex::encode([0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(unhex::<32>(&hex::encode(bytes)), Some(bytes));
        assert_eq!(
            unhex::<32>(&format!(" {}\n", hex::encode_upper(bytes))),
            Some(bytes)
        );
        assert_eq!(unhex::<32>(&hex::encode(&bytes[..31])), None);
        assert_eq!(unhex::<2>("0g00"), None);
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn entry(seq: u64, prev: &[u8; 32]) -> Vec<u8> {
        node_entry(None, seq, prev)
    }

    fn node_entry(node: Option<&str>, seq: u64, prev: &[u8; 32]) -> Vec<u8> {
        let e = Entry {
            seq,
            node: node.map(str::to_owned),
            time: Timestamp(1_795_453_200),
            request: format!("r{seq}"),
            actor: Actor::Caller {
                uid: 0,
                gid: 0,
                pid: Some(1),
            },
            op: "token.unseal".into(),
            tenant: Some("acme".into()),
            token: Some("t".into()),
            outcome: Outcome::Ok,
            code: None,
            key_version: Some(1),
            master_key_version: Some(1),
            subject_hmac: None,
            account_hmac: None,
            detail: BTreeMap::new(),
            prev: hex::encode(prev),
        };
        serde_json::to_vec(&e).expect("json")
    }

    fn head(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        node_head(None, seq, hash)
    }

    fn node_head(node: Option<&str>, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        let time = Timestamp(1_795_453_201);
        let sig = key().sign(&head_message("v", node, seq, hash, time));
        let h = HeadLine {
            head: Head {
                seq,
                hash: hex::encode(hash),
                time,
                vault_id: "v".into(),
                node: node.map(str::to_owned),
                signature: hex::encode(sig.to_bytes()),
            },
        };
        serde_json::to_vec(&h).expect("json")
    }

    /// `n` entries of `node`'s chain, each followed by its head.
    fn chain(node: &str, n: u64) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut prev = GENESIS;
        for seq in 1..=n {
            let e = node_entry(Some(node), seq, &prev);
            prev = entry_hash(&e);
            lines.push(e);
            lines.push(node_head(Some(node), seq, &prev));
        }
        lines
    }

    fn verify_chains(lines: &[Vec<u8>]) -> Report {
        let mut v = LogVerifier::new(key().verifying_key());
        for l in lines {
            v.line(l);
        }
        v.finish(None)
    }

    #[test]
    fn chains_of_several_nodes_verify_each_in_any_interleaving() {
        let (a, b) = (chain("a", 3), chain("b", 2));
        let mut mixed: Vec<Vec<u8>> = Vec::new();
        let (mut ia, mut ib) = (a.iter(), b.iter());
        loop {
            let (x, y) = (ia.next(), ib.next());
            if x.is_none() && y.is_none() {
                break;
            }
            mixed.extend(x.cloned());
            mixed.extend(y.cloned());
        }
        let report = verify_chains(&mixed);
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!(report.entries, 5);
        let nodes: Vec<(&str, u64)> = report
            .chains
            .iter()
            .map(|c| (c.node.as_str(), c.entries))
            .collect();
        assert_eq!(nodes, [("a", 3), ("b", 2)]);
        assert_eq!(report.chains[0].signed_through, Some(3));
    }

    #[test]
    fn a_head_moved_to_another_nodes_chain_does_not_verify() {
        let mut a = chain("a", 2);
        // Node b's head over a's exact chain state: relabelled as a's, its signature fails.
        let prev = entry_hash(&a[2]);
        let forged = node_head(Some("b"), 2, &prev).replace_node("b", "a");
        a[3] = forged;
        let report = verify_chains(&a);
        assert!(!report.ok);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.starts_with("node a: head 2: signature")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn an_entry_read_from_another_nodes_chain_is_a_problem() {
        let mut v = LogVerifier::new(key().verifying_key());
        for line in chain("b", 1) {
            v.chain_line(Some("a"), &line);
        }
        let report = v.finish(None);
        assert!(!report.ok);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("names node b in the chain of node a")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn an_unnamed_chain_reports_as_before() {
        let report = verify_chains(&log());
        assert!(report.ok, "{:?}", report.problems);
        assert!(report.chains.is_empty());
        assert_eq!(report.head.map(|h| h.seq), Some(5));
    }

    trait ReplaceNode {
        fn replace_node(self, from: &str, to: &str) -> Vec<u8>;
    }

    impl ReplaceNode for Vec<u8> {
        fn replace_node(self, from: &str, to: &str) -> Vec<u8> {
            String::from_utf8(self)
                .expect("utf-8")
                .replace(
                    &format!("\"node\":\"{from}\""),
                    &format!("\"node\":\"{to}\""),
                )
                .into_bytes()
        }
    }

    /// Five entries, a head after the third and after the fifth.
    fn log() -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut prev = GENESIS;
        for seq in 1..=5 {
            let e = entry(seq, &prev);
            prev = entry_hash(&e);
            lines.push(e);
            if seq == 3 || seq == 5 {
                lines.push(head(seq, &prev));
            }
        }
        lines
    }

    fn verify(lines: &[Vec<u8>], anchor: Option<&Anchor>) -> Report {
        let mut v = Verifier::new(key().verifying_key());
        for l in lines {
            v.line(l);
        }
        v.finish(anchor)
    }

    #[test]
    fn intact_log_verifies() {
        let r = verify(&log(), None);
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!((r.entries, r.signed_through), (5, Some(5)));
    }

    #[test]
    fn each_kind_of_tampering_is_found() {
        let good = log();
        let mut edited = good.clone();
        edited[1] = String::from_utf8(edited[1].clone())
            .expect("utf8")
            .replace("\"uid\":0", "\"uid\":1")
            .into_bytes();
        let mut removed = good.clone();
        removed.remove(1);
        let mut swapped = good.clone();
        swapped.swap(0, 1);
        let mut inserted = good.clone();
        inserted.insert(2, entry(3, &entry_hash(&good[1])));
        let cut_entries_only: Vec<_> = good
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 5)
            .map(|(_, l)| l.clone())
            .collect();
        let mut bad_sig = good.clone();
        let last = bad_sig.len() - 1;
        bad_sig[last] = head(5, &[9; 32]);
        for (name, lines) in [
            ("edited", edited),
            ("removed", removed),
            ("swapped", swapped),
            ("inserted", inserted),
            ("tail cut, head kept", cut_entries_only),
            ("bad head", bad_sig),
        ] {
            let r = verify(&lines, None);
            assert!(!r.ok, "{name} was not found");
        }
    }

    #[test]
    fn an_export_whose_first_seq_is_u64_max_is_a_problem_not_a_panic() {
        let first = entry(u64::MAX, &GENESIS);
        let hash = entry_hash(&first);
        let lines = vec![
            first,
            entry(1, &hash),
            head(u64::MAX, &entry_hash(&entry(1, &hash))),
        ];
        let r = verify(&lines, None);
        assert!(
            !r.ok,
            "an export that starts at u64::MAX is not a valid log"
        );
    }

    /// Entries 1..=3 signed, then `tail` (op, outcome) unsigned, then (with `adopt`) the
    /// adoption of the tail and a head over it.
    fn with_tail(tail: &[(&str, Outcome)], adopt: bool) -> Vec<Vec<u8>> {
        let mut lines = log();
        lines.truncate(4); // entries 1..=3 and the head at 3
        let mut prev = entry_hash(&lines[2]);
        let mut seq = 4;
        let mut push =
            |lines: &mut Vec<Vec<u8>>, op: &str, outcome: Outcome, detail: &[(&str, String)]| {
                let mut e: Entry = serde_json::from_slice(&entry(seq, &prev)).expect("json");
                e.op = op.into();
                e.outcome = outcome;
                e.detail = detail
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                let bytes = serde_json::to_vec(&e).expect("json");
                prev = entry_hash(&bytes);
                lines.push(bytes);
                seq += 1;
            };
        for (op, outcome) in tail {
            push(&mut lines, op, *outcome, &[]);
        }
        if adopt {
            let to = (3 + tail.len()).to_string();
            push(
                &mut lines,
                OP_ADOPT_UNSIGNED,
                Outcome::Ok,
                &[("from", "4".into()), ("to", to)],
            );
            lines.push(head(seq - 1, &prev));
        }
        lines
    }

    #[test]
    fn a_sealed_period_is_reported_as_such_and_is_not_a_problem() {
        let sealed = [
            ("token.unseal", Outcome::Error),
            ("tenant.list", Outcome::Denied),
            ("sys.status", Outcome::Ok),
            ("audit.verify", Outcome::Ok),
        ];
        // adopted by the next run's unseal
        let r = verify(&with_tail(&sealed, true), None);
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!(r.sealed_periods.len(), 1, "{:?}", r.sealed_periods);
        assert!(
            r.sealed_periods[0].contains("4..=7"),
            "{:?}",
            r.sealed_periods
        );
        // still sealed: the tail at the end of the log
        let r = verify(&with_tail(&sealed, false), None);
        assert!(r.ok, "{:?}", r.problems);
        assert!(
            r.sealed_periods[0].contains("next unseal"),
            "{:?}",
            r.sealed_periods
        );
        // one entry a sealed vault cannot write makes either a problem
        let forged = [("sys.status", Outcome::Ok), ("token.unseal", Outcome::Ok)];
        for adopt in [true, false] {
            let r = verify(&with_tail(&forged, adopt), None);
            assert!(!r.ok, "adopt={adopt}");
            assert!(
                r.problems[0].contains("seq 5 (token.unseal, ok)"),
                "{:?}",
                r.problems
            );
            assert!(r.sealed_periods.is_empty());
        }
    }

    #[test]
    fn adopted_unsigned_entries_are_problems_until_accepted() {
        let mut lines = log();
        lines.pop(); // entries 4 and 5 unsigned: the head at 5 goes
        let prev = entry_hash(&lines[lines.len() - 1]);
        let mut adopt: Entry = serde_json::from_slice(&entry(6, &prev)).expect("json");
        adopt.op = OP_ADOPT_UNSIGNED.into();
        adopt.detail.insert("from".into(), "4".into());
        adopt.detail.insert("to".into(), "5".into());
        let adopt = serde_json::to_vec(&adopt).expect("json");
        let hash = entry_hash(&adopt);
        lines.push(adopt);
        lines.push(head(6, &hash));
        let r = verify(&lines, None);
        assert!(
            !r.ok && r.problems[0].contains("adopted"),
            "{:?}",
            r.problems
        );
        let mut v = Verifier::new(key().verifying_key()).accepting(&[6]);
        for l in &lines {
            v.line(l);
        }
        let r = v.finish(None);
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!(r.accepted.len(), 1);
    }

    #[test]
    fn older_copy_is_found_by_an_anchor() {
        let good = log();
        let r = verify(&good, None);
        let anchor: Anchor = format!("{}:{}", 5, r.head.as_ref().expect("head").hash)
            .parse()
            .expect("anchor");
        assert!(verify(&good, Some(&anchor)).ok);
        let older = &good[..4]; // entries 1-3 and their head: a valid, older prefix
        assert!(verify(older, None).ok, "a clean prefix is valid on its own");
        assert!(
            !verify(older, Some(&anchor)).ok,
            "but not against a newer recorded head"
        );
    }

    #[test]
    fn a_verification_resumes_after_a_sound_head() {
        let lines = chain("a", 6);
        let mut first = LogVerifier::new(key().verifying_key());
        for l in &lines[..6] {
            first.line(l);
        }
        let sound = first.sound_heads();
        let [(node, seq, hash)] = sound.as_slice() else {
            panic!("{sound:?}")
        };
        assert_eq!((node.as_deref(), *seq), (Some("a"), 3));
        let resumed = |hash: [u8; 32], from: usize| {
            let mut rest = LogVerifier::new(key().verifying_key());
            rest.resume(Some("a"), 3, hash);
            for l in &lines[from..] {
                rest.line(l);
            }
            rest.finish(None)
        };
        let report = resumed(*hash, 6);
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!((report.resumed_after, report.entries), (Some(3), 3));
        assert_eq!(report.signed_through, Some(6));
        // Resumed at a hash the rest does not chain to, or with an entry missing: found.
        assert!(!resumed([9; 32], 6).ok);
        assert!(!resumed(*hash, 8).ok);
        // A chain with a problem gives no head to resume from.
        let mut bad = LogVerifier::new(key().verifying_key());
        for l in lines.iter().skip(2) {
            bad.line(l);
        }
        assert!(bad.sound_heads().is_empty());
    }

    /// `lines`, then the statement of what they hold, signed.
    fn sealed(
        node: &str,
        lines: &[Vec<u8>],
        first: u64,
        last: u64,
        hash: &[u8; 32],
    ) -> Vec<Vec<u8>> {
        let mut statement = Statement {
            vault_id: "v".into(),
            node: Some(node.into()),
            first,
            last,
            last_hash: hex::encode(hash),
            entries: last + 1 - first,
            time: Timestamp(1_795_453_202),
            signature: String::new(),
        };
        let sig = key().sign(&statement_message(&statement, hash));
        statement.signature = hex::encode(sig.to_bytes());
        let line = serde_json::to_vec(&StatementLine { statement }).expect("json");
        lines.iter().cloned().chain([line]).collect()
    }

    fn verify_export(lines: &[Vec<u8>]) -> Report {
        let mut v = LogVerifier::new(key().verifying_key()).requiring_statements();
        for l in lines {
            v.line(l);
        }
        v.finish(None)
    }

    #[test]
    fn an_export_verifies_only_with_the_statement_of_exactly_what_it_holds() {
        let lines = chain("a", 4);
        let last = entry_hash(&lines[6]);
        let whole = sealed("a", &lines, 1, 4, &last);
        let report = verify_export(&whole);
        assert!(report.ok, "{:?}", report.problems);
        // Without it, or with one for more than is there, or for another node: refused.
        assert!(!verify_export(&lines).ok);
        assert!(!verify_export(&sealed("a", &lines[..6], 1, 4, &last)).ok);
        assert!(!verify_export(&sealed("b", &lines, 1, 4, &last)).ok);
        assert!(
            !verify_export(&sealed("a", &lines, 2, 4, &last)).ok,
            "a wrong count"
        );
        // Signed by another key.
        let mut forged = whole.clone();
        let mut statement: StatementLine = serde_json::from_slice(&forged[8]).expect("statement");
        let other = SigningKey::from_bytes(&[8; 32]);
        statement.statement.signature = hex::encode(
            other
                .sign(&statement_message(&statement.statement, &last))
                .to_bytes(),
        );
        forged[8] = serde_json::to_vec(&statement).expect("json");
        assert!(!verify_export(&forged).ok);
        // A line after the statement is one nothing signed.
        let mut appended = whole.clone();
        appended.push(lines[0].clone());
        let report = verify_export(&appended);
        assert!(
            !report.ok
                && report
                    .problems
                    .iter()
                    .any(|p| p.contains("after the export's statement"))
        );
        assert!(!verify_export(&[]).ok, "an empty export");
        // The daemon's own log carries no statement and needs none.
        assert!(verify_chains(&lines).ok);
    }

    fn checkpoint(node: &str, through: u64, hash: &[u8; 32], signer: &SigningKey) -> Vec<u8> {
        let mut checkpoint = Checkpoint {
            vault_id: "v".into(),
            node: Some(node.into()),
            through,
            hash: hex::encode(hash),
            archive_sha256: hex::encode([3; 32]),
            time: Timestamp(1_795_453_202),
            signature: String::new(),
        };
        let sig = signer.sign(&checkpoint_message(&checkpoint, hash, &[3; 32]));
        checkpoint.signature = hex::encode(sig.to_bytes());
        serde_json::to_vec(&CheckpointLine { checkpoint }).expect("json")
    }

    #[test]
    fn archives_and_the_live_log_verify_together_and_the_live_log_from_its_checkpoint() {
        let lines = chain("a", 6);
        let hash = |seq: usize| entry_hash(&lines[2 * (seq - 1)]);
        let archive_1 = sealed("a", &lines[..4], 1, 2, &hash(2));
        let ckpt_2 = checkpoint("a", 2, &hash(2), &key());
        let archive_2 = sealed("a", &[&[ckpt_2][..], &lines[4..8]].concat(), 3, 4, &hash(4));
        let ckpt_4 = checkpoint("a", 4, &hash(4), &key());
        let live = sealed("a", &[&[ckpt_4][..], &lines[8..]].concat(), 5, 6, &hash(6));
        let all = [archive_1.clone(), archive_2.clone(), live.clone()].concat();
        let report = verify_export(&all);
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!((report.entries, report.checkpoint), (6, None));
        // The live log alone verifies from its checkpoint.
        let report = verify_export(&live);
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!((report.entries, report.checkpoint), (2, Some(4)));
        assert_eq!(report.signed_through, Some(6));
        // A missing archive, the wrong order, or a cut archive: each is a problem.
        for (what, lines) in [
            (
                "archive 2 missing",
                [archive_1.clone(), live.clone()].concat(),
            ),
            (
                "out of order",
                [archive_2.clone(), archive_1.clone(), live.clone()].concat(),
            ),
            (
                "archive 2 cut",
                [archive_1.clone(), archive_2[..3].to_vec(), live.clone()].concat(),
            ),
        ] {
            let report = verify_export(&lines);
            assert!(!report.ok, "{what}");
        }
        let report = verify_export(&[archive_1.clone(), live.clone()].concat());
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("does not start where the previous one's statement ended")),
            "{:?}",
            report.problems
        );
        // A checkpoint signed by another key, or naming another hash, does not verify.
        let forged = checkpoint("a", 4, &hash(4), &SigningKey::from_bytes(&[8; 32]));
        let report = verify_export(&[&[forged][..], &live[1..]].concat());
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("checkpoint 4: signature")),
            "{:?}",
            report.problems
        );
        let moved = checkpoint("a", 4, &hash(3), &key());
        assert!(!verify_export(&[&[moved][..], &live[1..]].concat()).ok);
    }
}
