//! Erasure receipts: `tenant destroy --receipt`, `tenant receipt`, and `audit receipt verify`
//! (offline, with the public key alone).

use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::{AuditProblems, Ctx};
use crate::output::{write_fields, write_json};

/// Writes a receipt to a new file, mode 0600, durably.
pub(crate) fn write_receipt(path: &Path, receipt: &str) -> anyhow::Result<()> {
    crate::file::write_new(path, receipt.as_bytes())
}

/// `tenant receipt T [--out FILE]`.
pub(crate) async fn fetch(ctx: &Ctx, tenant: &str, out: Option<&Path>) -> anyhow::Result<()> {
    let receipt = ctx
        .client
        .erasure_receipt(tenant)
        .await
        .with_context(|| format!("cannot fetch the erasure receipt of tenant {tenant}"))?;
    match out {
        Some(path) => {
            write_receipt(path, &receipt)?;
            eprintln!(
                "vault-cli: receipt written to {}; check it with `vault-cli audit receipt verify {} --pubkey KEYFILE`",
                path.display(),
                path.display()
            );
        }
        None => ctx.out().write_all(receipt.as_bytes())?,
    }
    Ok(())
}

/// `audit receipt verify FILE --pubkey KEYFILE`: exit 8 when it does not verify.
pub(crate) fn verify(ctx: &Ctx, file: &Path, keyfile: &Path) -> anyhow::Result<()> {
    let key = super::audit::read_public_key(keyfile)?;
    let bytes = fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut out = ctx.out();
    match vault_client::receipt::verify(&bytes, &key) {
        Ok(receipt) => {
            if ctx.json {
                return Ok(write_json(&mut out, &receipt)?);
            }
            let keys: Vec<String> = receipt
                .key_versions
                .iter()
                .map(|k| format!("v{} (wrapped sha256 {})", k.version, k.wrapped_sha256))
                .collect();
            write_fields(
                &mut out,
                &[
                    ("receipt", "verified".to_owned()),
                    ("vault id", receipt.vault_id),
                    ("tenant", receipt.tenant),
                    ("destroyed at", receipt.destroyed_at.to_string()),
                    ("records", receipt.records.to_string()),
                    ("key versions", keys.join(", ")),
                    (
                        "audit entry",
                        format!("{}:{}", receipt.entry_seq, receipt.entry_hash),
                    ),
                ],
            )?;
            Ok(())
        }
        Err(problem) => {
            if ctx.json {
                write_json(
                    &mut out,
                    &serde_json::json!({"verified": false, "problem": problem}),
                )?;
            } else {
                write_fields(
                    &mut out,
                    &[("receipt", "NOT VERIFIED".to_owned()), ("problem", problem)],
                )?;
            }
            Err(AuditProblems(1).into())
        }
    }
}
