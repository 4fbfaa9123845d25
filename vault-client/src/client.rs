//! [`Client`]: one async method per endpoint of the vaultd HTTP API, over the Unix socket or
//! over TLS to a list of nodes (`docs/tls.md`).
//!
//! HTTP/1.1 with keep-alive: idle connections wait in a small pool and are reused; a connection
//! the daemon closed while idle is noticed before use, and a request it never started on is
//! retried once on a fresh connection. Every call is bounded by one timeout that covers connect,
//! request and the whole answer body, except [`Client::backup`], whose body streams for as long
//! as it flows (the timeout then bounds the wait for each piece of it).
//!
//! Request bodies are serialized into zeroizing buffers of the exact size, and answer bodies are
//! collected into zeroizing buffers, so the client leaves no copy of a secret behind in its own
//! allocations (hyper's socket buffers are outside its reach).
//!
//! Over TLS, a request starts at the node that answered last and moves on to the next node (in
//! list order, each node at most once per request) when a connection to it cannot be made, or
//! when it answers `503 sealed`. A request that failed after it was sent is not repeated on
//! another node: it may have been carried out there.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Buf;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use zeroize::{Zeroize as _, Zeroizing};

use crate::audit::{Outcome, Report};
use crate::error::{ApiCode, Error};
use crate::secret::Secret;
use crate::time::Timestamp;
use crate::tls::{Node, TlsOptions};
use crate::wire::{
    AuditArchiveRequest, AuditArchived, AuditChains, AuditHash, AuditHashRequest, AuditPage,
    AuditPublicKey, Batch, BatchItem, Deleted, DestroyResponse, Expect, Health, InitResponse, Job,
    JobStarted, KeyConfig, KeyHistory, KmsRotate, KmsRotated, MasterRotated, Plaintext, PutToken,
    PutTokenResponse, RecoverProgress, RecoverShare, RecoveryCreate, RecoveryShares, Retire,
    Retired, RewrapStart, Sealed, StateResponse, Status, TenantInfo, TenantList, TenantRotated,
    TokenList, TokenMeta, TransitSeal, TransitSealItem, TransitUnseal, TransitUnsealItem,
    UnsealToken, UnsealTokenResponse,
};

/// Which tokens a list shows by their `expires_at` (`docs/retention.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryFilter {
    /// Past `expires_at`, not purged yet.
    Expired,
    /// Expiring after now and within this time.
    Within(Duration),
}

/// The timeout of a call unless [`Client::with_timeout`] sets another.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept for reuse; more are closed after their answer.
const MAX_IDLE: usize = 8;

/// Largest answer body accepted (metrics and long lists included).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// The filters and page of `GET /v1/audit` ([`Client::audit`]). Every field is optional; the
/// default asks for the first page of the whole log.
///
/// ```
/// use vault_client::AuditQuery;
/// use vault_client::audit::Outcome;
///
/// let denied_in_acme = AuditQuery {
///     tenant: Some("acme".into()),
///     outcome: Some(Outcome::Denied),
///     ..AuditQuery::default()
/// };
/// # let _ = denied_in_acme;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// The chain read, when several nodes share one PostgreSQL store (`docs/audit-log.md`,
    /// "Several chains"): this node's; by default the answering node's own.
    pub node: Option<String>,
    /// Only entries after this sequence number (the [`AuditPage::next`] of the previous page).
    pub after: Option<u64>,
    /// Page size, 1–10000 (the daemon's default is 100).
    pub limit: Option<u32>,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this token id.
    pub token: Option<String>,
    /// Only this caller uid (decimal), or `system`.
    pub actor: Option<String>,
    /// Only this operation (`token.put`, `sys.unseal`, …).
    pub op: Option<String>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// Not before this time.
    pub since: Option<Timestamp>,
    /// Not after this time.
    pub until: Option<Timestamp>,
    /// Only entries whose binding account has this HMAC ([`Client::audit_hash`] of the account).
    pub account_hmac: Option<String>,
    /// Only entries whose binding subject has this HMAC.
    pub subject_hmac: Option<String>,
}

impl AuditQuery {
    /// The query string, `?…` (empty when nothing is set), every value percent-encoded.
    fn to_query(&self) -> String {
        let outcome = self.outcome.map(|o| match o {
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Ok => "ok",
        });
        let pairs: [(&str, Option<String>); 12] = [
            ("node", self.node.clone()),
            ("after", self.after.map(|a| a.to_string())),
            ("limit", self.limit.map(|l| l.to_string())),
            ("tenant", self.tenant.clone()),
            ("token", self.token.clone()),
            ("actor", self.actor.clone()),
            ("op", self.op.clone()),
            ("outcome", outcome.map(str::to_owned)),
            ("since", self.since.map(|t| t.unix().to_string())),
            ("until", self.until.map(|t| t.unix().to_string())),
            ("account_hmac", self.account_hmac.clone()),
            ("subject_hmac", self.subject_hmac.clone()),
        ];
        query(pairs.iter().filter_map(|(k, v)| Some((*k, v.as_deref()?))))
    }
}

/// An async client for one vaultd socket, or for vaultd nodes over TLS.
///
/// Cheap to clone: clones share the connection pool. Creating a client does not connect; the
/// first call does. See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    timeout: Duration,
    /// Idle connections, each with the index of its node (always 0 on the Unix socket).
    idle: Mutex<Vec<(usize, SendRequest<RequestBody>)>>,
    /// The node that answered last: where the next request starts.
    preferred: AtomicUsize,
}

/// Where the daemon is.
#[derive(Clone)]
enum Transport {
    /// vaultd's TCP listener on each of these nodes, with mutual TLS.
    Tls { nodes: Vec<Node>, tls: TlsOptions },
    /// The local Unix socket.
    Unix(PathBuf),
}

impl Client {
    /// A client for the daemon listening on `socket`, with the default 30 s timeout.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self::with_transport(Transport::Unix(socket.into()), DEFAULT_TIMEOUT)
    }

    /// A client for vaultd's TCP listener on `nodes` (`host:port` or `[v6]:port`, in failover
    /// order), over TLS 1.3 with the client certificate of `tls`, with the default 30 s
    /// timeout. Fails on an empty list or an address that does not parse.
    pub fn tls<I, S>(nodes: I, tls: TlsOptions) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes = crate::tls::nodes(nodes, &tls)?;
        Ok(Self::with_transport(
            Transport::Tls { nodes, tls },
            DEFAULT_TIMEOUT,
        ))
    }

    fn with_transport(transport: Transport, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                transport,
                timeout,
                idle: Mutex::new(Vec::new()),
                preferred: AtomicUsize::new(0),
            }),
        }
    }

    /// The same client with another per-call timeout (connect, request and answer together;
    /// over TLS, for all the nodes a call tries). The clone gets a pool of its own.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self::with_transport(self.inner.transport.clone(), timeout)
    }

    /// The socket this client talks to (`None` over TLS).
    pub fn socket(&self) -> Option<&Path> {
        match &self.inner.transport {
            Transport::Tls { .. } => None,
            Transport::Unix(socket) => Some(socket),
        }
    }

    /// The node addresses this client talks to, in failover order (empty on the Unix socket).
    pub fn nodes(&self) -> Vec<&str> {
        match &self.inner.transport {
            Transport::Tls { nodes, .. } => nodes.iter().map(|n| n.addr.as_str()).collect(),
            Transport::Unix(_) => Vec::new(),
        }
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    // ----- sys -----

    /// `GET /v1/sys/health`: the state. The daemon answers 200 unsealed, 503 sealed and
    /// 501 uninitialized; all three are `Ok` here.
    pub async fn health(&self) -> Result<Health, Error> {
        let answer = self
            .call(Method::GET, "/v1/sys/health".to_owned(), None)
            .await?;
        if matches!(answer.status, 200 | 501 | 503)
            && let Ok(health) = serde_json::from_slice::<Health>(&answer.body)
        {
            return Ok(health);
        }
        answer.json("/v1/sys/health")
    }

    /// `GET /v1/sys/status`: vault id, state, KMS, master key version, counts.
    pub async fn status(&self) -> Result<Status, Error> {
        self.get("/v1/sys/status".to_owned()).await
    }

    /// `POST /v1/sys/init`: creates the master key; the vault is unsealed afterwards.
    pub async fn init(&self) -> Result<InitResponse, Error> {
        self.post_empty("/v1/sys/init".to_owned()).await
    }

    /// `POST /v1/sys/unseal`: unwraps the master key through the KMS.
    pub async fn unseal(&self) -> Result<StateResponse, Error> {
        self.post_empty("/v1/sys/unseal".to_owned()).await
    }

    /// `POST /v1/sys/seal`: wipes every key from the daemon's memory.
    pub async fn seal(&self) -> Result<StateResponse, Error> {
        self.post_empty("/v1/sys/seal".to_owned()).await
    }

    /// `POST /v1/sys/recovery`: a new recovery key, split into one share per age recipient
    /// (`threshold` of them open the vault without the KMS). The answer holds each share
    /// encrypted to its holder; earlier shares stop counting (`docs/break-glass.md`).
    pub async fn create_recovery(
        &self,
        threshold: u8,
        recipients: &[String],
    ) -> Result<RecoveryShares, Error> {
        let body = to_json(&RecoveryCreate {
            threshold,
            recipients: recipients.to_vec(),
        })?;
        self.request(Method::POST, "/v1/sys/recovery".to_owned(), Some(body))
            .await
    }

    /// `POST /v1/sys/recover`: hands in one decrypted recovery share while the vault is sealed;
    /// the one that reaches the threshold unseals it. A refused share is
    /// [`ApiCode::ShareRefused`].
    pub async fn recover(&self, share: Secret) -> Result<RecoverProgress, Error> {
        let body = to_json(&RecoverShare { share: Some(share) })?;
        self.request(Method::POST, "/v1/sys/recover".to_owned(), Some(body))
            .await
    }

    /// `GET /v1/sys/metrics`: Prometheus text format.
    pub async fn metrics(&self) -> Result<String, Error> {
        let path = "/v1/sys/metrics";
        let answer = self.call(Method::GET, path.to_owned(), None).await?;
        let body = answer.success()?;
        String::from_utf8(body.to_vec())
            .map_err(|_| Error::Protocol(format!("answer to {path} is not UTF-8")))
    }

    /// `GET /v1/sys/backup`: a consistent snapshot of the whole vault (ciphertext only; works
    /// while sealed), written to `out` as it arrives; returns the number of bytes written.
    /// Needs `sys:backup`.
    ///
    /// The client's timeout bounds the connection and the answer's headers, and then each wait
    /// for the next piece of the body, not the whole transfer: a large vault takes minutes. A
    /// backup the daemon could not complete breaks off ([`Error::Protocol`]) and what `out`
    /// received fails the file's checksum; check the file before keeping it (`vault-cli backup
    /// create` does). `out` is flushed, not synced.
    pub async fn backup(&self, mut out: impl AsyncWrite + Unpin) -> Result<u64, Error> {
        let path = "/v1/sys/backup";
        let timeout = self.inner.timeout;
        let start = self.inner.preferred.load(Ordering::Relaxed);
        let (position, conn, response) =
            tokio::time::timeout(timeout, self.send(start, 0, &Method::GET, path, &None))
                .await
                .map_err(|_| Error::Timeout)?
                .map_err(Attempt::into_error)?;
        let node = self.node_at(start, position);
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = tokio::time::timeout(timeout, read_body(response.into_body()))
                .await
                .map_err(|_| Error::Timeout)??;
            self.put_idle(node, conn);
            return Err(Error::from_answer(status, &body));
        }
        let content_type = response.headers().get(CONTENT_TYPE);
        if content_type.is_none_or(|t| t.as_bytes() != b"application/octet-stream") {
            return Err(Error::Protocol(format!(
                "answer to {path} is not application/octet-stream"
            )));
        }
        let mut body = response.into_body();
        let mut written = 0u64;
        loop {
            let frame = match tokio::time::timeout(timeout, body.frame()).await {
                Err(_) => return Err(Error::Timeout),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(Error::Protocol(format!(
                        "the backup broke off after {written} bytes ({e}); the daemon's log says why"
                    )));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                out.write_all(&data).await.map_err(Error::Output)?;
                written += data.len() as u64;
            }
        }
        out.flush().await.map_err(Error::Output)?;
        self.put_idle(node, conn);
        Ok(written)
    }

    // ----- tenants -----

    /// `PUT /v1/tenants/{tenant}`: creates the tenant (idempotent).
    pub async fn create_tenant(&self, tenant: &str) -> Result<TenantInfo, Error> {
        let path = format!("/v1/tenants/{}", segment(tenant));
        self.request(Method::PUT, path, Some(Zeroizing::new(Vec::new())))
            .await
    }

    /// `GET /v1/tenants/{tenant}/receipt`: the erasure receipt of the tenant's last
    /// destruction, a file that [`crate::receipt::verify`] checks with the audit public key.
    pub async fn erasure_receipt(&self, tenant: &str) -> Result<String, Error> {
        let path = format!("/v1/tenants/{}/receipt", segment(tenant));
        let answer = self.call(Method::GET, path.clone(), None).await?;
        let body = answer.success()?;
        String::from_utf8(body.to_vec())
            .map_err(|_| Error::Protocol(format!("answer to {path} is not UTF-8")))
    }

    /// `GET /v1/tenants`: every tenant, in name order.
    pub async fn list_tenants(&self) -> Result<TenantList, Error> {
        self.get("/v1/tenants".to_owned()).await
    }

    /// `GET /v1/tenants/{tenant}`: one tenant with its key versions and token counts.
    pub async fn tenant(&self, tenant: &str) -> Result<TenantInfo, Error> {
        self.get(format!("/v1/tenants/{}", segment(tenant))).await
    }

    /// `DELETE /v1/tenants/{tenant}?confirm={tenant}`: crypto-shreds the tenant: its data keys
    /// and records are destroyed. Irreversible.
    pub async fn destroy_tenant(&self, tenant: &str) -> Result<DestroyResponse, Error> {
        let path = format!(
            "/v1/tenants/{}?confirm={}",
            segment(tenant),
            query_value(tenant)
        );
        self.request(Method::DELETE, path, None).await
    }

    // ----- tokens -----

    /// `PUT /v1/tenants/{tenant}/tokens/{id}`: seals and stores a consent token.
    pub async fn put_token(
        &self,
        tenant: &str,
        id: &str,
        token: &PutToken,
    ) -> Result<PutTokenResponse, Error> {
        self.put_at(token_path(tenant, id), token).await
    }

    /// `PUT /v1/tenants/{tenant}/decoys/{id}`: plants a decoy token (`docs/alarms.md`): it
    /// looks like any token to callers without `keys:read`, and unsealing it raises an alarm.
    pub async fn put_decoy(
        &self,
        tenant: &str,
        id: &str,
        token: &PutToken,
    ) -> Result<PutTokenResponse, Error> {
        let path = format!("/v1/tenants/{}/decoys/{}", segment(tenant), segment(id));
        self.put_at(path, token).await
    }

    async fn put_at(&self, path: String, token: &PutToken) -> Result<PutTokenResponse, Error> {
        let body = to_json(token)?;
        self.request(Method::PUT, path, Some(body)).await
    }

    /// `POST /v1/tenants/{tenant}/tokens/{id}/unseal`: the token and its binding. With `expect`,
    /// any difference from the stored binding is [`ApiCode::BindingMismatch`](crate::ApiCode).
    pub async fn unseal_token(
        &self,
        tenant: &str,
        id: &str,
        expect: Option<Expect>,
    ) -> Result<UnsealTokenResponse, Error> {
        let body = to_json(&UnsealToken { expect })?;
        let path = format!("{}/unseal", token_path(tenant, id));
        self.request(Method::POST, path, Some(body)).await
    }

    /// `GET /v1/tenants/{tenant}/tokens/{id}`: metadata, never the secret.
    pub async fn token(&self, tenant: &str, id: &str) -> Result<TokenMeta, Error> {
        self.get(token_path(tenant, id)).await
    }

    /// `GET /v1/tenants/{tenant}/tokens?after=&limit=`: one page of metadata in id order; pass
    /// [`TokenList::next`] as `after` for the next page.
    pub async fn list_tokens(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<TokenList, Error> {
        self.list_tokens_where(tenant, after, limit, None).await
    }

    /// [`Client::list_tokens`], only the tokens `expiry` selects (`?expired=true`,
    /// `?expiring_within=SECS`): a page may then hold fewer than `limit`; continue with `next`.
    pub async fn list_tokens_where(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: Option<u32>,
        expiry: Option<ExpiryFilter>,
    ) -> Result<TokenList, Error> {
        let mut path = format!("/v1/tenants/{}/tokens", segment(tenant));
        let mut sep = '?';
        match expiry {
            None => {}
            Some(ExpiryFilter::Expired) => {
                path.push_str("?expired=true");
                sep = '&';
            }
            Some(ExpiryFilter::Within(within)) => {
                path.push_str(&format!("?expiring_within={}", within.as_secs()));
                sep = '&';
            }
        }
        if let Some(after) = after {
            path.push(sep);
            path.push_str("after=");
            path.push_str(&query_value(after));
            sep = '&';
        }
        if let Some(limit) = limit {
            path.push(sep);
            path.push_str(&format!("limit={limit}"));
        }
        self.get(path).await
    }

    /// `DELETE /v1/tenants/{tenant}/tokens/{id}`.
    pub async fn delete_token(&self, tenant: &str, id: &str) -> Result<Deleted, Error> {
        self.request(Method::DELETE, token_path(tenant, id), None)
            .await
    }

    // ----- transit -----

    /// `POST /v1/tenants/{tenant}/seal`: seals `plaintext` under the tenant's current data key,
    /// bound to `context`, and returns the blob (`vault:v{N}:…`). The daemon keeps nothing.
    pub async fn transit_seal(
        &self,
        tenant: &str,
        plaintext: Secret,
        context: &str,
    ) -> Result<String, Error> {
        let body = to_json(&TransitSeal {
            plaintext: None,
            plaintext_b64: Some(plaintext),
            context: Some(context.to_owned()),
            items: None,
        })?;
        let path = format!("/v1/tenants/{}/seal", segment(tenant));
        let sealed: Sealed = self.request(Method::POST, path, Some(body)).await?;
        Ok(sealed.sealed)
    }

    /// `POST /v1/tenants/{tenant}/unseal`: opens a blob made by [`Client::transit_seal`] with
    /// the same `context`.
    pub async fn transit_unseal(
        &self,
        tenant: &str,
        sealed: &str,
        context: &str,
    ) -> Result<Secret, Error> {
        let body = to_json(&TransitUnseal {
            sealed: Some(sealed.to_owned()),
            context: Some(context.to_owned()),
            items: None,
        })?;
        let path = format!("/v1/tenants/{}/unseal", segment(tenant));
        let answer: Plaintext = self.request(Method::POST, path.clone(), Some(body)).await?;
        answer
            .plaintext
            .or(answer.plaintext_b64)
            .ok_or_else(|| Error::Protocol(format!("answer to {path} holds no plaintext")))
    }

    /// Batch form of [`Client::transit_seal`]: one result per item, in order; an item's failure
    /// does not fail the others.
    pub async fn transit_seal_batch(
        &self,
        tenant: &str,
        items: Vec<TransitSealItem>,
    ) -> Result<Vec<BatchItem<Sealed>>, Error> {
        let body = to_json(&TransitSeal {
            items: Some(items),
            ..TransitSeal::default()
        })?;
        let path = format!("/v1/tenants/{}/seal", segment(tenant));
        let batch: Batch<Sealed> = self.request(Method::POST, path, Some(body)).await?;
        Ok(batch.items)
    }

    /// Batch form of [`Client::transit_unseal`].
    pub async fn transit_unseal_batch(
        &self,
        tenant: &str,
        items: Vec<TransitUnsealItem>,
    ) -> Result<Vec<BatchItem<Plaintext>>, Error> {
        let body = to_json(&TransitUnseal {
            items: Some(items),
            ..TransitUnseal::default()
        })?;
        let path = format!("/v1/tenants/{}/unseal", segment(tenant));
        let batch: Batch<Plaintext> = self.request(Method::POST, path, Some(body)).await?;
        Ok(batch.items)
    }

    /// `POST /v1/tenants/{tenant}/rewrap`: re-encrypts a blob made by [`Client::transit_seal`]
    /// (same `context`) under the tenant's current data key version and returns the new blob.
    /// The plaintext never leaves the daemon. Needs `transit:unseal`.
    pub async fn transit_rewrap(
        &self,
        tenant: &str,
        sealed: &str,
        context: &str,
    ) -> Result<String, Error> {
        let body = to_json(&TransitUnseal {
            sealed: Some(sealed.to_owned()),
            context: Some(context.to_owned()),
            items: None,
        })?;
        let path = format!("/v1/tenants/{}/rewrap", segment(tenant));
        let rewrapped: Sealed = self.request(Method::POST, path, Some(body)).await?;
        Ok(rewrapped.sealed)
    }

    /// Batch form of [`Client::transit_rewrap`]: one result per item, in order; an item's
    /// failure does not fail the others.
    pub async fn transit_rewrap_batch(
        &self,
        tenant: &str,
        items: Vec<TransitUnsealItem>,
    ) -> Result<Vec<BatchItem<Sealed>>, Error> {
        let body = to_json(&TransitUnseal {
            items: Some(items),
            ..TransitUnseal::default()
        })?;
        let path = format!("/v1/tenants/{}/rewrap", segment(tenant));
        let batch: Batch<Sealed> = self.request(Method::POST, path, Some(body)).await?;
        Ok(batch.items)
    }

    // ----- keys -----

    /// `POST /v1/tenants/{tenant}/keys/rotate`: a new data key version becomes current; new
    /// seals use it and every older version still decrypts.
    pub async fn rotate_tenant(&self, tenant: &str) -> Result<TenantRotated, Error> {
        self.post_empty(format!("/v1/tenants/{}/keys/rotate", segment(tenant)))
            .await
    }

    /// `POST /v1/keys/master/rotate`: a new master key version; every data key and the audit keys
    /// are rewrapped under it and the old version is destroyed, in one atomic switch. Needs
    /// `keys:rotate` on every tenant.
    ///
    /// On a large vault this takes seconds, well within the default timeout. A timeout (or a
    /// lost connection) says nothing about the outcome: the rotation goes on in the daemon, so
    /// read [`Client::status`] before trying again.
    pub async fn rotate_master(&self) -> Result<MasterRotated, Error> {
        self.post_empty("/v1/keys/master/rotate".to_owned()).await
    }

    /// `POST /v1/keys/kms/rotate`: the KMS rewraps the current master key under `key_id`. The
    /// daemon's configured `kms.key_id` must then be changed to it before the next restart.
    pub async fn rotate_kms(&self, key_id: &str) -> Result<KmsRotated, Error> {
        let body = to_json(&KmsRotate {
            key_id: key_id.to_owned(),
        })?;
        self.request(Method::POST, "/v1/keys/kms/rotate".to_owned(), Some(body))
            .await
    }

    /// `POST /v1/keys/kms/migrate`: the daemon wraps the master key it holds under `key_id`,
    /// without the KMS key that wraps it now (after break-glass recovery, that one may be gone).
    /// Set the daemon's `kms.key_id` to it before the next restart.
    pub async fn migrate_kms(&self, key_id: &str) -> Result<KmsRotated, Error> {
        let body = to_json(&KmsRotate {
            key_id: key_id.to_owned(),
        })?;
        self.request(Method::POST, "/v1/keys/kms/migrate".to_owned(), Some(body))
            .await
    }

    /// `POST /v1/tenants/{tenant}/keys/retire`: destroys every data key version below
    /// `below_version`. Refused ([`ApiCode::Conflict`](crate::ApiCode)) while a stored record
    /// still uses one: rewrap first ([`Client::start_rewrap`]).
    pub async fn retire(&self, tenant: &str, below_version: u32) -> Result<Retired, Error> {
        let body = to_json(&Retire { below_version })?;
        let path = format!("/v1/tenants/{}/keys/retire", segment(tenant));
        self.request(Method::POST, path, Some(body)).await
    }

    /// `POST /v1/tenants/{tenant}/keys/config`: transit blobs under versions below
    /// `min_decryption_version` are refused from now on; no key is destroyed.
    pub async fn set_key_config(
        &self,
        tenant: &str,
        min_decryption_version: u32,
    ) -> Result<KeyConfig, Error> {
        let body = to_json(&KeyConfig {
            min_decryption_version,
        })?;
        let path = format!("/v1/tenants/{}/keys/config", segment(tenant));
        self.request(Method::POST, path, Some(body)).await
    }

    /// `POST /v1/keys/rewrap` (answered `202 Accepted`): starts a background job that
    /// re-encrypts the stored records of `tenant` (`None`: of every tenant) under each tenant's
    /// current data key version, at most `rate` records per second. Follow it with
    /// [`Client::job`].
    pub async fn start_rewrap(
        &self,
        tenant: Option<&str>,
        rate: Option<u64>,
    ) -> Result<JobStarted, Error> {
        let body = to_json(&RewrapStart {
            tenant: tenant.map(str::to_owned),
            rate,
        })?;
        self.request(Method::POST, "/v1/keys/rewrap".to_owned(), Some(body))
            .await
    }

    /// `GET /v1/jobs/{id}`: a background job's state and progress.
    pub async fn job(&self, id: &str) -> Result<Job, Error> {
        self.get(format!("/v1/jobs/{}", segment(id))).await
    }

    /// `GET /v1/keys/history[?tenant=T]`: every key event (of `tenant` and the vault-wide ones,
    /// or all), the live data key versions with their record counts and ages, and the master
    /// key.
    pub async fn key_history(&self, tenant: Option<&str>) -> Result<KeyHistory, Error> {
        self.get(format!(
            "/v1/keys/history{}",
            query(tenant.map(|t| ("tenant", t)))
        ))
        .await
    }

    // ----- audit -----

    /// `GET /v1/audit`: one page of entries matching `query`, oldest first. Continue with
    /// [`AuditPage::next`] as [`AuditQuery::after`] until it is `None`; a page may hold fewer
    /// entries than the limit (even none) and still have a `next`.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, Error> {
        Ok(self.audit_with_request_id(query).await?.0)
    }

    /// [`Client::audit`], also returning the request id the daemon gave this call
    /// (`x-request-id`). The call itself appends an audit entry with that `request`, so a
    /// follower of the log can tell its own polls from other callers' requests.
    pub async fn audit_with_request_id(
        &self,
        query: &AuditQuery,
    ) -> Result<(AuditPage, Option<String>), Error> {
        let path = format!("/v1/audit{}", query.to_query());
        let answer = self.call(Method::GET, path.clone(), None).await?;
        let request_id = answer.request_id.clone();
        Ok((answer.json(&path)?, request_id))
    }

    /// `GET /v1/audit/verify[?head=SEQ:HASH]`: the daemon verifies its log (chain, sequence,
    /// every head's signature), resuming after the last signed head it verified before
    /// ([`Report::resumed_after`]). With `head`, it rereads the whole log, which must also
    /// contain that signed head, recorded earlier from a report's [`Report::head`].
    pub async fn audit_verify(&self, head: Option<&str>) -> Result<Report, Error> {
        self.audit_verify_with(head, &[], false).await
    }

    /// [`Client::audit_verify`], accepting the adoptions recorded by these reviewed
    /// `audit.adopt_unsigned` entries (their seq numbers), and with `full` rereading every
    /// entry even where the daemon could resume.
    pub async fn audit_verify_with(
        &self,
        head: Option<&str>,
        accept: &[u64],
        full: bool,
    ) -> Result<Report, Error> {
        let accept = accept
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let pairs = head
            .map(|h| ("head", h))
            .into_iter()
            .chain((!accept.is_empty()).then_some(("accept", accept.as_str())))
            .chain(full.then_some(("full", "true")));
        self.get(format!("/v1/audit/verify{}", query(pairs))).await
    }

    /// `POST /v1/audit/hash`: the HMAC of `value` (an account number or subject an auditor
    /// searches for) as the log writes it, hex. The value travels in a zeroizing buffer.
    pub async fn audit_hash(&self, value: &str) -> Result<String, Error> {
        let mut request = AuditHashRequest {
            value: value.to_owned(),
        };
        let body = to_json(&request);
        request.value.zeroize();
        let hash: AuditHash = self
            .request(Method::POST, "/v1/audit/hash".to_owned(), Some(body?))
            .await?;
        Ok(hash.hmac)
    }

    /// `POST /v1/audit/archive`: archives a chain's entries up to `req.through`, which the
    /// caller has written to an archive file (`docs/audit-log.md`, "Archiving"); the answer
    /// holds the checkpoint the live chain now starts at.
    pub async fn audit_archive(&self, req: &AuditArchiveRequest) -> Result<AuditArchived, Error> {
        self.request(
            Method::POST,
            "/v1/audit/archive".to_owned(),
            Some(to_json(req)?),
        )
        .await
    }

    /// `GET /v1/audit/pubkey`: the vault id and the Ed25519 public key that verifies the log's
    /// signed heads.
    pub async fn audit_pubkey(&self) -> Result<AuditPublicKey, Error> {
        self.get("/v1/audit/pubkey".to_owned()).await
    }

    /// `GET /v1/audit/export?after=&limit=[&node=]`: the stored entry lines and signed-head
    /// lines of one chain (`node`; by default the answering node's) with sequence numbers in
    /// `(after, after + limit]`, newline-terminated, byte for byte as stored (the chain hash
    /// covers the exact bytes: write them out unchanged). `limit` is 1–10000.
    pub async fn audit_export_page(
        &self,
        node: Option<&str>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<u8>, Error> {
        let after = after.to_string();
        let limit = limit.to_string();
        let pairs = [("after", after.as_str()), ("limit", limit.as_str())]
            .into_iter()
            .chain(node.map(|n| ("node", n)));
        let path = format!("/v1/audit/export{}", query(pairs));
        let answer = self.call(Method::GET, path, None).await?;
        Ok(answer.success()?.to_vec())
    }

    /// `GET /v1/audit/export/statement?last=SEQ[&node=]`: the signed statement that ends an
    /// export of a chain whose last exported entry is `last` (`docs/audit-log.md`, "Sealed
    /// exports"); needs the vault unsealed.
    pub async fn audit_statement(
        &self,
        node: Option<&str>,
        last: u64,
    ) -> Result<crate::audit::StatementLine, Error> {
        let last = last.to_string();
        let pairs = [("last", last.as_str())]
            .into_iter()
            .chain(node.map(|n| ("node", n)));
        self.get(format!("/v1/audit/export/statement{}", query(pairs)))
            .await
    }

    /// `GET /v1/audit/chains`: the chains of the log with their last sequence numbers, and
    /// which one the answering node appends to.
    pub async fn audit_chains(&self) -> Result<AuditChains, Error> {
        Ok(self.audit_chains_with_request_id().await?.0)
    }

    /// [`Client::audit_chains`], with the request id of the call (its own audit entry).
    pub async fn audit_chains_with_request_id(
        &self,
    ) -> Result<(AuditChains, Option<String>), Error> {
        let path = "/v1/audit/chains".to_owned();
        let answer = self.call(Method::GET, path.clone(), None).await?;
        let request_id = answer.request_id.clone();
        Ok((answer.json(&path)?, request_id))
    }

    // ----- raw -----

    /// Sends any request and returns the status and body as they are, error statuses included.
    /// `path` is sent verbatim (`/v1/…` with its query). For tests and tools; the returned body is
    /// not zeroized.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), Error> {
        let answer = self
            .call(method, path.to_owned(), body.map(Zeroizing::new))
            .await?;
        Ok((answer.status, answer.body.to_vec()))
    }

    // ----- plumbing -----

    async fn get<T: DeserializeOwned>(&self, path: String) -> Result<T, Error> {
        self.request(Method::GET, path, None).await
    }

    async fn post_empty<T: DeserializeOwned>(&self, path: String) -> Result<T, Error> {
        self.request(Method::POST, path, Some(Zeroizing::new(Vec::new())))
            .await
    }

    pub(crate) async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<T, Error> {
        let answer = self.call(method, path.clone(), body).await?;
        answer.json(&path)
    }

    /// One exchange, bounded by the timeout.
    async fn call(
        &self,
        method: Method,
        path: String,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Answer, Error> {
        tokio::time::timeout(self.inner.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| Error::Timeout)?
    }

    /// One request and its whole answer. Over TLS, a `503 sealed` answer moves on to the next
    /// node, if one is left to try; when every node is sealed or unreachable, a sealed answer
    /// is returned rather than a connection error.
    async fn exchange(
        &self,
        method: Method,
        path: String,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Answer, Error> {
        // Positions in the failover order only grow: each node is tried at most once.
        let start = self.inner.preferred.load(Ordering::Relaxed);
        let mut from = 0;
        let mut sealed = None;
        loop {
            let (position, conn, response) =
                match self.send(start, from, &method, &path, &body).await {
                    Ok(sent) => sent,
                    // No node left that could be reached: a sealed node's answer says more.
                    Err(Attempt::Unsent(e)) => return sealed.ok_or(e),
                    Err(Attempt::Sent(e)) => return Err(e),
                };
            let node = self.node_at(start, position);
            let status = response.status().as_u16();
            let request_id = response
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = read_body(response.into_body()).await?;
            self.put_idle(node, conn);
            let answer = Answer {
                status,
                body,
                request_id,
            };
            if answer.try_next_node() && position + 1 < self.node_count() {
                from = position + 1;
                sealed = Some(answer);
                continue;
            }
            self.inner.preferred.store(node, Ordering::Relaxed);
            return Ok(answer);
        }
    }

    /// Sends a request and waits for the answer's headers, trying the nodes in the failover
    /// order that starts at node `start`, from position `from` on, while a node cannot take the
    /// request; returns the position of the node that did. The connection goes back to the pool
    /// (`put_idle`) once the caller has read the body.
    async fn send(
        &self,
        start: usize,
        from: usize,
        method: &Method,
        path: &str,
        body: &Option<Zeroizing<Vec<u8>>>,
    ) -> Result<(usize, SendRequest<RequestBody>, http::Response<Incoming>), Attempt> {
        let mut unsent = None;
        for position in from..self.node_count() {
            let node = self.node_at(start, position);
            let request = build_request(method.clone(), path, body.clone(), self.host(node))
                .map_err(Attempt::Sent)?;
            match self.send_to(node, request).await {
                Ok((conn, response)) => return Ok((position, conn, response)),
                Err(Attempt::Unsent(e)) => unsent = Some(e),
                Err(Attempt::Sent(e)) => return Err(Attempt::Sent(e)),
            }
        }
        Err(Attempt::Unsent(unsent.unwrap_or_else(|| {
            Error::Protocol("no node left to try".into())
        })))
    }

    /// Sends `request` to `node`: on a pooled connection, else (or when the pooled one turns
    /// out closed) on a new one.
    async fn send_to(
        &self,
        node: usize,
        mut request: Request<RequestBody>,
    ) -> Result<(SendRequest<RequestBody>, http::Response<Incoming>), Attempt> {
        loop {
            let (mut conn, reused) = match self.take_idle(node).await {
                Some(conn) => (conn, true),
                None => (self.connect(node).await.map_err(Attempt::Unsent)?, false),
            };
            match conn.try_send_request(request).await {
                Ok(response) => return Ok((conn, response)),
                Err(mut err) => match err.take_message() {
                    // The request never left: a pooled connection went away. Try a fresh one.
                    Some(back) if reused => request = back,
                    Some(_) => return Err(Attempt::Unsent(from_hyper(err.into_error()))),
                    None => return Err(Attempt::Sent(from_hyper(err.into_error()))),
                },
            }
        }
    }

    fn node_count(&self) -> usize {
        match &self.inner.transport {
            Transport::Tls { nodes, .. } => nodes.len(),
            Transport::Unix(_) => 1,
        }
    }

    /// The node at `position` of the failover order that starts at node `start`.
    fn node_at(&self, start: usize, position: usize) -> usize {
        (start + position) % self.node_count()
    }

    /// The `Host` header for `node`.
    fn host(&self, node: usize) -> &str {
        match &self.inner.transport {
            Transport::Tls { nodes, .. } => &nodes[node].addr,
            Transport::Unix(_) => "localhost",
        }
    }

    /// A pooled connection to `node` that is open and ready for a request, if any.
    async fn take_idle(&self, node: usize) -> Option<SendRequest<RequestBody>> {
        loop {
            let mut conn = {
                let mut idle = self
                    .inner
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let at = idle.iter().rposition(|(n, _)| *n == node)?;
                idle.swap_remove(at).1
            };
            if !conn.is_closed() && conn.ready().await.is_ok() {
                return Some(conn);
            }
        }
    }

    fn put_idle(&self, node: usize, conn: SendRequest<RequestBody>) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((node, conn));
        }
    }

    async fn connect(&self, node: usize) -> Result<SendRequest<RequestBody>, Error> {
        match &self.inner.transport {
            Transport::Tls { nodes, tls } => {
                let stream = nodes[node].connect(tls).await.map_err(Error::Connect)?;
                handshake(stream).await
            }
            Transport::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(Error::Connect)?;
                handshake(stream).await
            }
        }
    }
}

/// How sending a request failed.
enum Attempt {
    /// It may have reached a node (or cannot be sent at all): it must not be repeated elsewhere.
    Sent(Error),
    /// The request reached no node: another node may take it.
    Unsent(Error),
}

impl Attempt {
    fn into_error(self) -> Error {
        match self {
            Self::Sent(e) | Self::Unsent(e) => e,
        }
    }
}

/// HTTP/1.1 on an established stream.
async fn handshake<S>(stream: S) -> Result<SendRequest<RequestBody>, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(from_hyper)?;
    // The connection task ends when the daemon closes it or the last sender is dropped;
    // its error, if any, reaches the caller through the pending request.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Client");
        match &self.inner.transport {
            Transport::Tls { .. } => d.field("nodes", &self.nodes()),
            Transport::Unix(socket) => d.field("socket", socket),
        };
        d.field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// The answer header that carries the request id (the `request` of the call's audit entry).
const REQUEST_ID: &str = "x-request-id";

/// A complete answer.
struct Answer {
    status: u16,
    body: Zeroizing<Vec<u8>>,
    request_id: Option<String>,
}

impl Answer {
    /// `503` with the error code `sealed`: another node may be unsealed, and nothing was done
    /// here, so the request is worth the next node.
    fn try_next_node(&self) -> bool {
        self.status == 503
            && Error::from_answer(self.status, &self.body).code() == Some(&ApiCode::Sealed)
    }

    /// The body of a 2xx answer, or the error the answer carries.
    fn success(self) -> Result<Zeroizing<Vec<u8>>, Error> {
        if (200..300).contains(&self.status) {
            Ok(self.body)
        } else {
            Err(Error::from_answer(self.status, &self.body))
        }
    }

    fn json<T: DeserializeOwned>(self, path: &str) -> Result<T, Error> {
        let body = self.success()?;
        // The serde message could quote the answer (personal data, even a secret): report where
        // it went wrong, not what was there.
        serde_json::from_slice(&body).map_err(|e| {
            Error::Protocol(format!(
                "answer to {path} is not the expected JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }
}

/// A request body in zeroizing memory.
type RequestBody = Full<Payload>;

/// Bytes that are wiped when hyper is done with them.
struct Payload {
    bytes: Zeroizing<Vec<u8>>,
    pos: usize,
}

impl Buf for Payload {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn chunk(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    fn advance(&mut self, cnt: usize) {
        assert!(cnt <= self.remaining(), "advance past the end of the body");
        self.pos += cnt;
    }
}

fn build_request(
    method: Method,
    path: &str,
    body: Option<Zeroizing<Vec<u8>>>,
    host: &str,
) -> Result<Request<RequestBody>, Error> {
    let uri: Uri = path
        .parse()
        .map_err(|_| Error::Protocol(format!("invalid request path {path:?}")))?;
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, host);
    let body = match body {
        Some(bytes) => {
            builder = builder.header(CONTENT_LENGTH, bytes.len());
            if !bytes.is_empty() {
                builder = builder.header(CONTENT_TYPE, "application/json");
            }
            bytes
        }
        None => Zeroizing::new(Vec::new()),
    };
    builder
        .body(Full::new(Payload {
            bytes: body,
            pos: 0,
        }))
        .map_err(|e| Error::Protocol(format!("cannot build the request: {e}")))
}

/// Collects an answer body into zeroizing memory, growing it without leaving stale copies.
async fn read_body(mut body: Incoming) -> Result<Zeroizing<Vec<u8>>, Error> {
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(MAX_ANSWER);
    let mut out = Zeroizing::new(Vec::with_capacity(hint.min(MAX_ANSWER)));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(from_hyper)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let needed = out.len() + data.len();
        if needed > MAX_ANSWER {
            return Err(Error::Protocol(format!(
                "answer body exceeds {MAX_ANSWER} bytes"
            )));
        }
        if needed > out.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                needed.max(out.capacity() * 2).min(MAX_ANSWER),
            ));
            bigger.extend_from_slice(&out);
            out = bigger; // the old buffer is wiped as it drops
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// Serializes a request body into zeroizing memory of exactly the right size.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, Error> {
    let encode_err =
        |e: serde_json::Error| Error::Protocol(format!("cannot encode the request: {e}"));
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_err(encode_err)?;
    let mut out = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *out, value).map_err(encode_err)?;
    Ok(out)
}

/// A writer that only counts.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn from_hyper(err: hyper::Error) -> Error {
    if err.is_parse() || err.is_parse_status() || err.is_user() {
        Error::Protocol(err.to_string())
    } else {
        // Closed, canceled, incomplete answer, or an I/O error on the socket.
        Error::Connect(io::Error::new(io::ErrorKind::ConnectionAborted, err))
    }
}

pub(crate) fn token_path(tenant: &str, id: &str) -> String {
    format!("/v1/tenants/{}/tokens/{}", segment(tenant), segment(id))
}

/// A path segment. Valid ids (`A-Z a-z 0-9 . _ -`) pass unchanged; any other byte is
/// percent-encoded so that a bad id reaches the daemon as one invalid segment (which it refuses)
/// and never as extra path or query.
fn segment(id: &str) -> String {
    percent_encode(id, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
    })
}

/// A query string from `(name, value)` pairs: `?a=1&b=2`, or empty without pairs. Values are
/// percent-encoded; names are fixed by the caller.
fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(name);
        out.push('=');
        out.push_str(&query_value(value));
    }
    out
}

/// A query value: RFC 3986 unreserved bytes pass, everything else is percent-encoded.
fn query_value(value: &str) -> String {
    percent_encode(value, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~')
    })
}

fn percent_encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::wire::Binding;

    #[test]
    fn valid_ids_pass_unchanged() {
        assert_eq!(segment("acme-01.prod_x"), "acme-01.prod_x");
        assert_eq!(token_path("acme", "tok-1"), "/v1/tenants/acme/tokens/tok-1");
    }

    #[test]
    fn bad_ids_cannot_change_the_path() {
        assert_eq!(segment("a/b"), "a%2Fb");
        assert_eq!(segment("a?confirm=a"), "a%3Fconfirm%3Da");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(query_value("x&limit=1"), "x%26limit%3D1");
    }

    #[test]
    fn audit_query_encodes_every_value() {
        assert_eq!(AuditQuery::default().to_query(), "");
        let q = AuditQuery {
            after: Some(7),
            limit: Some(50),
            tenant: Some("acme".into()),
            actor: Some("system".into()),
            op: Some("token.put&limit=1".into()),
            outcome: Some(Outcome::Denied),
            since: Some(Timestamp(1_795_453_200)),
            account_hmac: Some("ab12".into()),
            ..AuditQuery::default()
        };
        assert_eq!(
            q.to_query(),
            "?after=7&limit=50&tenant=acme&actor=system&op=token.put%26limit%3D1\
             &outcome=denied&since=1795453200&account_hmac=ab12"
        );
        assert_eq!(query([("head", "3:ab")]), "?head=3%3Aab");
    }

    #[test]
    fn request_body_is_exact_size_json() {
        let put = PutToken {
            secret: Some(Secret::from("tok\"en")),
            secret_b64: None,
            binding: Binding {
                subject: "s".into(),
                bank: "b".into(),
                account: "a".into(),
                scope: "accounts".into(),
            },
            expires_at: None,
            expected_revision: Some(0),
            lease: None,
        };
        let body = to_json(&put).unwrap();
        assert_eq!(body.len(), body.capacity());
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["secret"], "tok\"en");
        assert_eq!(value["expected_revision"], 0);
        assert!(value.get("secret_b64").is_none());
    }

    #[test]
    fn unseal_without_expectation_is_empty_object() {
        let body = to_json(&UnsealToken { expect: None }).unwrap();
        assert_eq!(&body[..], b"{}");
    }

    #[test]
    fn protocol_error_does_not_quote_the_answer() {
        let answer = Answer {
            status: 200,
            body: Zeroizing::new(br#"{"secret":"hunter2","binding":7}"#.to_vec()),
            request_id: None,
        };
        let err = answer.json::<UnsealTokenResponse>("/v1/x").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(matches!(err, Error::Protocol(_)));
    }

    #[test]
    fn error_answer_becomes_api_error() {
        let answer = Answer {
            status: 404,
            body: Zeroizing::new(
                br#"{"error":{"code":"not_found","message":"no such token"}}"#.to_vec(),
            ),
            request_id: None,
        };
        let err = answer.json::<TokenMeta>("/v1/x").unwrap_err();
        assert_eq!(err.code(), Some(&crate::ApiCode::NotFound));
    }

    #[test]
    fn accepted_answer_is_success() {
        let answer = Answer {
            status: 202,
            body: Zeroizing::new(br#"{"id":"8f3a0c1d2e4b5a69"}"#.to_vec()),
            request_id: None,
        };
        let started = answer.json::<JobStarted>("/v1/keys/rewrap").unwrap();
        assert_eq!(started.id, "8f3a0c1d2e4b5a69");
    }

    #[test]
    fn rewrap_start_sends_only_what_is_set() {
        let all = to_json(&RewrapStart::default()).unwrap();
        assert_eq!(&all[..], b"{}");
        let one = to_json(&RewrapStart {
            tenant: Some("acme".into()),
            rate: Some(500),
        })
        .unwrap();
        assert_eq!(&one[..], br#"{"tenant":"acme","rate":500}"#);
    }

    #[test]
    fn payload_advances() {
        let mut p = Payload {
            bytes: Zeroizing::new(b"abcdef".to_vec()),
            pos: 0,
        };
        p.advance(2);
        assert_eq!(p.chunk(), b"cdef");
        assert_eq!(p.remaining(), 4);
    }

    /// A tiny HTTP server on a socket in a temp dir: answers every request on the same connection.
    #[tokio::test]
    async fn reuses_connections_and_parses_health() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let dir = std::env::temp_dir().join(format!("vault-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let body = br#"{"state":"sealed"}"#;
                            let head = format!(
                                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            stream.write_all(head.as_bytes()).await.unwrap();
                            stream.write_all(body).await.unwrap();
                        }
                    }
                });
            }
        });

        let client = Client::new(&sock).with_timeout(Duration::from_secs(5));
        for _ in 0..3 {
            let health = client.health().await.unwrap();
            assert_eq!(health.state, crate::wire::VaultState::Sealed);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        let err = client.status().await.unwrap_err();
        assert!(matches!(err, Error::Api { status: 503, .. }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A server that answers one backup request per connection with `answer`, then closes.
    async fn backup_server(name: &str, answer: &'static [u8]) -> (PathBuf, PathBuf) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let dir = std::env::temp_dir().join(format!("vault-client-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                stream.write_all(answer).await.unwrap();
                // Dropping the stream closes it: a chunked body without its last chunk is cut.
            }
        });
        (dir, sock)
    }

    #[tokio::test]
    async fn backup_streams_the_body_and_reports_a_cut() {
        let (dir, sock) = backup_server(
            "backup",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
              transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await;
        let client = Client::new(&sock).with_timeout(Duration::from_secs(5));
        let mut out = Vec::new();
        assert_eq!(client.backup(&mut out).await.unwrap(), 5);
        assert_eq!(out, b"abcde");
        let _ = std::fs::remove_dir_all(&dir);

        let (dir, sock) = backup_server(
            "backup-cut",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
              transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        )
        .await;
        let client = Client::new(&sock).with_timeout(Duration::from_secs(5));
        let mut out = Vec::new();
        let err = client.backup(&mut out).await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
        assert!(err.to_string().contains("broke off after 3 bytes"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);

        let (dir, sock) = backup_server(
            "backup-denied",
            b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 51\r\n\r\n\
              {\"error\":{\"code\":\"denied\",\"message\":\"not granted\"}}",
        )
        .await;
        let client = Client::new(&sock).with_timeout(Duration::from_secs(5));
        let err = client.backup(Vec::new()).await.unwrap_err();
        assert_eq!(err.code(), Some(&crate::ApiCode::Denied));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn missing_socket_is_connect_error() {
        let client = Client::new("/nonexistent/vaultd.sock");
        assert!(matches!(client.health().await, Err(Error::Connect(_))));
    }
}
