//! Retention (`docs/retention.md`): purging tokens past their `expires_at` (plus a grace
//! period), and tokens without one past a maximum age for their scope, in bounded batches,
//! each one atomic write with a `token.purge` entry per token.

use std::sync::atomic::{AtomicU64, Ordering};

use vault_client::Timestamp;
use vault_client::audit::Outcome;

use super::Vault;
use super::layout;
use super::tokens::header_of;
use crate::audit::Event;
use crate::config::RetentionPolicy;
use crate::error::Error;
use crate::ids::{TenantId, TokenId};
use crate::record::Header;
use crate::store::{Batch, StoreError};

/// Records read per store scan.
const SCAN_PAGE: usize = 1000;
/// The look-ahead of the `expiring` count.
const EXPIRING_WITHIN: i64 = 7 * 86_400;
const DAY: i64 = 86_400;

/// What one pass did and saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Tokens purged.
    pub purged: u64,
    /// Tokens past `expires_at` left in place (within their grace period, or lost a race).
    pub expired: u64,
    /// Tokens that expire within the next 7 days.
    pub expiring_7d: u64,
}

/// Counters for the metrics: purged since start, and the last pass's view.
#[derive(Debug, Default)]
pub struct RetentionStats {
    pub(crate) purged: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) expiring_7d: AtomicU64,
}

/// Why a token is due.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    Expired { at: i64 },
    MaxAge { updated_at: i64, days: u64 },
}

/// One token to purge: its record as read (the write checks it is still that one).
struct Candidate {
    token: TokenId,
    bytes: Vec<u8>,
    header: Header,
    due: Due,
}

impl Vault {
    /// One purge pass over every tenant (unsealed only: the entries are signed).
    pub async fn purge_expired(&self, policy: &RetentionPolicy) -> Result<PurgeReport, Error> {
        self.keys()?;
        let now = Timestamp::now().unix();
        let mut report = PurgeReport::default();
        for tenant in self.tenant_ids().await? {
            self.purge_tenant(policy, &tenant, now, &mut report).await?;
        }
        let stats = &self.inner.retention;
        stats.purged.fetch_add(report.purged, Ordering::Relaxed);
        stats.expired.store(report.expired, Ordering::Relaxed);
        stats
            .expiring_7d
            .store(report.expiring_7d, Ordering::Relaxed);
        Ok(report)
    }

    /// The retention counters for the metrics.
    pub(crate) fn retention_stats(&self) -> &RetentionStats {
        &self.inner.retention
    }

    async fn purge_tenant(
        &self,
        policy: &RetentionPolicy,
        tenant: &TenantId,
        now: i64,
        report: &mut PurgeReport,
    ) -> Result<(), Error> {
        // Read once per pass, to open the tokens that have no expiry (their scope decides).
        let Some((mut record, _)) = self.load_tenant(tenant).await? else {
            return Ok(()); // destroyed meanwhile
        };
        let keys = self.keys()?;
        let prefix = layout::records(tenant.as_str());
        let mut after: Option<Vec<u8>> = None;
        let mut due = Vec::new();
        loop {
            let page = self
                .store()
                .scan(&prefix, after.as_deref(), SCAN_PAGE)
                .await?;
            let exhausted = page.len() < SCAN_PAGE;
            for (key, bytes) in page {
                let header = header_of(&bytes)?;
                let token =
                    TokenId::parse(std::str::from_utf8(&key[prefix.len()..]).unwrap_or_default())
                        .map_err(|_| StoreError::Corrupt("record key".into()))?;
                after = Some(key);
                let reason = match header.expires_at {
                    Some(at) if at.saturating_add(grace(policy)) <= now => {
                        Some(Due::Expired { at })
                    }
                    Some(at) => {
                        if at <= now {
                            report.expired += 1;
                        } else if at <= now + EXPIRING_WITHIN {
                            report.expiring_7d += 1;
                        }
                        None
                    }
                    None if policy.max_age_days.is_empty() => None,
                    None => {
                        if record.dek(header.key_version).is_none() {
                            // Written under a data key version made since the pass began.
                            let Some((now_record, _)) = self.load_tenant(tenant).await? else {
                                return Ok(());
                            };
                            record = now_record;
                        }
                        let opened = self
                            .open_bytes(&keys, tenant, &record, &token, &bytes)
                            .await?;
                        past_max_age(policy, &opened.binding.scope, &header, now)
                    }
                };
                if let Some(due_now) = reason {
                    due.push(Candidate {
                        token,
                        bytes,
                        header,
                        due: due_now,
                    });
                    if due.len() == policy.batch {
                        let batch = std::mem::take(&mut due);
                        self.purge_batch(tenant, batch, now, report).await?;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        self.purge_batch(tenant, due, now, report).await
    }

    /// Purges `due` in one atomic write, each token with its entry. A token written, or the
    /// tenant changed, meanwhile makes the write fail: nothing is purged, and the next pass
    /// looks again.
    async fn purge_batch(
        &self,
        tenant: &TenantId,
        due: Vec<Candidate>,
        now: i64,
        report: &mut PurgeReport,
    ) -> Result<(), Error> {
        if due.is_empty() {
            return Ok(());
        }
        let keys = self.keys()?;
        // The tenant must still be as it is now: a destroy meanwhile (its keys gone, its
        // counters deleted, its records being shredded) makes this write fail, so that no
        // counter of a destroyed tenant is written again.
        let Some((_, tenant_bytes)) = self.load_tenant(tenant).await? else {
            return Ok(());
        };
        let mut batch = Batch::default();
        batch.check(layout::tenant(tenant.as_str()), Some(tenant_bytes));
        for c in &due {
            let key = layout::record(tenant.as_str(), c.token.as_str());
            let mut ev = Event::system("token.purge");
            ev.tenant = Some(tenant.to_string());
            ev.token = Some(c.token.to_string());
            ev.key_version = Some(c.header.key_version);
            ev.master_key_version = Some(keys.meta.master_key_version);
            match &c.due {
                Due::Expired { at } => {
                    ev.detail.insert("reason".into(), "expired".into());
                    ev.detail
                        .insert("expired_at".into(), Timestamp(*at).to_string());
                }
                Due::MaxAge { updated_at, days } => {
                    ev.detail.insert("reason".into(), "max_age".into());
                    ev.detail
                        .insert("last_updated_at".into(), Timestamp(*updated_at).to_string());
                    ev.detail.insert("max_age_days".into(), days.to_string());
                }
            }
            ev.detail
                .insert("purged_at".into(), Timestamp(now).to_string());
            batch
                .check(key.clone(), Some(c.bytes.clone()))
                .delete(key)
                .delete(layout::token_state(tenant.as_str(), c.token.as_str()))
                .add(layout::counter(tenant.as_str(), c.header.key_version), -1)
                .log(ev.entry(Outcome::Ok, None));
        }
        match self.commit(batch).await {
            Ok(()) => {
                let n = u64::try_from(due.len()).unwrap_or(u64::MAX);
                report.purged += n;
                tracing::info!(tenant = %tenant, purged = n, "expired tokens purged");
                Ok(())
            }
            Err(Error::Store(StoreError::Conflict)) => {
                report.expired += u64::try_from(due.len()).unwrap_or(u64::MAX);
                tracing::info!(tenant = %tenant, "a token changed during the purge; the next pass retries");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn grace(policy: &RetentionPolicy) -> i64 {
    i64::try_from(policy.grace_days)
        .unwrap_or(i64::MAX / DAY)
        .saturating_mul(DAY)
}

/// For a token without `expires_at`, of binding scope `scope`: due when that scope has a
/// maximum age the token's last update is past.
fn past_max_age(policy: &RetentionPolicy, scope: &str, header: &Header, now: i64) -> Option<Due> {
    let &days = policy.max_age_days.get(scope)?;
    let limit = i64::try_from(days)
        .unwrap_or(i64::MAX / DAY)
        .saturating_mul(DAY);
    (header.updated_at.saturating_add(limit) <= now).then_some(Due::MaxAge {
        updated_at: header.updated_at,
        days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_with_a_maximum_age_makes_a_token_without_expiry_due() {
        let policy = RetentionPolicy {
            grace_days: 0,
            interval_secs: 1,
            batch: 10,
            max_age_days: [("accounts".to_owned(), 2)].into(),
        };
        let header = |updated_at| Header {
            key_version: 1,
            revision: 1,
            expires_at: None,
            updated_at,
        };
        let now = 10 * DAY;
        assert_eq!(
            past_max_age(&policy, "accounts", &header(now - 2 * DAY), now),
            Some(Due::MaxAge {
                updated_at: now - 2 * DAY,
                days: 2
            })
        );
        assert_eq!(
            past_max_age(&policy, "accounts", &header(now - DAY), now),
            None
        );
        assert_eq!(past_max_age(&policy, "payments", &header(0), now), None);
    }
}
