//! Break-glass recovery (`docs/break-glass.md`): a recovery identity whose public half keeps an
//! envelope of the current master key, and whose secret half exists only as Shamir shares, each
//! encrypted to one holder's age recipient. K shares open a sealed vault without the KMS.

use std::str::FromStr as _;

use age::secrecy::ExposeSecret as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use vault_client::Secret;
use vault_client::Timestamp;
use vault_client::audit::Outcome;
use vault_client::wire::{
    RecoverProgress, RecoveryCreate, RecoveryShare, RecoveryShares, VaultState,
};
use zeroize::Zeroizing;

use super::layout::{self, Bytes, VaultMeta};
use super::{State, Vault};
use crate::audit::Event;
use crate::error::Error;
use crate::secret::{KeyBytes, MasterKey};
use crate::store::{Batch, StoreError};

/// The current record format.
const FORMAT: u32 = 1;
/// The most shares one set may have.
pub const MAX_SHARES: usize = 16;
/// What a share line starts with; the version names the line's form and the digest's.
const SHARE_PREFIX: &str = "vaultd-share-v1";
/// What the master key envelope's plaintext starts with.
const ENVELOPE_PREFIX: &[u8] = b"vaultd-recovery-master-v1";

/// The recovery set, stored in clear: every field is public or a one-way digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoveryRecord {
    format: u32,
    created_at: i64,
    threshold: u8,
    shares: Vec<ShareSlot>,
    /// The recovery identity's public half (`age1…`): the combined shares must be its identity.
    recipient: String,
    master: RecoveryMaster,
}

/// Who holds one share, and what the share must hash to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareSlot {
    index: u8,
    holder: String,
    digest: Bytes,
}

/// The current master key, age-encrypted to the recovery recipient.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryMaster {
    mk_version: u32,
    envelope: Bytes,
}

/// Shares by index, their bytes wiped on drop.
type Shares = Vec<(u8, Zeroizing<Vec<u8>>)>;

/// Shares accepted while sealed, until K combine or the process ends.
#[derive(Default)]
pub(super) struct Pending {
    shares: Shares,
}

impl Vault {
    /// Creates (or replaces) the recovery set: a new recovery identity, the master key
    /// encrypted to it, and its secret split into one share per recipient, each encrypted to
    /// that recipient. Earlier shares stop counting: their digests are gone.
    pub async fn create_recovery(
        &self,
        req: &RecoveryCreate,
        ev: &mut Event,
    ) -> Result<RecoveryShares, Error> {
        let holders = parse_recipients(&req.recipients)?;
        let n = holders.len();
        let k = req.threshold;
        if k < 2 || usize::from(k) > n {
            return Err(Error::invalid(format!(
                "threshold must be 2-{n} (the number of recipients)"
            )));
        }
        let _lifecycle = self.inner.lifecycle.lock().await;
        let keys = self.keys()?;
        let meta = &keys.meta;
        let meta_bytes = self.store().get(layout::META).await?;
        let previous = self.store().get(layout::RECOVERY).await?;

        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public();
        let secret = identity.to_string();
        drop(identity);
        let parts = Zeroizing::new(
            vsss_rs::Gf256::split_bytes(
                usize::from(k),
                n,
                secret.expose_secret().as_bytes(),
                rand_core::UnwrapErr(getrandom::SysRng),
            )
            .map_err(|e| Error::invalid(format!("cannot split the recovery key: {e}")))?,
        );
        drop(secret);
        let mut slots = Vec::with_capacity(n);
        let mut shares = Vec::with_capacity(n);
        for (part, holder) in parts.iter().zip(&holders) {
            let index = part[0];
            let bytes = &part[1..];
            let line = Zeroizing::new(share_line(&meta.vault_id, index, bytes));
            let share = age::encrypt_and_armor(holder, line.as_bytes())
                .map_err(|e| Error::invalid(format!("cannot encrypt share {index}: {e}")))?;
            slots.push(ShareSlot {
                index,
                holder: holder.to_string(),
                digest: Bytes(share_digest(&meta.vault_id, index, bytes).to_vec()),
            });
            shares.push(RecoveryShare {
                index,
                holder: holder.to_string(),
                share,
            });
        }
        let record = RecoveryRecord {
            format: FORMAT,
            created_at: Timestamp::now().unix(),
            threshold: k,
            recipient: recipient.to_string(),
            master: seal_master(
                &recipient,
                &meta.vault_id,
                meta.master_key_version,
                &keys.master,
            )?,
            shares: slots,
        };
        let holders_text: Vec<String> = holders.iter().map(ToString::to_string).collect();
        ev.master_key_version = Some(meta.master_key_version);
        ev.key_event()
            .detail
            .insert("event".into(), "recovery_shares_created".into());
        ev.detail.insert("threshold".into(), k.to_string());
        ev.detail.insert("shares".into(), n.to_string());
        ev.detail.insert("holders".into(), holders_text.join(","));
        ev.detail
            .insert("replaced".into(), previous.is_some().to_string());
        let mut batch = Batch::default();
        // The master key version the envelope holds must still be the current one.
        batch
            .check(layout::META.to_vec(), meta_bytes)
            .check(layout::RECOVERY.to_vec(), previous)
            .put(layout::RECOVERY.to_vec(), layout::encode(&record))
            .log(ev.entry(Outcome::Ok, None));
        match self.commit(batch).await {
            Ok(()) => ev.mark_recorded(),
            Err(Error::Store(StoreError::Conflict)) => {
                return Err(Error::Conflict(
                    "the vault changed meanwhile (a master key rotation or another recovery set); nothing was changed, retry".into(),
                ));
            }
            Err(e) => return Err(e),
        }
        tracing::info!(threshold = k, shares = n, "recovery shares created");
        Ok(RecoveryShares {
            vault_id: meta.vault_id.clone(),
            threshold: k,
            shares,
        })
    }

    /// Takes one recovery share while sealed. At the threshold, the shares are combined, the
    /// master key is decrypted from its envelope and the vault unseals, with no KMS call.
    pub async fn recover(&self, share: &Secret, ev: &mut Event) -> Result<RecoverProgress, Error> {
        let _lifecycle = self.inner.lifecycle.lock().await;
        let meta = match &*self.read_state() {
            State::Uninitialized => return Err(Error::Uninitialized),
            State::Unsealed(_) => {
                return Err(Error::Conflict(
                    "the vault is unsealed; recovery shares are taken only while it is sealed"
                        .into(),
                ));
            }
            State::Sealed(meta) => meta.clone(),
        };
        let record: RecoveryRecord =
            layout::decode(
                &self.store().get(layout::RECOVERY).await?.ok_or_else(|| {
                    Error::ShareRefused("this vault has no recovery shares".into())
                })?,
                "recovery record",
            )?;
        ev.master_key_version = Some(meta.master_key_version);
        let (index, bytes) = parse_share(share, &meta.vault_id)?;
        ev.detail.insert("share".into(), index.to_string());
        let slot = record
            .shares
            .iter()
            .find(|s| s.index == index)
            .ok_or_else(|| {
                Error::ShareRefused(format!(
                    "share {index} is not in this vault's recovery set (it has shares 1-{})",
                    record.shares.len()
                ))
            })?;
        if !matches_slot(slot, &meta.vault_id, &bytes) {
            return Err(Error::ShareRefused(format!(
                "share {index} does not match the one issued: it was changed, or it is from an earlier recovery set"
            )));
        }
        let (accepted, taken) = self.pend_share(&record, &meta.vault_id, index, bytes)?;
        ev.detail.insert("accepted".into(), accepted.to_string());
        ev.detail
            .insert("threshold".into(), record.threshold.to_string());
        let Some(taken) = taken else {
            tracing::warn!(
                share = index,
                accepted,
                threshold = record.threshold,
                "recovery share accepted"
            );
            return Ok(RecoverProgress {
                state: VaultState::Sealed,
                accepted,
                threshold: record.threshold,
            });
        };
        let master = open_master(&record, &meta, &taken)?;
        drop(taken);
        ev.detail.insert("unsealed_by".into(), "recovery".into());
        self.unseal_with(meta, master).await?;
        tracing::warn!(
            "vault unsealed with recovery shares, without the KMS; run `vault-cli keys kms migrate NEW_KEY`"
        );
        Ok(RecoverProgress {
            state: VaultState::Unsealed,
            accepted,
            threshold: record.threshold,
        })
    }

    /// Adds a checked share to the pending set: the count, and at the threshold the shares,
    /// taken out (a failure to combine them starts the count afresh).
    fn pend_share(
        &self,
        record: &RecoveryRecord,
        vault_id: &str,
        index: u8,
        bytes: Zeroizing<Vec<u8>>,
    ) -> Result<(u8, Option<Shares>), Error> {
        let mut pending = self
            .inner
            .recovery
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Shares of a set replaced meanwhile (by another node) no longer count.
        pending.shares.retain(|(i, b)| {
            record
                .shares
                .iter()
                .any(|s| s.index == *i && matches_slot(s, vault_id, b))
        });
        if pending.shares.iter().any(|(i, _)| *i == index) {
            return Err(Error::ShareRefused(format!(
                "share {index} was already accepted ({} of {})",
                pending.shares.len(),
                record.threshold
            )));
        }
        pending.shares.push((index, bytes));
        let accepted = u8::try_from(pending.shares.len()).unwrap_or(u8::MAX);
        let taken = (accepted >= record.threshold).then(|| std::mem::take(&mut pending.shares));
        Ok((accepted, taken))
    }

    /// At a master key rotation: the new version's envelope, in the rotation's own write, so
    /// that recovery never lags behind the master key.
    pub(super) async fn reseal_recovery(
        &self,
        batch: &mut Batch,
        vault_id: &str,
        version: u32,
        master: &MasterKey,
    ) -> Result<(), Error> {
        let Some(bytes) = self.store().get(layout::RECOVERY).await? else {
            return Ok(());
        };
        let mut record: RecoveryRecord = layout::decode(&bytes, "recovery record")?;
        let recipient = age::x25519::Recipient::from_str(&record.recipient)
            .map_err(|_| StoreError::Corrupt("recovery recipient".into()))?;
        record.master = seal_master(&recipient, vault_id, version, master)?;
        batch
            .check(layout::RECOVERY.to_vec(), Some(bytes))
            .put(layout::RECOVERY.to_vec(), layout::encode(&record));
        Ok(())
    }
}

/// Parses and de-duplicates the holders' recipients.
fn parse_recipients(recipients: &[String]) -> Result<Vec<age::x25519::Recipient>, Error> {
    if recipients.len() < 2 || recipients.len() > MAX_SHARES {
        return Err(Error::invalid(format!(
            "recipients: give 2-{MAX_SHARES} age recipients, one per share holder"
        )));
    }
    let mut parsed: Vec<age::x25519::Recipient> = Vec::with_capacity(recipients.len());
    for (i, text) in recipients.iter().enumerate() {
        let recipient = age::x25519::Recipient::from_str(text.trim()).map_err(|e| {
            Error::invalid(format!(
                "recipient {}: not an age X25519 recipient (age1…): {e}",
                i + 1
            ))
        })?;
        if parsed
            .iter()
            .any(|p| p.to_string() == recipient.to_string())
        {
            return Err(Error::invalid(format!(
                "recipient {} is given twice: each share needs its own holder",
                i + 1
            )));
        }
        parsed.push(recipient);
    }
    Ok(parsed)
}

/// `vaultd-share-v1:<vault id>:<index>:<base64>`.
fn share_line(vault_id: &str, index: u8, bytes: &[u8]) -> String {
    format!(
        "{SHARE_PREFIX}:{vault_id}:{index}:{}",
        STANDARD.encode(bytes)
    )
}

/// Its index and bytes, once its form and vault id are right.
fn parse_share(share: &Secret, vault_id: &str) -> Result<(u8, Zeroizing<Vec<u8>>), Error> {
    let refused = |why: &str| Error::ShareRefused(why.to_owned());
    let text = share
        .expose_str()
        .ok_or_else(|| refused("a share is one line of text"))?
        .trim();
    let mut fields = text.split(':');
    let (Some(SHARE_PREFIX), Some(vault), Some(index), Some(body), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(refused(
            "not a vaultd recovery share (a decrypted share is one line, vaultd-share-v1:VAULT:N:DATA)",
        ));
    };
    if vault != vault_id {
        return Err(Error::ShareRefused(format!(
            "the share is for vault {vault}, this is vault {vault_id}"
        )));
    }
    let index: u8 = index
        .parse()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| refused("the share's number is not 1-255"))?;
    let bytes = Zeroizing::new(
        STANDARD
            .decode(body)
            .map_err(|_| refused("the share's data is not base64: it was changed"))?,
    );
    Ok((index, bytes))
}

/// SHA-256("vaultd-share-v1" ‖ vault id ‖ index ‖ share bytes), each part length-prefixed.
fn share_digest(vault_id: &str, index: u8, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        SHARE_PREFIX.as_bytes(),
        vault_id.as_bytes(),
        &[index],
        bytes,
    ] {
        h.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

fn matches_slot(slot: &ShareSlot, vault_id: &str, bytes: &[u8]) -> bool {
    let digest = share_digest(vault_id, slot.index, bytes);
    bool::from(digest.ct_eq(slot.digest.0.as_slice()))
}

/// The envelope's plaintext without the key: prefix, vault id, version, each length-prefixed.
fn envelope_header(vault_id: &str, version: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [ENVELOPE_PREFIX, vault_id.as_bytes(), &version.to_be_bytes()] {
        out.extend(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend(part);
    }
    out
}

fn seal_master(
    recipient: &age::x25519::Recipient,
    vault_id: &str,
    version: u32,
    master: &MasterKey,
) -> Result<RecoveryMaster, Error> {
    let mut plain = Zeroizing::new(envelope_header(vault_id, version));
    plain.extend(master.expose_secret());
    let envelope = age::encrypt(recipient, &plain)
        .map_err(|e| StoreError::Backend(format!("recovery envelope: {e}")))?;
    Ok(RecoveryMaster {
        mk_version: version,
        envelope: Bytes(envelope),
    })
}

/// Combines K shares into the recovery identity, checks it against the record, and decrypts
/// the current master key from its envelope.
fn open_master(
    record: &RecoveryRecord,
    meta: &VaultMeta,
    shares: &Shares,
) -> Result<MasterKey, Error> {
    let parts = Zeroizing::new(
        shares
            .iter()
            .map(|(i, b)| {
                let mut part = Vec::with_capacity(b.len() + 1);
                part.push(*i);
                part.extend_from_slice(b);
                part
            })
            .collect::<Vec<_>>(),
    );
    let combined = Zeroizing::new(
        vsss_rs::Gf256::combine_bytes(parts.as_slice())
            .map_err(|e| Error::ShareRefused(format!("the shares do not combine: {e}")))?,
    );
    let wrong = || {
        Error::ShareRefused(
            "the shares combine into another key than this vault's recovery key".into(),
        )
    };
    let text = std::str::from_utf8(&combined).map_err(|_| wrong())?;
    let identity = age::x25519::Identity::from_str(text).map_err(|_| wrong())?;
    if identity.to_public().to_string() != record.recipient {
        return Err(wrong());
    }
    let corrupt = |what: &str| Error::Store(StoreError::Corrupt(what.into()));
    if record.master.mk_version != meta.master_key_version {
        return Err(corrupt(
            "the recovery envelope holds another master key version than the current one",
        ));
    }
    let plain = Zeroizing::new(
        age::decrypt(&identity, &record.master.envelope.0)
            .map_err(|_| corrupt("the recovery envelope does not open under the recovery key"))?,
    );
    let header = envelope_header(&meta.vault_id, meta.master_key_version);
    let key = plain
        .strip_prefix(header.as_slice())
        .and_then(KeyBytes::from_slice)
        .ok_or_else(|| corrupt("the recovery envelope is for another vault or version"))?;
    Ok(MasterKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAULT: &str = "00112233445566778899aabbccddeeff";

    fn split(k: u8, n: usize) -> (age::x25519::Identity, Vec<Vec<u8>>) {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        let parts = vsss_rs::Gf256::split_bytes(
            usize::from(k),
            n,
            secret.expose_secret().as_bytes(),
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .expect("split");
        (identity, parts)
    }

    fn record_for(identity: &age::x25519::Identity, parts: &[Vec<u8>], k: u8) -> RecoveryRecord {
        let master = MasterKey::new(KeyBytes::from_slice(&[7; 32]).expect("32"));
        RecoveryRecord {
            format: FORMAT,
            created_at: 0,
            threshold: k,
            shares: parts
                .iter()
                .map(|p| ShareSlot {
                    index: p[0],
                    holder: String::new(),
                    digest: Bytes(share_digest(VAULT, p[0], &p[1..]).to_vec()),
                })
                .collect(),
            recipient: identity.to_public().to_string(),
            master: seal_master(&identity.to_public(), VAULT, 3, &master).expect("seal"),
        }
    }

    fn meta(version: u32) -> VaultMeta {
        VaultMeta {
            format: 1,
            vault_id: VAULT.into(),
            created_at: 0,
            kms_provider: "local".into(),
            master_key_version: version,
        }
    }

    fn taken(parts: &[Vec<u8>]) -> Shares {
        parts
            .iter()
            .map(|p| (p[0], Zeroizing::new(p[1..].to_vec())))
            .collect()
    }

    #[test]
    fn any_k_shares_open_the_master_key_and_k_minus_1_do_not() {
        let (identity, parts) = split(3, 5);
        let record = record_for(&identity, &parts, 3);
        for pick in [[0, 1, 2], [0, 2, 4], [4, 3, 1]] {
            let chosen: Vec<Vec<u8>> = pick.iter().map(|&i| parts[i].clone()).collect();
            let master = open_master(&record, &meta(3), &taken(&chosen)).expect("open");
            assert_eq!(master.expose_secret(), &[7; 32]);
        }
        let two = taken(&parts[..2]);
        let err = open_master(&record, &meta(3), &two).expect_err("refused");
        assert!(matches!(err, Error::ShareRefused(_)), "{err:?}");
        // an envelope for another master key version is refused after the shares check out
        assert!(open_master(&record, &meta(4), &taken(&parts[..3])).is_err());
    }

    #[test]
    fn a_share_line_names_its_vault_and_its_digest_catches_a_changed_byte() {
        let (identity, parts) = split(2, 3);
        let record = record_for(&identity, &parts, 2);
        let line = share_line(VAULT, parts[1][0], &parts[1][1..]);
        let (index, bytes) = parse_share(&Secret::from(line.as_str()), VAULT).expect("parse");
        assert_eq!(index, 2);
        assert!(matches_slot(&record.shares[1], VAULT, &bytes));
        let mut changed = bytes.to_vec();
        changed[5] ^= 1;
        assert!(!matches_slot(&record.shares[1], VAULT, &changed));
        let other = "ffeeddccbbaa99887766554433221100";
        let err = parse_share(&Secret::from(line.as_str()), other).expect_err("other vault");
        assert!(err.to_string().contains("is for vault"), "{err}");
        for bad in [
            "",
            "vaultd-share-v1:x",
            "age-encryption.org/v1",
            "vaultd-share-v1:a:0:AA",
        ] {
            assert!(parse_share(&Secret::from(bad), "a").is_err(), "{bad}");
        }
    }

    #[test]
    fn recipients_are_checked_and_unique() {
        let a = age::x25519::Identity::generate().to_public().to_string();
        let b = age::x25519::Identity::generate().to_public().to_string();
        assert_eq!(parse_recipients(&[a.clone(), b]).expect("ok").len(), 2);
        assert!(parse_recipients(std::slice::from_ref(&a)).is_err());
        assert!(parse_recipients(&[a.clone(), a.clone()]).is_err());
        assert!(parse_recipients(&[a, "age1nope".into()]).is_err());
    }
}
