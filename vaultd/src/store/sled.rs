//! The sled backend, with group commit.
//!
//! sled 0.34 is thread-safe for reads; all writes go through one writer thread. It takes every
//! batch waiting in its queue (a group), checks and stages each in order against the database
//! plus the writes staged before it, and applies the whole group as one atomic `apply_batch`,
//! then flushes once and answers all of them: concurrent writers share one flush. (One sled
//! batch per job made sled roll its I/O buffer per job; one per group was 2.5x faster for
//! audited reads at 32 connections.) Checks run on the writer thread, so check-then-write is
//! atomic with respect to every other writer.
//!
//! Audit entries in a batch are sequenced and hash-chained here (`chain`), in the same atomic
//! write as the batch's own writes; every group that appended entries ends with a signed chain
//! head, in the same write.
//!
//! Durability: `flush()` uses `sync_file_range`/`fsync` through sled; an acknowledged batch
//! survives a process crash. sled 0.34 does not flush the drive's write cache on every path
//! (sled#1452), so a power cut can lose acknowledged writes on drives with volatile caches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::chain::{self, ChainState, SharedSigner};
use super::{Batch, CommitFuture, Entry, Op, Store, StoreError, decode_counter};

/// Most batches one flush covers; more wait for the next round.
const GROUP_MAX: usize = 1024;
/// Least time between two attempts to reopen a failed database.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a reopen waits for in-flight readers to release the old handle's file lock.
const REOPEN_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Where a job's answer goes.
type Answer = oneshot::Sender<Result<(), StoreError>>;

struct Job {
    batch: Batch,
    done: Answer,
}

/// A sled database in a directory.
///
/// After an I/O error sled 0.34 refuses every later write (it keeps the error), so a full disk
/// would stop the vault for good. The writer therefore marks the database failed and, before
/// its next group (at most once per [`REOPEN_INTERVAL`]), drops it and opens it again: sled's
/// recovery discards what was never flushed (never acknowledged), and the audit chain resumes
/// from the last durable entry. Reads in the meantime answer [`StoreError::Closed`].
pub struct SledStore {
    shared: Arc<Shared>,
    signer: SharedSigner,
    writer: mpsc::Sender<Job>,
    thread: Option<thread::JoinHandle<()>>,
}

struct Shared {
    path: PathBuf,
    cache_bytes: u64,
    /// `None` while the database is being reopened.
    db: RwLock<Option<sled::Db>>,
}

impl Shared {
    fn open_db(&self) -> Result<sled::Db, StoreError> {
        sled::Config::new()
            .path(&self.path)
            .cache_capacity(self.cache_bytes)
            .flush_every_ms(None)
            .open()
            .map_err(backend)
    }

    fn db(&self) -> Result<sled::Db, StoreError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Drops the failed handle and opens the database again.
    fn reopen(&self) -> Result<sled::Db, StoreError> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        drop(slot.take());
        let deadline = Instant::now() + REOPEN_LOCK_WAIT;
        loop {
            match self.open_db() {
                Ok(db) => {
                    *slot = Some(db.clone());
                    return Ok(db);
                }
                // Readers that cloned the old handle may still hold sled's file lock.
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(e),
            }
        }
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let shared = Shared {
            path: dir.to_owned(),
            cache_bytes,
            db: RwLock::new(None),
        };
        let db = shared.open_db()?;
        let chain = chain_state(&db)?;
        *shared.db.write().unwrap_or_else(PoisonError::into_inner) = Some(db.clone());
        let shared = Arc::new(shared);
        let (writer, queue) = mpsc::channel::<Job>();
        let signer = SharedSigner::default();
        let (for_writer, signer_for_writer) = (shared.clone(), signer.clone());
        let thread = thread::Builder::new()
            .name("vaultd-store-writer".into())
            .spawn(move || {
                Writer {
                    shared: for_writer,
                    db: Some(db),
                    chain,
                    last_reopen: None,
                }
                .run(&queue, &signer_for_writer)
            })
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            shared,
            signer,
            writer,
            thread: Some(thread),
        })
    }
}

/// Where the audit chain stands in `db`.
fn chain_state(db: &sled::Db) -> Result<ChainState, StoreError> {
    match db
        .scan_prefix(chain::ENTRIES)
        .next_back()
        .transpose()
        .map_err(backend)?
    {
        None => Ok(ChainState::empty()),
        Some((key, bytes)) => {
            let seq =
                chain::seq_of(&key).ok_or_else(|| StoreError::Corrupt("audit entry key".into()))?;
            Ok(ChainState::after(Some((seq, &bytes))))
        }
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it has flushed what it holds.
        let (closed, _) = mpsc::channel();
        self.writer = closed;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .shared
            .db()?
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let db = self.shared.db()?;
        let mut out = Vec::new();
        let iter = match after {
            Some(after) => {
                let mut start = after.to_vec();
                start.push(0);
                db.range(start..)
            }
            None => db.range(prefix.to_vec()..),
        };
        for item in iter {
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn head_signer(&self) -> &SharedSigner {
        &self.signer
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        let last = self
            .shared
            .db()?
            .scan_prefix(prefix)
            .next_back()
            .transpose()
            .map_err(backend)?;
        Ok(last.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn commit(&self, batch: Batch) -> CommitFuture {
        let (done, answer) = oneshot::channel();
        let sent = self.writer.send(Job { batch, done });
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }
}

/// The one writer: group commit, audit chain, recovery after I/O errors.
struct Writer {
    shared: Arc<Shared>,
    /// `None` after an I/O error, until a reopen succeeds.
    db: Option<sled::Db>,
    chain: ChainState,
    last_reopen: Option<Instant>,
}

impl Writer {
    fn run(mut self, queue: &mpsc::Receiver<Job>, signer: &SharedSigner) {
        while let Ok(first) = queue.recv() {
            let mut jobs = vec![first];
            while jobs.len() < GROUP_MAX {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let answers = match self.usable_db() {
                Ok(db) => self.group(&db, jobs, signer),
                Err(e) => jobs
                    .into_iter()
                    .map(|job| (job.done, Err(e.clone())))
                    .collect(),
            };
            for (done, answer) in answers {
                let _ = done.send(answer);
            }
        }
        if let Some(db) = &self.db {
            let _ = db.flush();
        }
    }

    /// The database, reopening it after a failure (at most once per interval).
    fn usable_db(&mut self) -> Result<sled::Db, StoreError> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        if self
            .last_reopen
            .is_some_and(|t| t.elapsed() < REOPEN_INTERVAL)
        {
            return Err(StoreError::Backend(
                "storage failed; waiting to reopen it".into(),
            ));
        }
        self.last_reopen = Some(Instant::now());
        let db = self.shared.reopen()?;
        self.chain = chain_state(&db)?;
        tracing::warn!(
            seq = self.chain.last_seq,
            "storage reopened after a failure; audit chain resumes"
        );
        self.db = Some(db.clone());
        Ok(db)
    }

    /// Applies a group of jobs, signs the chain head, flushes once.
    fn group(
        &mut self,
        db: &sled::Db,
        jobs: Vec<Job>,
        signer: &SharedSigner,
    ) -> Vec<(Answer, Result<(), StoreError>)> {
        // Every job is checked and staged in order against the database plus the writes of the
        // jobs before it; the whole group, with its signed head, is then one atomic sled batch
        // and one flush. (A sled batch per job made sled roll its I/O buffer per job.)
        let start = self.chain;
        let mut group = Staged::default();
        let mut results = Vec::with_capacity(jobs.len());
        let mut waiting = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(group.stage(db, job.batch, &mut self.chain));
            waiting.push(job.done);
        }
        let flushed = if group.writes.is_empty() {
            Ok(())
        } else {
            if self.chain.last_seq > start.last_seq {
                group.sign_head(&self.chain, signer);
            }
            db.apply_batch(group.into_batch())
                .and_then(|()| db.flush().map(drop))
                .map_err(backend)
        };
        if flushed.is_err() {
            // sled keeps an I/O error for good: reopen before the next group. The chain
            // resumes from what is on disk.
            tracing::error!("storage write failed; the database will be reopened");
            self.chain = start;
            self.db = None;
            *self
                .shared
                .db
                .write()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        waiting
            .into_iter()
            .zip(results)
            .map(|(done, result)| (done, result.and_then(|()| flushed.clone())))
            .collect()
    }
}

/// The writes of a group of jobs, staged in order before one atomic apply.
#[derive(Default)]
struct Staged {
    /// Every key written so far in this group, with its new value (`None`: removed).
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The same writes in order, for the sled batch.
    order: Vec<Vec<u8>>,
}

impl Staged {
    /// The value of `key` as the jobs staged so far left it.
    fn current(&self, db: &sled::Db, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => Ok(db.get(key).map_err(backend)?.map(|v| v.to_vec())),
        }
    }

    /// Checks one job's conditions and stages its writes; on a failed check nothing of it is
    /// staged and the chain does not advance.
    fn stage(
        &mut self,
        db: &sled::Db,
        batch: Batch,
        chain: &mut ChainState,
    ) -> Result<(), StoreError> {
        for check in &batch.checks {
            if self.current(db, &check.key)?.as_deref() != check.value.as_deref() {
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
                        let base = self
                            .current(db, &k)?
                            .map_or(Ok(0), |v| decode_counter(&v))?;
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
            writes.extend(next.append(entry).into_iter().map(|(k, v)| (k, Some(v))));
        }
        *chain = next;
        for (key, value) in writes {
            self.put(key, value);
        }
        Ok(())
    }

    /// Adds the signed head of the chain, if a signer is set (the vault is unsealed).
    fn sign_head(&mut self, chain: &ChainState, signer: &SharedSigner) {
        let signer = signer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(signer) = signer {
            let head = signer.sign_head(chain.last_seq, &chain.last_hash);
            self.put(chain::head_key(chain.last_seq), Some(head));
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if self.writes.insert(key.clone(), value).is_none() {
            self.order.push(key);
        }
    }

    fn into_batch(mut self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for key in self.order {
            match self.writes.remove(&key).flatten() {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        batch
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn open() -> (tempfile::TempDir, Arc<SledStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(&dir.path().join("db"), 8 << 20).expect("open");
        (dir, Arc::new(store))
    }

    #[tokio::test]
    async fn failed_check_writes_nothing() {
        let (_dir, store) = open();
        let mut b = Batch::default();
        b.check(b"k".to_vec(), Some(b"old".to_vec()))
            .put(b"k".to_vec(), b"new".to_vec());
        assert!(matches!(store.commit(b).await, Err(StoreError::Conflict)));
        assert_eq!(store.get(b"k").expect("get"), None);
    }

    #[tokio::test]
    async fn jobs_in_one_group_see_the_writes_before_them() {
        let (_dir, store) = open();
        let mut first = Batch::default();
        first
            .check(b"k".to_vec(), None)
            .put(b"k".to_vec(), b"v1".to_vec())
            .add(b"n".to_vec(), 1);
        let mut second = Batch::default();
        second
            .check(b"k".to_vec(), Some(b"v1".to_vec()))
            .put(b"k".to_vec(), b"v2".to_vec())
            .add(b"n".to_vec(), 1);
        let mut stale = Batch::default();
        stale
            .check(b"k".to_vec(), None)
            .put(b"k".to_vec(), b"lost".to_vec());
        // Sent back to back, these usually share one group; the outcome must not depend on it.
        let (a, b, c) = (
            store.commit(first),
            store.commit(second),
            store.commit(stale),
        );
        a.await.expect("first");
        b.await.expect("second sees the first");
        assert!(matches!(c.await, Err(StoreError::Conflict)));
        assert_eq!(
            store.get(b"k").expect("get").as_deref(),
            Some(b"v2".as_slice())
        );
        assert_eq!(
            decode_counter(&store.get(b"n").expect("get").expect("set")).expect("8 bytes"),
            2
        );
    }

    #[tokio::test]
    async fn counters_add_and_vanish_at_zero() {
        let (_dir, store) = open();
        let mut b = Batch::default();
        b.add(b"c".to_vec(), 2).add(b"c".to_vec(), 1);
        store.commit(b).await.expect("commit");
        assert_eq!(
            decode_counter(&store.get(b"c").expect("get").expect("set")).expect("8 bytes"),
            3
        );
        let mut b = Batch::default();
        b.add(b"c".to_vec(), -3);
        store.commit(b).await.expect("commit");
        assert_eq!(store.get(b"c").expect("get"), None);
    }

    #[tokio::test]
    async fn concurrent_increments_are_not_lost() {
        let (_dir, store) = open();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut b = Batch::default();
                    b.add(b"n".to_vec(), 1);
                    store.commit(b).await
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("join").expect("commit");
        }
        assert_eq!(
            decode_counter(&store.get(b"n").expect("get").expect("set")).expect("8 bytes"),
            64
        );
    }

    #[tokio::test]
    async fn scan_pages_within_prefix() {
        let (_dir, store) = open();
        let mut b = Batch::default();
        for k in ["a/1", "a/2", "a/3", "b/1"] {
            b.put(k.as_bytes().to_vec(), vec![1]);
        }
        store.commit(b).await.expect("commit");
        let page = store.scan(b"a/", None, 2).expect("scan");
        assert_eq!(
            page.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(),
            [b"a/1", b"a/2"]
        );
        let page = store.scan(b"a/", Some(b"a/2"), 10).expect("scan");
        assert_eq!(
            page.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(),
            [b"a/3"]
        );
    }
}
