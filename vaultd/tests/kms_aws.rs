//! The `aws` provider against a real KMS API server (moto): every KMS fault gives its documented
//! error, none panics, and the vault stays sealed; the token path never calls the KMS; the
//! daemon serves sealed while the KMS is away and auto-unseals when it returns.

mod moto;

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use vault_client::wire::{Binding, VaultState};
use vaultd::Vault;
use vaultd::audit::Event;
use vaultd::ids::{TenantId, TokenId};
use vaultd::kms::KmsError;
use vaultd::kms::aws::AwsKms;
use vaultd::secret::Secret;
use vaultd::store::{Batch, Store, embedded};
use vaultd::vault::PutToken;

use moto::{Daemon, Moto, Outage};

const META: &[u8] = b"m/vault";
const MK_1: &[u8] = b"m/mk/0000000001";

/// An audit event for a library call (the daemon makes one per request).
fn ev() -> Event {
    Event::system("test")
}

fn aws(sdk: &aws_config::SdkConfig, key_id: &str) -> AwsKms {
    AwsKms::new(sdk, key_id.parse().expect("key id"))
}

async fn store(dir: &Path) -> Arc<Store> {
    let options = embedded::Options {
        cache_bytes: 16 << 20,
        segment_bytes: 4 << 20,
        ..embedded::Options::default()
    };
    Arc::new(embedded::open_store(dir, options).await.expect("store"))
}

async fn open(store: &Arc<Store>, kms: AwsKms) -> Vault {
    Vault::open(store.clone(), Arc::new(kms))
        .await
        .expect("open vault")
}

/// A vault initialized under `key_id` on `moto`, then sealed.
async fn sealed_vault(moto: &Moto, key_id: &str, store: &Arc<Store>) -> Vault {
    let vault = open(store, aws(&moto.sdk_config(), key_id)).await;
    vault.init(&mut ev()).await.expect("init");
    vault.seal(&mut ev()).await.expect("seal");
    vault
}

/// Unseal fails with a KMS error, answers with a status and code that name it, and the vault
/// stays sealed.
async fn unseal_fails(vault: &Vault) -> KmsError {
    let err = vault.unseal(&mut ev()).await.expect_err("unseal must fail");
    assert_eq!(vault.state(), VaultState::Sealed, "must stay sealed");
    let text = err.to_string();
    assert!(err.code().starts_with("kms_"), "{}: {text}", err.code());
    match err {
        vaultd::Error::Kms(e) => e,
        other => panic!("expected a KMS error, got {other:?}"),
    }
}

async fn get_json(store: &Arc<Store>, key: &[u8]) -> serde_json::Value {
    let bytes = store.get(key).await.expect("get").expect("present");
    serde_json::from_slice(&bytes).expect("json")
}

async fn put_json(store: &Arc<Store>, key: &[u8], value: &serde_json::Value) {
    let mut batch = Batch::default();
    batch.put(key.to_vec(), serde_json::to_vec(value).expect("json"));
    store.commit(batch).await.expect("commit");
}

#[tokio::test]
async fn kms_endpoint_down_while_sealed_is_unreachable_then_unseals_when_it_returns() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    // vaultd talks to moto through a forwarder that can go down and come back on the same
    // port; moto keeps its keys in memory only, so a restarted moto would have lost the key.
    let outage = Outage::new(moto.port());
    outage.up().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    let sdk = moto::sdk_config(&moto::endpoint(outage.port()));
    let vault = open(&store, aws(&sdk, &key)).await;
    vault.init(&mut ev()).await.expect("init");
    vault.seal(&mut ev()).await.expect("seal");

    outage.down().await;
    for _ in 0..2 {
        let err = unseal_fails(&vault).await;
        assert!(matches!(err, KmsError::Unreachable(_)), "{err:?}");
        assert!(err.is_transient());
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.code(), "kms_unreachable");
    }

    outage.up().await;
    vault
        .unseal(&mut ev())
        .await
        .expect("unseal once the KMS is back");
    assert_eq!(vault.state(), VaultState::Unsealed);
    vault
        .create_tenant(&TenantId::parse("acme").expect("tenant"), &mut ev())
        .await
        .expect("usable after unseal");
}

#[tokio::test]
async fn kms_server_stopped_while_sealed_is_unreachable_and_stays_sealed() {
    let mut moto = Moto::start();
    let key = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    let vault = sealed_vault(&moto, &key, &store).await;
    moto.stop();
    let err = unseal_fails(&vault).await;
    assert!(matches!(err, KmsError::Unreachable(_)), "{err:?}");
    assert!(
        !err.to_string().contains(moto::SECRET_ACCESS_KEY),
        "no credentials in messages: {err}"
    );
}

#[tokio::test]
async fn disabled_key_gives_key_disabled_and_stays_sealed() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    let vault = sealed_vault(&moto, &key, &store).await;
    moto.disable_key(&key).await;
    let err = unseal_fails(&vault).await;
    assert!(matches!(err, KmsError::KeyDisabled(_)), "{err:?}");
    assert_eq!(err.code(), "kms_key_disabled");
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    assert!(!err.is_transient());

    // init under a disabled key fails too and leaves the vault uninitialized
    let other = tempfile::tempdir().expect("tempdir");
    let fresh = open(
        &self::store(other.path()).await,
        aws(&moto.sdk_config(), &key),
    )
    .await;
    assert!(matches!(
        fresh.init(&mut ev()).await,
        Err(vaultd::Error::Kms(KmsError::KeyDisabled(_)))
    ));
    assert_eq!(fresh.state(), VaultState::Uninitialized);
}

#[tokio::test]
async fn key_pending_deletion_gives_key_pending_deletion_and_stays_sealed() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    let vault = sealed_vault(&moto, &key, &store).await;
    moto.schedule_key_deletion(&key).await;
    let err = unseal_fails(&vault).await;
    assert!(matches!(err, KmsError::KeyPendingDeletion(_)), "{err:?}");
    assert_eq!(err.code(), "kms_key_pending_deletion");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn config_naming_another_key_gives_wrong_key_id_without_calling_kms() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let other = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    drop(sealed_vault(&moto, &key, &store).await);

    let vault = open(&store, aws(&moto.sdk_config(), &other)).await;
    let err = unseal_fails(&vault).await;
    let KmsError::KeyNotConfigured {
        configured,
        wrapping,
    } = &err
    else {
        panic!("expected KeyNotConfigured, got {err:?}");
    };
    assert_eq!(configured, &other);
    assert!(wrapping.ends_with(&format!(":key/{key}")), "{wrapping}");
    assert_eq!(err.code(), "kms_wrong_key_id");
    // The message says which side to change, and how.
    let text = err.to_string();
    assert!(text.contains("no KMS call was made"), "{text}");
    assert!(
        text.contains(&format!("set kms.key_id = \"{wrapping}\""))
            && text.contains("restart vaultd"),
        "{text}"
    );
    assert_eq!(vault.kms().calls(), 0, "refused before any KMS call");
}

#[tokio::test]
async fn stored_key_id_pointed_at_another_key_fails_closed() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let other = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    drop(sealed_vault(&moto, &key, &store).await);
    // The record now claims the other key, and so does the config: the pin holds, KMS refuses.
    let mut record = get_json(&store, MK_1).await;
    record["kms_key_id"] = serde_json::Value::String(other.clone());
    put_json(&store, MK_1, &record).await;

    let vault = open(&store, aws(&moto.sdk_config(), &other)).await;
    let err = unseal_fails(&vault).await;
    // AWS KMS answers IncorrectKeyException (→ DecryptionFailed); moto answers
    // AccessDeniedException. Either way: permanent, and sealed.
    assert!(
        matches!(err, KmsError::DecryptionFailed | KmsError::AccessDenied(_)),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn wrong_encryption_context_gives_decryption_failed_and_stays_sealed() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    drop(sealed_vault(&moto, &key, &store).await);
    let original = get_json(&store, META).await;

    // another vault id
    let mut meta = original.clone();
    meta["vault_id"] = serde_json::Value::String("0123456789abcdef0123456789abcdef".into());
    put_json(&store, META, &meta).await;
    let vault = open(&store, aws(&moto.sdk_config(), &key)).await;
    let err = unseal_fails(&vault).await;
    assert!(matches!(err, KmsError::DecryptionFailed), "{err:?}");
    assert_eq!(err.code(), "kms_decryption_failed");
    drop(vault);

    // another master key version: MK 1's record copied to slot 2
    let mut record = get_json(&store, MK_1).await;
    record["version"] = 2.into();
    put_json(&store, b"m/mk/0000000002", &record).await;
    let mut meta = original.clone();
    meta["master_key_version"] = 2.into();
    put_json(&store, META, &meta).await;
    let vault = open(&store, aws(&moto.sdk_config(), &key)).await;
    let err = unseal_fails(&vault).await;
    assert!(matches!(err, KmsError::DecryptionFailed), "{err:?}");
    drop(vault);

    // the untouched metadata still unseals
    put_json(&store, META, &original).await;
    let vault = open(&store, aws(&moto.sdk_config(), &key)).await;
    vault
        .unseal(&mut ev())
        .await
        .expect("original context unseals");
}

#[tokio::test]
async fn flipped_byte_in_stored_wrapped_master_key_gives_decryption_failed() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    let vault = sealed_vault(&moto, &key, &store).await;
    let original = get_json(&store, MK_1).await;
    let wrapped = STANDARD
        .decode(original["wrapped"].as_str().expect("wrapped is base64"))
        .expect("base64");

    for position in [wrapped.len() - 1, wrapped.len() / 2 + 8] {
        let mut tampered = wrapped.clone();
        tampered[position] ^= 0x80;
        let mut record = original.clone();
        record["wrapped"] = serde_json::Value::String(STANDARD.encode(&tampered));
        put_json(&store, MK_1, &record).await;
        let err = unseal_fails(&vault).await;
        assert!(
            matches!(err, KmsError::DecryptionFailed),
            "byte {position}: {err:?}"
        );
        assert!(!err.is_transient());
    }

    put_json(&store, MK_1, &original).await;
    vault
        .unseal(&mut ev())
        .await
        .expect("the untouched record unseals");
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused_before_anything_is_sent() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    // 0.0.0.0 is not a loopback address, but a connection to it reaches this machine: if the
    // check failed, the request would go to moto and succeed.
    let sdk = moto::sdk_config(&format!("http://0.0.0.0:{}", moto.port()));
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open(&store(dir.path()).await, aws(&sdk, &key)).await;
    let err = vault
        .init(&mut ev())
        .await
        .expect_err("must refuse plain http off loopback");
    let vaultd::Error::Kms(KmsError::Rejected(reason)) = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert!(reason.contains("plain http"), "{reason}");
    assert_eq!(vault.state(), VaultState::Uninitialized);
}

#[tokio::test]
async fn thousand_token_unseals_after_unseal_make_no_kms_calls() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    let vault = sealed_vault(&moto, &key, &store).await;
    assert_eq!(vault.kms().calls(), 1, "init: GenerateDataKey");
    vault.unseal(&mut ev()).await.expect("unseal");
    assert_eq!(vault.kms().calls(), 2, "unseal: Decrypt");

    let tenant = TenantId::parse("acme").expect("tenant");
    let token = TokenId::parse("consent-1").expect("token");
    vault
        .create_tenant(&tenant, &mut ev())
        .await
        .expect("tenant");
    vault
        .put_token(
            &tenant,
            &token,
            &PutToken {
                secret: Secret::from("access-token"),
                binding: Binding {
                    subject: "user-1".into(),
                    bank: "bank".into(),
                    account: "DE89370400440532013000".into(),
                    scope: "accounts".into(),
                },
                expires_at: None,
                expected_revision: None,
                lease: None,
                decoy: false,
            },
            &mut ev(),
        )
        .await
        .expect("put");

    let before = vault.kms().calls();
    for _ in 0..1000 {
        vault
            .unseal_token(&tenant, &token, None, &mut ev())
            .await
            .expect("unseal token");
    }
    assert_eq!(
        vault.kms().calls(),
        before,
        "the token path never calls the KMS"
    );
}

// ----- the daemon: serves sealed while the KMS is away, auto-unseals when it returns -----

/// A data directory initialized under `key_id` through `kms_port`, then closed.
async fn initialized_data_dir(dir: &Path, kms_port: u16, key_id: &str) {
    let data = dir.join("data");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .expect("data dir");
    let store = store(&data).await;
    let sdk = moto::sdk_config(&moto::endpoint(kms_port));
    let vault = open(&store, aws(&sdk, key_id)).await;
    vault.init(&mut ev()).await.expect("init");
}

#[tokio::test]
async fn daemon_serves_sealed_while_kms_is_down_and_auto_unseals_when_it_returns() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let outage = Outage::new(moto.port());
    outage.up().await;
    let dir = tempfile::tempdir().expect("tempdir");
    initialized_data_dir(dir.path(), outage.port(), &key).await;
    outage.down().await;

    let daemon = Daemon::start(dir.path(), outage.port(), &key);
    daemon
        .wait_for(
            "the daemon to answer sealed",
            Duration::from_secs(30),
            async || daemon.state().await == Some(VaultState::Sealed),
        )
        .await;
    // a manual unseal meanwhile names the fault
    let err = daemon
        .client()
        .unseal()
        .await
        .expect_err("unseal fails while the KMS is down");
    assert!(
        matches!(err, vault_client::Error::Api { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("kms_unreachable"), "{err}");
    daemon
        .wait_for(
            "a second auto-unseal attempt",
            Duration::from_secs(30),
            async || {
                daemon
                    .log()
                    .matches("auto-unseal failed; staying sealed")
                    .count()
                    >= 2
            },
        )
        .await;
    assert_eq!(daemon.state().await, Some(VaultState::Sealed));

    outage.up().await;
    // The state turns unsealed just before the retry loop logs its success: wait for both.
    daemon
        .wait_for("auto-unseal", Duration::from_secs(60), async || {
            daemon.state().await == Some(VaultState::Unsealed)
                && daemon.log().contains("auto-unseal: vault unsealed")
        })
        .await;
    let log = daemon.log();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("kms_unreachable"), "{log}");
    assert!(log.contains("auto-unseal: vault unsealed"), "{log}");
    assert!(!log.contains(moto::SECRET_ACCESS_KEY), "{log}");
}

#[tokio::test]
async fn daemon_stops_auto_unseal_on_a_permanent_kms_error() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    initialized_data_dir(dir.path(), moto.port(), &key).await;
    moto.disable_key(&key).await;

    let daemon = Daemon::start(dir.path(), moto.port(), &key);
    daemon.wait_for_log("will not be retried").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = daemon.log();
    assert_eq!(log.matches("auto-unseal failed").count(), 1, "{log}");
    assert!(log.contains("kms_key_disabled"), "{log}");
    assert_eq!(daemon.state().await, Some(VaultState::Sealed));
}

#[tokio::test]
async fn kms_migration_reencrypts_the_master_key_under_another_aws_key() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let other = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    {
        let vault = open(&store, aws(&moto.sdk_config(), &key)).await;
        vault.init(&mut ev()).await.expect("init");
        let tenant = vaultd::ids::TenantId::parse("acme").expect("id");
        vault
            .create_tenant(&tenant, &mut ev())
            .await
            .expect("tenant");
        let calls = vault.kms().calls();
        let moved = vault
            .rotate_kms(&other, &mut ev())
            .await
            .expect("ReEncrypt to the other key");
        assert_eq!(vault.kms().calls(), calls + 1, "one ReEncrypt call");
        assert!(
            moved.old_kms_key_id.ends_with(&key) && moved.kms_key_id.ends_with(&other),
            "{moved:?}"
        );
        let history = vault.key_history(None).await.expect("history");
        let event = history.events.last().expect("migration event");
        assert_eq!(
            event.detail.get("event").map(String::as_str),
            Some("master_key_moved_to_kms_key")
        );
        assert!(
            event
                .detail
                .get("old_kms_key_id")
                .is_some_and(|k| k.ends_with(&key))
        );
        assert!(
            event
                .detail
                .get("kms_key_id")
                .is_some_and(|k| k.ends_with(&other))
        );
        vault.seal(&mut ev()).await.expect("seal");
    }
    // The old key can now be disabled: the daemon, configured with the new key, unseals.
    moto.disable_key(&key).await;
    let vault = open(&store, aws(&moto.sdk_config(), &other)).await;
    vault
        .unseal(&mut ev())
        .await
        .expect("unseal under the new key");
    assert_eq!(
        vault
            .key_history(None)
            .await
            .expect("history")
            .tenants
            .len(),
        1
    );
    // Configured with the old key, the pin refuses before calling the KMS.
    drop(vault);
    let stale = open(&store, aws(&moto.sdk_config(), &key)).await;
    assert!(matches!(
        unseal_fails(&stale).await,
        KmsError::KeyNotConfigured { .. }
    ));
}

#[tokio::test]
async fn missing_credentials_are_named_in_one_line_and_retried_and_errors_say_which_side_to_fix() {
    let moto = Moto::start();
    let key = moto.create_key().await;
    let dir = tempfile::tempdir().expect("tempdir");
    initialized_data_dir(dir.path(), moto.port(), &key).await;
    let daemon = Daemon::start_without_credentials(dir.path(), moto.port(), &key);
    let log = daemon.wait_for_log("auto-unseal failed").await;
    let line = log
        .lines()
        .find(|l| l.contains("auto-unseal failed"))
        .expect("the attempt's line");
    assert!(line.contains("no AWS credentials yet"), "{line}");
    assert!(line.contains("staying sealed and retrying"), "{line}");
    assert!(line.len() < 600, "one short line: {line}");
    drop(daemon);

    // A config naming another key: the remedy says to change the config and restart.
    let other = moto.create_key().await;
    let daemon = Daemon::start(dir.path(), moto.port(), &other);
    let log = daemon.wait_for_log("will not be retried").await;
    assert!(log.contains("kms_wrong_key_id"), "{log}");
    assert!(log.contains("remedy="), "{log}");
    assert!(log.contains("restart vaultd"), "{log}");
    // status shows the wrapping key and the configured one
    let status = daemon.client().status().await.expect("status");
    assert!(status.kms.key_id.ends_with(&key), "{:?}", status.kms);
    assert_eq!(
        status.kms.configured_key_id.as_deref(),
        Some(other.as_str())
    );
}
