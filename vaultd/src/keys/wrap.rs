//! Wrapping of data keys and the audit key under the master key.
//!
//! A wrapped key is `nonce (12) || AES-256-GCM(MK, key) (32) || tag (16)`: 60 bytes. The
//! associated data names the slot (vault id, tenant or purpose, versions), so a wrapped key
//! moved to any other slot fails to unwrap.

use super::aead::{self, DecryptionFailed, NONCE_LEN, TAG_LEN};
use super::derive::{AUDIT_KEY_WRAP, DEK_WRAP, aad};
use crate::secret::{AuditKey, DataKey, KeyBytes, MasterKey};

/// Length of a wrapped 256-bit key.
pub(crate) const WRAPPED_LEN: usize = NONCE_LEN + 32 + TAG_LEN;

/// Where a data key belongs: the associated data of its wrap.
pub struct DekSlot<'a> {
    /// Vault id.
    pub vault_id: &'a str,
    /// Tenant id.
    pub tenant: &'a str,
    /// Version of the data key.
    pub dek_version: u32,
    /// Version of the master key that wraps it.
    pub mk_version: u32,
}

impl DekSlot<'_> {
    fn aad(&self) -> Vec<u8> {
        aad(
            DEK_WRAP,
            &[
                self.vault_id.as_bytes(),
                self.tenant.as_bytes(),
                &self.dek_version.to_be_bytes(),
                &self.mk_version.to_be_bytes(),
            ],
        )
    }
}

/// The two audit keys, each wrapped in its own slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditPurpose {
    /// HMAC of personal data.
    Hmac,
    /// Ed25519 seed of the chain-head signatures.
    Signing,
}

fn audit_aad(vault_id: &str, purpose: AuditPurpose, mk_version: u32) -> Vec<u8> {
    let purpose: &[u8] = match purpose {
        AuditPurpose::Hmac => b"hmac",
        AuditPurpose::Signing => b"signing",
    };
    aad(
        AUDIT_KEY_WRAP,
        &[vault_id.as_bytes(), purpose, &mk_version.to_be_bytes()],
    )
}

fn wrap(mk: &MasterKey, key: &KeyBytes, aad: &[u8]) -> Result<Vec<u8>, getrandom::Error> {
    let nonce = aead::random_nonce()?;
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&aead::seal(
        mk.expose_secret(),
        &nonce,
        aad,
        key.expose_secret(),
    ));
    Ok(out)
}

fn unwrap(mk: &MasterKey, wrapped: &[u8], aad: &[u8]) -> Result<KeyBytes, DecryptionFailed> {
    if wrapped.len() != WRAPPED_LEN {
        return Err(DecryptionFailed);
    }
    let (nonce, ct) = wrapped.split_at(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| DecryptionFailed)?;
    let plain = aead::open(mk.expose_secret(), nonce, aad, ct)?;
    KeyBytes::from_slice(&plain).ok_or(DecryptionFailed)
}

/// Wraps a data key for its slot.
pub fn wrap_dek(
    mk: &MasterKey,
    dek: &DataKey,
    slot: &DekSlot<'_>,
) -> Result<Vec<u8>, getrandom::Error> {
    let copy = KeyBytes::from_slice(dek.expose_secret()).expect("a data key is 32 bytes");
    wrap(mk, &copy, &slot.aad())
}

/// Unwraps a data key; it exists only if the wrap authenticated for exactly this slot.
pub fn unwrap_dek(
    mk: &MasterKey,
    wrapped: &[u8],
    slot: &DekSlot<'_>,
) -> Result<DataKey, DecryptionFailed> {
    unwrap(mk, wrapped, &slot.aad()).map(DataKey::new)
}

/// Wraps an audit key under master key version `mk_version`.
pub(crate) fn wrap_audit_key(
    mk: &MasterKey,
    key: &AuditKey,
    vault_id: &str,
    purpose: AuditPurpose,
    mk_version: u32,
) -> Result<Vec<u8>, getrandom::Error> {
    let copy = KeyBytes::from_slice(key.expose_secret()).expect("an audit key is 32 bytes");
    wrap(mk, &copy, &audit_aad(vault_id, purpose, mk_version))
}

/// Unwraps an audit key; this is also the check that an unwrapped master key is the right one.
pub(crate) fn unwrap_audit_key(
    mk: &MasterKey,
    wrapped: &[u8],
    vault_id: &str,
    purpose: AuditPurpose,
    mk_version: u32,
) -> Result<AuditKey, DecryptionFailed> {
    unwrap(mk, wrapped, &audit_aad(vault_id, purpose, mk_version)).map(AuditKey::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: [u8; 32]) -> KeyBytes {
        KeyBytes::from_slice(&b).expect("32 bytes")
    }

    proptest! {
        #[test]
        fn dek_wrap_round_trips_and_binds_its_slot(
            mk: [u8; 32], dek: [u8; 32], tenant in "[a-z]{1,8}", v in 1u32..5, m in 1u32..5,
        ) {
            let mk = MasterKey::new(key(mk));
            let slot = DekSlot { vault_id: "v1", tenant: &tenant, dek_version: v, mk_version: m };
            let wrapped = wrap_dek(&mk, &DataKey::new(key(dek)), &slot).expect("rng");
            prop_assert_eq!(wrapped.len(), WRAPPED_LEN);
            let back = unwrap_dek(&mk, &wrapped, &slot).expect("authentic");
            prop_assert_eq!(back.expose_secret(), &dek);
            let other_tenant = format!("{tenant}x");
            for moved in [
                DekSlot { tenant: &other_tenant, ..slot },
                DekSlot { dek_version: v + 1, ..slot },
                DekSlot { mk_version: m + 1, ..slot },
                DekSlot { vault_id: "v2", ..slot },
            ] {
                prop_assert!(unwrap_dek(&mk, &wrapped, &moved).is_err());
            }
        }

        #[test]
        fn audit_key_wrap_round_trips(mk: [u8; 32], k: [u8; 32], m in 1u32..9) {
            let mk = MasterKey::new(key(mk));
            let wrapped = wrap_audit_key(&mk, &AuditKey::new(key(k)), "vault", AuditPurpose::Hmac, m).expect("rng");
            let back = unwrap_audit_key(&mk, &wrapped, "vault", AuditPurpose::Hmac, m).expect("authentic");
            prop_assert_eq!(back.expose_secret(), &k);
            prop_assert!(unwrap_audit_key(&mk, &wrapped, "vault", AuditPurpose::Hmac, m + 1).is_err());
            prop_assert!(unwrap_audit_key(&mk, &wrapped, "vault", AuditPurpose::Signing, m).is_err());
        }
    }
}
