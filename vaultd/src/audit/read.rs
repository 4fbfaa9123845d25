//! Reading the audit log: filtered pages, verification, export, the HMAC of a searched value.

use vault_client::Timestamp;
use vault_client::audit::{Actor, Anchor, Entry, Outcome, Report, Verifier, public_key};
use vault_client::wire::{AuditPage, AuditPublicKey};

use super::StoredHead;
use super::chain::{self, ENTRIES, HEADS};
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
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this token id.
    pub token: Option<String>,
    /// Only this uid, `cert=NAME` (a certificate caller), or `system`.
    pub actor: Option<String>,
    /// Only this operation.
    pub op: Option<String>,
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
            && self.op.as_deref().is_none_or(|o| e.op == o)
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
    pub async fn audit_entries(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: usize,
    ) -> Result<AuditPage, Error> {
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!("limit must be 1-{MAX_AUDIT_PAGE}")));
        }
        let mut entries = Vec::new();
        let mut cursor = after;
        let mut examined = 0;
        loop {
            let page = self
                .store()
                .scan(ENTRIES, Some(&chain::entry_key(cursor)), SCAN_PAGE)
                .await?;
            let exhausted = page.len() < SCAN_PAGE;
            for (key, bytes) in page {
                cursor = chain::seq_of(&key)
                    .ok_or_else(|| StoreError::Corrupt("audit entry key".into()))?;
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

    /// Verifies the whole stored log: chain, sequence, and every head's signature; with
    /// `anchor`, also that the log holds that recorded head.
    pub async fn audit_verify(
        &self,
        anchor: Option<&Anchor>,
        accept: &[u64],
    ) -> Result<Report, Error> {
        let key = public_key(&self.audit_public_key().await?.public_key)
            .ok_or_else(|| StoreError::Corrupt("audit public key".into()))?;
        let mut verifier = Verifier::new(key).accepting(accept);
        let mut last = 0;
        self.for_each_line(0, u64::MAX, |line| verifier.line(line))
            .await?;
        if let Some((key, _)) = self.store().last(ENTRIES).await? {
            last = chain::seq_of(&key).unwrap_or(0);
        }
        // Heads beyond the last entry: the tail was cut.
        let vault_id = self.stored_meta().await?.vault_id;
        for (_, head) in self
            .store()
            .scan(HEADS, Some(&chain::head_key(last)), usize::MAX)
            .await?
        {
            verifier.line(&head_line(&head, &vault_id));
        }
        Ok(verifier.finish(anchor))
    }

    /// Entries and signed heads with sequence numbers in `(after, after + limit]`, one per line,
    /// as stored: the export format of `docs/audit-log.md`.
    pub async fn audit_export(&self, after: u64, limit: usize) -> Result<Vec<u8>, Error> {
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!("limit must be 1-{MAX_AUDIT_PAGE}")));
        }
        let mut out = Vec::new();
        let until = after.saturating_add(limit as u64);
        self.for_each_line(after, until, |line| {
            out.extend_from_slice(line);
            out.push(b'\n');
        })
        .await?;
        Ok(out)
    }

    /// The audit signing key's public half (readable while sealed).
    pub async fn audit_public_key(&self) -> Result<AuditPublicKey, Error> {
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

    /// Calls `each` with every entry in `(after, until]`, each followed by its signed head.
    async fn for_each_line(
        &self,
        after: u64,
        until: u64,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), Error> {
        let vault_id = self.stored_meta().await?.vault_id;
        let mut cursor = after;
        loop {
            let page = self.store().audit_page(cursor, SCAN_PAGE).await?;
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
                        each(&head_line(hb, &vault_id));
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
fn head_line(stored: &[u8], vault_id: &str) -> Vec<u8> {
    match StoredHead::decode(stored) {
        Some(head) => head.line(vault_id),
        None => stored.to_vec(),
    }
}
