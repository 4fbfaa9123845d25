//! Storage: a small ordered key-value interface with atomic, conditional, durable batches.
//!
//! The vault keeps everything in one keyspace (`vault::layout` names the keys). A [`Batch`]
//! applies all its operations or none, only if every [`Check`] still holds, and its future
//! resolves only once the batch is durable. [`Store`] (`core`) is the one commit core: it forms
//! groups of concurrent batches, checks them, resolves counters, chains and signs the audit
//! log, and hands a [`Backend`] one resolved [`Group`] to apply atomically and durably.
//! `docs/storage.md` has the design, the on-disk layout and what is promised.
//!
//! - `core`: the writer thread and group commit, over any [`Backend`].
//! - `group`: a resolved group and its encoding (log records, backups).
//! - `wal`: the write-ahead log (segments, records, recovery).
//! - `embedded`: the embedded backend, the log in front of sled.
//! - `backup`: the backup file (consistent snapshots).
//! - `memory`, `suite` (tests only): an in-memory backend, and the conformance suite every
//!   backend passes.

use std::future::Future;
use std::pin::Pin;

mod audit_index;
pub mod backup;
mod core;
pub mod embedded;
mod group;
#[cfg(test)]
mod memory;
pub mod postgres;
#[cfg(test)]
mod suite;
pub mod wal;

use crate::audit::chain::{self, LogEntry};

pub use core::{Stats, Store};
pub use group::{Group, Write};

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A pending durable commit.
pub(crate) type CommitFuture =
    Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'static>>;

/// A backend call in progress.
pub(crate) type StoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Adds a signed delta to an 8-byte big-endian counter (absent = 0; 0 removes the key).
    Add(Vec<u8>, i64),
    /// Removes a key (absent is fine).
    Delete(Vec<u8>),
    /// Sets a key.
    Put(Vec<u8>, Vec<u8>),
}

/// A precondition: the key holds exactly these bytes (`None`: the key is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The key.
    pub key: Vec<u8>,
    /// The value it must hold.
    pub value: Option<Vec<u8>>,
}

/// Writes applied atomically if every check holds, with the audit entries that describe them.
#[derive(Debug, Default)]
pub struct Batch {
    /// Preconditions.
    pub checks: Vec<Check>,
    /// Writes, in order.
    pub ops: Vec<Op>,
    /// Audit entries appended to the chain in the same atomic write.
    pub log: Vec<LogEntry>,
}

impl Batch {
    /// Requires `key` to hold `value` (or be absent) when the batch applies.
    pub fn check(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> &mut Self {
        self.checks.push(Check { key, value });
        self
    }

    /// Sets `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> &mut Self {
        self.ops.push(Op::Put(key, value));
        self
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) -> &mut Self {
        self.ops.push(Op::Delete(key));
        self
    }

    /// Appends an audit entry in the same atomic write.
    pub fn log(&mut self, entry: LogEntry) -> &mut Self {
        self.log.push(entry);
        self
    }

    /// Adds `delta` to the counter at `key`.
    pub fn add(&mut self, key: Vec<u8>, delta: i64) -> &mut Self {
        self.ops.push(Op::Add(key, delta));
        self
    }

    /// The keys the commit core reads to apply this batch: the checked ones and the counters.
    fn read_set(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let counters = self.ops.iter().filter_map(|op| match op {
            Op::Add(key, _) => Some(key.clone()),
            Op::Delete(_) | Op::Put(..) => None,
        });
        self.checks.iter().map(|c| c.key.clone()).chain(counters)
    }
}

/// What a storage engine implements: reads, and the atomic, durable apply of a group that the
/// commit core ([`Store`]) has already checked and resolved. A backend never sees a check, a
/// counter delta or the audit chain. Its calls are futures, because a networked backend
/// (`postgres`) waits on the network; a backend that never waits implements [`SyncBackend`].
pub trait Backend: Send + Sync {
    /// The value of `key`.
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Starts a group: returns the values of `keys` (the keys its checks and counters name; an
    /// absent key has none), which stay as read until the group is applied or abandoned. A
    /// backend only this process writes just reads them. A shared one (`postgres`) opens the
    /// group's transaction, takes the database's write lock for it when `writes` is set (the
    /// group writes key-value data), and reads them inside it, in one round trip: groups that
    /// write key-value data commit one at a time across every process (`docs/ha.md`).
    fn begin_group<'a>(
        &'a self,
        keys: &'a [Vec<u8>],
        writes: bool,
    ) -> StoreFuture<'a, Vec<Option<Vec<u8>>>>;

    /// Ends a group begun with [`Backend::begin_group`] that has nothing to write.
    fn abandon_group(&self) -> StoreFuture<'_, ()>;

    /// Up to `limit` entries whose key starts with `prefix` and sorts after `after`, in order.
    fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Entry>>;

    /// The last entry under `prefix`.
    fn last<'a>(&'a self, prefix: &'a [u8]) -> StoreFuture<'a, Option<Entry>>;

    /// Up to `limit` audit entries of `chain` (`None`: this process's own) after sequence
    /// number `after`, with the signed heads from after `after` to the last of them: one page
    /// of the chain in order, for verifying and exporting it.
    fn audit_page<'a>(
        &'a self,
        chain: Option<&'a str>,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, AuditPage>;

    /// The last entry and the last head of `chain` (`None`: this process's own).
    fn audit_last<'a>(&'a self, chain: Option<&'a str>) -> StoreFuture<'a, AuditLast>;

    /// Every chain of the audit log: `[None]` for the one chain of a store only this process
    /// writes; each node's id on a shared one (`docs/audit-log.md`, "Several chains").
    fn chains(&self) -> StoreFuture<'_, Vec<Option<String>>>;

    /// The id of the chain this process appends to (`None`: the store's one chain).
    fn node(&self) -> Option<&str>;

    /// The entries and heads of `chain` up to `through` were archived (`docs/audit-log.md`,
    /// "Archiving"; the vault serves none of them any more): gives back their storage, now
    /// or later, in whole units. Idempotent; the vault calls it again at every start.
    fn archive_audit<'a>(&'a self, chain: Option<&'a str>, through: u64) -> StoreFuture<'a, ()>;

    /// Applies `group` (begun with [`Backend::begin_group`]) atomically; resolves once it is
    /// durable. Applying a group twice leaves the same state. On an error the group may or may
    /// not have become durable; the core calls [`Backend::recover`] before the next group.
    fn apply<'a>(&'a self, group: &'a Group) -> StoreFuture<'a, ()>;

    /// The position of the last group applied (0: none yet).
    fn position(&self) -> u64;

    /// Returns to the last durable state after a failed [`Backend::apply`].
    fn recover(&self) -> StoreFuture<'_, ()>;

    /// Writes a consistent snapshot (`docs/storage.md`, "Backups") to `out`. Runs on a thread
    /// that may block (`tokio::task::spawn_blocking`).
    fn backup(
        &self,
        vault_id: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<backup::Summary, StoreError>;
}

/// [`Backend`] for an engine whose calls never wait on the network (`embedded`, and `memory`
/// in tests): each call is done when it returns.
pub(crate) trait SyncBackend: Send + Sync {
    /// [`Backend::get`].
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// [`Backend::scan`].
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// [`Backend::last`].
    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError>;

    /// [`Backend::audit_page`]. A backend that keeps entries apart from heads serves it with
    /// two scans.
    fn audit_page(&self, after: u64, limit: usize) -> Result<AuditPage, StoreError> {
        let entries = self.scan(chain::ENTRIES, Some(&chain::entry_key(after)), limit)?;
        let entries = numbered(entries)?;
        let last = entries.last().map_or(after, |(seq, _)| *seq);
        // At most one head per entry, so a page of entries needs at most as many heads.
        let heads = self.scan(chain::HEADS, Some(&chain::head_key(after)), entries.len())?;
        let heads = numbered(heads)?
            .into_iter()
            .take_while(|(seq, _)| *seq <= last)
            .collect();
        Ok(AuditPage { entries, heads })
    }

    /// [`Backend::archive_audit`], for the store's one chain.
    fn archive_audit(&self, through: u64) -> Result<(), StoreError>;

    /// [`Backend::apply`].
    fn apply(&self, group: &Group) -> Result<(), StoreError>;

    /// [`Backend::position`].
    fn position(&self) -> u64;

    /// [`Backend::recover`].
    fn recover(&self) -> Result<(), StoreError>;

    /// [`Backend::backup`].
    fn backup(
        &self,
        vault_id: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<backup::Summary, StoreError>;
}

impl<B: SyncBackend> Backend for B {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(std::future::ready(SyncBackend::get(self, key)))
    }

    fn begin_group<'a>(
        &'a self,
        keys: &'a [Vec<u8>],
        _writes: bool,
    ) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        // Only this process writes, through the one commit core: what it reads stays.
        let values = keys.iter().map(|key| SyncBackend::get(self, key)).collect();
        Box::pin(std::future::ready(values))
    }

    fn abandon_group(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Entry>> {
        Box::pin(std::future::ready(SyncBackend::scan(
            self, prefix, after, limit,
        )))
    }

    fn last<'a>(&'a self, prefix: &'a [u8]) -> StoreFuture<'a, Option<Entry>> {
        Box::pin(std::future::ready(SyncBackend::last(self, prefix)))
    }

    fn audit_page<'a>(
        &'a self,
        chain: Option<&'a str>,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, AuditPage> {
        let page = match chain {
            None => SyncBackend::audit_page(self, after, limit),
            Some(node) => Err(no_chain(node)),
        };
        Box::pin(std::future::ready(page))
    }

    fn audit_last<'a>(&'a self, chain: Option<&'a str>) -> StoreFuture<'a, AuditLast> {
        let last = match chain {
            None => (|| {
                let last = |prefix| {
                    SyncBackend::last(self, prefix)?
                        .map(|(key, value)| Ok((seq_of_key(&key)?, value)))
                        .transpose()
                };
                Ok(AuditLast {
                    entry: last(chain::ENTRIES)?,
                    head: last(chain::HEADS)?,
                })
            })(),
            Some(node) => Err(no_chain(node)),
        };
        Box::pin(std::future::ready(last))
    }

    fn chains(&self) -> StoreFuture<'_, Vec<Option<String>>> {
        Box::pin(std::future::ready(Ok(vec![None])))
    }

    fn node(&self) -> Option<&str> {
        None
    }

    fn archive_audit<'a>(&'a self, chain: Option<&'a str>, through: u64) -> StoreFuture<'a, ()> {
        let done = match chain {
            None => SyncBackend::archive_audit(self, through),
            Some(node) => Err(no_chain(node)),
        };
        Box::pin(std::future::ready(done))
    }

    fn apply<'a>(&'a self, group: &'a Group) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(SyncBackend::apply(self, group)))
    }

    fn position(&self) -> u64 {
        SyncBackend::position(self)
    }

    fn recover(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(SyncBackend::recover(self)))
    }

    fn backup(
        &self,
        vault_id: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<backup::Summary, StoreError> {
        SyncBackend::backup(self, vault_id, out)
    }
}

/// A page of the audit log: entries and signed heads with their sequence numbers, each in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    /// Entries, consecutive unless the log was altered.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Heads covering up to the last entry of the page.
    pub heads: Vec<(u64, Vec<u8>)>,
}

/// The last entry and the last head of one chain, with their sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditLast {
    /// The last entry.
    pub entry: Option<(u64, Vec<u8>)>,
    /// The last signed head.
    pub head: Option<(u64, Vec<u8>)>,
}

/// Audit keys and values as sequence numbers and values.
fn numbered(found: Vec<Entry>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    found
        .into_iter()
        .map(|(key, value)| Ok((seq_of_key(&key)?, value)))
        .collect()
}

/// The sequence number of an audit key.
fn seq_of_key(key: &[u8]) -> Result<u64, StoreError> {
    chain::seq_of(key).ok_or_else(|| StoreError::Corrupt("audit entry key".into()))
}

/// A named chain asked of a store that keeps only its one unnamed chain.
fn no_chain(node: &str) -> StoreError {
    StoreError::Backend(format!(
        "this store keeps one audit chain; it has none of node {node:?}"
    ))
}

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed for a reason other than its disk.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The disk under the backend failed: full, read-only, or an I/O error. The store recovers
    /// by itself once the disk works again (`docs/storage.md`, "After a failed write").
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// The store is shutting down, or waiting to reopen after a failure.
    #[error("storage is closed")]
    Closed,
    /// A batch precondition did not hold; nothing was written.
    #[error("concurrent modification")]
    Conflict,
    /// Stored bytes are not what this version wrote.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Decodes a counter value.
pub(crate) fn decode_counter(bytes: &[u8]) -> Result<i64, StoreError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("counter is not 8 bytes".into()))?;
    Ok(i64::from_be_bytes(array))
}
