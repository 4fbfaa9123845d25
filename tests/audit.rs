//! The audit trail against the real daemon: every request recorded with personal data only as
//! HMACs, the daemon's own verification finding each kind of tampering in its store, and
//! fail-closed behaviour when entries cannot be written (a real ENOSPC).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use vault_client::wire::{Binding, Expect, PutToken};
use vault_client::{ApiCode, Client, Secret};
use vaultd::store::wal;

use common::{Daemon, SOCKET_GID, STRANGER_UID, contains, wait_unsealed};

const ACCOUNT: &str = "DE02100500000054540402";
const SECRET: &str = "PLANTED-AUDIT-SECRET-5150";

fn put(account: &str) -> PutToken {
    PutToken {
        secret: Secret::from(SECRET),
        binding: Binding {
            subject: "user-77".into(),
            bank: "b".into(),
            account: account.into(),
            scope: "accounts".into(),
        },
        expires_at: None,
        expected_revision: None,
        lease: None,
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
    tamper: impl FnOnce(&mut Log),
) -> Value {
    let data = daemon.root.path().join("data");
    std::fs::remove_dir_all(&data).expect("rm data");
    copy_dir(pristine, &data);
    let mut log = Log::read(&data);
    tamper(&mut log);
    log.write();
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

/// The audit log of a stopped vault as someone with write access to its data directory can
/// edit it: every audit record of every segment (docs/storage.md has the layout), written back
/// with valid checksums.
struct Log {
    dir: PathBuf,
    segments: Vec<(wal::Header, Vec<wal::AuditRecord>)>,
}

impl Log {
    fn read(data: &Path) -> Self {
        let dir = data.join("wal");
        let headers = wal::headers(&dir).expect("headers");
        let mut segments: Vec<(wal::Header, Vec<wal::AuditRecord>)> =
            headers.iter().map(|h| (*h, Vec::new())).collect();
        let mut reader = wal::AuditReader::new(&dir, headers, u64::MAX, 0, 0);
        while let Some((number, _, record)) = reader.next_record().expect("log reads") {
            let at = segments
                .iter()
                .position(|(h, _)| h.number == number)
                .expect("segment");
            segments[at].1.push(record);
        }
        Self { dir, segments }
    }

    fn records(&mut self) -> impl Iterator<Item = &mut wal::AuditRecord> {
        self.segments.iter_mut().flat_map(|(_, r)| r.iter_mut())
    }

    /// The record holding entry `seq`, and the entry's index in it.
    fn holding(&mut self, seq: u64) -> (&mut wal::AuditRecord, usize) {
        let record = self
            .records()
            .find(|r| (r.first_seq..r.first_seq + r.entries.len() as u64).contains(&seq))
            .expect("entry present");
        let i = (seq - record.first_seq) as usize;
        (record, i)
    }

    fn entry(&mut self, seq: u64) -> &mut Vec<u8> {
        let (record, i) = self.holding(seq);
        &mut record.entries[i]
    }

    /// Every entry, in order.
    fn entries(&mut self) -> Vec<Vec<u8>> {
        self.records().flat_map(|r| r.entries.clone()).collect()
    }

    /// Puts `entries` back in order, `extra` more of them in the record that holds `at`.
    fn set_entries(&mut self, entries: Vec<Vec<u8>>, at: u64, extra: usize) {
        let mut entries = entries.into_iter();
        let mut seq = 1;
        for record in self.records() {
            let holds =
                (record.first_seq..record.first_seq + record.entries.len() as u64).contains(&at);
            let n = record.entries.len() + if holds { extra } else { 0 };
            if n > 0 {
                record.first_seq = seq;
            }
            record.entries = entries.by_ref().take(n).collect();
            seq += n as u64;
        }
    }

    fn remove_entry(&mut self, seq: u64) {
        let (record, i) = self.holding(seq);
        record.entries.remove(i);
        if i == 0 {
            record.first_seq += 1;
        }
    }

    fn write(self) {
        for (header, records) in self.segments {
            let mut bytes = header.encode().to_vec();
            for record in &records {
                bytes.extend_from_slice(&wal::frame(&record.encode()));
            }
            std::fs::write(wal::segment_path(&self.dir, header.number), bytes).expect("write");
        }
    }
}

/// One way of editing a stopped daemon's log.
type Tamper = Box<dyn FnOnce(&mut Log)>;

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
    let last = Log::read(&pristine).entries().len() as u64;
    assert!(last >= 8, "enough entries to tamper with ({last})");

    let cases: Vec<(&str, Tamper)> = vec![
        (
            "edited",
            Box::new(|log: &mut Log| {
                let e = String::from_utf8(log.entry(4).clone()).expect("utf8");
                let edited = e
                    .replacen("\"outcome\":\"ok\"", "\"outcome\":\"denied\"", 1)
                    .replacen("\"uid\":0", "\"uid\":1", 1);
                assert_ne!(e, edited);
                *log.entry(4) = edited.into_bytes();
            }),
        ),
        ("removed", Box::new(|log: &mut Log| log.remove_entry(4))),
        (
            "swapped",
            Box::new(|log: &mut Log| {
                let (a, b) = (log.entry(4).clone(), log.entry(5).clone());
                *log.entry(4) = b;
                *log.entry(5) = a;
            }),
        ),
        (
            "forged and re-chained in the middle",
            Box::new(move |log: &mut Log| {
                // A careful forger: inserts a copy at 3, renumbers everything after it and
                // recomputes every prev hash. Only the signed heads can catch this.
                let mut lines: Vec<Value> = log
                    .entries()
                    .iter()
                    .map(|e| serde_json::from_slice(e).expect("json"))
                    .collect();
                let mut forged = lines[2].clone();
                forged["op"] = "token.delete".into();
                lines.insert(2, forged);
                let mut prev = vault_client::audit::GENESIS;
                let mut entries = Vec::new();
                for (i, line) in lines.iter_mut().enumerate() {
                    line["seq"] = (i as u64 + 1).into();
                    line["prev"] = hex::encode(prev).into();
                    let bytes = serde_json::to_vec(line).expect("json");
                    prev = vault_client::audit::entry_hash(&bytes);
                    entries.push(bytes);
                }
                log.set_entries(entries, 3, 1);
            }),
        ),
        (
            "forged and appended after the last head",
            Box::new(move |log: &mut Log| {
                let prev_line = log.entry(last).clone();
                let mut forged: Value = serde_json::from_slice(&prev_line).expect("json");
                forged["seq"] = (last + 1).into();
                forged["op"] = "token.delete".into();
                forged["prev"] = hex::encode(vault_client::audit::entry_hash(&prev_line)).into();
                let (record, _) = log.holding(last);
                record
                    .entries
                    .push(serde_json::to_vec(&forged).expect("json"));
            }),
        ),
        (
            "tail entries cut, heads kept",
            Box::new(move |log: &mut Log| {
                log.remove_entry(last);
                log.remove_entry(last - 1);
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
    let older = verify_after(
        &mut daemon,
        &pristine,
        Some(&anchor),
        move |log: &mut Log| {
            // The state as it was before the recorded head: cut everything after an earlier head,
            // entries and heads alike.
            let earlier = log
                .records()
                .flat_map(|r| r.heads.iter().map(|(seq, _)| *seq).collect::<Vec<_>>())
                .filter(|seq| *seq < anchor_seq)
                .max()
                .expect("an earlier head");
            for record in log.records() {
                record.heads.retain(|(seq, _)| *seq <= earlier);
                let keep = (earlier + 1).saturating_sub(record.first_seq) as usize;
                record.entries.truncate(keep);
            }
        },
    )
    .await;
    assert_eq!(older["ok"], false, "older copy not found: {older}");
}

/// What fills the disk in [`fails_closed_on_a_full_disk_and_recovers`].
#[derive(Clone, Copy)]
enum Filler {
    /// Puts, with the file system full: sled, writing its pages on the same file system,
    /// fails before the log's preallocated segments are used up.
    Puts,
    /// Unseals, with 1.5 MiB left for sled: entries alone fill the log's current and spare
    /// segments (2 MiB each), and the next one cannot be allocated.
    Unseals,
}

#[tokio::test]
async fn transit_batch_audit_entry_names_every_key_version_it_used() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let mut blobs = Vec::new();
    for i in 0..5 {
        if i == 3 {
            c.rotate_tenant("acme").await.expect("rotate to v2");
        }
        let sealed = c
            .transit_seal("acme", Secret::from(format!("p{i}").as_str()), "ctx")
            .await
            .expect("seal");
        blobs.push(vault_client::wire::TransitUnsealItem {
            sealed,
            context: "ctx".into(),
        });
    }
    // Three items under v1, two under v2, in one request.
    let items = c.transit_unseal_batch("acme", blobs).await.expect("batch");
    assert_eq!(items.len(), 5);
    let page = get_json(&c, "/v1/audit?op=transit.unseal&limit=10").await;
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{page}");
    let entry = &entries[0];
    assert_eq!(entry["detail"]["key_versions"], "1:3,2:2", "{entry}");
    assert!(
        entry["key_version"].is_null(),
        "no single version stands for the batch: {entry}"
    );
    // A single-version request keeps its plain key_version.
    let one = c
        .transit_seal("acme", Secret::from("x"), "ctx")
        .await
        .expect("seal");
    c.transit_unseal("acme", &one, "ctx").await.expect("unseal");
    let page = get_json(&c, "/v1/audit?op=transit.unseal&limit=10").await;
    let last = page["entries"]
        .as_array()
        .expect("entries")
        .last()
        .expect("entry")
        .clone();
    assert_eq!(last["key_version"], 2, "{last}");
    assert!(last["detail"].get("key_versions").is_none(), "{last}");
}

#[tokio::test]
async fn fails_closed_when_sled_cannot_write_its_pages_and_recovers() {
    let log = fails_closed_on_a_full_disk_and_recovers(Filler::Puts).await;
    assert!(
        log.contains("storage I/O failed: sled:"),
        "sled did not fail first:\n{log}"
    );
}

#[tokio::test]
async fn fails_closed_when_the_log_cannot_take_a_segment_and_recovers() {
    let log = fails_closed_on_a_full_disk_and_recovers(Filler::Unseals).await;
    assert!(
        log.contains("write-ahead log: No space left on device"),
        "the log did not fail first:\n{log}"
    );
    assert!(
        !log.contains("storage I/O failed: sled:"),
        "sled failed:\n{log}"
    );
}

/// Fills the daemon's file system, checks that it fails closed and says so in health, frees
/// the space and checks that it recovers with every stored token audited; returns its log.
async fn fails_closed_on_a_full_disk_and_recovers(filler: Filler) -> String {
    let daemon = Daemon::start_on_tmpfs(16);
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "before", &put(ACCOUNT))
        .await
        .expect("put");

    let file = daemon.data_dir_seen_from_tests().join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&file).expect("filler");
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
        if let Filler::Unseals = filler {
            let len = f.metadata().expect("filler").len();
            f.set_len(len - (3 << 19)).expect("leave 1.5 MiB");
        }
    }
    let refusals = [ApiCode::AuditUnavailable, ApiCode::Unavailable];
    let refused_for_the_disk =
        |e: &vault_client::Error| e.code().is_some_and(|c| refusals.contains(c));
    let mut refused = None;
    for i in 0..20_000 {
        let result = match filler {
            Filler::Puts => c
                .put_token("acme", &format!("during-{i}"), &put(ACCOUNT))
                .await
                .map(drop),
            Filler::Unseals => c.unseal_token("acme", "before", None).await.map(drop),
        };
        match result {
            Err(e) if refused_for_the_disk(&e) => {
                refused = Some(e);
                break;
            }
            Err(e) => panic!("unexpected error: {e}\n{}", daemon.log_text()),
            Ok(()) => {}
        }
    }
    let refused = refused.unwrap_or_else(|| {
        panic!(
            "requests kept succeeding on a full disk:\n{}",
            daemon.log_text()
        )
    });
    if let Filler::Unseals = filler {
        assert_eq!(
            refused.code(),
            Some(&ApiCode::AuditUnavailable),
            "{refused}"
        );
    }
    let err = c
        .unseal_token("acme", "before", None)
        .await
        .expect_err("no secret while the disk fails");
    assert!(refused_for_the_disk(&err), "{err}");
    let health = c.health().await.expect("health");
    assert!(
        !(health.audit_available && health.storage_available),
        "health shows the failure: {health:?}"
    );
    let (status, _) = c
        .raw(Method::GET, "/v1/sys/health", None)
        .await
        .expect("raw");
    assert_eq!(status, 503);
    if let Filler::Unseals = filler {
        // Sealing is a safety action: the keys go even though its entry cannot be written.
        let err = c
            .seal()
            .await
            .expect_err("the seal's entry cannot be written");
        assert_eq!(err.code(), Some(&ApiCode::AuditUnavailable), "{err}");
        let health = c.health().await.expect("health");
        assert_eq!(
            health.state,
            vault_client::wire::VaultState::Sealed,
            "{health:?}"
        );
    }

    std::fs::remove_file(&file).expect("free space");
    if let Filler::Unseals = filler {
        let mut unsealed = false;
        for _ in 0..50 {
            if c.unseal().await.is_ok() {
                unsealed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(unsealed, "did not unseal:\n{}", daemon.log_text());
    }
    let mut recovered = false;
    for _ in 0..50 {
        if c.unseal_token("acme", "before", None).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "did not recover:\n{}", daemon.log_text());
    let health = c.health().await.expect("health");
    assert!(
        health.audit_available && health.storage_available,
        "{health:?}"
    );
    // Nothing is stored unaudited: every token that exists has an ok token.put entry.
    let mut tokens = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = c
            .list_tokens("acme", next.as_deref(), Some(1000))
            .await
            .expect("list");
        tokens.extend(page.items);
        match page.next {
            Some(n) => next = Some(n),
            None => break,
        }
    }
    // Every ok put, page by page: the filler may have made more than one page of them.
    let mut audited: Vec<String> = Vec::new();
    let mut after = 0;
    loop {
        let page = get_json(
            &c,
            &format!("/v1/audit?op=token.put&outcome=ok&limit=1000&after={after}"),
        )
        .await;
        audited.extend(
            page["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .filter_map(|e| e["token"].as_str().map(str::to_owned)),
        );
        match page["next"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    for t in &tokens {
        assert!(
            audited.contains(&t.id),
            "{} stored without an audit entry",
            t.id
        );
    }
    let report = get_json(&c, "/v1/audit/verify").await;
    assert_eq!(report["ok"], true, "{report}");
    daemon.log_text()
}

#[tokio::test]
async fn verify_resumes_after_the_head_it_verified_and_rereads_all_after_a_restart() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    let puts = |from: usize, to: usize| {
        let c = c.clone();
        async move {
            for i in from..to {
                c.put_token("acme", &format!("t{i}"), &put(ACCOUNT))
                    .await
                    .expect("put");
            }
        }
    };
    puts(0, 50).await;
    let first = c.audit_verify(None).await.expect("verify");
    assert!(first.ok, "{:?}", first.problems);
    assert_eq!(first.resumed_after, None, "nothing verified yet");
    let head = first.signed_through.expect("signed");
    assert_eq!(first.entries, head);

    puts(50, 70).await;
    let second = c.audit_verify(None).await.expect("verify");
    assert!(second.ok, "{:?}", second.problems);
    assert_eq!(second.resumed_after, Some(head));
    let last = second.head.as_ref().expect("head").seq;
    assert_eq!(second.entries, last - head, "only the entries after it");
    assert!(second.entries < first.entries);

    let full = c.audit_verify_with(None, &[], true).await.expect("verify");
    assert!(full.ok && full.resumed_after.is_none(), "{full:?}");
    assert_eq!(full.entries, full.head.as_ref().expect("head").seq);
    // An anchor concerns the whole log: it is checked against every entry.
    let anchor = format!("{head}:{}", first.head.as_ref().expect("head").hash);
    let anchored = c.audit_verify(Some(&anchor)).await.expect("verify");
    assert!(
        anchored.ok && anchored.resumed_after.is_none(),
        "{anchored:?}"
    );

    // A new process trusts nothing it did not verify itself: the log may have been edited
    // while the daemon was down.
    assert!(daemon.terminate().success());
    daemon.restart();
    let c = daemon.client();
    wait_unsealed(&c).await;
    let after_restart = c.audit_verify(None).await.expect("verify");
    assert!(after_restart.ok, "{:?}", after_restart.problems);
    assert_eq!(after_restart.resumed_after, None);
}

#[tokio::test]
async fn a_restart_while_sealed_is_a_sealed_period_and_a_forged_unsigned_entry_is_still_found() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    traffic(&daemon).await;
    c.seal().await.expect("seal");
    // What callers do while the vault is sealed: refusals, failures, and keyless reads.
    c.unseal_token("acme", "t0", None)
        .await
        .expect_err("sealed");
    c.list_tenants().await.expect_err("sealed");
    c.status().await.expect("status");
    c.key_history(None).await.expect("history");
    c.metrics().await.expect("metrics");
    let sealed = c.audit_verify(None).await.expect("verify while sealed");
    assert!(sealed.ok, "{:?}", sealed.problems);
    assert!(
        sealed.sealed_periods[0].contains("the next unseal signs them"),
        "{:?}",
        sealed.sealed_periods
    );
    // Restart while sealed (auto-unseal then adopts what the sealed run left unsigned).
    assert!(daemon.terminate().success());
    daemon.restart();
    wait_unsealed(&c).await;
    let out = daemon.cli(None, &["audit", "verify", "--full"], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verification    ok"), "{text}");
    assert!(
        text.contains("sealed period")
            && text.contains("were written while the vault was sealed and adopted at unseal"),
        "{text}"
    );

    // A forger appends an entry that needs the keys, chained, while the daemon is stopped.
    assert!(daemon.terminate().success());
    let mut log = Log::read(&daemon.data);
    let entries = log.entries();
    let last = entries.len() as u64;
    let prev_line = entries.last().expect("entries").clone();
    let mut forged: Value = serde_json::from_slice(&prev_line).expect("json");
    forged["seq"] = (last + 1).into();
    forged["op"] = "token.unseal".into();
    forged["outcome"] = "ok".into();
    forged["tenant"] = "acme".into();
    forged["token"] = "t1".into();
    forged["prev"] = hex::encode(vault_client::audit::entry_hash(&prev_line)).into();
    let (record, _) = log.holding(last);
    record
        .entries
        .push(serde_json::to_vec(&forged).expect("json"));
    log.write();
    daemon.restart();
    wait_unsealed(&c).await;
    let out = daemon.cli(None, &["audit", "verify", "--full"], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(8), "{text}");
    assert!(
        text.contains(&format!(
            "seq {} (token.unseal, ok) is not what a sealed vault writes",
            last + 1
        )),
        "{text}"
    );
}
