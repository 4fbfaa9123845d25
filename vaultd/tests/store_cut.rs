//! A power cut, a torn write, bit rot: the write-ahead log is cut at every byte offset inside
//! its last records, and each byte of them is flipped; then the store is reopened over the index
//! as it was before those records (what a power cut leaves: the index is behind the log).
//! Every group whose record is whole reads back exactly, nothing after it appears, the audit
//! chain verifies, and the vault opens; a damaged record with a valid one after it stops the
//! open with an error naming the segment and the offset.

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

fn options() -> embedded::Options {
    embedded::Options {
        cache_bytes: 4 << 20,
        segment_bytes: 1 << 20,
        ..embedded::Options::default()
    }
}

fn open_store(data: &Path) -> Result<Arc<Store>, StoreError> {
    embedded::open_store(data, options()).map(Arc::new)
}

async fn vault(root: &Path, store: Arc<Store>) -> Vault {
    let kms = LocalKms::open(&root.join("keys"), common::KEY_ID, true).expect("kms");
    Vault::open(store, Arc::new(kms)).await.expect("open vault")
}

/// Every key but the store's own.
fn state(store: &Store) -> State {
    store
        .scan(b"", None, usize::MAX)
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
        let v = vault(root.path(), open_store(&data).expect("store")).await;
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
    let index_before = root.path().join("index-before");
    copy_dir(&data.join("db"), &index_before);

    // 2. More groups, one put each; the state after every position is kept.
    let mut after: BTreeMap<u64, State> = BTreeMap::new();
    let (number, late) = {
        let store = open_store(&data).expect("store");
        after.insert(store.position(), state(&store));
        let v = vault(root.path(), store.clone()).await;
        v.unseal(&mut ev()).await.expect("unseal");
        after.insert(store.position(), state(&store));
        for i in 0..LATE_PUTS {
            v.put_token(
                &t("acme"),
                &k(&format!("late-{i}")),
                &put("l", "DE02"),
                &mut ev(),
            )
            .await
            .expect("put");
            after.insert(store.position(), state(&store));
        }
        // The log as a power cut would leave it (a clean close removes it): every record
        // above was fdatasynced before its put returned.
        let wal_dir = data.join("wal");
        let segments = wal::list_segments(&wal_dir).expect("segments");
        assert_eq!(segments.len(), 1, "run 2 wrote one segment");
        let bytes = std::fs::read(wal::segment_path(&wal_dir, segments[0])).expect("segment");
        drop(v);
        drop(store);
        (segments[0], bytes)
    };
    let segment_name = wal::segment_path(Path::new("wal"), number)
        .file_name()
        .expect("name")
        .to_owned();
    // Where each record of run 2 ends (without its padding), from the log itself.
    let mut ends: Vec<(u64, usize)> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join(&segment_name), &late).expect("write");
    let mut offset = wal::HEADER_LEN as usize;
    wal::read(tmp.path(), 0, u64::MAX, |group| {
        let record = wal::frame(&group);
        starts.push(offset);
        ends.push((
            group.position,
            offset + wal::RECORD_HEADER_LEN + wal::payload(&record).len(),
        ));
        offset += record.len();
        Ok(())
    })
    .expect("the whole log reads");
    assert_eq!(ends.len(), LATE_PUTS, "one group per put: {ends:?}");
    for (position, _) in &ends {
        assert!(
            after.contains_key(position),
            "a state for position {position}"
        );
    }
    let first_examined = starts[starts.len() - EXAMINED];
    let log_end = offset;
    let expected_at = |offset: usize| -> &State {
        let whole = ends.iter().rev().find(|(_, end)| *end <= offset);
        let position = whole.map_or(*after.keys().next().expect("first"), |(p, _)| *p);
        &after[&position]
    };

    // 3. Reopen over the old index with the log cut or flipped.
    let case = tempfile::tempdir().expect("tempdir");
    let case_data = case.path().join("data");
    let reopen = |log: &[u8]| -> Result<Arc<Store>, StoreError> {
        let _ = std::fs::remove_dir_all(&case_data);
        copy_dir(&index_before, &case_data.join("db"));
        std::fs::create_dir_all(case_data.join("wal")).expect("mkdir");
        std::fs::write(case_data.join("wal").join(&segment_name), log).expect("log");
        open_store(&case_data)
    };
    let mut checked = 0;
    for cut in first_examined..=log_end {
        let store = reopen(&late[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_state(&state(&store), expected_at(cut), &format!("cut at {cut}"));
        checked += 1;
    }
    let mut refused = 0;
    let last_start = *starts.last().expect("records");
    for at in first_examined..log_end {
        let mut log = late.clone();
        log[at] ^= 0x20;
        // Padding after a record's payload is not covered by its checksum, and holds nothing.
        let padding = ends
            .iter()
            .zip(starts.iter().skip(1).chain([&log_end]))
            .any(|((_, end), next)| (*end..*next).contains(&at));
        match reopen(&log) {
            Ok(store) if padding => {
                assert_state(
                    &state(&store),
                    expected_at(log_end),
                    &format!("flip at {at}"),
                );
            }
            Ok(store) => {
                assert!(
                    at >= last_start,
                    "flip at {at} before the last record must be refused"
                );
                assert_state(
                    &state(&store),
                    expected_at(last_start),
                    &format!("flip at {at}"),
                );
            }
            Err(StoreError::Corrupt(why)) => {
                assert!(
                    at < last_start,
                    "flip at {at} in the last record is a tail: {why}"
                );
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
    assert!(refused > 0);
    eprintln!(
        "checked {checked} cuts and {} flips ({refused} refused as corruption)",
        log_end - first_examined
    );

    // 4. A cut in the middle of the last record: the vault opens, unseals, the chain verifies,
    //    the earlier tokens read back and the cut one is absent.
    let store = reopen(&late[..ends.last().expect("records").1 - 3]).expect("reopen");
    let v = vault(root.path(), store).await;
    let report = v.audit_verify(None, &[]).expect("verify");
    assert!(report.ok, "{:?}", report.problems);
    v.unseal(&mut ev()).await.expect("unseal");
    for i in 0..LATE_PUTS - 1 {
        let back = v
            .unseal_token(&t("acme"), &k(&format!("late-{i}")), None, &mut ev())
            .expect("earlier tokens read back");
        assert_eq!(back.secret.expect("text").expose_secret(), b"l");
    }
    assert!(matches!(
        v.unseal_token(
            &t("acme"),
            &k(&format!("late-{}", LATE_PUTS - 1)),
            None,
            &mut ev()
        ),
        Err(vaultd::Error::NotFound(_))
    ));
    let report = v.audit_verify(None, &[]).expect("verify");
    assert!(report.ok, "{:?}", report.problems);
}
