//! The sled backend, with group commit.
//!
//! sled 0.34 is thread-safe for reads; all writes go through one writer thread. It takes every
//! batch waiting in its queue, checks and applies each (each atomically, with `apply_batch`),
//! then flushes once and answers all of them: concurrent writers share one flush. Checks run on
//! the writer thread, so check-then-write is atomic with respect to every other writer.
//!
//! Durability: `flush()` uses `sync_file_range`/`fsync` through sled; an acknowledged batch
//! survives a process crash. sled 0.34 does not flush the drive's write cache on every path
//! (sled#1452), so a power cut can lose acknowledged writes on drives with volatile caches.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use super::{Batch, CommitFuture, Entry, Op, Store, StoreError, decode_counter};

/// Most batches one flush covers; more wait for the next round.
const GROUP_MAX: usize = 1024;

struct Job {
    batch: Batch,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// A sled database in a directory.
pub struct SledStore {
    tree: sled::Db,
    writer: mpsc::Sender<Job>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .open()
            .map_err(backend)?;
        let (writer, queue) = mpsc::channel::<Job>();
        let tree = db.clone();
        let thread = thread::Builder::new()
            .name("vaultd-store-writer".into())
            .spawn(move || write_loop(&tree, &queue))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            tree: db,
            writer,
            thread: Some(thread),
        })
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
        Ok(self.tree.get(key).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let iter = match after {
            Some(after) => {
                let mut start = after.to_vec();
                start.push(0);
                self.tree.range(start..)
            }
            None => self.tree.range(prefix.to_vec()..),
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

    fn commit(&self, batch: Batch) -> CommitFuture {
        let (done, answer) = oneshot::channel();
        let sent = self.writer.send(Job { batch, done });
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }
}

fn write_loop(db: &sled::Db, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let results: Vec<_> = jobs.iter().map(|job| apply(db, &job.batch)).collect();
        let flushed = if results.iter().any(Result::is_ok) {
            db.flush().map(drop).map_err(backend)
        } else {
            Ok(())
        };
        for (job, result) in jobs.into_iter().zip(results) {
            let answer = result.and_then(|()| flushed.clone());
            let _ = job.done.send(answer);
        }
    }
    let _ = db.flush();
}

fn apply(db: &sled::Db, batch: &Batch) -> Result<(), StoreError> {
    for check in &batch.checks {
        let current = db.get(&check.key).map_err(backend)?;
        if current.as_deref() != check.value.as_deref() {
            return Err(StoreError::Conflict);
        }
    }
    let mut counters: HashMap<&[u8], i64> = HashMap::new();
    let mut writes = sled::Batch::default();
    for op in &batch.ops {
        match op {
            Op::Put(k, v) => writes.insert(k.as_slice(), v.as_slice()),
            Op::Delete(k) => writes.remove(k.as_slice()),
            Op::Add(k, delta) => {
                let base = match counters.get(k.as_slice()) {
                    Some(value) => *value,
                    None => db
                        .get(k)
                        .map_err(backend)?
                        .map_or(Ok(0), |v| decode_counter(&v))?,
                };
                counters.insert(k.as_slice(), base + delta);
            }
        }
    }
    for (key, value) in counters {
        if value == 0 {
            writes.remove(key);
        } else {
            writes.insert(key, &value.to_be_bytes());
        }
    }
    db.apply_batch(writes).map_err(backend)
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
