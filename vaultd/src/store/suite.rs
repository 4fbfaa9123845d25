//! The conformance suite: the same tests, unchanged, against every backend under the commit
//! core (as `tests/kms_suite.rs` is for KMS providers).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::embedded::{Embedded, Options};
use super::memory::Memory;
use super::postgres::{Options as PgOptions, Postgres};
use super::{Backend, Batch, Store, StoreError, decode_counter};
use crate::audit::chain::{self, HeadSigner, LogEntry};

/// A backend under test: opened, reopened over the same data, made to fail.
trait Fixture: Sized {
    async fn new() -> Self;
    fn backend(&self) -> Arc<dyn Backend>;
    /// Drops the open backend and opens it again over the same data.
    async fn reopen(&mut self);
    /// The next apply fails as a write or sync failure would.
    fn fail_next_apply(&self);
}

struct MemoryFixture(Arc<Memory>);

impl Fixture for MemoryFixture {
    async fn new() -> Self {
        Self(Arc::default())
    }
    fn backend(&self) -> Arc<dyn Backend> {
        self.0.clone()
    }
    async fn reopen(&mut self) {}
    fn fail_next_apply(&self) {
        self.0.fail_applies.fetch_add(1, Ordering::SeqCst);
    }
}

struct EmbeddedFixture {
    dir: tempfile::TempDir,
    backend: Option<Arc<Embedded>>,
}

fn small() -> Options {
    Options {
        cache_bytes: 8 << 20,
        segment_bytes: 1 << 20,
        ..Options::default()
    }
}

impl Fixture for EmbeddedFixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = Arc::new(Embedded::open(dir.path(), small()).expect("open"));
        Self {
            dir,
            backend: Some(backend),
        }
    }
    fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone().expect("open")
    }
    async fn reopen(&mut self) {
        close(&mut self.backend);
        self.backend = Some(Arc::new(
            Embedded::open(self.dir.path(), small()).expect("reopen"),
        ));
    }
    fn fail_next_apply(&self) {
        self.backend
            .as_ref()
            .expect("open")
            .dangerous_fail_next_sync();
    }
}

/// A database of its own on the test cluster (`scripts/pg-cluster`, started by `scripts/test`).
struct PostgresFixture {
    options: PgOptions,
    backend: Option<Arc<Postgres>>,
}

impl Fixture for PostgresFixture {
    async fn new() -> Self {
        let options = super::postgres::test_database("node-a").await;
        let backend = Arc::new(Postgres::open(options.clone()).await.expect("open"));
        Self {
            options,
            backend: Some(backend),
        }
    }
    fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone().expect("open")
    }
    async fn reopen(&mut self) {
        close(&mut self.backend);
        let backend = Postgres::open(self.options.clone()).await.expect("reopen");
        self.backend = Some(Arc::new(backend));
    }
    fn fail_next_apply(&self) {
        self.backend
            .as_ref()
            .expect("open")
            .dangerous_fail_next_apply();
    }
}

/// Drops a fixture's backend, which the store over it must have let go of.
fn close<T>(backend: &mut Option<Arc<T>>) {
    let old = backend.take().expect("open");
    assert_eq!(Arc::strong_count(&old), 1, "the store over it was dropped");
}

struct TestSigner;

impl HeadSigner for TestSigner {
    fn sign_head(&self, _node: Option<&str>, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        format!("head {seq} {}", hex::encode(hash)).into_bytes()
    }
}

async fn store(f: &impl Fixture) -> Store {
    let store = Store::open(f.backend()).await.expect("store");
    store.set_head_signer(Some(Arc::new(TestSigner)));
    store
}

fn entry(text: &'static str) -> LogEntry {
    LogEntry::new(move |seq, prev, _node| {
        format!("{seq} {} {text}", hex::encode(prev)).into_bytes()
    })
}

async fn counter(store: &Store, key: &[u8]) -> i64 {
    decode_counter(&store.get(key).await.expect("get").expect("set")).expect("8 bytes")
}

/// Every entry's `prev` is the hash of the one before it, from genesis.
async fn assert_chain(store: &Store, entries: usize) {
    let stored = store
        .scan(chain::ENTRIES, None, usize::MAX)
        .await
        .expect("scan");
    assert_eq!(stored.len(), entries);
    let mut prev = vault_client::audit::GENESIS;
    for (i, (key, bytes)) in stored.iter().enumerate() {
        assert_eq!(chain::seq_of(key), Some(i as u64 + 1));
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(
            text.starts_with(&format!("{} {} ", i + 1, hex::encode(prev))),
            "entry {} chains onto the one before: {text}",
            i + 1
        );
        prev = vault_client::audit::entry_hash(bytes);
    }
    let (head_key, _) = store
        .last(chain::HEADS)
        .await
        .expect("last")
        .expect("a head");
    assert_eq!(chain::seq_of(&head_key), Some(entries as u64));
}

async fn failed_check_writes_nothing(f: impl Fixture) {
    let store = store(&f).await;
    let mut b = Batch::default();
    b.check(b"k".to_vec(), Some(b"old".to_vec()))
        .put(b"k".to_vec(), b"new".to_vec())
        .log(entry("refused"));
    assert!(matches!(store.commit(b).await, Err(StoreError::Conflict)));
    assert_eq!(store.get(b"k").await.expect("get"), None);
    assert!(store.last(chain::ENTRIES).await.expect("last").is_none());
}

async fn batches_in_one_group_see_the_writes_before_them(f: impl Fixture) {
    let store = store(&f).await;
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
        store.get(b"k").await.expect("get").as_deref(),
        Some(&b"v2"[..])
    );
    assert_eq!(counter(&store, b"n").await, 2);
}

async fn counters_add_and_vanish_at_zero(f: impl Fixture) {
    let store = store(&f).await;
    let mut b = Batch::default();
    b.add(b"c".to_vec(), 2).add(b"c".to_vec(), 1);
    store.commit(b).await.expect("commit");
    assert_eq!(counter(&store, b"c").await, 3);
    let mut b = Batch::default();
    b.add(b"c".to_vec(), -3);
    store.commit(b).await.expect("commit");
    assert_eq!(store.get(b"c").await.expect("get"), None);
}

async fn concurrent_increments_are_not_lost(f: impl Fixture) {
    let store = Arc::new(store(&f).await);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut b = Batch::default();
                b.add(b"n".to_vec(), 1).log(entry("inc"));
                store.commit(b).await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join").expect("commit");
    }
    assert_eq!(counter(&store, b"n").await, 64);
    assert_chain(&store, 64).await;
}

async fn scan_pages_within_prefix(f: impl Fixture) {
    let store = store(&f).await;
    let mut b = Batch::default();
    for k in ["a/1", "a/2", "a/3", "b/1"] {
        b.put(k.as_bytes().to_vec(), vec![1]);
    }
    store.commit(b).await.expect("commit");
    let keys = |page: Vec<(Vec<u8>, Vec<u8>)>| page.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(store.scan(b"a/", None, 2).await.expect("scan")),
        [b"a/1".to_vec(), b"a/2".to_vec()]
    );
    assert_eq!(
        keys(store.scan(b"a/", Some(b"a/2"), 10).await.expect("scan")),
        [b"a/3".to_vec()]
    );
    assert_eq!(
        store.last(b"a/").await.expect("last").map(|(k, _)| k),
        Some(b"a/3".to_vec())
    );
    assert!(store.scan(b"c/", None, 10).await.expect("scan").is_empty());
}

async fn chain_and_counters_continue_across_groups_and_reopen(mut f: impl Fixture) {
    for round in 0..3 {
        let store = store(&f).await;
        for i in 0..5 {
            let mut b = Batch::default();
            b.add(b"n".to_vec(), 1)
                .put(format!("r{round}/{i}").into_bytes(), vec![i])
                .log(entry("write"));
            store.commit(b).await.expect("commit");
        }
        assert_chain(&store, 5 * (round + 1)).await;
        assert_eq!(counter(&store, b"n").await, 5 * (round as i64 + 1));
        let position = store.position();
        drop(store);
        f.reopen().await;
        assert_eq!(f.backend().position(), position, "position survives reopen");
    }
}

async fn a_failed_apply_changes_nothing_and_the_next_group_continues(f: impl Fixture) {
    let store = store(&f).await;
    let mut b = Batch::default();
    b.put(b"k".to_vec(), b"1".to_vec())
        .add(b"n".to_vec(), 1)
        .log(entry("first"));
    store.commit(b).await.expect("commit");
    f.fail_next_apply();
    let mut b = Batch::default();
    b.put(b"k".to_vec(), b"2".to_vec())
        .add(b"n".to_vec(), 1)
        .log(entry("failed"));
    assert!(matches!(
        store.commit(b).await,
        Err(StoreError::Backend(_) | StoreError::Io(_))
    ));
    assert_eq!(
        store.get(b"k").await.expect("get").as_deref(),
        Some(&b"1"[..])
    );
    let mut b = Batch::default();
    b.put(b"k".to_vec(), b"3".to_vec())
        .add(b"n".to_vec(), 1)
        .log(entry("after"));
    store.commit(b).await.expect("the store recovers");
    assert_eq!(
        store.get(b"k").await.expect("get").as_deref(),
        Some(&b"3"[..])
    );
    assert_eq!(counter(&store, b"n").await, 2);
    assert_chain(&store, 2).await;
}

async fn backup_lists_every_key_at_its_position(f: impl Fixture) {
    let store = Arc::new(store(&f).await);
    for i in 0..10u8 {
        let mut b = Batch::default();
        b.put(vec![b'k', i], vec![i]).log(entry("w"));
        store.commit(b).await.expect("commit");
    }
    // As the daemon runs it: on a thread that may block.
    let snapshot = store.clone();
    let (summary, file) = tokio::task::spawn_blocking(move || {
        let mut file = Vec::new();
        let summary = snapshot.backup("v-1", &mut file).expect("backup");
        (summary, file)
    })
    .await
    .expect("backup thread");
    assert_eq!(summary.position, store.position());
    let mut keys = std::collections::BTreeMap::new();
    let read = super::backup::read(&mut file.as_slice(), |item| {
        match item {
            super::backup::Item::Entry(k, v) => {
                keys.insert(k, Some(v));
            }
            super::backup::Item::Group(g) => keys.extend(g.writes),
        }
        Ok(())
    })
    .expect("read back");
    assert_eq!(read, summary);
    assert_eq!(read.vault_id, "v-1");
    for i in 0..10u8 {
        assert_eq!(keys.get(&vec![b'k', i]), Some(&Some(vec![i])));
    }
    assert_eq!(
        keys.keys()
            .filter(|k| k.starts_with(chain::ENTRIES))
            .count(),
        10
    );
}

macro_rules! suite {
    ($module:ident, $fixture:ty) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn failed_check_writes_nothing() {
                super::failed_check_writes_nothing(<$fixture>::new().await).await;
            }
            #[tokio::test]
            async fn batches_in_one_group_see_the_writes_before_them() {
                super::batches_in_one_group_see_the_writes_before_them(<$fixture>::new().await)
                    .await;
            }
            #[tokio::test]
            async fn counters_add_and_vanish_at_zero() {
                super::counters_add_and_vanish_at_zero(<$fixture>::new().await).await;
            }
            #[tokio::test]
            async fn concurrent_increments_are_not_lost() {
                super::concurrent_increments_are_not_lost(<$fixture>::new().await).await;
            }
            #[tokio::test]
            async fn scan_pages_within_prefix() {
                super::scan_pages_within_prefix(<$fixture>::new().await).await;
            }
            #[tokio::test]
            async fn chain_and_counters_continue_across_groups_and_reopen() {
                super::chain_and_counters_continue_across_groups_and_reopen(
                    <$fixture>::new().await,
                )
                .await;
            }
            #[tokio::test]
            async fn a_failed_apply_changes_nothing_and_the_next_group_continues() {
                super::a_failed_apply_changes_nothing_and_the_next_group_continues(
                    <$fixture>::new().await,
                )
                .await;
            }
            #[tokio::test]
            async fn backup_lists_every_key_at_its_position() {
                super::backup_lists_every_key_at_its_position(<$fixture>::new().await).await;
            }
        }
    };
}

suite!(memory, MemoryFixture);
suite!(embedded, EmbeddedFixture);
suite!(postgres, PostgresFixture);
