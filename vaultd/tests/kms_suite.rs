//! One test suite, run unchanged against every KMS provider (`local`, and `aws` against moto).

mod moto;

use vaultd::kms::aws::AwsKms;
use vaultd::kms::local::LocalKms;
use vaultd::kms::{EncryptionContext, KmsError, KmsProvider};

/// A well-formed key id (for both providers) that names no key.
const UNKNOWN_KEY_ID: &str = "00000000-0000-4000-8000-000000000000";

/// Exercises `provider`, whose configured key wraps new master keys; `other_key_id` is a second
/// existing key (the target of a KMS key migration).
async fn suite(provider: &dyn KmsProvider, other_key_id: &str) {
    let calls_before = provider.calls();
    let context = EncryptionContext::master_key("suite-vault", 1);

    // generate → unwrap round trip
    let (master, wrapped) = provider
        .generate_master_key(provider.key_id(), &context)
        .await
        .expect("generate");
    assert!(!wrapped.key_id.is_empty());
    assert!(
        !contains(&wrapped.ciphertext, master.expose_secret()),
        "the wrapped form must not contain the key"
    );
    let back = provider
        .unwrap_master_key(&wrapped, &context)
        .await
        .expect("unwrap");
    assert_eq!(back.expose_secret(), master.expose_secret());

    // another vault id or another master key version: the context differs
    for wrong in [
        EncryptionContext::master_key("other-vault", 1),
        EncryptionContext::master_key("suite-vault", 2),
    ] {
        assert!(
            matches!(
                provider.unwrap_master_key(&wrapped, &wrong).await,
                Err(KmsError::DecryptionFailed)
            ),
            "wrong context must fail"
        );
    }

    // a byte flipped in the authenticated part of the wrapped key (the tail: an AWS KMS
    // ciphertext blob starts with a header naming the key, and a flip there names no key)
    for position in [wrapped.ciphertext.len() - 1, wrapped.ciphertext.len() - 20] {
        let mut tampered = wrapped.clone();
        tampered.ciphertext[position] ^= 0x01;
        assert!(
            matches!(
                provider.unwrap_master_key(&tampered, &context).await,
                Err(KmsError::DecryptionFailed)
            ),
            "flipped byte at {position} must fail"
        );
    }

    // unknown key id
    let err = provider
        .rewrap_master_key(&wrapped, &context, UNKNOWN_KEY_ID)
        .await
        .expect_err("rewrap to an unknown key must fail");
    assert!(matches!(err, KmsError::KeyNotFound(_)), "{err:?}");

    // rewrap to another key (KMS key migration), then unwrap
    let moved = provider
        .rewrap_master_key(&wrapped, &context, other_key_id)
        .await
        .expect("rewrap");
    assert_ne!(moved.key_id, wrapped.key_id);
    assert!(moved.key_id.contains(other_key_id), "{}", moved.key_id);
    assert_ne!(moved.ciphertext, wrapped.ciphertext);
    let back = provider
        .unwrap_master_key(&moved, &context)
        .await
        .expect("unwrap after rewrap");
    assert_eq!(back.expose_secret(), master.expose_secret());
    assert!(matches!(
        provider
            .unwrap_master_key(&moved, &EncryptionContext::master_key("other-vault", 1))
            .await,
        Err(KmsError::DecryptionFailed)
    ));

    // every operation above was one KMS call: generate 1, unwrap 1, wrong context 2,
    // flipped 2, unknown key 1, rewrap 1, unwrap 1, wrong context 1
    assert_eq!(provider.calls() - calls_before, 10);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn local_provider_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    let kms = LocalKms::open(&keys, "suite-1", true).expect("local kms");
    kms.create_key("suite-2").expect("second key");
    suite(&kms, "suite-2").await;
}

#[tokio::test]
async fn aws_provider_passes_the_suite_against_moto() {
    let moto = moto::Moto::start();
    let key = moto.create_key().await;
    let other = moto.create_key().await;
    let kms = AwsKms::new(&moto.sdk_config(), key.parse().expect("key id"));
    suite(&kms, &other).await;
}
