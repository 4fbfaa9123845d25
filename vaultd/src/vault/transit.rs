//! Transit mode: the vault seals and unseals blobs that the caller keeps. A blob names its key
//! version (`vault:v{N}:…`) and is bound to the tenant and the caller's context.

use super::tenants::not_found;
use super::{Vault, layout};
use crate::audit::Event;
use crate::error::Error;
use crate::ids::TenantId;
use crate::record::{self, RecordError};
use crate::secret::Secret;
use crate::store::Op;

/// Longest transit plaintext, in bytes.
pub const MAX_PLAINTEXT_LEN: usize = 32 * 1024;
/// Longest context, in bytes.
pub const MAX_CONTEXT_LEN: usize = 1024;
/// Most items in one batch.
pub const MAX_BATCH: usize = 256;

impl Vault {
    /// Seals `plaintext` for `tenant` under its current data key, bound to `context`.
    pub async fn transit_seal(
        &self,
        tenant: &TenantId,
        plaintext: &Secret,
        context: &str,
        ev: &mut Event,
    ) -> Result<String, Error> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(Error::Invalid(format!(
                "plaintext must be at most {MAX_PLAINTEXT_LEN} bytes"
            )));
        }
        check_context(context)?;
        let keys = self.keys()?;
        let (record, _) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(|| not_found(tenant))?;
        let dek = self.dek(&keys, tenant, &record, record.current).await?;
        ev.used_key_version(record.current);
        ev.master_key_version = Some(keys.meta.master_key_version);
        ev.ops.push(Op::Add(
            layout::encryptions(tenant.as_str(), record.current),
            1,
        ));
        Ok(record::seal_transit(
            &dek,
            &keys.meta.vault_id,
            tenant.as_str(),
            record.current,
            context,
            plaintext.expose_secret(),
        )?)
    }

    /// Opens a blob sealed for `tenant` with the same `context`.
    pub async fn transit_unseal(
        &self,
        tenant: &TenantId,
        blob: &str,
        context: &str,
        ev: &mut Event,
    ) -> Result<Secret, Error> {
        check_context(context)?;
        let (version, raw) =
            record::parse_transit(blob).map_err(|e| Error::Invalid(e.to_string()))?;
        let keys = self.keys()?;
        let (record, _) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(|| not_found(tenant))?;
        ev.used_key_version(version);
        ev.master_key_version = Some(keys.meta.master_key_version);
        if version < record.min_decryption_version {
            return Err(Error::Invalid(format!(
                "key version {version} is below the tenant's minimum decryption version {}",
                record.min_decryption_version
            )));
        }
        if record.dek(version).is_none() {
            return Err(Error::DecryptionFailed);
        }
        let dek = self.dek(&keys, tenant, &record, version).await?;
        record::open_transit(
            &dek,
            &keys.meta.vault_id,
            tenant.as_str(),
            version,
            context,
            &raw,
        )
        .map_err(|e| match e {
            RecordError::Malformed(m) => Error::Invalid(m.into()),
            RecordError::DecryptionFailed => Error::DecryptionFailed,
        })
    }

    /// Re-encrypts a blob under the tenant's current version; the plaintext stays inside.
    pub async fn transit_rewrap(
        &self,
        tenant: &TenantId,
        blob: &str,
        context: &str,
        ev: &mut Event,
    ) -> Result<String, Error> {
        let plain = self.transit_unseal(tenant, blob, context, ev).await?;
        self.transit_seal(tenant, &plain, context, ev).await
    }
}

fn check_context(context: &str) -> Result<(), Error> {
    if context.len() > MAX_CONTEXT_LEN {
        return Err(Error::Invalid(format!(
            "context must be at most {MAX_CONTEXT_LEN} bytes"
        )));
    }
    Ok(())
}
