//! Micro benches of the audit append (docs/performance.md):
//!
//! - `audit_entry`: what the request path spends on an entry in CPU: assembling it
//!   (`Event::entry`), rendering it to its JSON line, and its chain hash (`entry_hash`). The
//!   render closure inside `LogEntry` is private to the store, so the bench renders the same
//!   `vault_client::audit::Entry` with the same serializer, as that closure does.
//! - `store_commit`: durable commits on a real `SledStore` in a temp dir (one flush each, the
//!   chain head signed as in the daemon): a token put without an audit entry, the same put with
//!   its entry (what a put writes), and an entry alone (what every unseal writes); then 32 of
//!   each committed at once, sharing flushes through the store's group commit.
//!
//! `cargo bench --bench audit` (add `-- --quick` for a fast pass). CI only compiles this.
//! The commits are bounded by the disk's flush latency, so run them on the disk vaultd uses:
//! the temp dir is created under `$TMPDIR` (default /tmp).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vault_client::Timestamp;
use vault_client::audit::{Actor, Entry, Outcome, entry_hash};
use vaultd::audit::{AuditSigner, Event, request_id};
use vaultd::policy::Identity;
use vaultd::store::Batch;
use vaultd::store::embedded;

/// Size of a stored 1 KiB token record: header, binding, token and tag.
const RECORD_SIZE: usize = 73 + 64 + 1024 + 16;
/// Concurrent commits in the group-commit variant (the load generator's default concurrency).
const GROUP: usize = 32;

/// An event as the engine fills it for `token.unseal` of a bound token.
fn event() -> Event {
    let caller = Identity::local(1001, 1001, Some(4242));
    let mut ev = Event::caller(&caller, "token.unseal", request_id());
    ev.tenant = Some("acme".into());
    ev.token = Some("consent-1".into());
    ev.key_version = Some(1);
    ev.master_key_version = Some(1);
    ev.subject_hmac = Some("9a".repeat(32));
    ev.account_hmac = Some("77".repeat(32));
    ev
}

/// The entry line the store renders for `event()`.
fn render(seq: u64, prev: &[u8; 32]) -> Vec<u8> {
    let entry = Entry {
        seq,
        node: None,
        time: Timestamp::now(),
        request: request_id(),
        actor: Actor::Caller {
            uid: 1001,
            gid: 1001,
            pid: Some(4242),
        },
        op: "token.unseal".into(),
        tenant: Some("acme".into()),
        token: Some("consent-1".into()),
        outcome: Outcome::Ok,
        code: None,
        key_version: Some(1),
        master_key_version: Some(1),
        subject_hmac: Some("9a".repeat(32)),
        account_hmac: Some("77".repeat(32)),
        detail: BTreeMap::new(),
        prev: hex::encode(prev),
    };
    serde_json::to_vec(&entry).expect("entries serialize")
}

fn entry(c: &mut Criterion) {
    let ev = event();
    let mut group = c.benchmark_group("audit_entry");
    group.bench_function("Event::entry", |b| {
        b.iter(|| black_box(&ev).entry(Outcome::Ok, None))
    });
    group.bench_function("render + entry_hash", |b| {
        let mut prev = [0u8; 32];
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            let line = render(seq, &prev);
            prev = entry_hash(&line);
            prev
        })
    });
    group.bench_function("Event::entry + render + entry_hash", |b| {
        let mut prev = [0u8; 32];
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            drop(black_box(&ev).entry(Outcome::Ok, None));
            let line = render(seq, &prev);
            prev = entry_hash(&line);
            prev
        })
    });
    group.finish();
}

/// What one commit writes.
#[derive(Clone, Copy)]
enum Write {
    Put,
    PutWithEntry,
    EntryOnly,
}

impl Write {
    const ALL: [(Self, &'static str); 3] = [
        (Self::Put, "put, no entry"),
        (Self::PutWithEntry, "put + entry"),
        (Self::EntryOnly, "entry alone (unseal)"),
    ];

    fn batch(self, n: u64, record: &[u8], ev: &Event) -> Batch {
        let mut batch = Batch::default();
        if !matches!(self, Self::EntryOnly) {
            // Spread over 10,000 keys, as puts to many tokens would be.
            let key = format!("t/acme/consent-{}", n % 10_000).into_bytes();
            batch.put(key, record.to_vec());
        }
        if !matches!(self, Self::Put) {
            batch.log(ev.entry(Outcome::Ok, None));
        }
        batch
    }
}

fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = runtime
        .block_on(embedded::open_store(
            dir.path(),
            embedded::Options::default(),
        ))
        .expect("store opens");
    let signer = AuditSigner::new(&[0x5a; 32], "bench-vault");
    store.set_head_signer(Some(Arc::new(signer)));
    let record = vec![0x5c; RECORD_SIZE];
    let ev = event();
    let mut n = 0u64;

    let mut group = c.benchmark_group("store_commit");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    for (write, name) in Write::ALL {
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let batch = write.batch(n, &record, &ev);
                runtime.block_on(store.commit(batch)).expect("durable");
            })
        });
    }
    group.throughput(Throughput::Elements(GROUP as u64));
    for (write, name) in Write::ALL {
        group.bench_function(format!("{GROUP} concurrent: {name}"), |b| {
            b.iter(|| {
                // `commit` queues the batch at once; the writer thread groups what is queued.
                let pending: Vec<_> = (0..GROUP)
                    .map(|_| {
                        n += 1;
                        store.commit(write.batch(n, &record, &ev))
                    })
                    .collect();
                runtime.block_on(async {
                    for commit in pending {
                        commit.await.expect("durable");
                    }
                });
            })
        });
    }
    group.finish();
}

criterion_group!(benches, entry, commit);
criterion_main!(benches);
