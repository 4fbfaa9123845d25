//! Reading the audit log: filtered pages, verification, export, the HMAC of a searched value.

use vault_client::Timestamp;
use vault_client::audit::{
    Actor, Anchor, Entry, LogVerifier, Outcome, Report, StatementLine, entry_hash, public_key,
};
use vault_client::wire::{AuditChain, AuditChains, AuditPage, AuditPublicKey};

use super::StoredHead;
use crate::error::Error;
use crate::store::StoreError;
use crate::vault::Vault;
use crate::vault::layout::{self, AuditKeyRecord};

/// Entries read per store scan.
const SCAN_PAGE: usize = 4096;
/// Most entries examined by one filtered query; a page may be short and carry `next`.
const SCAN_BUDGET: usize = 200_000;
/// Largest page.
pub const MAX_AUDIT_PAGE: usize = 10_000;

/// Filters of `GET /v1/audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The chain read: this node's (`docs/audit-log.md`, "Several chains"); by default the
    /// answering node's own.
    pub node: Option<String>,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this token id.
    pub token: Option<String>,
    /// Only this uid, `cert=NAME` (a certificate caller), or `system`.
    pub actor: Option<String>,
    /// Only these operations: names, or prefixes ending with `.` (`keys.`); empty: all.
    pub ops: Vec<String>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// Not before.
    pub since: Option<Timestamp>,
    /// Not after.
    pub until: Option<Timestamp>,
    /// Only entries whose binding account has this HMAC (`POST /v1/audit/hash`).
    pub account_hmac: Option<String>,
    /// Only entries whose binding subject has this HMAC.
    pub subject_hmac: Option<String>,
}

impl AuditFilter {
    fn matches(&self, e: &Entry) -> bool {
        let actor_ok = self.actor.as_deref().is_none_or(|a| match &e.actor {
            Actor::Caller { uid, .. } => a == uid.to_string(),
            Actor::Certificate { cert } => a.strip_prefix("cert=") == Some(cert.as_str()),
            Actor::System(_) => a == "system",
        });
        self.tenant
            .as_deref()
            .is_none_or(|t| e.tenant.as_deref() == Some(t))
            && self
                .token
                .as_deref()
                .is_none_or(|t| e.token.as_deref() == Some(t))
            && (self.ops.is_empty()
                || self
                    .ops
                    .iter()
                    .any(|p| vault_client::audit::op_matches(p, &e.op)))
            && self.outcome.is_none_or(|o| e.outcome == o)
            && self.since.is_none_or(|s| e.time >= s)
            && self.until.is_none_or(|u| e.time <= u)
            && self
                .account_hmac
                .as_deref()
                .is_none_or(|h| e.account_hmac.as_deref() == Some(h))
            && self
                .subject_hmac
                .as_deref()
                .is_none_or(|h| e.subject_hmac.as_deref() == Some(h))
            && actor_ok
    }
}

impl Vault {
    /// Entries after sequence number `after` that match `filter`, oldest first.
    pub(crate) async fn audit_entries(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: usize,
    ) -> Result<AuditPage, Error> {
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!("limit must be 1-{MAX_AUDIT_PAGE}")));
        }
        let chain = self.chain(filter.node.as_deref())?;
        let mut entries = Vec::new();
        let mut cursor = after.max(self.archived_through(chain).await?);
        let mut examined = 0;
        loop {
            let page = self.store().audit_page(chain, cursor, SCAN_PAGE).await?;
            let exhausted = page.entries.len() < SCAN_PAGE;
            for (seq, bytes) in page.entries {
                cursor = seq;
                examined += 1;
                let entry: Entry = serde_json::from_slice(&bytes)
                    .map_err(|_| StoreError::Corrupt(format!("audit entry {cursor}")))?;
                if filter.matches(&entry) {
                    entries.push(entry);
                    if entries.len() == limit {
                        return Ok(AuditPage {
                            entries,
                            next: Some(cursor),
                        });
                    }
                }
            }
            if exhausted {
                return Ok(AuditPage {
                    entries,
                    next: None,
                });
            }
            if examined >= SCAN_BUDGET {
                return Ok(AuditPage {
                    entries,
                    next: Some(cursor),
                });
            }
        }
    }

    /// Verifies the stored log, every chain of it: sequence, hashes, and every head's
    /// signature; with `anchor`, also that the log holds that recorded head. A chain resumes
    /// after the last signed head an earlier verification of this process found sound, if its
    /// entry is still there unchanged, unless `full` (or `anchor` or `accept`, which concern
    /// the whole log) asks to reread it all.
    pub async fn audit_verify(
        &self,
        anchor: Option<&Anchor>,
        accept: &[u64],
        full: bool,
    ) -> Result<Report, Error> {
        let key = public_key(&self.audit_public_key().await?.public_key)
            .ok_or_else(|| StoreError::Corrupt("audit public key".into()))?;
        let mut verifier = LogVerifier::new(key).accepting(accept);
        let vault_id = self.stored_meta().await?.vault_id;
        let resume = !full && anchor.is_none() && accept.is_empty();
        for chain in self.store().chains().await? {
            let chain = chain.as_deref();
            let mut after = 0;
            if resume && let Some((seq, hash)) = self.resume_point(chain).await? {
                verifier.resume(chain, seq, hash);
                after = seq;
            }
            self.for_each_line(chain, &vault_id, after, u64::MAX, |line| {
                verifier.chain_line(chain, line);
            })
            .await?;
            // A head beyond the last entry: the tail was cut.
            let last = self.store().audit_last(chain).await?;
            if let Some((seq, head)) = last.head
                && seq > last.entry.map_or(0, |(seq, _)| seq)
            {
                verifier.chain_line(chain, &head_line(&head, &vault_id, chain));
            }
        }
        let sound = verifier.sound_heads();
        let report = verifier.finish(anchor);
        let mut verified = self.verified_heads();
        for (chain, seq, hash) in sound {
            verified.insert(chain, (seq, hash));
        }
        Ok(report)
    }

    /// Where a verification of `chain` may resume: its last verified signed head, if the entry
    /// it covers is still stored with the hash it had.
    async fn resume_point(&self, chain: Option<&str>) -> Result<Option<(u64, [u8; 32])>, Error> {
        let Some((seq, hash)) = self
            .verified_heads()
            .get(&chain.map(str::to_owned))
            .copied()
        else {
            return Ok(None);
        };
        // A head archived since is no resume point: the chain now starts at its checkpoint.
        if seq <= self.archived_through(chain).await? {
            return Ok(None);
        }
        let page = self.store().audit_page(chain, seq - 1, 1).await?;
        let unchanged = page
            .entries
            .first()
            .is_some_and(|(s, bytes)| *s == seq && entry_hash(bytes) == hash);
        Ok(unchanged.then_some((seq, hash)))
    }

    /// Entries and signed heads of one chain (by default this node's) with sequence numbers in
    /// `(after, after + limit]`, one per line, as stored: the export format of
    /// `docs/audit-log.md`. Once part of the chain was archived, `after` counts from where the
    /// live chain starts, and the page from there begins with its checkpoint.
    pub(crate) async fn audit_export(
        &self,
        node: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u8>, Error> {
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!("limit must be 1-{MAX_AUDIT_PAGE}")));
        }
        let chain = self.chain(node)?;
        let vault_id = self.stored_meta().await?.vault_id;
        let mut out = Vec::new();
        // A page that starts before the live chain does begins with its checkpoint.
        let after = after.max(self.archived_through(chain).await?);
        let until = after.saturating_add(limit as u64);
        self.for_each_line(chain, &vault_id, after, until, |line| {
            out.extend_from_slice(line);
            out.push(b'\n');
        })
        .await?;
        Ok(out)
    }

    /// The signed statement that ends an export of one chain (by default this node's) whose
    /// last exported entry is `last` (`docs/audit-log.md`, "Sealed exports"). Needs the
    /// unsealed vault: it is signed with the audit key.
    pub async fn audit_statement(
        &self,
        node: Option<&str>,
        last: u64,
    ) -> Result<StatementLine, Error> {
        let signer = self.audit_signer()?;
        let chain = self.chain(node)?;
        let floor = self.archived_through(chain).await?;
        let first = self.store().audit_page(chain, floor, 1).await?;
        let Some((first, _)) = first.entries.first() else {
            return Err(Error::Invalid("the chain has no entries to export".into()));
        };
        let page = self
            .store()
            .audit_page(chain, last.saturating_sub(1), 1)
            .await?;
        let Some((seq, bytes)) = page.entries.first().filter(|(seq, _)| *seq == last) else {
            return Err(Error::Invalid(format!("the chain has no entry {last}")));
        };
        Ok(signer.sign_statement(chain, *first, *seq, &entry_hash(bytes)))
    }

    /// Every chain of the log with its last sequence number (`GET /v1/audit/chains`).
    pub async fn audit_chains(&self) -> Result<AuditChains, Error> {
        let mut chains = Vec::new();
        for node in self.store().chains().await? {
            let last = self.store().audit_last(node.as_deref()).await?;
            chains.push(AuditChain {
                last_seq: last.entry.map_or(0, |(seq, _)| seq),
                node,
            });
        }
        Ok(AuditChains {
            own: self.store().node().map(str::to_owned),
            chains,
        })
    }

    /// The chain `node` names, by default this node's own (`None`: an embedded store's one).
    pub(crate) fn chain<'a>(&'a self, node: Option<&'a str>) -> Result<Option<&'a str>, Error> {
        match (node, self.store().node()) {
            (None, own) => Ok(own),
            (Some(node), Some(_)) => Ok(Some(node)),
            (Some(_), None) => Err(Error::Invalid(
                "node names a chain of a PostgreSQL store shared by several nodes; this vault \
                 keeps one audit chain"
                    .into(),
            )),
        }
    }

    /// The audit signing key's public half (readable while sealed).
    pub(crate) async fn audit_public_key(&self) -> Result<AuditPublicKey, Error> {
        let meta = self.stored_meta().await?;
        let record = self
            .store()
            .get(layout::AUDIT_KEY)
            .await?
            .ok_or(Error::Uninitialized)?;
        let record: AuditKeyRecord = layout::decode(&record, "audit key record")?;
        Ok(AuditPublicKey {
            vault_id: meta.vault_id,
            public_key: record.public_key,
        })
    }

    /// The HMAC of `value` as entries write it (needs the unsealed vault's audit key).
    pub fn audit_hash(&self, value: &str) -> Result<String, Error> {
        let keys = self.keys()?;
        Ok(crate::audit::hmac(&keys.audit_hmac, value))
    }

    /// Calls `each` with every entry of `chain` in `(after, until]`, each followed by its
    /// signed head; from where the live chain starts, with its checkpoint first, if `after`
    /// is at or before it.
    pub(crate) async fn for_each_line(
        &self,
        chain: Option<&str>,
        vault_id: &str,
        after: u64,
        until: u64,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), Error> {
        let mut cursor = after;
        if let Some((through, line)) = self.audit_checkpoint(chain).await?
            && after <= through
        {
            each(&line);
            cursor = through;
        }
        loop {
            let page = self.store().audit_page(chain, cursor, SCAN_PAGE).await?;
            if page.entries.is_empty() {
                return Ok(());
            }
            let mut heads = page.heads.into_iter().peekable();
            for (seq, bytes) in &page.entries {
                if *seq > until {
                    return Ok(());
                }
                each(bytes);
                while let Some((hs, hb)) = heads.peek() {
                    if *hs > *seq {
                        break;
                    }
                    if hs == seq {
                        each(&head_line(hb, vault_id, chain));
                    }
                    heads.next();
                }
                cursor = *seq;
            }
        }
    }
}

/// A stored head as its export line; bytes that are no stored head are passed on as they are,
/// for the verifier to report.
fn head_line(stored: &[u8], vault_id: &str, node: Option<&str>) -> Vec<u8> {
    match StoredHead::decode(stored) {
        Some(head) => head.line(vault_id, node),
        None => stored.to_vec(),
    }
}
