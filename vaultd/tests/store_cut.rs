//! A power cut, a torn write, bit rot: the write-ahead log is cut at every byte offset inside
//! its last records (both regions: audit records and key-value records), and each byte of them
//! is flipped; then the store is reopened over the index as it was before those records (what a
//! power cut leaves: the index is behind the log). Every group whose records are whole reads
//! back exactly, nothing after it appears, the audit chain verifies, and the vault opens; a
//! damaged record with a valid one after it stops the open with an error naming the segment
//! and the offset.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{ev, k, put, t};
use vaultd::Vault;
use vaultd::kms::local::LocalKms;
use vaultd::store::{Store, StoreError, embedded, wal};

/// Tokens written after the index snapshot; the last two records are cut and flipped.
const LATE_PUTS: usize = 4;
/// Records examined at every byte.
const EXAMINED: usize = 2;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// A record of run 2: position, offset and payload end of its audit record, offset and payload
/// end of its key-value record.
type Span = (u64, usize, usize, usize, usize);

fn options() -> embedded::Options {
    embedded::Options {
        cache_bytes: 4 << 20,
        segment_bytes: 1 << 20,
        // No checkpoint while run 2 writes: one would punch out the key-value records the
        // test copies as a power cut would leave them (a slow machine takes over 5 s).
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..embedded::Options::default()
    }
}

async fn open_store(data: &Path) -> Result<Arc<Store>, StoreError> {
    embedded::open_store(data, options()).await.map(Arc::new)
}

async fn vault(root: &Path, store: Arc<Store>) -> Vault {
    let kms = LocalKms::open(&root.join("keys"), common::KEY_ID, true).expect("kms");
    Vault::open(store, Arc::new(kms)).await.expect("open vault")
}

/// Every key but the store's own.
async fn state(store: &Store) -> State {
    store
        .scan(b"", None, usize::MAX)
        .await
        .expect("scan")
        .into_iter()
        .filter(|(key, _)| !key.starts_with(b"w/"))
        .collect()
}

/// Equal states, or a short account of the keys that differ.
fn assert_state(actual: &State, expected: &State, what: &str) {
    if actual != expected {
        let differ: Vec<String> = actual
            .keys()
            .chain(expected.keys())
            .filter(|k| actual.get(*k) != expected.get(*k))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        panic!("{what}: keys differ: {differ:?}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test]
async fn cut_or_flipped_log_tail_keeps_every_whole_group_and_nothing_after() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    // 1. A vault with some tokens, closed cleanly: the index (sled) holds all of it.
    {
        let v = vault(root.path(), open_store(&data).await.expect("store")).await;
        v.init(&mut ev()).await.expect("init");
        v.create_tenant(&t("acme"), &mut ev())
            .await
            .expect("tenant");
        for i in 0..3 {
            v.put_token(
                &t("acme"),
                &k(&format!("early-{i}")),
                &put("e", "DE01"),
                &mut ev(),
            )
            .await
            .expect("put");
        }
    }
    // What a power cut after run 1 would leave of the index and the log.
    let before = root.path().join("before");
    copy_dir(&data, &before);

    // 2. More groups, one put each; the state after every position is kept.
    let mut after: BTreeMap<u64, State> = BTreeMap::new();
    let (number, late) = {
        let store = open_store(&data).await.expect("store");
        after.insert(store.position(), state(&store).await);
        let v = vault(root.path(), store.clone()).await;
        v.unseal(&mut ev()).await.expect("unseal");
        after.insert(store.position(), state(&store).await);
        for i in 0..LATE_PUTS {
            v.put_token(
                &t("acme"),
                &k(&format!("late-{i}")),
                &put("l", "DE02"),
                &mut ev(),
            )
            .await
            .expect("put");
            after.insert(store.position(), state(&store).await);
        }
        // The segment as a power cut would leave it (a clean close cuts off its key-value
        // region): every record above was fdatasynced before its put returned.
        let wal_dir = data.join("wal");
        let headers = wal::headers(&wal_dir).expect("headers");
        let newest = headers.last().expect("segments").number;
        assert_eq!(headers.len(), 2, "run 2 wrote one segment of its own");
        let bytes = std::fs::read(wal::segment_path(&wal_dir, newest)).expect("segment");
        drop(v);
        drop(store);
        (newest, bytes)
    };
    let segment_name = wal::segment_path(Path::new("wal"), number)
        .file_name()
        .expect("name")
        .to_owned();
    // Each record of run 2, from the log itself: position, offset and payload end of its audit
    // record, offset and payload end of its key-value record.
    let kv_start = {
        let h: [u8; 8] = late[32..40].try_into().expect("header");
        u64::from_le_bytes(h) as usize
    };
    let payload_end = |offset: usize| {
        let len = u32::from_le_bytes(late[offset..offset + 4].try_into().expect("len"));
        offset + wal::RECORD_HEADER_LEN + len as usize
    };
    let mut records: Vec<Span> = Vec::new();
    let mut offset = wal::HEADER_LEN as usize;
    while payload_end(offset) > offset + wal::RECORD_HEADER_LEN {
        let end = payload_end(offset);
        let record =
            wal::AuditRecord::decode(&late[offset + wal::RECORD_HEADER_LEN..end]).expect("decodes");
        let kv = record.kv_offset as usize;
        assert!(record.kv_len > 0, "every put has key-value writes");
        records.push((record.position, offset, end, kv, payload_end(kv)));
        offset = end.div_ceil(8) * 8;
    }
    assert_eq!(records.len(), LATE_PUTS, "one group per put: {records:?}");
    for r in &records {
        assert!(after.contains_key(&r.0), "a state for position {}", r.0);
    }
    let examined = &records[records.len() - EXAMINED..];
    let first = *after.keys().next().expect("first");
    // The state a cut leaves: every group whose records both end before it is whole.
    let expected_with = |whole: &dyn Fn(&Span) -> bool| -> &State {
        let position = records
            .iter()
            .take_while(|r| whole(r))
            .last()
            .map_or(first, |r| r.0);
        &after[&position]
    };

    // 3. Reopen over the old index and log with run 2's segment cut or flipped.
    let case = tempfile::tempdir().expect("tempdir");
    let case_data = case.path().join("data");
    let reopen = async |segment: &[u8]| -> Result<Arc<Store>, StoreError> {
        let _ = std::fs::remove_dir_all(&case_data);
        copy_dir(&before, &case_data);
        std::fs::write(case_data.join("wal").join(&segment_name), segment).expect("log");
        open_store(&case_data).await
    };
    let mut checked = 0;
    let audit_cuts = examined[0].1..=examined[EXAMINED - 1].2;
    for cut in audit_cuts {
        let mut segment = late.clone();
        segment[cut..kv_start].fill(0);
        let store = reopen(&segment)
            .await
            .unwrap_or_else(|e| panic!("audit cut at {cut}: {e}"));
        // Zeroing bytes that were zero already leaves a record whole: an Ed25519 signature,
        // the last bytes of a put's audit record, ends in a zero byte about one time in 17.
        let untouched = |end: usize| late[cut..end.max(cut)].iter().all(|&b| b == 0);
        let expected = expected_with(&|r| r.2 <= cut || untouched(r.2));
        assert_state(
            &state(&store).await,
            expected,
            &format!("audit cut at {cut}"),
        );
        checked += 1;
    }
    let last = records[LATE_PUTS - 1];
    for cut in last.3..=last.4 {
        let mut segment = late.clone();
        segment[cut..].fill(0);
        let store = reopen(&segment)
            .await
            .unwrap_or_else(|e| panic!("key-value cut at {cut}: {e}"));
        let untouched = |end: usize| late[cut..end.max(cut)].iter().all(|&b| b == 0);
        let expected = expected_with(&|r| r.4 <= cut || untouched(r.4));
        assert_state(
            &state(&store).await,
            expected,
            &format!("key-value cut at {cut}"),
        );
        checked += 1;
    }
    let mut refused = 0;
    let mut flipped = 0;
    let spans: Vec<(usize, usize, bool)> = examined
        .iter()
        .flat_map(|r| {
            let is_last = r.0 == last.0;
            [(r.1, r.2, is_last), (r.3, r.4, is_last)]
        })
        .collect();
    for &(start, end, is_last) in &spans {
        // Only bytes a checksum covers: padding after a payload holds nothing.
        for at in start..end {
            let mut segment = late.clone();
            segment[at] ^= 0x20;
            flipped += 1;
            match reopen(&segment).await {
                Ok(store) => {
                    assert!(
                        is_last,
                        "flip at {at} before the last group must be refused"
                    );
                    let expected = expected_with(&|r| r.0 < last.0);
                    assert_state(&state(&store).await, expected, &format!("flip at {at}"));
                }
                Err(StoreError::Corrupt(why)) => {
                    assert!(!is_last, "flip at {at} in the last group is a tail: {why}");
                    assert!(
                        why.contains(&segment_name.to_string_lossy().to_string()),
                        "{why}"
                    );
                    assert!(why.contains("offset "), "{why}");
                    refused += 1;
                }
                Err(e) => panic!("flip at {at}: {e}"),
            }
        }
    }
    assert!(refused > 0);
    eprintln!("checked {checked} cuts and {flipped} flips ({refused} refused as corruption)");

    // 4. A cut in the middle of the last record: the vault opens, unseals, the chain verifies,
    //    the earlier tokens read back and the cut one is absent.
    let mut segment = late.clone();
    segment[last.2 - 3..kv_start].fill(0);
    let store = reopen(&segment).await.expect("reopen");
    let v = vault(root.path(), store).await;
    let report = v.audit_verify(None, &[], true).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
    v.unseal(&mut ev()).await.expect("unseal");
    for i in 0..LATE_PUTS - 1 {
        let back = v
            .unseal_token(&t("acme"), &k(&format!("late-{i}")), None, &mut ev())
            .await
            .expect("earlier tokens read back");
        assert_eq!(back.secret.expose_secret(), b"l");
    }
    assert!(matches!(
        v.unseal_token(
            &t("acme"),
            &k(&format!("late-{}", LATE_PUTS - 1)),
            None,
            &mut ev()
        )
        .await,
        Err(vaultd::Error::NotFound(_))
    ));
    let report = v.audit_verify(None, &[], true).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
}
