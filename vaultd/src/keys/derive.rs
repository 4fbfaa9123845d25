//! Domain-separation labels, the associated-data encoding, and HKDF derivations.
//!
//! Associated data is `label || (u32 BE length || bytes)*`: every field is length-prefixed,
//! so no two different field lists encode to the same bytes.

use hkdf::Hkdf;
use sha2::Sha256;

use crate::secret::{DataKey, KeyBytes};

/// Associated-data label of a tenant data key wrapped under the master key.
pub(crate) const DEK_WRAP: &[u8] = b"vaultd/v1/dek-wrap";
/// Associated-data label of the audit key wrapped under the master key.
pub(crate) const AUDIT_KEY_WRAP: &[u8] = b"vaultd/v1/audit-key-wrap";
/// Associated-data label of the master key wrapped by the local KMS provider.
pub(crate) const LOCAL_KMS_WRAP: &[u8] = b"vaultd/v1/local-kms-wrap";
/// Associated-data label of a stored token record.
pub(crate) const RECORD_AAD: &[u8] = b"vaultd/v1/record";
/// Associated-data label of a transit blob.
pub(crate) const TRANSIT_AAD: &[u8] = b"vaultd/v1/transit";
/// HKDF info of a stored record's key.
pub const RECORD_KEY: &[u8] = b"vaultd/v1/record-key";
/// HKDF info of a transit blob's key.
pub(crate) const TRANSIT_KEY: &[u8] = b"vaultd/v1/transit-key";

/// Encodes associated data: the label, then each field as u32 BE length and bytes.
pub(crate) fn aad(label: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let len = label.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(label);
    for field in fields {
        let n = u32::try_from(field.len())
            .expect("associated-data fields are bounded by 64 KiB bodies");
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// The one-use key of a record or blob: HKDF-SHA256(ikm = DEK, salt = the record's random salt,
/// info = `label`), 32 bytes.
pub fn record_key(dek: &DataKey, salt: &[u8; 32], label: &[u8]) -> KeyBytes {
    let hkdf = Hkdf::<Sha256>::new(Some(salt), dek.expose_secret());
    let mut okm = [0u8; 32];
    hkdf.expand(label, &mut okm)
        .expect("32 bytes is far below HKDF-SHA256's 8160-byte limit");
    KeyBytes::take(&mut okm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_fields_are_unambiguous() {
        assert_ne!(aad(b"l", &[b"ab", b"c"]), aad(b"l", &[b"a", b"bc"]));
        assert_ne!(aad(b"l", &[b"", b"x"]), aad(b"l", &[b"x", b""]));
    }

    #[test]
    fn record_keys_differ_by_label_and_salt() {
        // The exact bytes are pinned by the known-answer vectors in testdata/.
        let dek = DataKey::new(KeyBytes::from_slice(&[0x0b; 32]).expect("32 bytes"));
        let a = record_key(&dek, &[1; 32], RECORD_KEY);
        let b = record_key(&dek, &[1; 32], TRANSIT_KEY);
        let c = record_key(&dek, &[2; 32], RECORD_KEY);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), c.expose_secret());
        assert_eq!(
            a.expose_secret(),
            record_key(&dek, &[1; 32], RECORD_KEY).expose_secret()
        );
    }
}
