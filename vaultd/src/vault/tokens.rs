//! Stored tokens: put with revisions and compare-and-set, unseal with binding expectations and
//! expiry, metadata, paginated list, delete. Record counts per key version change in the same
//! atomic batch as the record, so they are exact.

use vault_client::Timestamp;
use vault_client::wire::{
    Binding, Deleted, Expect, PutTokenResponse, TokenList, TokenMeta, UnsealTokenResponse,
};

use super::layout::{self, TenantRecord};
use super::tenants::not_found;
use super::{Keys, Vault};
use crate::audit::Event;
use crate::error::Error;
use crate::ids::{TenantId, TokenId};
use crate::record::{self, Header, RecordSlot, Token};
use crate::secret::Secret;
use crate::store::{Batch, StoreError};
use vault_client::audit::Outcome;

/// Longest secret accepted, in bytes.
pub const MAX_SECRET_LEN: usize = 32 * 1024;
/// Longest binding field accepted, in bytes.
pub const MAX_BINDING_FIELD_LEN: usize = 1024;
/// Largest page of a token list.
pub const MAX_PAGE: usize = 1000;
/// Attempts of an optimistic write before it gives up under contention.
const WRITE_ATTEMPTS: usize = 16;

/// A checked request to store a token.
#[derive(Debug)]
pub struct PutToken {
    /// The token.
    pub secret: Secret,
    /// What it is for.
    pub binding: Binding,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Compare-and-set: the revision the caller last saw (0: the token must not exist).
    pub expected_revision: Option<u64>,
    /// The refresh lease this put ends (`docs/leases.md`).
    pub lease: Option<String>,
    /// A decoy (`docs/alarms.md`): unsealing it raises an alarm.
    pub decoy: bool,
}

impl PutToken {
    /// Checks sizes and fields; bad input is `Error::Invalid` and changes nothing.
    pub fn check(&self) -> Result<(), Error> {
        if self.secret.is_empty() || self.secret.len() > MAX_SECRET_LEN {
            return Err(Error::Invalid(format!(
                "secret must be 1-{MAX_SECRET_LEN} bytes"
            )));
        }
        let b = &self.binding;
        for (name, value) in [
            ("subject", &b.subject),
            ("bank", &b.bank),
            ("account", &b.account),
            ("scope", &b.scope),
        ] {
            if value.is_empty()
                || value.len() > MAX_BINDING_FIELD_LEN
                || value.chars().any(char::is_control)
            {
                return Err(Error::Invalid(format!(
                    "binding.{name} must be 1-{MAX_BINDING_FIELD_LEN} bytes without control characters"
                )));
            }
        }
        if let Some(at) = self.expires_at
            && at <= Timestamp::now().unix()
        {
            return Err(Error::Invalid("expires_at is in the past".into()));
        }
        Ok(())
    }
}

impl Vault {
    /// Encrypts and stores a token under the tenant's current data key version.
    pub async fn put_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        req: &PutToken,
        ev: &mut Event,
    ) -> Result<PutTokenResponse, Error> {
        req.check()?;
        let keys = self.keys()?;
        note_binding(&keys, ev, &req.binding);
        if let Some(at) = req.expires_at {
            // What retention will act on (docs/retention.md).
            ev.detail
                .insert("expires_at".into(), Timestamp(at).to_string());
        }
        let key = layout::record(tenant.as_str(), token.as_str());
        let _writer = self.lock_writer(&key).await;
        for _ in 0..WRITE_ATTEMPTS {
            let (record, tenant_bytes) = self
                .load_tenant(tenant)
                .await?
                .ok_or_else(|| not_found(tenant))?;
            let version = record.current;
            let dek = self.dek(&keys, tenant, &record, version).await?;
            let old = self.store().get(&key).await?;
            let old_header = old.as_deref().map(header_of).transpose()?;
            let current = old_header.map_or(0, |h| h.revision);
            if let Some(expected) = req.expected_revision
                && expected != current
            {
                return Err(Error::Conflict(format!(
                    "expected revision {expected}, current revision is {current}"
                )));
            }
            let header = Header {
                key_version: version,
                revision: current + 1,
                expires_at: req.expires_at,
                updated_at: Timestamp::now().unix(),
            };
            let lease = self
                .check_put(
                    &keys,
                    tenant,
                    token,
                    req.secret.expose_secret(),
                    req.lease.as_deref(),
                )
                .await?;
            let slot = slot(&keys, tenant, token);
            let contents = record::Contents {
                binding: &req.binding,
                secret: req.secret.expose_secret(),
                decoy: req.decoy,
            };
            let bytes = record::seal_record(&dek, slot, header, contents)?;
            ev.key_version = Some(version);
            let mut batch = Batch::default();
            batch
                .check(layout::tenant(tenant.as_str()), Some(tenant_bytes))
                .check(key.clone(), old)
                .put(key.clone(), bytes)
                .add(layout::counter(tenant.as_str(), version), 1)
                .add(layout::encryptions(tenant.as_str(), version), 1);
            if let Some((stored, state)) = lease.state {
                let state_key = layout::token_state(tenant.as_str(), token.as_str());
                batch.check(state_key.clone(), stored).put(state_key, state);
            }
            if lease.released {
                ev.detail.insert("lease".into(), "released".into());
            }
            if let Some(h) = old_header {
                batch.add(layout::counter(tenant.as_str(), h.key_version), -1);
            }
            batch.log(ev.entry(Outcome::Ok, None));
            match self.commit(batch).await {
                Ok(()) => {
                    ev.mark_recorded();
                    return Ok(PutTokenResponse {
                        revision: header.revision,
                        key_version: version,
                    });
                }
                Err(Error::Store(StoreError::Conflict)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(
            "token is being written concurrently; retry".into(),
        ))
    }

    /// Decrypts a token. Checks the caller's expectation first, then expiry.
    pub async fn unseal_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        expect: Option<&Expect>,
        ev: &mut Event,
    ) -> Result<UnsealTokenResponse, Error> {
        self.unseal_token_telling_decoys(tenant, token, expect, ev)
            .await
            .map(|(answer, _)| answer)
    }

    /// [`Vault::unseal_token`], and whether the token is a decoy (`docs/alarms.md`): the
    /// answer is the same either way.
    pub async fn unseal_token_telling_decoys(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        expect: Option<&Expect>,
        ev: &mut Event,
    ) -> Result<(UnsealTokenResponse, bool), Error> {
        let keys = self.keys()?;
        let opened = self.open_token(&keys, tenant, token).await?;
        let decoy = opened.decoy;
        ev.key_version = Some(opened.header.key_version);
        note_binding(&keys, ev, &opened.binding);
        if let Some(e) = expect {
            let b = &opened.binding;
            let matches = record::field_matches(e.account.as_deref(), &b.account)
                & record::field_matches(e.subject.as_deref(), &b.subject)
                & record::field_matches(e.scope.as_deref(), &b.scope);
            if !matches {
                return Err(Error::BindingMismatch);
            }
        }
        if opened
            .header
            .expires_at
            .is_some_and(|at| at <= Timestamp::now().unix())
        {
            return Err(Error::Expired);
        }
        Ok((answer(opened), decoy))
    }

    /// Opens a token for a write that depends on it: the token, and its stored bytes for the
    /// write's check.
    pub(super) async fn open_for_write(
        &self,
        keys: &Keys,
        tenant: &TenantId,
        token: &TokenId,
        ev: &mut Event,
    ) -> Result<(Token, Vec<u8>), Error> {
        let (opened, bytes) = self.stored_token(keys, tenant, token).await?;
        ev.key_version = Some(opened.header.key_version);
        note_binding(keys, ev, &opened.binding);
        Ok((opened, bytes))
    }

    /// A token's metadata, never its secret.
    pub async fn token_meta(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        ev: &mut Event,
    ) -> Result<TokenMeta, Error> {
        let keys = self.keys()?;
        let opened = self.open_token(&keys, tenant, token).await?;
        ev.key_version = Some(opened.header.key_version);
        note_binding(&keys, ev, &opened.binding);
        Ok(meta(token.as_str(), opened))
    }

    /// Up to `limit` tokens with ids after `after`, in id order.
    pub async fn list_tokens(
        &self,
        tenant: &TenantId,
        after: Option<&TokenId>,
        limit: usize,
        expiry: Expiry,
    ) -> Result<TokenList, Error> {
        let keys = self.keys()?;
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!("limit must be 1-{MAX_PAGE}")));
        }
        let (record, _) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(|| not_found(tenant))?;
        let prefix = layout::records(tenant.as_str());
        let mut cursor = after.map(|a| layout::record(tenant.as_str(), a.as_str()));
        let now = Timestamp::now().unix();
        // Up to limit + 1 matches (one more tells whether there is a next page), read in
        // pages, filtered on the clear header before anything is decrypted.
        let mut page = Vec::new();
        loop {
            let scanned = self
                .store()
                .scan(&prefix, cursor.as_deref(), limit + 1)
                .await?;
            let exhausted = scanned.len() <= limit;
            for (key, bytes) in scanned {
                cursor = Some(key.clone());
                if page.len() <= limit && expiry.selects(header_of(&bytes)?.expires_at, now) {
                    page.push((key, bytes));
                }
            }
            if exhausted || page.len() > limit {
                break;
            }
        }
        let more = page.len() > limit;
        page.truncate(limit);
        let mut items = Vec::with_capacity(page.len());
        for (key, bytes) in page {
            let id = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|id| TokenId::parse(id).ok())
                .ok_or_else(|| StoreError::Corrupt("record key".into()))?;
            let opened = self.open_bytes(&keys, tenant, &record, &id, &bytes).await?;
            items.push(meta(id.as_str(), opened));
        }
        let next = if more {
            items.last().map(|m| m.id.clone())
        } else {
            None
        };
        Ok(TokenList { items, next })
    }

    /// Deletes a token.
    pub async fn delete_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        ev: &mut Event,
    ) -> Result<Deleted, Error> {
        let keys = self.keys()?;
        ev.master_key_version = Some(keys.meta.master_key_version);
        let key = layout::record(tenant.as_str(), token.as_str());
        let _writer = self.lock_writer(&key).await;
        for _ in 0..WRITE_ATTEMPTS {
            self.load_tenant(tenant)
                .await?
                .ok_or_else(|| not_found(tenant))?;
            let old = self
                .store()
                .get(&key)
                .await?
                .ok_or_else(|| token_not_found(token))?;
            let header = header_of(&old)?;
            ev.key_version = Some(header.key_version);
            let mut batch = Batch::default();
            batch
                .check(key.clone(), Some(old))
                .delete(key.clone())
                .delete(layout::token_state(tenant.as_str(), token.as_str()))
                .add(layout::counter(tenant.as_str(), header.key_version), -1)
                .log(ev.entry(Outcome::Ok, None));
            match self.commit(batch).await {
                Ok(()) => {
                    ev.mark_recorded();
                    return Ok(Deleted { deleted: true });
                }
                Err(Error::Store(StoreError::Conflict)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(
            "token is being written concurrently; retry".into(),
        ))
    }

    async fn open_token(
        &self,
        keys: &Keys,
        tenant: &TenantId,
        token: &TokenId,
    ) -> Result<Token, Error> {
        Ok(self.stored_token(keys, tenant, token).await?.0)
    }

    /// A token, opened, and its stored bytes.
    async fn stored_token(
        &self,
        keys: &Keys,
        tenant: &TenantId,
        token: &TokenId,
    ) -> Result<(Token, Vec<u8>), Error> {
        let (record, _) = self
            .load_tenant(tenant)
            .await?
            .ok_or_else(|| not_found(tenant))?;
        let bytes = self
            .store()
            .get(&layout::record(tenant.as_str(), token.as_str()))
            .await?
            .ok_or_else(|| token_not_found(token))?;
        let opened = self
            .open_bytes(keys, tenant, &record, token, &bytes)
            .await?;
        Ok((opened, bytes))
    }

    pub(super) async fn open_bytes(
        &self,
        keys: &Keys,
        tenant: &TenantId,
        record: &TenantRecord,
        token: &TokenId,
        bytes: &[u8],
    ) -> Result<Token, Error> {
        let header = header_of(bytes)?;
        let dek = self.dek(keys, tenant, record, header.key_version).await?;
        record::open_record(&dek, slot(keys, tenant, token), bytes).map_err(|_| {
            StoreError::Corrupt(format!("token {token} of tenant {tenant} does not decrypt")).into()
        })
    }
}

/// Which tokens a list shows, by `expires_at` (`docs/retention.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Expiry {
    /// Every token.
    #[default]
    Any,
    /// Past `expires_at` (not purged yet).
    Expired,
    /// Expiring after now and within this many seconds.
    Within(i64),
}

impl Expiry {
    fn selects(self, expires_at: Option<i64>, now: i64) -> bool {
        match (self, expires_at) {
            (Self::Any, _) => true,
            (Self::Expired, Some(at)) => at <= now,
            (Self::Within(secs), Some(at)) => at > now && at <= now.saturating_add(secs),
            (Self::Expired | Self::Within(_), None) => false,
        }
    }
}

/// Records the binding's personal data in the event, as HMACs under the audit key.
fn note_binding(keys: &Keys, ev: &mut Event, binding: &Binding) {
    ev.master_key_version = Some(keys.meta.master_key_version);
    ev.subject_hmac = Some(crate::audit::hmac(&keys.audit_hmac, &binding.subject));
    ev.account_hmac = Some(crate::audit::hmac(&keys.audit_hmac, &binding.account));
}

fn slot<'a>(keys: &'a Keys, tenant: &'a TenantId, token: &'a TokenId) -> RecordSlot<'a> {
    RecordSlot {
        vault_id: &keys.meta.vault_id,
        tenant: tenant.as_str(),
        token: token.as_str(),
    }
}

pub(super) fn header_of(bytes: &[u8]) -> Result<Header, Error> {
    record::peek_header(bytes).map_err(|e| StoreError::Corrupt(e.to_string()).into())
}

/// An opened token as the unseal answer (text as `secret`, other bytes as `secret_b64` on the
/// wire).
pub(super) fn answer(opened: Token) -> UnsealTokenResponse {
    UnsealTokenResponse {
        secret: opened.secret,
        binding: opened.binding,
        expires_at: opened.header.expires_at.map(Timestamp),
        revision: opened.header.revision,
    }
}

fn meta(id: &str, token: Token) -> TokenMeta {
    TokenMeta {
        id: id.to_owned(),
        binding: token.binding,
        expires_at: token.header.expires_at.map(Timestamp),
        revision: token.header.revision,
        key_version: token.header.key_version,
        updated_at: Timestamp(token.header.updated_at),
        decoy: Some(token.decoy),
    }
}

fn token_not_found(token: &TokenId) -> Error {
    Error::NotFound(format!("token {token}"))
}
