//! Key rotation, rewrap and retirement on the engine, over a real sled directory and the local
//! KMS provider.

mod common;

use std::time::Duration;

use vault_client::wire::{JobState, KeyConfig};
use vaultd::Error;
use vaultd::config::RotationPolicy;
use vaultd::kms::local::LocalKms;
use vaultd::secret::Secret;

use common::{ev, k, open, open_initialized, put, t};

async fn fill(vault: &vaultd::Vault, tenant: &str, n: usize) {
    for i in 0..n {
        vault
            .put_token(
                &t(tenant),
                &k(&format!("tok-{i:04}")),
                &put(&format!("{tenant}-{i}"), "DE01"),
                &mut ev(),
            )
            .await
            .expect("put");
    }
}

async fn opens_all(vault: &vaultd::Vault, tenant: &str, n: usize) {
    for i in 0..n {
        let back = vault
            .unseal_token(&t(tenant), &k(&format!("tok-{i:04}")), None, &mut ev())
            .await
            .expect("opens");
        assert_eq!(
            back.secret.expose_secret(),
            format!("{tenant}-{i}").as_bytes()
        );
    }
}

async fn records_per_version(vault: &vaultd::Vault, tenant: &str) -> Vec<(u32, u64)> {
    vault
        .tenant_info(&t(tenant))
        .await
        .expect("info")
        .key_versions
        .iter()
        .map(|v| (v.version, v.records))
        .collect()
}

async fn wait_job(vault: &vaultd::Vault, id: &str) -> vault_client::wire::Job {
    for _ in 0..1000 {
        let job = vault.job(id).await.expect("job");
        if job.state != JobState::Running {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job did not finish");
}

#[tokio::test]
async fn rotate_then_put_uses_the_new_version_and_old_records_still_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("tenant");
    fill(&vault, "acme", 10).await;
    let old_blob = vault
        .transit_seal(&t("acme"), &Secret::from("blob"), "c", &mut ev())
        .await
        .expect("seal");
    assert_eq!(
        vault
            .rotate_tenant(&t("acme"), &mut ev())
            .await
            .expect("rotate")
            .key_version,
        2
    );
    let fresh = vault
        .put_token(&t("acme"), &k("new"), &put("n", "DE01"), &mut ev())
        .await
        .expect("put");
    assert_eq!(fresh.key_version, 2);
    assert_eq!(records_per_version(&vault, "acme").await, [(1, 10), (2, 1)]);
    opens_all(&vault, "acme", 10).await;
    assert!(
        vault
            .transit_seal(&t("acme"), &Secret::from("x"), "c", &mut ev())
            .await
            .expect("seal")
            .starts_with("vault:v2:")
    );
    assert_eq!(
        vault
            .transit_unseal(&t("acme"), &old_blob, "c", &mut ev())
            .await
            .expect("old blob")
            .expose_secret(),
        b"blob"
    );
    let rewrapped = vault
        .transit_rewrap(&t("acme"), &old_blob, "c", &mut ev())
        .await
        .expect("rewrap");
    assert!(rewrapped.starts_with("vault:v2:"));
    assert_eq!(
        vault
            .transit_unseal(&t("acme"), &rewrapped, "c", &mut ev())
            .await
            .expect("new blob")
            .expose_secret(),
        b"blob"
    );
}

#[tokio::test]
async fn rewrap_moves_every_record_and_retire_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    for tenant in ["acme", "globex"] {
        vault
            .create_tenant(&t(tenant), &mut ev())
            .await
            .expect("tenant");
        fill(&vault, tenant, 2500).await;
        vault
            .rotate_tenant(&t(tenant), &mut ev())
            .await
            .expect("rotate");
    }
    let old_blob = vault
        .transit_seal(&t("globex"), &Secret::from("b"), "c", &mut ev())
        .await;
    vault
        .rotate_tenant(&t("globex"), &mut ev())
        .await
        .expect("rotate again");
    let err = vault
        .retire(&t("acme"), 2, &mut ev())
        .await
        .expect_err("records still on v1");
    assert!(
        matches!(err, Error::Conflict(ref m) if m.contains("2500")),
        "{err}"
    );

    let started = vault
        .start_rewrap(None, None, &mut ev())
        .await
        .expect("start");
    let job = wait_job(&vault, &started.id).await;
    assert_eq!(
        (job.state, job.done, job.total),
        (JobState::Completed, 5000, 5000)
    );
    assert_eq!(
        records_per_version(&vault, "acme").await,
        [(1, 0), (2, 2500)]
    );
    assert_eq!(
        records_per_version(&vault, "globex").await,
        [(1, 0), (2, 0), (3, 2500)]
    );
    opens_all(&vault, "acme", 2500).await;
    opens_all(&vault, "globex", 2500).await;

    let retired = vault
        .retire(&t("globex"), 3, &mut ev())
        .await
        .expect("retire");
    assert_eq!(
        (retired.retired_versions, retired.min_decryption_version),
        (vec![1, 2], 3)
    );
    assert_eq!(records_per_version(&vault, "globex").await, [(3, 2500)]);
    let old_blob = old_blob.expect("sealed");
    assert!(matches!(
        vault
            .transit_unseal(&t("globex"), &old_blob, "c", &mut ev())
            .await,
        Err(Error::Invalid(_))
    ));
    opens_all(&vault, "globex", 2500).await;
    // A second rewrap finds nothing to do.
    let again = vault
        .start_rewrap(Some(&t("acme")), Some(100_000), &mut ev())
        .await
        .expect("start");
    let job = wait_job(&vault, &again.id).await;
    assert_eq!(
        (job.state, job.done, job.total),
        (JobState::Completed, 0, 0)
    );
}

#[tokio::test]
async fn minimum_decryption_version_refuses_old_transit_blobs_without_destroying_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("tenant");
    let v1 = vault
        .transit_seal(&t("acme"), &Secret::from("one"), "", &mut ev())
        .await
        .expect("seal");
    vault
        .rotate_tenant(&t("acme"), &mut ev())
        .await
        .expect("rotate");
    let set = |v| KeyConfig {
        min_decryption_version: v,
    };
    vault
        .set_key_config(&t("acme"), &set(2), &mut ev())
        .await
        .expect("config");
    assert!(matches!(
        vault.transit_unseal(&t("acme"), &v1, "", &mut ev()).await,
        Err(Error::Invalid(_))
    ));
    vault
        .set_key_config(&t("acme"), &set(1), &mut ev())
        .await
        .expect("reversible");
    assert_eq!(
        vault
            .transit_unseal(&t("acme"), &v1, "", &mut ev())
            .await
            .expect("opens")
            .expose_secret(),
        b"one"
    );
    assert!(matches!(
        vault.set_key_config(&t("acme"), &set(3), &mut ev()).await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn master_rotation_rewraps_everything_and_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blob;
    {
        let vault = open_initialized(dir.path()).await;
        for i in 0..50 {
            vault
                .create_tenant(&t(&format!("tenant-{i}")), &mut ev())
                .await
                .expect("tenant");
        }
        vault
            .create_tenant(&t("acme"), &mut ev())
            .await
            .expect("tenant");
        fill(&vault, "acme", 20).await;
        vault
            .rotate_tenant(&t("acme"), &mut ev())
            .await
            .expect("rotate");
        blob = vault
            .transit_seal(&t("acme"), &Secret::from("b"), "c", &mut ev())
            .await
            .expect("seal");
        let rotated = vault.rotate_master(&mut ev()).await.expect("rotate master");
        assert_eq!(
            (rotated.master_key_version, rotated.rewrapped_data_keys),
            (2, 52)
        );
        opens_all(&vault, "acme", 20).await;
        assert_eq!(
            vault.status().await.expect("status").master_key_version,
            Some(2)
        );
        // New tenants get data keys wrapped under master key 2.
        vault
            .create_tenant(&t("late"), &mut ev())
            .await
            .expect("tenant");
        vault
            .rotate_master(&mut ev())
            .await
            .expect("rotate master again");
    }
    let vault = open(dir.path()).await;
    vault
        .unseal(&mut ev())
        .await
        .expect("unseal under master key 3");
    assert_eq!(
        vault.status().await.expect("status").master_key_version,
        Some(3)
    );
    opens_all(&vault, "acme", 20).await;
    assert_eq!(
        vault
            .transit_unseal(&t("acme"), &blob, "c", &mut ev())
            .await
            .expect("blob")
            .expose_secret(),
        b"b"
    );
    let report = vault.audit_verify(None, &[], true).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
    let history = vault.key_history(None).await.expect("history");
    assert_eq!(history.master.version, 3);
    let events: Vec<_> = history
        .events
        .iter()
        .filter_map(|e| e.detail.get("event").map(String::as_str))
        .collect();
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == "master_key_rotated")
            .count(),
        2,
        "{events:?}"
    );
}

#[tokio::test]
async fn kms_migration_moves_the_master_key_to_another_local_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let vault = open_initialized(dir.path()).await;
        vault
            .create_tenant(&t("acme"), &mut ev())
            .await
            .expect("tenant");
        fill(&vault, "acme", 5).await;
        let kms = LocalKms::open(&dir.path().join("keys"), common::KEY_ID, false).expect("kms");
        kms.create_key("local-2").expect("new key file");
        assert!(matches!(
            vault.rotate_kms("missing", &mut ev()).await,
            Err(Error::Kms(_))
        ));
        let moved = vault
            .rotate_kms("local-2", &mut ev())
            .await
            .expect("migrate");
        assert_eq!(
            (moved.old_kms_key_id.as_str(), moved.kms_key_id.as_str()),
            (common::KEY_ID, "local-2")
        );
        let history = vault.key_history(None).await.expect("history");
        assert_eq!(history.master.kms_key_id, "local-2");
        let event = history.events.last().expect("event");
        assert_eq!(
            event.detail.get("old_kms_key_id").map(String::as_str),
            Some(common::KEY_ID)
        );
        // A later master rotation stays under the new KMS key (it must not undo the migration).
        vault.rotate_master(&mut ev()).await.expect("rotate master");
        assert_eq!(
            vault
                .key_history(None)
                .await
                .expect("history")
                .master
                .kms_key_id,
            "local-2"
        );
        assert_eq!(vault.status().await.expect("status").kms.key_id, "local-2");
    }
    // The old key file can go: the master key now opens under the new one.
    std::fs::remove_file(
        dir.path()
            .join("keys")
            .join(format!("{}.key", common::KEY_ID)),
    )
    .expect("rm old key");
    let vault = common::open_with_key(dir.path(), "local-2").await;
    vault
        .unseal(&mut ev())
        .await
        .expect("unseal under the new KMS key");
    opens_all(&vault, "acme", 5).await;
}

#[tokio::test]
async fn scheduled_rotation_follows_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    vault
        .create_tenant(&t("busy"), &mut ev())
        .await
        .expect("tenant");
    vault
        .create_tenant(&t("quiet"), &mut ev())
        .await
        .expect("tenant");
    fill(&vault, "busy", 3).await;
    let policy = RotationPolicy {
        max_dek_age_days: Some(90),
        max_encryptions_per_version: Some(3),
        check_interval_secs: 1,
    };
    let rotated = vault.rotate_due(&policy).await.expect("check");
    assert_eq!(rotated, [t("busy")]);
    assert_eq!(
        vault
            .tenant_info(&t("busy"))
            .await
            .expect("info")
            .current_key_version,
        2
    );
    assert_eq!(
        vault
            .tenant_info(&t("quiet"))
            .await
            .expect("info")
            .current_key_version,
        1
    );
    assert!(
        vault.rotate_due(&policy).await.expect("check").is_empty(),
        "v2 has made no encryptions yet"
    );
    let history = vault.key_history(Some(&t("busy"))).await.expect("history");
    let live = &history.tenants[0].versions;
    assert_eq!((live[0].encryptions, live[1].encryptions), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_under_concurrent_writes_skips_nothing_and_counts_stay_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("tenant");
    fill(&vault, "acme", 6000).await;
    vault
        .rotate_tenant(&t("acme"), &mut ev())
        .await
        .expect("rotate");
    let started = vault
        .start_rewrap(None, Some(20_000), &mut ev())
        .await
        .expect("start");
    // Rewrite tokens all over the key space while the job runs: its batches conflict and are
    // read again.
    let writer = {
        let vault = vault.clone();
        tokio::spawn(async move {
            for round in 0..3 {
                for i in (round..6000).step_by(97) {
                    let id = k(&format!("tok-{i:04}"));
                    vault
                        .put_token(
                            &t("acme"),
                            &id,
                            &put(&format!("acme-{i}"), "DE01"),
                            &mut ev(),
                        )
                        .await
                        .expect("put");
                }
            }
        })
    };
    writer.await.expect("writer");
    let job = wait_job(&vault, &started.id).await;
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(
        records_per_version(&vault, "acme").await,
        [(1, 0), (2, 6000)],
        "every record on v2: {job:?}"
    );
    opens_all(&vault, "acme", 6000).await;
}

#[tokio::test]
async fn a_decoy_stays_a_decoy_through_a_rewrap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("tenant");
    fill(&vault, "acme", 3).await;
    let mut decoy = put("decoy-secret", "DE02");
    decoy.decoy = true;
    vault
        .put_token(&t("acme"), &k("trap"), &decoy, &mut ev())
        .await
        .expect("decoy");
    vault
        .rotate_tenant(&t("acme"), &mut ev())
        .await
        .expect("rotate");
    let started = vault
        .start_rewrap(None, None, &mut ev())
        .await
        .expect("start");
    let job = wait_job(&vault, &started.id).await;
    assert_eq!((job.state, job.done), (JobState::Completed, 4));
    let meta = vault
        .token_meta(&t("acme"), &k("trap"), &mut ev())
        .await
        .expect("meta");
    assert_eq!((meta.key_version, meta.decoy), (2, Some(true)));
    let real = vault
        .token_meta(&t("acme"), &k("tok-0000"), &mut ev())
        .await
        .expect("meta");
    assert_eq!((real.key_version, real.decoy), (2, Some(false)));
    let (answer, is_decoy) = vault
        .unseal_token_telling_decoys(&t("acme"), &k("trap"), None, &mut ev())
        .await
        .expect("unseal");
    assert!(is_decoy);
    assert_eq!(answer.secret.expose_secret(), b"decoy-secret");
}
