//! Refresh-token leases and reuse detection (`docs/leases.md`): one caller at a time refreshes
//! a token, and a token equal to one it held before is refused.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vault_client::Timestamp;
use vault_client::audit::Outcome;
use vault_client::wire::{LeaseTokenResponse, Released};

use super::layout;
use super::{Keys, Vault};
use crate::audit::Event;
use crate::error::Error;
use crate::ids::{TenantId, TokenId};
use crate::store::{Batch, StoreError};

/// Longest lease, in seconds.
pub const MAX_LEASE_SECONDS: u32 = 300;
/// Fingerprints of earlier secrets kept per token.
const KEPT_FINGERPRINTS: usize = 32;
/// Attempts of an optimistic write before it gives up under contention.
const WRITE_ATTEMPTS: usize = 16;

/// The lease and the reuse fingerprints of one token (`s/{tenant}/{token}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TokenState {
    /// The lease, if one was taken and not yet released (it may have lapsed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<LeaseRecord>,
    /// Fingerprints of the secrets the token held since its first lease, oldest first.
    #[serde(default)]
    used: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    /// SHA-256 of the lease id, hex: the id itself is only the holder's.
    id_sha256: String,
    /// Unix milliseconds.
    expires_at_ms: i64,
    /// Who took it, for the log.
    holder: String,
}

/// What a put must respect of a token's state: whether it may write, and the state it leaves.
pub(crate) struct PutCheck {
    /// The stored state (for the batch's check) and the state to write, if the token has one.
    pub(crate) state: Option<(Option<Vec<u8>>, Vec<u8>)>,
    /// The put ended a lease.
    pub(crate) released: bool,
}

impl TokenState {
    /// The live lease, with the time left.
    fn live(&self, now_ms: i64) -> Option<(&LeaseRecord, std::time::Duration)> {
        self.lease.as_ref().and_then(|l| {
            let left = l.expires_at_ms - now_ms;
            (left > 0).then(|| (l, std::time::Duration::from_millis(left.unsigned_abs())))
        })
    }

    fn remember(&mut self, fingerprint: String) {
        if !self.used.contains(&fingerprint) {
            self.used.push(fingerprint);
        }
        let excess = self.used.len().saturating_sub(KEPT_FINGERPRINTS);
        self.used.drain(..excess);
    }
}

/// Whether `lease` is the id whose SHA-256 is `record`'s, in constant time.
fn holds(record: &LeaseRecord, lease: &str) -> bool {
    let presented = hex::encode(Sha256::digest(lease.as_bytes()));
    bool::from(presented.as_bytes().ct_eq(record.id_sha256.as_bytes()))
}

/// The keyed fingerprint of a token's secret (`docs/leases.md`).
fn fingerprint(keys: &Keys, tenant: &TenantId, token: &TokenId, secret: &[u8]) -> String {
    let mut derive = <Hmac<Sha256> as KeyInit>::new_from_slice(keys.audit_hmac.expose_secret())
        .expect("HMAC accepts 32-byte keys");
    derive.update(b"vaultd/v1/token-fingerprint");
    let key = derive.finalize().into_bytes();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("32-byte key");
    for part in [
        tenant.as_str().as_bytes(),
        b"\0",
        token.as_str().as_bytes(),
        b"\0",
        secret,
    ] {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn now_ms() -> i64 {
    Timestamp::now().unix().saturating_mul(1000)
}

fn decode(bytes: &[u8]) -> Result<TokenState, Error> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt("token state".into()).into())
}

fn encode(state: &TokenState) -> Vec<u8> {
    serde_json::to_vec(state).expect("token state encodes")
}

impl Vault {
    /// Takes the refresh lease of a token for `seconds` for `holder`, and opens it.
    pub async fn lease_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        seconds: u32,
        holder: &str,
        ev: &mut Event,
    ) -> Result<LeaseTokenResponse, Error> {
        if !(1..=MAX_LEASE_SECONDS).contains(&seconds) {
            return Err(Error::Invalid(format!(
                "seconds must be 1-{MAX_LEASE_SECONDS}"
            )));
        }
        let keys = self.keys()?;
        let key = layout::record(tenant.as_str(), token.as_str());
        let state_key = layout::token_state(tenant.as_str(), token.as_str());
        let _writer = self.lock_writer(&key).await;
        for _ in 0..WRITE_ATTEMPTS {
            let (opened, record_bytes) = self.open_for_write(&keys, tenant, token, ev).await?;
            let stored = self.store().get(&state_key).await?;
            let mut state = stored
                .as_deref()
                .map(decode)
                .transpose()?
                .unwrap_or_default();
            let now = now_ms();
            if let Some((_, wait)) = state.live(now) {
                return Err(Error::Leased { wait });
            }
            let mut id = [0u8; 16];
            getrandom::fill(&mut id)?;
            let lease = hex::encode(id);
            let expires_at_ms = now + i64::from(seconds) * 1000;
            state.lease = Some(LeaseRecord {
                id_sha256: hex::encode(Sha256::digest(lease.as_bytes())),
                expires_at_ms,
                holder: holder.to_owned(),
            });
            state.remember(fingerprint(
                &keys,
                tenant,
                token,
                opened.secret.expose_secret(),
            ));
            ev.detail.insert("seconds".into(), seconds.to_string());
            let mut batch = Batch::default();
            batch
                .check(key.clone(), Some(record_bytes))
                .check(state_key.clone(), stored)
                .put(state_key.clone(), encode(&state))
                .log(ev.entry(Outcome::Ok, None));
            match self.commit(batch).await {
                Ok(()) => {
                    ev.mark_recorded();
                    return Ok(LeaseTokenResponse {
                        lease,
                        lease_expires_at: Timestamp(expires_at_ms / 1000),
                        token: super::tokens::answer(opened),
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

    /// Gives a lease back before it lapses.
    pub async fn release_lease(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        lease: &str,
        ev: &mut Event,
    ) -> Result<Released, Error> {
        self.keys()?;
        let key = layout::record(tenant.as_str(), token.as_str());
        let state_key = layout::token_state(tenant.as_str(), token.as_str());
        let _writer = self.lock_writer(&key).await;
        for _ in 0..WRITE_ATTEMPTS {
            let stored = self.store().get(&state_key).await?;
            let mut state = stored
                .as_deref()
                .map(decode)
                .transpose()?
                .unwrap_or_default();
            match state.live(now_ms()) {
                None => return Ok(Released { released: false }),
                Some((record, _)) if !holds(record, lease) => {
                    return Err(Error::Conflict(
                        "the token's lease is held under another lease id".into(),
                    ));
                }
                Some(_) => {}
            }
            state.lease = None;
            let mut batch = Batch::default();
            batch
                .check(state_key.clone(), stored)
                .put(state_key.clone(), encode(&state))
                .log(ev.entry(Outcome::Ok, None));
            match self.commit(batch).await {
                Ok(()) => {
                    ev.mark_recorded();
                    return Ok(Released { released: true });
                }
                Err(Error::Store(StoreError::Conflict)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(
            "token is being written concurrently; retry".into(),
        ))
    }

    /// What a put of `secret` with `lease` may do given the token's stored state: `Err` when a
    /// live lease is another's (or the put has none), when the put's lease is not live, or when
    /// the secret is one the token held before.
    pub(crate) async fn check_put(
        &self,
        keys: &Keys,
        tenant: &TenantId,
        token: &TokenId,
        secret: &[u8],
        lease: Option<&str>,
    ) -> Result<PutCheck, Error> {
        let state_key = layout::token_state(tenant.as_str(), token.as_str());
        let stored = self.store().get(&state_key).await?;
        let Some(mut state) = stored.as_deref().map(decode).transpose()? else {
            return match lease {
                None => Ok(PutCheck {
                    state: None,
                    released: false,
                }),
                Some(_) => Err(lease_not_live()),
            };
        };
        let released = match (state.live(now_ms()), lease) {
            (Some((record, _)), Some(id)) if holds(record, id) => true,
            (Some((_, wait)), _) => return Err(Error::Leased { wait }),
            (None, Some(_)) => return Err(lease_not_live()),
            (None, None) => false,
        };
        let fp = fingerprint(keys, tenant, token, secret);
        if state.used.contains(&fp) {
            return Err(Error::TokenReused);
        }
        state.remember(fp);
        state.lease = None;
        Ok(PutCheck {
            state: Some((stored, encode(&state))),
            released,
        })
    }
}

fn lease_not_live() -> Error {
    Error::Conflict(
        "the lease has lapsed or was released: lease the token again (another caller may have refreshed it)"
            .into(),
    )
}
