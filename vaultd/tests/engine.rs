//! The vault engine over a real sled directory and the local KMS provider.

mod common;

use std::time::Duration;

use vault_client::Timestamp;
use vault_client::wire::{Expect, VaultState};
use vaultd::Error;
use vaultd::ids::TenantId;
use vaultd::kms::KmsError;
use vaultd::secret::Secret;

use common::{binding, ev, k, open, open_initialized, open_with_key, put, t};

#[tokio::test]
async fn lifecycle_transitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open(dir.path()).await;
    assert_eq!(vault.state(), VaultState::Uninitialized);
    assert!(matches!(
        vault.create_tenant(&t("acme"), &mut ev()).await,
        Err(Error::Uninitialized)
    ));
    assert!(matches!(
        vault.unseal(&mut ev()).await,
        Err(Error::Uninitialized)
    ));
    assert!(matches!(
        vault.seal(&mut ev()).await,
        Err(Error::Uninitialized)
    ));

    let init = vault.init(&mut ev()).await.expect("init");
    assert_eq!(init.master_key_version, 1);
    assert_eq!(vault.state(), VaultState::Unsealed);
    assert!(matches!(
        vault.init(&mut ev()).await,
        Err(Error::AlreadyInitialized)
    ));
    vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("tenant");
    vault
        .put_token(&t("acme"), &k("tok"), &put("s3cret", "DE01"), &mut ev())
        .await
        .expect("put");

    vault.seal(&mut ev()).await.expect("seal");
    assert_eq!(vault.state(), VaultState::Sealed);
    vault.seal(&mut ev()).await.expect("sealing twice is fine");
    assert!(matches!(
        vault
            .unseal_token(&t("acme"), &k("tok"), None, &mut ev())
            .await,
        Err(Error::Sealed)
    ));
    assert!(matches!(
        vault
            .put_token(&t("acme"), &k("tok"), &put("x", "DE01"), &mut ev())
            .await,
        Err(Error::Sealed)
    ));
    assert!(matches!(
        vault
            .transit_seal(&t("acme"), &Secret::from("x"), "", &mut ev())
            .await,
        Err(Error::Sealed)
    ));
    assert!(matches!(vault.list_tenants().await, Err(Error::Sealed)));
    assert!(matches!(
        vault.init(&mut ev()).await,
        Err(Error::AlreadyInitialized)
    ));

    vault.unseal(&mut ev()).await.expect("unseal");
    vault
        .unseal(&mut ev())
        .await
        .expect("unsealing twice is fine");
    let back = vault
        .unseal_token(&t("acme"), &k("tok"), None, &mut ev())
        .await
        .expect("unseal token");
    assert_eq!(back.secret.expose_secret(), b"s3cret");
}

#[tokio::test]
async fn restart_keeps_everything_and_starts_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blob;
    {
        let vault = open_initialized(dir.path()).await;
        vault
            .create_tenant(&t("acme"), &mut ev())
            .await
            .expect("tenant");
        for i in 0..50 {
            vault
                .put_token(
                    &t("acme"),
                    &k(&format!("tok-{i:02}")),
                    &put(&format!("secret-{i}"), "DE01"),
                    &mut ev(),
                )
                .await
                .expect("put");
        }
        blob = vault
            .transit_seal(&t("acme"), &Secret::from("invoice"), "ctx", &mut ev())
            .await
            .expect("transit");
    }
    let vault = open(dir.path()).await;
    assert_eq!(vault.state(), VaultState::Sealed);
    vault.unseal(&mut ev()).await.expect("unseal");
    for i in 0..50 {
        let back = vault
            .unseal_token(&t("acme"), &k(&format!("tok-{i:02}")), None, &mut ev())
            .await
            .expect("unseal");
        assert_eq!(
            back.secret.expose_secret(),
            format!("secret-{i}").as_bytes()
        );
    }
    assert_eq!(
        vault
            .transit_unseal(&t("acme"), &blob, "ctx", &mut ev())
            .await
            .expect("transit")
            .expose_secret(),
        b"invoice"
    );
    assert_eq!(
        vault.tenant_info(&t("acme")).await.expect("info").tokens,
        50
    );
}

#[tokio::test]
async fn unseal_with_another_local_key_fails_and_stays_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        open_initialized(dir.path()).await;
    }
    // Replace the key file's contents with another key: the wrapped master key must not open.
    let key_file = dir
        .path()
        .join("keys")
        .join(format!("{}.key", common::KEY_ID));
    std::fs::write(&key_file, [7u8; 32]).expect("overwrite key");
    let vault = open(dir.path()).await;
    assert!(matches!(
        vault.unseal(&mut ev()).await,
        Err(Error::Kms(KmsError::DecryptionFailed))
    ));
    assert_eq!(vault.state(), VaultState::Sealed);
    drop(vault);
    let other = open_with_key(dir.path(), "other-key").await;
    assert!(matches!(
        other.unseal(&mut ev()).await,
        Err(Error::Kms(KmsError::DecryptionFailed))
    ));
}

#[tokio::test]
async fn compare_and_set_revisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    let (acme, tok) = (t("acme"), k("tok"));
    vault.create_tenant(&acme, &mut ev()).await.expect("tenant");

    let mut req = put("v1", "DE01");
    req.expected_revision = Some(0);
    assert_eq!(
        vault
            .put_token(&acme, &tok, &req, &mut ev())
            .await
            .expect("create")
            .revision,
        1
    );
    assert!(
        matches!(
            vault.put_token(&acme, &tok, &req, &mut ev()).await,
            Err(Error::Conflict(_))
        ),
        "0 means absent"
    );

    req.expected_revision = Some(1);
    req.secret = Secret::from("v2");
    assert_eq!(
        vault
            .put_token(&acme, &tok, &req, &mut ev())
            .await
            .expect("cas")
            .revision,
        2
    );
    req.secret = Secret::from("lost-update");
    assert!(matches!(
        vault.put_token(&acme, &tok, &req, &mut ev()).await,
        Err(Error::Conflict(_))
    ));
    let back = vault
        .unseal_token(&acme, &tok, None, &mut ev())
        .await
        .expect("unseal");
    assert_eq!(
        back.secret.expose_secret(),
        b"v2",
        "a failed CAS changes nothing"
    );
    assert_eq!(back.revision, 2);
}

#[tokio::test]
async fn concurrent_refreshes_lose_no_revision_and_counts_stay_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("tenant");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let vault = vault.clone();
            tokio::spawn(async move {
                for j in 0..10 {
                    vault
                        .put_token(
                            &t("acme"),
                            &k("shared"),
                            &put(&format!("w{i}-{j}"), "DE01"),
                            &mut ev(),
                        )
                        .await
                        .expect("put");
                    vault
                        .put_token(
                            &t("acme"),
                            &k(&format!("own-{i}")),
                            &put("x", "DE01"),
                            &mut ev(),
                        )
                        .await
                        .expect("put");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    assert_eq!(
        vault
            .unseal_token(&t("acme"), &k("shared"), None, &mut ev())
            .await
            .expect("unseal")
            .revision,
        80
    );
    let info = vault.tenant_info(&t("acme")).await.expect("info");
    assert_eq!(info.tokens, 9);
    assert_eq!(info.key_versions[0].records, 9);
}

#[tokio::test]
async fn binding_expectation_and_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    let (acme, tok) = (t("acme"), k("tok"));
    vault.create_tenant(&acme, &mut ev()).await.expect("tenant");
    let mut req = put("s", "DE01");
    req.expires_at = Some(Timestamp::now().unix() + 2);
    vault
        .put_token(&acme, &tok, &req, &mut ev())
        .await
        .expect("put");

    let right = Expect {
        account: Some("DE01".into()),
        subject: Some("user-42".into()),
        scope: None,
    };
    let back = vault
        .unseal_token(&acme, &tok, Some(&right), &mut ev())
        .await
        .expect("matching expectation");
    assert_eq!(back.binding, binding("DE01"));
    for wrong in [
        Expect {
            account: Some("DE02".into()),
            ..Expect::default()
        },
        Expect {
            subject: Some("user-43".into()),
            ..Expect::default()
        },
        Expect {
            scope: Some("payments".into()),
            ..Expect::default()
        },
    ] {
        assert!(matches!(
            vault
                .unseal_token(&acme, &tok, Some(&wrong), &mut ev())
                .await,
            Err(Error::BindingMismatch)
        ));
    }

    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(matches!(
        vault.unseal_token(&acme, &tok, None, &mut ev()).await,
        Err(Error::Expired)
    ));
    assert!(
        vault.token_meta(&acme, &tok, &mut ev()).await.is_ok(),
        "metadata of an expired token stays readable"
    );

    req.expires_at = Some(Timestamp::now().unix() - 1);
    assert!(matches!(
        vault.put_token(&acme, &tok, &req, &mut ev()).await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn tenants_are_isolated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("tenant");
    vault
        .create_tenant(&t("globex"), &mut ev())
        .await
        .expect("tenant");
    vault
        .put_token(&t("acme"), &k("tok"), &put("s", "DE01"), &mut ev())
        .await
        .expect("put");
    assert!(matches!(
        vault
            .unseal_token(&t("globex"), &k("tok"), None, &mut ev())
            .await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        vault
            .unseal_token(&t("nobody"), &k("tok"), None, &mut ev())
            .await,
        Err(Error::NotFound(_))
    ));
    let blob = vault
        .transit_seal(&t("acme"), &Secret::from("p"), "c", &mut ev())
        .await
        .expect("seal");
    assert!(matches!(
        vault
            .transit_unseal(&t("globex"), &blob, "c", &mut ev())
            .await,
        Err(Error::DecryptionFailed)
    ));
    assert!(matches!(
        vault
            .transit_unseal(&t("acme"), &blob, "other", &mut ev())
            .await,
        Err(Error::DecryptionFailed)
    ));
    assert!(matches!(
        vault
            .transit_unseal(&t("acme"), "vault:v1:!!", "c", &mut ev())
            .await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn create_is_idempotent_and_list_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    let first = vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("tenant");
    let again = vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("again");
    assert_eq!(first.created_at, again.created_at);
    for i in 0..25 {
        vault
            .put_token(
                &t("acme"),
                &k(&format!("tok-{i:02}")),
                &put("s", "DE01"),
                &mut ev(),
            )
            .await
            .expect("put");
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = vault
            .list_tokens(&t("acme"), after.as_ref(), 10, vaultd::vault::Expiry::Any)
            .await
            .expect("list");
        seen.extend(page.items.iter().map(|m| m.id.clone()));
        match page.next {
            Some(next) => after = Some(k(&next)),
            None => break,
        }
    }
    let expected: Vec<_> = (0..25).map(|i| format!("tok-{i:02}")).collect();
    assert_eq!(seen, expected);
    assert!(matches!(
        vault
            .list_tokens(&t("acme"), None, 0, vaultd::vault::Expiry::Any)
            .await,
        Err(Error::Invalid(_))
    ));
    vault
        .delete_token(&t("acme"), &k("tok-00"), &mut ev())
        .await
        .expect("delete");
    assert!(matches!(
        vault
            .delete_token(&t("acme"), &k("tok-00"), &mut ev())
            .await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        vault.tenant_info(&t("acme")).await.expect("info").tokens,
        24
    );
    assert_eq!(vault.list_tenants().await.expect("list").tenants.len(), 1);
}

#[tokio::test]
async fn crypto_shred_blob_sealed_before_destroy_does_not_open_after_recreate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    let acme = t("acme");
    vault.create_tenant(&acme, &mut ev()).await.expect("tenant");
    for i in 0..30 {
        vault
            .put_token(&acme, &k(&format!("tok-{i}")), &put("s", "DE01"), &mut ev())
            .await
            .expect("put");
    }
    let blob = vault
        .transit_seal(&acme, &Secret::from("invoice-iban"), "ctx", &mut ev())
        .await
        .expect("seal");
    let gone = vault
        .destroy_tenant(&acme, &mut ev())
        .await
        .expect("destroy");
    assert_eq!((gone.destroyed_key_versions, gone.deleted_tokens), (1, 30));
    assert!(matches!(
        vault.tenant_info(&acme).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        vault.transit_unseal(&acme, &blob, "ctx", &mut ev()).await,
        Err(Error::NotFound(_))
    ));

    let again = vault
        .create_tenant(&acme, &mut ev())
        .await
        .expect("recreate");
    assert_eq!(again.tokens, 0);
    assert!(matches!(
        vault.transit_unseal(&acme, &blob, "ctx", &mut ev()).await,
        Err(Error::DecryptionFailed)
    ));
    assert!(matches!(
        vault
            .unseal_token(&acme, &k("tok-1"), None, &mut ev())
            .await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        vault
            .list_tokens(&acme, None, 100, vaultd::vault::Expiry::Any)
            .await
            .expect("list")
            .items
            .len(),
        0
    );
}

#[tokio::test]
async fn interrupted_destroy_is_finished_at_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let vault = open_initialized(dir.path()).await;
        vault
            .create_tenant(&t("acme"), &mut ev())
            .await
            .expect("tenant");
        for i in 0..5 {
            vault
                .put_token(
                    &t("acme"),
                    &k(&format!("tok-{i}")),
                    &put("s", "DE01"),
                    &mut ev(),
                )
                .await
                .expect("put");
        }
    }
    {
        // The state a crash leaves after the first destroy step: keys gone, records still there.
        let store = vaultd::store::embedded::open_store(
            &dir.path().join("data"),
            vaultd::store::embedded::Options::default(),
        )
        .await
        .expect("store");
        let mut batch = vaultd::store::Batch::default();
        batch
            .delete(b"t/acme".to_vec())
            .delete(b"c/acme/0000000001".to_vec())
            .put(b"d/acme".to_vec(), vec![]);
        store.commit(batch).await.expect("commit");
    }
    let vault = open(dir.path()).await;
    vault.unseal(&mut ev()).await.expect("unseal");
    vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("recreate");
    assert_eq!(
        vault
            .list_tokens(&t("acme"), None, 100, vaultd::vault::Expiry::Any)
            .await
            .expect("list")
            .items
            .len(),
        0
    );
}

#[tokio::test]
async fn rejects_bad_input_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_initialized(dir.path()).await;
    vault
        .create_tenant(&t("acme"), &mut ev())
        .await
        .expect("tenant");
    let mut big = put("s", "DE01");
    big.secret = Secret::new(vec![b'x'; vaultd::vault::MAX_SECRET_LEN + 1]);
    let mut empty_account = put("s", "");
    empty_account.binding.account.clear();
    let empty_secret = put("", "DE01");
    for bad in [big, empty_account, empty_secret] {
        assert!(matches!(
            vault
                .put_token(&t("acme"), &k("tok"), &bad, &mut ev())
                .await,
            Err(Error::Invalid(_))
        ));
    }
    assert_eq!(vault.tenant_info(&t("acme")).await.expect("info").tokens, 0);
    assert!(TenantId::parse("../etc").is_err());
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn planted_secret_never_reaches_the_data_directory() {
    const PLANTED: &str = "PLANTED-SECRET-7f3a9c1e";
    const ACCOUNT: &str = "DE89370400440532013000";
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let vault = open_initialized(dir.path()).await;
        vault
            .create_tenant(&t("acme"), &mut ev())
            .await
            .expect("tenant");
        for i in 0..20 {
            vault
                .put_token(
                    &t("acme"),
                    &k(&format!("tok-{i}")),
                    &put(PLANTED, ACCOUNT),
                    &mut ev(),
                )
                .await
                .expect("put");
        }
        vault
            .transit_seal(&t("acme"), &Secret::from(PLANTED), ACCOUNT, &mut ev())
            .await
            .expect("transit");
        vault.seal(&mut ev()).await.expect("seal");
    }
    let data = dir.path().join("data");
    let all = files(&data);
    assert!(!all.is_empty());
    let mut bytes_checked = 0;
    for path in all {
        let bytes = std::fs::read(&path).expect("read");
        bytes_checked += bytes.len();
        for needle in [PLANTED.as_bytes(), ACCOUNT.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds plaintext",
                path.display()
            );
        }
    }
    assert!(bytes_checked > 0);
}
