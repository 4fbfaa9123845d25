//! Opens a real vault: sled in a temp dir and the local KMS provider.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;

use vault_client::wire::Binding;
use vaultd::Vault;
use vaultd::kms::local::LocalKms;
use vaultd::secret::Secret;
use vaultd::store::embedded;
use vaultd::vault::PutToken;

pub const KEY_ID: &str = "local-1";

pub async fn open(dir: &Path) -> Vault {
    open_with_key(dir, KEY_ID).await
}

pub async fn open_with_key(dir: &Path, key_id: &str) -> Vault {
    let kms = LocalKms::open(&dir.join("keys"), key_id, true).expect("local kms");
    let options = embedded::Options {
        cache_bytes: 16 << 20,
        segment_bytes: 4 << 20,
        ..embedded::Options::default()
    };
    let store = embedded::open_store(&dir.join("data"), options)
        .await
        .expect("store");
    Vault::open(Arc::new(store), Arc::new(kms))
        .await
        .expect("open vault")
}

pub async fn open_initialized(dir: &Path) -> Vault {
    let vault = open(dir).await;
    vault
        .init(&mut vaultd::audit::Event::system("test"))
        .await
        .expect("init");
    vault
}

pub fn binding(account: &str) -> Binding {
    Binding {
        subject: "user-42".into(),
        bank: "example-bank".into(),
        account: account.into(),
        scope: "accounts".into(),
    }
}

pub fn put(secret: &str, account: &str) -> PutToken {
    PutToken {
        secret: Secret::from(secret),
        binding: binding(account),
        expires_at: None,
        expected_revision: None,
        lease: None,
        decoy: false,
    }
}

/// An audit event for calls made by the tests.
pub fn ev() -> vaultd::audit::Event {
    vaultd::audit::Event::system("test")
}

pub fn t(name: &str) -> vaultd::ids::TenantId {
    vaultd::ids::TenantId::parse(name).expect("tenant id")
}

pub fn k(name: &str) -> vaultd::ids::TokenId {
    vaultd::ids::TokenId::parse(name).expect("token id")
}
