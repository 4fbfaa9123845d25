//! Async client for `vaultd` over its local Unix socket or its TCP listener with mutual TLS, and
//! the wire types the daemon shares.
//!
//! # Layout
//! - [`audit`]: the audit log format and its verification.
//! - `client`: [`Client`], its transports (Unix socket, TLS nodes) and failover.
//!   - `api`: one method per API endpoint, a file per operation group (`sys`,
//!     `tenants`, `tokens`, `transit`, `keys`, `audit` with [`AuditQuery`], the filters of
//!     `GET /v1/audit`).
//!   - `exchange`: one request and its answer within the timeout, node after node.
//!   - `pool`: idle connections kept for reuse, new ones and their handshake.
//!   - `body`: request and answer bodies in zeroizing memory.
//!   - `path`: request paths and query strings, percent-encoded.
//! - `error`: [`Error`], typed after the API's error codes.
//! - [`pem`]: PEM certificate and key files, read alike by the client and the daemon.
//! - `secret`: [`Secret`], bytes that zeroize on drop and print `[redacted]`.
//! - `time`: [`Timestamp`], RFC 3339 on the wire.
//! - `tls`: [`TlsOptions`], the client certificate, key and CA bundle for the TCP listener, and
//!   node addresses.
//! - [`wire`]: the JSON request and answer types of every endpoint.
//!
//! # Example
//!
//! Store a consent token for a tenant, then read it back, insisting it is for the account the
//! caller is about to use:
//!
//! ```no_run
//! use vault_client::wire::{Binding, Expect, PutToken};
//! use vault_client::{ApiCode, Client, Error, Secret};
//!
//! # async fn demo() -> Result<(), Error> {
//! // VAULT_SOCKET, or VAULT_ADDR with VAULT_CERT, VAULT_KEY, VAULT_CA: as vault-cli reads them.
//! let client = Client::from_env()?;
//! client.create_tenant("acme").await?;
//!
//! let binding = Binding {
//!     subject: "user-42".into(),
//!     bank: "examplebank".into(),
//!     account: "DE89370400440532013000".into(),
//!     scope: "accounts".into(),
//! };
//! // Only if it does not exist yet (revision 0).
//! let put = PutToken::new(Secret::from("eyJhbGciOi…"), binding).expected_revision(0);
//! let stored = client.put_token("acme", "consent-1", &put).await?;
//! assert_eq!(stored.revision, 1);
//!
//! let expect = Expect {
//!     account: Some("DE89370400440532013000".into()),
//!     ..Expect::default()
//! };
//! match client.unseal_token("acme", "consent-1", Some(expect)).await {
//!     Ok(token) => {
//!         let _bearer: &[u8] = token.secret().expose_secret(); // wiped when `token` drops
//!     }
//!     Err(e) if e.code() == Some(&ApiCode::BindingMismatch) => { /* wrong account */ }
//!     // Sealed, busy, throttled: worth sending again later (reads are retried already).
//!     Err(e) if e.is_retryable() => eprintln!("try again later (request {:?})", e.request_id()),
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Rotate a tenant's data key, move every stored record to the new version, then destroy the
//! old one (`docs/key-rotation.md`):
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use vault_client::wire::JobState;
//! use vault_client::{Client, Error};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::new("/run/vaultd/vaultd.sock");
//! let rotated = client.rotate_tenant("acme").await?;
//! let job = client.start_rewrap(Some("acme"), None).await?;
//! loop {
//!     let progress = client.job(&job.id).await?;
//!     match progress.state {
//!         JobState::Completed => break,
//!         JobState::Failed => {
//!             eprintln!("rewrap failed: {}", progress.error.unwrap_or_default());
//!             return Ok(());
//!         }
//!         JobState::Running => tokio::time::sleep(Duration::from_millis(250)).await,
//!     }
//! }
//! // Refused (`ApiCode::Conflict`) while any stored record still uses an older version.
//! client.retire("acme", rotated.key_version).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
mod client;
mod error;
#[cfg(feature = "openapi")]
mod openapi;
pub mod pem;
pub mod receipt;
mod refresh;
mod secret;
mod time;
mod tls;
pub mod wire;

pub use client::{
    AuditQuery, Client, ClientBuilder, DEFAULT_SOCKET, ExpiryFilter, Retry, with_request_ids,
};
pub use error::{API_CODES, ApiCode, Error, kms_remedy};
pub use refresh::RefreshError;
pub use secret::Secret;
pub use time::Timestamp;
pub use tls::TlsOptions;
