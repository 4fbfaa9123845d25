//! Archiving the oldest part of a chain (`docs/audit-log.md`, "Archiving"): a signed
//! checkpoint where the live chain now starts, key events kept for the key history, and the
//! storage given back by the store.

use vault_client::audit::{CheckpointLine, Outcome, Verifier, public_key, unhex};
use vault_client::wire::{AuditArchiveRequest, AuditArchived};

use super::{Vault, layout};
use crate::audit::{Event, KEY_EVENTS, chain};
use crate::error::Error;
use crate::store::{Batch, StoreError};

impl Vault {
    /// The checkpoint `chain` starts at, if part of it was archived: the line as stored.
    pub(crate) async fn audit_checkpoint(
        &self,
        chain: Option<&str>,
    ) -> Result<Option<(u64, Vec<u8>)>, Error> {
        let Some(bytes) = self.store().get(&layout::audit_checkpoint(chain)).await? else {
            return Ok(None);
        };
        let line: CheckpointLine = serde_json::from_slice(&bytes)
            .map_err(|_| StoreError::Corrupt("audit checkpoint".into()))?;
        Ok(Some((line.checkpoint.through, bytes)))
    }

    /// The last archived entry of `chain` (0: none was).
    pub(crate) async fn archived_through(&self, chain: Option<&str>) -> Result<u64, Error> {
        Ok(self
            .audit_checkpoint(chain)
            .await?
            .map_or(0, |(through, _)| through))
    }

    /// Archives `chain`'s entries up to `req.through`, after verifying them: writes the signed
    /// checkpoint, copies the key events up to it into their index, records the archive, and
    /// has the store give back their storage.
    pub async fn audit_archive(
        &self,
        req: &AuditArchiveRequest,
        ev: &mut Event,
    ) -> Result<AuditArchived, Error> {
        let signer = self.audit_signer()?;
        let (hash, digest) = match (
            unhex::<32>(&req.last_hash),
            unhex::<32>(&req.archive_sha256),
        ) {
            (Some(hash), Some(digest)) => (hash, digest),
            _ => {
                return Err(Error::invalid(
                    "last_hash and archive_sha256 must be 64 hex digits each",
                ));
            }
        };
        // One archive at a time, and none during a key change.
        let _lifecycle = self.inner.lifecycle.lock().await;
        let chain = self.chain(req.node.as_deref())?;
        let key = layout::audit_checkpoint(chain);
        let old = self.store().get(&key).await?;
        let floor = self.archived_through(chain).await?;
        if req.through <= floor {
            return Err(Error::invalid(format!(
                "the entries up to {floor} are archived already: archive a later entry"
            )));
        }
        // Nothing is removed that does not verify, from where the live chain starts.
        let audit_key = public_key(&self.audit_public_key().await?.public_key)
            .ok_or_else(|| StoreError::Corrupt("audit public key".into()))?;
        let vault_id = self.stored_meta().await?.vault_id;
        let mut verifier = Verifier::new(audit_key);
        self.for_each_line(chain, &vault_id, floor, req.through, |line| {
            verifier.line(line);
        })
        .await?;
        let report = verifier.finish(None);
        if let Some(problem) = report.problems.first() {
            return Err(Error::invalid(format!(
                "the live log does not verify up to entry {}: {problem}; nothing was archived",
                req.through
            )));
        }
        let head = report.head.as_ref().map(|h| (h.seq, h.hash.as_str()));
        if head != Some((req.through, hex::encode(hash).as_str())) {
            return Err(Error::invalid(format!(
                "the live log has no entry {} with hash {}: the archive does not end where the \
                 live log does; nothing was archived",
                req.through, req.last_hash
            )));
        }
        if report.signed_through != Some(req.through) {
            return Err(Error::invalid(format!(
                "entry {} has no signed head: archive up to a head (vault-cli audit archive \
                 picks the last one before --before); nothing was archived",
                req.through
            )));
        }
        let checkpoint = signer.sign_checkpoint(chain, req.through, &hash, &digest);
        let mut batch = Batch::default();
        batch.check(key.clone(), old).put(
            key,
            serde_json::to_vec(&checkpoint).expect("a checkpoint serializes"),
        );
        // The key history and erasure receipts read key events from the log: the archived
        // ones keep their entry in the index.
        for (index_key, value) in self.store().scan(KEY_EVENTS, None, usize::MAX).await? {
            let Some((node, seq)) = key_event_of(&index_key) else {
                return Err(StoreError::Corrupt("key event index".into()).into());
            };
            if node != chain || seq <= floor || seq > req.through || !value.is_empty() {
                continue;
            }
            let page = self.store().audit_page(chain, seq - 1, 1).await?;
            let Some((_, bytes)) = page.entries.into_iter().find(|(s, _)| *s == seq) else {
                return Err(
                    StoreError::Corrupt(format!("key event {seq} has no audit entry")).into(),
                );
            };
            batch.check(index_key.clone(), Some(value));
            batch.put(index_key, bytes);
        }
        let entries = req.through - floor;
        for (name, value) in [
            ("first", (floor + 1).to_string()),
            ("through", req.through.to_string()),
            ("entries", entries.to_string()),
            ("archive_sha256", req.archive_sha256.to_ascii_lowercase()),
        ] {
            ev.detail.insert(name.into(), value);
        }
        batch.log(ev.entry(Outcome::Ok, None));
        self.commit(batch).await?;
        ev.mark_recorded();
        tracing::info!(
            through = req.through,
            entries,
            "audit log archived up to the checkpoint"
        );
        self.give_back_archived(chain, req.through).await;
        Ok(AuditArchived {
            checkpoint,
            entries,
        })
    }

    /// Has the store give back the storage of every chain's archived entries (at start: a
    /// removal that an earlier run did not finish).
    pub(crate) async fn give_back_all_archived(&self) -> Result<(), Error> {
        for chain in self.store().chains().await? {
            let through = self.archived_through(chain.as_deref()).await?;
            if through > 0 {
                self.give_back_archived(chain.as_deref(), through).await;
            }
        }
        Ok(())
    }

    /// The store gives back `chain`'s entries up to `through`; a failure only delays it.
    async fn give_back_archived(&self, chain: Option<&str>, through: u64) {
        if let Err(e) = self.store().archive_audit(chain, through).await {
            tracing::warn!(error = %e, through, "the archived audit entries are not removed yet; the next start tries again");
        }
    }
}

/// The chain and sequence number of a key event index key (`k/{seq}`, `k/{node}/{seq}`).
pub(crate) fn key_event_of(key: &[u8]) -> Option<(Option<&str>, u64)> {
    let seq = chain::seq_of(key)?;
    let name = key.get(KEY_EVENTS.len()..key.len() - 20)?;
    let node = match name {
        [] => None,
        [node @ .., b'/'] => Some(std::str::from_utf8(node).ok()?),
        _ => return None,
    };
    Some((node, seq))
}
