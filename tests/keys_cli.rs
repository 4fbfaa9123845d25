//! `vault-cli keys …` and `transit rewrap` end to end: real daemon, real CLI processes. A tenant
//! rotation is used by new puts, a rewrap moves every record so the old version can be retired
//! (and retirement is refused before), a master rotation and a KMS migration keep every token
//! readable, and the key history shows each step (`docs/key-rotation.md`).

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use vault_client::wire::{
    Job, JobStarted, JobState, KeyHistory, MasterRotated, Retired, Status, TenantInfo,
    TenantRotated, TokenMeta,
};

use common::Daemon;

/// `docs/cli.md`: any other error (a failed job, an invalid request).
const EXIT_OTHER: i32 = 1;
/// `docs/cli.md`: usage error.
const EXIT_USAGE: i32 = 2;
/// `docs/cli.md`: not found.
const EXIT_NOT_FOUND: i32 = 5;
/// `docs/cli.md`: conflict (retiring a key version that stored records still use).
const EXIT_CONFLICT: i32 = 6;

/// A `--json` answer as the wire type it must be (the root package has no `serde` of its own
/// to name a generic bound with).
macro_rules! typed {
    ($ty:ty, $value:expr) => {{
        let value = $value;
        serde_json::from_value::<$ty>(value.clone())
            .unwrap_or_else(|e| panic!("not a {}: {e}: {value}", stringify!($ty)))
    }};
}

/// A daemon with an initialized vault, driven through `vault-cli` as the operator (root).
struct Vault {
    daemon: Daemon,
}

impl Vault {
    fn start() -> Self {
        let vault = Self {
            daemon: Daemon::start(),
        };
        vault.ok(&["operator", "init"], b"");
        vault
    }

    /// `vault-cli ARGS` with `stdin`, whatever its exit code.
    fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.daemon.cli(None, args, stdin)
    }

    /// `vault-cli ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.cli(args, stdin);
        assert_eq!(
            code(&out),
            0,
            "vault-cli {}: {}{}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `vault-cli --json ARGS`, which must succeed; its answer. Callers read it as a wire type
    /// with [`typed`].
    fn json(&self, args: &[&str], stdin: &[u8]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let stdout = self.ok(&with_json, stdin);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("vault-cli {}: {e}: {stdout}", args.join(" ")))
    }

    fn put(&self, tenant: &str, id: &str, secret: &str) {
        let binding = self
            .daemon
            .binding_file("user-42", "DE89370400440532013000");
        self.ok(
            &[
                "token",
                "put",
                tenant,
                id,
                "--binding-file",
                &binding,
                "--bank",
                "examplebank",
                "--scope",
                "accounts",
            ],
            secret.as_bytes(),
        );
    }

    /// The token's secret, read back through `token get`.
    fn get(&self, tenant: &str, id: &str) -> String {
        self.ok(&["token", "get", tenant, id], b"")
    }

    fn key_version(&self, tenant: &str, id: &str) -> u32 {
        typed!(
            TokenMeta,
            self.json(&["token", "get", tenant, id, "--meta"], b"")
        )
        .key_version
    }

    /// Stored records per live data key version of `tenant`: `[(version, records)]`.
    fn records(&self, tenant: &str) -> Vec<(u32, u64)> {
        let info = typed!(TenantInfo, self.json(&["tenant", "show", tenant], b""));
        info.key_versions
            .iter()
            .map(|v| (v.version, v.records))
            .collect()
    }

    /// Polls `keys job ID --json` until the job is no longer running.
    fn wait_for_job(&self, id: &str) -> Job {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = typed!(Job, self.json(&["keys", "job", id], b""));
            if job.state != JobState::Running {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} still running: {job:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `detail.event` of every key event, in log order.
fn events(history: &KeyHistory) -> Vec<&str> {
    history
        .events
        .iter()
        .filter_map(|e| e.detail.get("event").map(String::as_str))
        .collect()
}

#[test]
fn rotate_rewrap_retire_and_master_rotation_keep_every_token_readable() {
    let vault = Vault::start();
    vault.ok(&["tenant", "create", "acme"], b"");
    vault.ok(&["tenant", "create", "globex"], b"");
    for i in 1..=3 {
        vault.put("acme", &format!("tok-{i}"), &format!("acme-secret-{i}"));
    }
    vault.put("globex", "tok-1", "globex-secret-1");
    let blob_v1 = vault.ok(
        &["transit", "seal", "acme", "--context", "payment-7"],
        b"transit-plain",
    );
    assert!(blob_v1.starts_with("vault:v1:"), "{blob_v1}");

    // Rotation: new puts use v2, tokens under v1 still open.
    let rotated = typed!(
        TenantRotated,
        vault.json(&["keys", "rotate", "tenant", "acme"], b"")
    );
    assert_eq!((rotated.tenant.as_str(), rotated.key_version), ("acme", 2));
    vault.put("acme", "tok-4", "acme-secret-4");
    assert_eq!(vault.key_version("acme", "tok-4"), 2);
    assert_eq!(vault.key_version("acme", "tok-1"), 1);
    assert_eq!(vault.get("acme", "tok-1"), "acme-secret-1");
    assert_eq!(vault.records("acme"), [(1, 3), (2, 1)]);

    // Transit rewrap: a v1 blob becomes a v2 blob of the same plaintext (stdin and --sealed).
    let blob_v2 = vault.ok(
        &["transit", "rewrap", "acme", "--context", "payment-7"],
        blob_v1.as_bytes(),
    );
    let blob_v2 = blob_v2.trim();
    assert!(blob_v2.starts_with("vault:v2:"), "{blob_v2}");
    let plain = vault.ok(
        &[
            "transit",
            "unseal",
            "acme",
            "--context",
            "payment-7",
            "--sealed",
            blob_v2,
        ],
        b"",
    );
    assert_eq!(plain, "transit-plain");
    let again = vault.ok(
        &[
            "transit",
            "rewrap",
            "acme",
            "--context",
            "payment-7",
            "--sealed",
            blob_v1.trim(),
        ],
        b"",
    );
    assert!(again.starts_with("vault:v2:"), "{again}");
    // The context is still bound: another one does not rewrap.
    let out = vault.cli(
        &["transit", "rewrap", "acme", "--context", "other"],
        blob_v1.as_bytes(),
    );
    assert_ne!(code(&out), 0, "{}", text(&out.stdout));

    // Retirement before a rewrap is refused: globex records still use v1.
    vault.ok(&["keys", "rotate", "tenant", "globex"], b"");
    let out = vault.cli(&["keys", "retire", "globex", "--below", "2"], b"");
    assert_eq!(code(&out), EXIT_CONFLICT, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("rewrap"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(vault.records("globex"), [(1, 1), (2, 0)]);

    // Rewrap of acme, waiting: exit 0, every record on v2, progress lines on stderr (no
    // terminal here), globex untouched.
    let out = vault.cli(&["keys", "rewrap", "--tenant", "acme"], b"");
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("completed: 3 records rewrapped"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("records ("),
        "a plain progress line: {}",
        text(&out.stderr)
    );
    assert_eq!(vault.records("acme"), [(1, 0), (2, 4)]);
    for i in 1..=4 {
        assert_eq!(vault.key_version("acme", &format!("tok-{i}")), 2);
        assert_eq!(
            vault.get("acme", &format!("tok-{i}")),
            format!("acme-secret-{i}")
        );
    }
    assert_eq!(vault.records("globex"), [(1, 1), (2, 0)]);

    // Now v1 of acme can go; v1 blobs are refused from then on, v2 blobs still open.
    let retired = typed!(
        Retired,
        vault.json(&["keys", "retire", "acme", "--below", "2"], b"")
    );
    assert_eq!(retired.retired_versions, [1]);
    assert_eq!(retired.min_decryption_version, 2);
    assert_eq!(vault.records("acme"), [(2, 4)]);
    let out = vault.cli(
        &["transit", "unseal", "acme", "--context", "payment-7"],
        blob_v1.as_bytes(),
    );
    assert_ne!(
        code(&out),
        0,
        "a blob under a retired version must not open"
    );
    assert_eq!(
        vault.ok(
            &["transit", "unseal", "acme", "--context", "payment-7"],
            blob_v2.as_bytes(),
        ),
        "transit-plain"
    );

    // Master rotation: version 2, every token and blob still opens.
    let master = typed!(
        MasterRotated,
        vault.json(&["keys", "rotate", "master"], b"")
    );
    assert_eq!(master.master_key_version, 2);
    assert_eq!(master.kms_key_id, "test");
    assert!(master.rewrapped_data_keys >= 3, "{master:?}");
    let status = typed!(Status, vault.json(&["status"], b""));
    assert_eq!(status.master_key_version, Some(2));
    for i in 1..=4 {
        assert_eq!(
            vault.get("acme", &format!("tok-{i}")),
            format!("acme-secret-{i}")
        );
    }
    assert_eq!(vault.get("globex", "tok-1"), "globex-secret-1");
    assert_eq!(
        vault.ok(
            &["transit", "unseal", "acme", "--context", "payment-7"],
            blob_v2.as_bytes(),
        ),
        "transit-plain"
    );

    // A detached rewrap of every tenant: the id, then the job by that id.
    let id = vault.ok(&["keys", "rewrap", "--detach"], b"");
    let id = id.trim();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{id:?}"
    );
    let job = typed!(Job, vault.json(&["keys", "job", id], b""));
    assert_eq!((job.id.as_str(), job.kind.as_str()), (id, "rewrap"));
    assert_eq!(job.tenant, None);
    let job = vault.wait_for_job(id);
    assert_eq!(job.state, JobState::Completed, "{job:?}");
    assert_eq!(job.done, 1, "globex's one record: {job:?}");
    let shown = vault.ok(&["keys", "job", id], b"");
    assert!(shown.contains("completed"), "{shown}");
    assert_eq!(vault.records("globex"), [(1, 0), (2, 1)]);
    vault.ok(&["keys", "retire", "globex", "--below", "2"], b"");
    assert_eq!(vault.get("globex", "tok-1"), "globex-secret-1");

    // --json on a detached start prints the API's answer.
    let started = typed!(
        JobStarted,
        vault.json(&["keys", "rewrap", "--detach", "--rate", "100"], b"")
    );
    assert_eq!(vault.wait_for_job(&started.id).state, JobState::Completed);

    // The history holds every step.
    let history = typed!(KeyHistory, vault.json(&["keys", "history"], b""));
    let seen = events(&history);
    for wanted in [
        "master_key_created",
        "data_key_created",
        "data_key_rotated",
        "records_rewrap_started",
        "records_rewrapped",
        "data_keys_retired",
        "master_key_rotated",
    ] {
        assert!(seen.contains(&wanted), "no {wanted} event in {seen:?}");
    }
    assert_eq!(history.master.version, 2);
    assert_eq!(history.master.kms_key_id, "test");
    let acme = history
        .tenants
        .iter()
        .find(|t| t.tenant == "acme")
        .expect("acme's keys");
    assert_eq!(acme.current_key_version, 2);
    assert_eq!(acme.min_decryption_version, 2);
    assert_eq!(acme.versions.len(), 1);
    assert_eq!(acme.versions[0].records, 4);
    assert_eq!(acme.versions[0].age_days, 0);
    // One tenant's history leaves the other's events out.
    let only_acme = typed!(
        KeyHistory,
        vault.json(&["keys", "history", "--tenant", "acme"], b"")
    );
    assert!(
        only_acme
            .events
            .iter()
            .all(|e| e.tenant.as_deref() != Some("globex")),
        "{only_acme:?}"
    );
    assert_eq!(only_acme.tenants.len(), 1);
    // The tables for people.
    let table = vault.ok(&["keys", "history"], b"");
    assert!(table.starts_with("master key  v2\n"), "{table}");
    let header = "SEQ  TIME";
    assert!(table.lines().any(|l| l.starts_with(header)), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("data_key_rotated") && l.contains("v1->v2")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("master_key_rotated") && l.contains("m1->m2")),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("TENANT")
            && l.contains("ENCRYPTIONS")
            && l.contains("AGE(days)")),
        "{table}"
    );
}

#[test]
fn minimum_decryption_version_refuses_old_blobs_reversibly() {
    let vault = Vault::start();
    vault.ok(&["tenant", "create", "acme"], b"");
    let blob_v1 = vault.ok(&["transit", "seal", "acme"], b"old-blob");
    vault.ok(&["keys", "rotate", "tenant", "acme"], b"");
    let unseal = |blob: &str| vault.cli(&["transit", "unseal", "acme"], blob.as_bytes());

    let set = vault.ok(
        &["keys", "config", "acme", "--min-decryption-version", "2"],
        b"",
    );
    assert!(set.contains("v2"), "{set}");
    assert_eq!(code(&unseal(&blob_v1)), EXIT_OTHER);
    // Nothing was destroyed: lowering it again opens the blob.
    vault.ok(
        &["keys", "config", "acme", "--min-decryption-version", "1"],
        b"",
    );
    let out = unseal(&blob_v1);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "old-blob");
    // Above the current version is invalid.
    let out = vault.cli(
        &["keys", "config", "acme", "--min-decryption-version", "3"],
        b"",
    );
    assert_eq!(code(&out), EXIT_OTHER, "{}", text(&out.stderr));
}

#[test]
fn kms_rotation_moves_the_master_key_and_history_records_both_ids() {
    let vault = Vault::start();
    vault.ok(&["tenant", "create", "acme"], b"");
    vault.put("acme", "tok-1", "acme-secret-1");

    common::write_key_file(&vault.daemon.root.path().join("keys").join("local-2.key"));

    // A key file that does not exist is refused and changes nothing.
    let out = vault.cli(&["keys", "rotate", "kms", "missing"], b"");
    assert_eq!(code(&out), EXIT_OTHER, "{}", text(&out.stderr));
    let history = typed!(KeyHistory, vault.json(&["keys", "history"], b""));
    assert_eq!(history.master.kms_key_id, "test");

    let out = vault.cli(&["keys", "rotate", "kms", "local-2"], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("from KMS key test to local-2"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("kms.key_id"),
        "the config hint: {}",
        text(&out.stderr)
    );

    let history = typed!(KeyHistory, vault.json(&["keys", "history"], b""));
    assert_eq!(history.master.kms_key_id, "local-2");
    assert_eq!(history.master.version, 1);
    let moved = history
        .events
        .iter()
        .find(|e| e.detail.get("event").map(String::as_str) == Some("master_key_moved_to_kms_key"))
        .expect("a KMS migration event");
    assert_eq!(moved.master_key_version, Some(1));
    assert_eq!(
        moved.detail.get("old_kms_key_id").map(String::as_str),
        Some("test")
    );
    assert_eq!(
        moved.detail.get("kms_key_id").map(String::as_str),
        Some("local-2")
    );
    let table = vault.ok(&["keys", "history"], b"");
    assert!(
        table
            .lines()
            .any(|l| l.contains("master_key_moved_to_kms_key") && l.contains("test->local-2")),
        "{table}"
    );
    assert_eq!(vault.get("acme", "tok-1"), "acme-secret-1");

    let status = typed!(Status, vault.json(&["status"], b""));
    assert_eq!(
        status.kms.key_id, "local-2",
        "status names the KMS key that wraps the master key"
    );
}

#[test]
fn unknown_jobs_and_tenants_and_bad_arguments_have_their_exit_codes() {
    let vault = Vault::start();
    vault.ok(&["tenant", "create", "acme"], b"");
    let cases: [(&[&str], i32); 7] = [
        (&["keys", "job", "0123456789abcdef"], EXIT_NOT_FOUND),
        (&["keys", "rewrap", "--tenant", "nope"], EXIT_NOT_FOUND),
        (&["keys", "rotate", "tenant", "nope"], EXIT_NOT_FOUND),
        (&["keys", "retire", "acme", "--below", "0"], EXIT_USAGE),
        (&["keys", "rewrap", "--rate", "0"], EXIT_USAGE),
        // Above the current version.
        (&["keys", "retire", "acme", "--below", "2"], EXIT_OTHER),
        (&["keys", "history", "--tenant", "nope"], EXIT_NOT_FOUND),
    ];
    for (args, want) in cases {
        let out = vault.cli(args, b"");
        assert_eq!(
            code(&out),
            want,
            "vault-cli {}: {}",
            args.join(" "),
            text(&out.stderr)
        );
    }
    // Retiring nothing (below the lowest live version) succeeds and destroys nothing.
    let retired = typed!(
        Retired,
        vault.json(&["keys", "retire", "acme", "--below", "1"], b"")
    );
    assert!(retired.retired_versions.is_empty());
}
