//! The audit trail against the real daemon: every request recorded with personal data only as
//! HMACs, the daemon's own verification finding each kind of tampering in its store, and
//! fail-closed behaviour when entries cannot be written (a real ENOSPC).

mod common;

use std::path::Path;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use vault_client::wire::{Binding, Expect, PutToken};
use vault_client::{ApiCode, Client, Secret};
use vaultd::audit::chain::{entry_key, head_key};
use vaultd::store::Store;
use vaultd::store::embedded;

use common::{Daemon, SOCKET_GID, STRANGER_UID, contains, wait_unsealed};

const ACCOUNT: &str = "DE02100500000054540402";
const SECRET: &str = "PLANTED-AUDIT-SECRET-5150";

fn put(account: &str) -> PutToken {
    PutToken {
        secret: Some(Secret::from(SECRET)),
        secret_b64: None,
        binding: Binding {
            subject: "user-77".into(),
            bank: "b".into(),
            account: account.into(),
            scope: "accounts".into(),
        },
        expires_at: None,
        expected_revision: None,
    }
}

async fn get_json(c: &Client, path: &str) -> Value {
    let (status, body) = c.raw(Method::GET, path, None).await.expect("answered");
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

async fn traffic(daemon: &Daemon) {
    let c = daemon.client();
    c.create_tenant("acme").await.expect("tenant");
    for i in 0..3 {
        c.put_token("acme", &format!("t{i}"), &put(ACCOUNT))
            .await
            .expect("put");
    }
    let expect = Expect {
        account: Some(ACCOUNT.into()),
        ..Expect::default()
    };
    c.unseal_token("acme", "t0", Some(expect))
        .await
        .expect("unseal");
    c.unseal_token("acme", "nope", None)
        .await
        .expect_err("not found");
}

#[tokio::test]
async fn every_request_is_recorded_with_personal_data_only_as_hmacs() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.status().await.expect("status before init");
    c.init().await.expect("init");
    traffic(&daemon).await;
    let denied = daemon.cli(
        Some((STRANGER_UID, SOCKET_GID)),
        &["token", "get", "acme", "t1"],
        b"",
    );
    assert_eq!(denied.status.code(), Some(4));
    let (status, _) = c
        .raw(Method::GET, "/v1/tenants/..", None)
        .await
        .expect("raw");
    assert_eq!(status, 400);

    let (status, raw) = c
        .raw(Method::GET, "/v1/audit?limit=1000", None)
        .await
        .expect("audit");
    assert_eq!(status, 200);
    for needle in [ACCOUNT, SECRET, "user-77"] {
        assert!(
            !contains(&raw, needle.as_bytes()),
            "audit log holds {needle} in clear"
        );
    }
    let page: Value = serde_json::from_slice(&raw).expect("json");
    let entries = page["entries"].as_array().expect("entries");
    let ops: Vec<&str> = entries
        .iter()
        .map(|e| e["op"].as_str().expect("op"))
        .collect();
    for op in [
        "sys.status",
        "sys.init",
        "tenant.create",
        "token.put",
        "token.unseal",
        "invalid",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    let seqs: Vec<u64> = entries
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq has no gaps"
    );

    let hashed = c
        .raw(
            Method::POST,
            "/v1/audit/hash",
            Some(format!(r#"{{"value":"{ACCOUNT}"}}"#).into_bytes()),
        )
        .await;
    let hmac: Value = serde_json::from_slice(&hashed.expect("hash").1).expect("json");
    let hmac = hmac["hmac"].as_str().expect("hmac").to_owned();
    let puts = get_json(
        &c,
        &format!("/v1/audit?op=token.put&account_hmac={hmac}&limit=100"),
    )
    .await;
    let puts = puts["entries"].as_array().expect("entries").clone();
    assert_eq!(puts.len(), 3, "the HMAC finds every put for that account");
    for e in &puts {
        assert_eq!(
            (
                e["tenant"].as_str(),
                e["outcome"].as_str(),
                e["key_version"].as_u64()
            ),
            (Some("acme"), Some("ok"), Some(1))
        );
        assert_eq!(e["actor"]["uid"].as_u64(), Some(0));
    }
    let denied = get_json(&c, "/v1/audit?outcome=denied").await;
    let denied = &denied["entries"].as_array().expect("entries")[0];
    assert_eq!(
        (denied["op"].as_str(), denied["code"].as_str()),
        (Some("token.unseal"), Some("denied"))
    );
    assert_eq!(
        denied["actor"]["uid"].as_u64(),
        Some(u64::from(STRANGER_UID))
    );
    let missing = get_json(&c, "/v1/audit?tenant=acme&token=nope").await;
    assert_eq!(missing["entries"][0]["code"].as_str(), Some("not_found"));

    let report = get_json(&c, "/v1/audit/verify").await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["signed_through"], report["head"]["seq"],
        "every entry is under a signed head"
    );
    let (status, _) = c
        .raw(Method::GET, "/v1/audit?since=2026-13-01T00:00:00Z", None)
        .await
        .expect("raw");
    assert_eq!(status, 400);
}

fn copy_dir(from: &Path, to: &Path) {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(to)
        .expect("mkdir");
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

/// Applies `tamper` to a fresh copy of `pristine` in the daemon's data dir, restarts the
/// daemon, and returns its verify report (with `anchor`, if given).
async fn verify_after(
    daemon: &mut Daemon,
    pristine: &Path,
    anchor: Option<&str>,
    tamper: impl FnOnce(&Store),
) -> Value {
    let data = daemon.root.path().join("data");
    std::fs::remove_dir_all(&data).expect("rm data");
    copy_dir(pristine, &data);
    {
        let store = embedded::open_store(&data, embedded::Options::default()).expect("open copy");
        tamper(&store);
    }
    daemon.restart();
    let c = daemon.client();
    wait_unsealed(&c).await;
    let path = match anchor {
        Some(a) => format!("/v1/audit/verify?head={a}"),
        None => "/v1/audit/verify".to_owned(),
    };
    let report = get_json(&c, &path).await;
    assert!(daemon.terminate().success());
    report
}

fn get(store: &Store, key: &[u8]) -> Vec<u8> {
    store.get(key).expect("get").expect("present")
}

fn set(store: &Store, key: Vec<u8>, value: Option<Vec<u8>>) {
    let mut batch = vaultd::store::Batch::default();
    match value {
        Some(v) => batch.put(key, v),
        None => batch.delete(key),
    };
    block_on_commit(store.commit(batch));
}

/// Runs a commit future to completion on a runtime of its own, on another thread (the test's
/// runtime thread must not block on it).
fn block_on_commit(fut: vaultd::store::CommitFuture) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            rt.block_on(fut).expect("commit");
        });
    });
}

/// One way of editing a stopped daemon's store.
type Tamper = Box<dyn FnOnce(&Store)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_verify_finds_each_kind_of_tampering() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    traffic(&daemon).await;
    let before = get_json(&c, "/v1/audit/verify").await;
    assert_eq!(before["ok"], true, "{before}");
    assert!(daemon.terminate().success());
    let pristine = daemon.root.path().join("pristine");
    copy_dir(&daemon.root.path().join("data"), &pristine);
    let last = {
        let store = embedded::open_store(&pristine, embedded::Options::default()).expect("open");
        let (key, _) = store.last(b"a/e/").expect("last").expect("entries");
        vaultd::audit::chain::seq_of(&key).expect("seq")
    };
    assert!(last >= 8, "enough entries to tamper with ({last})");

    let cases: Vec<(&str, Tamper)> = vec![
        (
            "edited",
            Box::new(|s: &Store| {
                let e = String::from_utf8(get(s, &entry_key(4))).expect("utf8");
                let edited = e
                    .replacen("\"outcome\":\"ok\"", "\"outcome\":\"denied\"", 1)
                    .replacen("\"uid\":0", "\"uid\":1", 1);
                assert_ne!(e, edited);
                set(s, entry_key(4), Some(edited.into_bytes()));
            }),
        ),
        ("removed", Box::new(|s: &Store| set(s, entry_key(4), None))),
        (
            "swapped",
            Box::new(|s: &Store| {
                let (a, b) = (get(s, &entry_key(4)), get(s, &entry_key(5)));
                set(s, entry_key(4), Some(b));
                set(s, entry_key(5), Some(a));
            }),
        ),
        (
            "forged and re-chained in the middle",
            Box::new(move |s: &Store| {
                // A careful forger: inserts a copy at 3, renumbers everything after it and
                // recomputes every prev hash. Only the signed heads can catch this.
                let mut lines: Vec<Value> = (1..=last)
                    .map(|q| serde_json::from_slice(&get(s, &entry_key(q))).expect("json"))
                    .collect();
                let mut forged = lines[2].clone();
                forged["op"] = "token.delete".into();
                lines.insert(2, forged);
                let mut prev = vault_client::audit::GENESIS;
                for (i, line) in lines.iter_mut().enumerate() {
                    line["seq"] = (i as u64 + 1).into();
                    line["prev"] = vault_client::audit::hex(&prev).into();
                    let bytes = serde_json::to_vec(line).expect("json");
                    prev = vault_client::audit::entry_hash(&bytes);
                    set(s, entry_key(i as u64 + 1), Some(bytes));
                }
            }),
        ),
        (
            "forged and appended after the last head",
            Box::new(move |s: &Store| {
                let prev_line = get(s, &entry_key(last));
                let mut forged: Value = serde_json::from_slice(&prev_line).expect("json");
                forged["seq"] = (last + 1).into();
                forged["op"] = "token.delete".into();
                forged["prev"] =
                    vault_client::audit::hex(&vault_client::audit::entry_hash(&prev_line)).into();
                set(
                    s,
                    entry_key(last + 1),
                    Some(serde_json::to_vec(&forged).expect("json")),
                );
            }),
        ),
        (
            "tail entries cut, heads kept",
            Box::new(move |s: &Store| {
                set(s, entry_key(last), None);
                set(s, entry_key(last - 1), None);
            }),
        ),
    ];
    for (name, tamper) in cases {
        let report = verify_after(&mut daemon, &pristine, None, tamper).await;
        assert_eq!(report["ok"], false, "{name} was not found: {report}");
        eprintln!("{name}: {}", report["problems"][0]);
    }

    // A tail cut cleanly at a head, or the whole store replaced by an older copy, is a valid
    // prefix: found against a head the auditor recorded.
    let anchor = format!(
        "{}:{}",
        before["head"]["seq"],
        before["head"]["hash"].as_str().expect("hash")
    );
    let clean = verify_after(&mut daemon, &pristine, Some(&anchor), |_| {}).await;
    assert_eq!(
        clean["ok"], true,
        "untouched copy with its own anchor: {clean}"
    );
    let anchor_seq = before["head"]["seq"].as_u64().expect("seq");
    let older = verify_after(&mut daemon, &pristine, Some(&anchor), move |s: &Store| {
        // The state as it was before the recorded head: cut everything after an earlier head,
        // entries and heads alike.
        let earlier = (1..anchor_seq)
            .rev()
            .find(|q| s.get(&head_key(*q)).expect("get").is_some())
            .expect("an earlier head");
        for q in earlier + 1..=last {
            set(s, entry_key(q), None);
            set(s, head_key(q), None);
        }
    })
    .await;
    assert_eq!(older["ok"], false, "older copy not found: {older}");
}

#[tokio::test]
async fn fails_closed_when_entries_cannot_be_written_and_recovers() {
    let daemon = Daemon::start_on_tmpfs(16);
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "before", &put(ACCOUNT))
        .await
        .expect("put");

    // Fill the daemon's file system.
    let filler = daemon.data_dir_seen_from_tests().join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
    }
    // The log's current segment is preallocated: writes go on until it is full (a 2 MiB
    // segment: under 2,000 puts), and the next segment cannot be allocated.
    let mut refused = 0;
    for i in 0..5000 {
        match c
            .put_token("acme", &format!("during-{i}"), &put(ACCOUNT))
            .await
        {
            Err(e) if e.code() == Some(&ApiCode::AuditUnavailable) => refused += 1,
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => {}
        }
        if refused > 0 {
            break;
        }
    }
    assert!(
        refused > 0,
        "writes kept succeeding on a full disk:\n{}",
        daemon.log_text()
    );
    let err = c
        .unseal_token("acme", "before", None)
        .await
        .expect_err("no secret without an audit entry");
    assert_eq!(err.code(), Some(&ApiCode::AuditUnavailable));
    let health = c.health().await.expect("health");
    assert!(!health.audit_available, "health shows the audit failure");
    let (status, _) = c
        .raw(Method::GET, "/v1/sys/health", None)
        .await
        .expect("raw");
    assert_eq!(status, 503);

    std::fs::remove_file(&filler).expect("free space");
    let mut recovered = false;
    for _ in 0..50 {
        if c.unseal_token("acme", "before", None).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "did not recover:\n{}", daemon.log_text());
    assert!(c.health().await.expect("health").audit_available);
    // Nothing is stored unaudited: every token that exists has an ok token.put entry.
    let tokens = c.list_tokens("acme", None, Some(1000)).await.expect("list");
    let puts = get_json(&c, "/v1/audit?op=token.put&outcome=ok&limit=1000").await;
    let audited: Vec<&str> = puts["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["token"].as_str())
        .collect();
    for t in &tokens.items {
        assert!(
            audited.contains(&t.id.as_str()),
            "{} stored without an audit entry",
            t.id
        );
    }
    let report = get_json(&c, "/v1/audit/verify").await;
    assert_eq!(report["ok"], true, "{report}");
}
