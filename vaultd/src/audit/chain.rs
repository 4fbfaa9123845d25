//! The audit hash chain, kept by the store's single writer so that sequence numbers and hashes
//! are assigned in commit order, and an entry lands in the same atomic batch as the write it
//! describes. Format: `docs/audit-log.md`.
//!
//! ```text
//! a/e/{seq:020}   entry bytes (JSON), chained by SHA-256
//! a/h/{seq:020}   signed head after the group commit that ended at seq
//! ```

use std::fmt;

use vault_client::audit::{GENESIS, entry_hash};

/// Key prefix of entries.
pub(crate) const ENTRIES: &[u8] = b"a/e/";
/// Key prefix of signed heads.
pub(crate) const HEADS: &[u8] = b"a/h/";

/// Renders an entry from its sequence number, the previous entry's chain hash and the node whose
/// chain it joins (`None`: the one chain of an embedded store).
type Render = Box<dyn FnOnce(u64, &[u8; 32], Option<&str>) -> Vec<u8> + Send>;

/// Produces an entry's bytes once its sequence number and previous hash are known.
pub struct LogEntry {
    render: Render,
    /// If set, an empty value at `{index}{seq:020}` is written with the entry (a secondary
    /// index of the log, e.g. key events under `k/`).
    index: Option<&'static [u8]>,
}

impl LogEntry {
    /// Wraps the function that renders the entry.
    pub fn new(
        render: impl FnOnce(u64, &[u8; 32], Option<&str>) -> Vec<u8> + Send + 'static,
    ) -> Self {
        Self {
            render: Box::new(render),
            index: None,
        }
    }

    /// Also indexes the entry under `prefix`.
    #[must_use]
    pub(crate) fn indexed(mut self, prefix: &'static [u8]) -> Self {
        self.index = Some(prefix);
        self
    }
}

impl fmt::Debug for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogEntry")
    }
}

/// Signs the chain head at the end of a group commit; returns the head's stored bytes.
pub trait HeadSigner: Send + Sync {
    /// The head for the chain of `node` at `seq` with hash `hash`.
    fn sign_head(&self, node: Option<&str>, seq: u64, hash: &[u8; 32]) -> Vec<u8>;
}

/// Whether `key` is an audit entry or head: written by the chain alone, and only appended.
pub(crate) fn is_audit_key(key: &[u8]) -> bool {
    key.starts_with(ENTRIES) || key.starts_with(HEADS)
}

/// The key of entry `seq`.
pub(crate) fn entry_key(seq: u64) -> Vec<u8> {
    format!("a/e/{seq:020}").into_bytes()
}

/// The key of the head at `seq`.
pub(crate) fn head_key(seq: u64) -> Vec<u8> {
    format!("a/h/{seq:020}").into_bytes()
}

/// The sequence number at the end of an entry, head or index key (its last 20 digits).
pub(crate) fn seq_of(key: &[u8]) -> Option<u64> {
    std::str::from_utf8(key.get(key.len().checked_sub(20)?..)?)
        .ok()?
        .parse()
        .ok()
}

/// Where the chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainState {
    pub(crate) last_seq: u64,
    pub(crate) last_hash: [u8; 32],
}

impl ChainState {
    pub(crate) fn empty() -> Self {
        Self {
            last_seq: 0,
            last_hash: GENESIS,
        }
    }

    /// Resumes after the last stored entry.
    pub(crate) fn after(last: Option<(u64, &[u8])>) -> Self {
        match last {
            None => Self::empty(),
            Some((seq, bytes)) => Self {
                last_seq: seq,
                last_hash: entry_hash(bytes),
            },
        }
    }

    /// Renders `entry` as the next one of `node`'s chain; returns the writes: the entry, and
    /// its index key (`{index}{seq:020}`, or `{index}{node}/{seq:020}` in a node's chain).
    pub(crate) fn append(
        &mut self,
        entry: LogEntry,
        node: Option<&str>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let seq = self.last_seq + 1;
        let bytes = (entry.render)(seq, &self.last_hash, node);
        self.last_seq = seq;
        self.last_hash = entry_hash(&bytes);
        let mut writes = vec![(entry_key(seq), bytes)];
        if let Some(prefix) = entry.index {
            let mut key = prefix.to_vec();
            if let Some(node) = node {
                key.extend_from_slice(node.as_bytes());
                key.push(b'/');
            }
            key.extend_from_slice(format!("{seq:020}").as_bytes());
            writes.push((key, Vec::new()));
        }
        writes
    }
}
