//! Erasure receipts (`docs/audit-log.md`, "Erasure receipts"): what a tenant destroy destroyed,
//! signed with the vault's audit key and tied to the audit entry that records it, so that a
//! data-protection officer can show the erasure with the public key alone.
//!
//! A receipt file is two lines: the receipt as JSON, exactly as signed, then
//! `{"signature":"…"}`. The signature covers [`RECEIPT_LABEL`], a zero byte and the first line's
//! bytes, so any changed byte of it fails verification.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::audit::unhex;
use crate::time::Timestamp;

/// Domain label of a receipt signature.
pub const RECEIPT_LABEL: &[u8] = b"vaultd/v1/erasure-receipt";
/// The receipt format written.
pub const RECEIPT_FORMAT: u32 = 1;

/// What a tenant's erasure destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The format, [`RECEIPT_FORMAT`]; also says what the file is.
    pub vaultd_erasure_receipt: u32,
    /// The vault.
    pub vault_id: String,
    /// The erased tenant.
    pub tenant: String,
    /// When its data keys were destroyed (the audit entry's time).
    pub destroyed_at: Timestamp,
    /// Token records it held then; each was encrypted under one of the keys below.
    pub records: u64,
    /// Every data key version destroyed, each by SHA-256 of its wrapped form as stored.
    pub key_versions: Vec<DestroyedVersion>,
    /// The chain of the audit entry (a node's, `docs/ha.md`), absent for an embedded store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The sequence number of the audit entry that records the erasure.
    pub entry_seq: u64,
    /// That entry's chain hash (hex): the same entry in a verified log or export.
    pub entry_hash: String,
}

/// One destroyed data key version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DestroyedVersion {
    /// The version.
    pub version: u32,
    /// SHA-256 of its wrapped form (hex), as backups made before the erasure hold it.
    pub wrapped_sha256: String,
}

/// The second line of a receipt file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReceiptSignature {
    /// Ed25519 over [`receipt_message`] (hex), by the audit signing key.
    pub signature: String,
}

/// What the signature covers: the label, a zero byte, the receipt line's exact bytes.
pub fn receipt_message(line: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(RECEIPT_LABEL.len() + 1 + line.len());
    m.extend_from_slice(RECEIPT_LABEL);
    m.push(0);
    m.extend_from_slice(line);
    m
}

/// Checks a receipt file against the audit public key; the receipt when it holds.
pub fn verify(file: &[u8], key: &VerifyingKey) -> Result<Receipt, String> {
    let text = file.strip_suffix(b"\n").unwrap_or(file);
    let mut lines = text.split(|b| *b == b'\n');
    let (Some(body), Some(signature), None) = (lines.next(), lines.next(), lines.next()) else {
        return Err("not a receipt file: expected two lines, the receipt and its signature".into());
    };
    let receipt: Receipt = serde_json::from_slice(body)
        .map_err(|e| format!("the receipt line is not a vaultd erasure receipt: {e}"))?;
    if receipt.vaultd_erasure_receipt != RECEIPT_FORMAT {
        return Err(format!(
            "receipt format {} is not one this vault-cli reads ({RECEIPT_FORMAT})",
            receipt.vaultd_erasure_receipt
        ));
    }
    let signature: ReceiptSignature = serde_json::from_slice(signature)
        .map_err(|_| "the second line is not the receipt's signature".to_owned())?;
    let ok = unhex::<64>(&signature.signature)
        .map(|s| Signature::from_bytes(&s))
        .is_some_and(|s| key.verify_strict(&receipt_message(body), &s).is_ok());
    if !ok {
        return Err(
            "the signature does not verify with this public key: the receipt was changed, or \
             it is another vault's"
                .into(),
        );
    }
    Ok(receipt)
}
