//! The commit core: one writer thread for every backend.
//!
//! The writer takes every batch waiting in its queue as one group (at most [`GROUP_MAX`]);
//! while the backend makes a group durable, the next one forms in the queue. The group begins
//! with one read of every key its checks and counters name (`Backend::begin_group`, which on a
//! shared backend also makes the group the only one writing, `docs/ha.md`). Each batch is
//! checked and staged in order against those values plus the writes staged before it in the
//! group, so check-then-write is atomic with respect to every other writer. Counter deltas
//! are resolved to values, audit entries are sequenced and hash-chained (`chain`), and a group
//! that appended entries ends with a signed chain head. The backend then gets one resolved
//! [`Group`] to apply atomically and durably.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, mpsc};
use std::thread;

use tokio::sync::oneshot;

use super::{
    AuditLast, AuditPage, Backend, Batch, CommitFuture, Entry, Group, Op, StoreError,
    decode_counter,
};
use crate::audit::chain::{self, ChainState, HeadSigner};

/// Most batches one group covers; more wait for the next.
const GROUP_MAX: usize = 1024;

/// Where a batch's answer goes.
type Answer = oneshot::Sender<Result<(), StoreError>>;

struct Job {
    batch: Batch,
    done: Answer,
}

/// The signer in force: set while unsealed, cleared (and the key dropped) when sealed.
type Signer = Arc<RwLock<Option<Arc<dyn HeadSigner>>>>;

/// What the writer has done since start (`GET /v1/sys/metrics`).
#[derive(Debug)]
pub struct Stats {
    /// Groups applied (each one durable write, e.g. one log `fdatasync`).
    pub groups: AtomicU64,
    /// Batches committed in them.
    pub batches: AtomicU64,
    /// Groups that failed.
    pub failed_groups: AtomicU64,
    /// Batches per group (the metrics' `vaultd_store_group_batches`).
    pub group_batches: prometheus_client::metrics::histogram::Histogram,
    /// Seconds to make a group durable: the backend's `apply`.
    pub apply_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Set by a read or group that failed on the disk ([`StoreError::Io`]), cleared when a
    /// group is applied again.
    disk_failed: AtomicBool,
}

impl Default for Stats {
    fn default() -> Self {
        use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
        Self {
            groups: AtomicU64::default(),
            batches: AtomicU64::default(),
            failed_groups: AtomicU64::default(),
            // 1, 2, 4 … 1024 batches
            group_batches: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            // 50 µs … about 1.6 s
            apply_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            disk_failed: AtomicBool::default(),
        }
    }
}

impl Stats {
    /// Notes a disk failure in `result`, then passes it on.
    fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Io(_)) = &result {
            self.disk_failed.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// The store: reads from the backend, writes through the one writer thread.
pub struct Store {
    backend: Arc<dyn Backend>,
    signer: Signer,
    stats: Arc<Stats>,
    writer: mpsc::Sender<Job>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Store {
    /// The commit core over `backend`; the audit chain resumes after its last stored entry.
    pub async fn open(backend: Arc<dyn Backend>) -> Result<Self, StoreError> {
        let chain = chain_state(backend.as_ref()).await?;
        let (writer, queue) = mpsc::channel::<Job>();
        let signer = Signer::default();
        let stats = Arc::new(Stats::default());
        // The writer is a thread of its own that waits on the backend's futures in order; a
        // networked backend's futures only talk to its connection tasks, which run elsewhere.
        let wait = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start the writer's runtime: {e}")))?;
        let mut core = Writer {
            backend: backend.clone(),
            chain,
            signer: signer.clone(),
            stats: stats.clone(),
            failed: false,
            wait,
        };
        let thread = thread::Builder::new()
            .name("vaultd-store-writer".into())
            .spawn(move || core.run(&queue))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            backend,
            signer,
            stats,
            writer,
            thread: Some(thread),
        })
    }

    /// The value of `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.stats.note(self.backend.get(key).await)
    }

    /// Up to `limit` entries whose key starts with `prefix` and sorts after `after`, in order.
    pub async fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.stats
            .note(self.backend.scan(prefix, after, limit).await)
    }

    /// The last entry under `prefix`.
    pub async fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.stats.note(self.backend.last(prefix).await)
    }

    /// One page of a chain of the audit log in order ([`Backend::audit_page`]).
    pub(crate) async fn audit_page(
        &self,
        chain: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        self.stats
            .note(self.backend.audit_page(chain, after, limit).await)
    }

    /// The last entry and the last head of a chain ([`Backend::audit_last`]).
    pub(crate) async fn audit_last(&self, chain: Option<&str>) -> Result<AuditLast, StoreError> {
        self.stats.note(self.backend.audit_last(chain).await)
    }

    /// The chains of the audit log ([`Backend::chains`]).
    pub async fn chains(&self) -> Result<Vec<Option<String>>, StoreError> {
        self.stats.note(self.backend.chains().await)
    }

    /// Gives back the storage of `chain`'s archived entries ([`Backend::archive_audit`]).
    pub(crate) async fn archive_audit(
        &self,
        chain: Option<&str>,
        through: u64,
    ) -> Result<(), StoreError> {
        self.stats
            .note(self.backend.archive_audit(chain, through).await)
    }

    /// The chain this process appends to ([`Backend::node`]).
    pub fn node(&self) -> Option<&str> {
        self.backend.node()
    }

    /// Applies `batch` atomically; resolves once it is durable. A failed check is
    /// [`StoreError::Conflict`] and writes nothing.
    pub fn commit(&self, batch: Batch) -> CommitFuture {
        let (done, answer) = oneshot::channel();
        let sent = self.writer.send(Job { batch, done });
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    /// Sets (unsealed) or clears (sealed) the signer of chain heads.
    pub fn set_head_signer(&self, signer: Option<Arc<dyn HeadSigner>>) {
        *self.signer.write().unwrap_or_else(PoisonError::into_inner) = signer;
    }

    /// False while the disk fails the store: from a read or write that failed on it until a
    /// group is applied again.
    pub(crate) fn disk_available(&self) -> bool {
        !self.stats.disk_failed.load(Ordering::Relaxed)
    }

    /// Counts of the writer's work.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The position of the last group applied.
    pub fn position(&self) -> u64 {
        self.backend.position()
    }

    /// Writes a consistent snapshot to `out` (`docs/storage.md`, "Backups").
    pub fn backup(
        &self,
        vault_id: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<super::backup::Summary, StoreError> {
        self.backend.backup(vault_id, out)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the queue ends the writer after the groups it holds.
        let (closed, _) = mpsc::channel();
        self.writer = closed;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where the audit chain stands in `backend`.
async fn chain_state(backend: &dyn Backend) -> Result<ChainState, StoreError> {
    match backend.last(chain::ENTRIES).await? {
        None => Ok(ChainState::empty()),
        Some((key, bytes)) => {
            let seq =
                chain::seq_of(&key).ok_or_else(|| StoreError::Corrupt("audit entry key".into()))?;
            Ok(ChainState::after(Some((seq, &bytes))))
        }
    }
}

/// The one writer.
struct Writer {
    backend: Arc<dyn Backend>,
    chain: ChainState,
    signer: Signer,
    stats: Arc<Stats>,
    /// The last apply failed: recover before the next group.
    failed: bool,
    /// Where the writer waits on the backend's futures.
    wait: tokio::runtime::Runtime,
}

impl Writer {
    fn run(&mut self, queue: &mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut jobs = vec![first];
            while jobs.len() < GROUP_MAX {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let answers = match self.ready() {
                Ok(()) => self.group(jobs),
                Err(e) => jobs
                    .into_iter()
                    .map(|job| (job.done, Err(e.clone())))
                    .collect(),
            };
            for (done, answer) in answers {
                let _ = done.send(answer);
            }
        }
    }

    /// After a failed group: the backend back at its last durable state, the chain read again.
    fn ready(&mut self) -> Result<(), StoreError> {
        if self.failed {
            let backend = self.backend.as_ref();
            self.chain = self.wait.block_on(async {
                backend.recover().await?;
                chain_state(backend).await
            })?;
            self.failed = false;
            tracing::warn!(
                seq = self.chain.last_seq,
                "storage recovered after a failure; audit chain resumes"
            );
        }
        Ok(())
    }

    /// Checks, stages and applies one group.
    fn group(&mut self, jobs: Vec<Job>) -> Vec<(Answer, Result<(), StoreError>)> {
        let start = self.chain;
        let backend = self.backend.as_ref();
        // Every key the group's checks and counters read, in one read that begins the group.
        let keys: Vec<Vec<u8>> = jobs
            .iter()
            .flat_map(|job| job.batch.read_set())
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        // Whether the group writes key-value data (and not just this node's audit entries).
        let writes = jobs.iter().any(|job| !job.batch.ops.is_empty());
        let begun = backend.begin_group(&keys, writes);
        let mut staged = match self.stats.note(self.wait.block_on(begun)) {
            Ok(values) => Staged {
                read: keys.into_iter().zip(values).collect(),
                ..Staged::default()
            },
            Err(e) => {
                // A shared backend may have begun the group's transaction: recover ends it.
                self.failed = true;
                return jobs
                    .into_iter()
                    .map(|job| (job.done, Err(e.clone())))
                    .collect();
            }
        };
        let mut results = Vec::with_capacity(jobs.len());
        let mut waiting = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(staged.stage(job.batch, backend.node(), &mut self.chain));
            waiting.push(job.done);
        }
        let applied = if staged.writes.is_empty() {
            self.stats.note(self.wait.block_on(backend.abandon_group()))
        } else {
            if self.chain.last_seq > start.last_seq {
                staged.sign_head(backend.node(), &self.chain, &self.signer);
            }
            let group = staged.into_group(backend.position() + 1);
            let started = std::time::Instant::now();
            let applied = self.stats.note(self.wait.block_on(backend.apply(&group)));
            self.stats
                .apply_seconds
                .observe(started.elapsed().as_secs_f64());
            applied
        };
        let counter = match applied {
            Ok(()) => {
                self.stats.disk_failed.store(false, Ordering::Relaxed);
                &self.stats.groups
            }
            Err(_) => &self.stats.failed_groups,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.stats
            .batches
            .fetch_add(waiting.len() as u64, Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)] // a count of batches, at most thousands
        self.stats.group_batches.observe(waiting.len() as f64);
        if let Err(e) = &applied {
            tracing::error!(error = %e, "storage write failed; the store recovers before the next write");
            self.chain = start;
            self.failed = true;
        }
        waiting
            .into_iter()
            .zip(results)
            .map(|(done, result)| (done, result.and_then(|()| applied.clone())))
            .collect()
    }
}

/// The writes of a group of batches, staged in order.
#[derive(Default)]
struct Staged {
    /// The group's read set as the backend held it before staging (`None`: absent).
    read: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Every key written so far in this group, with its new value (`None`: removed).
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The same keys in the order first written.
    order: Vec<Vec<u8>>,
}

impl Staged {
    /// The value of `key` as the batches staged so far left it; `key` is in the read set.
    fn current(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key).or_else(|| self.read.get(key)) {
            Some(value) => Ok(value.clone()),
            None => Err(StoreError::Backend(
                "a batch read a key outside its read set".into(),
            )),
        }
    }

    /// Checks one batch's conditions and stages its writes; on a failed check nothing of it is
    /// staged and the chain does not advance.
    fn stage(
        &mut self,
        batch: Batch,
        node: Option<&str>,
        chain: &mut ChainState,
    ) -> Result<(), StoreError> {
        // The audit log is written by the chain alone, and only appended to.
        if batch.ops.iter().any(|op| match op {
            Op::Add(k, _) | Op::Delete(k) | Op::Put(k, _) => chain::is_audit_key(k),
        }) {
            return Err(StoreError::Backend(
                "a batch may not write the audit log's keys".into(),
            ));
        }
        for check in &batch.checks {
            if self.current(&check.key)?.as_deref() != check.value.as_deref() {
                return Err(StoreError::Conflict);
            }
        }
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(batch.ops.len() + 2);
        let mut counters: Vec<(Vec<u8>, i64)> = Vec::new();
        for op in batch.ops {
            match op {
                Op::Put(k, v) => writes.push((k, Some(v))),
                Op::Delete(k) => writes.push((k, None)),
                Op::Add(k, delta) => match counters.iter_mut().find(|(ck, _)| *ck == k) {
                    Some((_, value)) => *value += delta,
                    None => {
                        let base = self.current(&k)?.map_or(Ok(0), |v| decode_counter(&v))?;
                        counters.push((k, base + delta));
                    }
                },
            }
        }
        for (key, value) in counters {
            writes.push((key, (value != 0).then(|| value.to_be_bytes().to_vec())));
        }
        let mut next = *chain;
        for entry in batch.log {
            writes.extend(
                next.append(entry, node)
                    .into_iter()
                    .map(|(k, v)| (k, Some(v))),
            );
        }
        *chain = next;
        for (key, value) in writes {
            self.put(key, value);
        }
        Ok(())
    }

    /// Adds the signed head of the chain, if a signer is set (the vault is unsealed).
    fn sign_head(&mut self, node: Option<&str>, chain: &ChainState, signer: &Signer) {
        let signer = signer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(signer) = signer {
            let head = signer.sign_head(node, chain.last_seq, &chain.last_hash);
            self.put(chain::head_key(chain.last_seq), Some(head));
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if self.writes.insert(key.clone(), value).is_none() {
            self.order.push(key);
        }
    }

    fn into_group(mut self, position: u64) -> Group {
        let writes = self
            .order
            .into_iter()
            .map(|key| {
                let value = self.writes.remove(&key).flatten();
                (key, value)
            })
            .collect();
        Group { position, writes }
    }
}
