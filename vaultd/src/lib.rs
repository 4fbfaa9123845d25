//! `vaultd`: a hardened vault for bank consent tokens (PSD2 access and refresh tokens).
//!
//! Envelope encryption: a KMS key wraps the master key, the master key wraps one data key chain
//! per tenant, and each token record is encrypted under its own key derived from a data key.
//! See `docs/key-hierarchy.md` and `docs/record-format.md`.
//!
//! # Layout
//! - [`audit`]: audit events, HMAC of personal data, the signer of chain heads, the hash chain, reading and verifying the log.
//! - [`config`]: the TOML file, environment and flags, checked into a `Config`.
//! - [`error`]: the error type and its one map to HTTP status codes.
//! - [`ids`]: tenant and token ids, checked at the edge.
//! - [`secret`]: key newtypes that zeroize and never print.
//! - `keys`: AEAD, HKDF derivation, wrapping under the master key (public but hidden, for the
//!   micro benches in `benches/` only).
//! - [`kms`]: KMS provider interface and the `local` provider.
//! - [`policy`]: caller identities and capabilities.
//! - [`record`]: record format v1 for stored tokens and transit blobs.
//! - [`server`]: the HTTP API on a Unix socket and, optionally, on TCP with mutual TLS.
//! - [`store`]: the commit core (group commit) over a small backend interface; the write-ahead log in front of sled; backups.
//! - [`vault`]: the lifecycle state machine and every operation.
//! - `os`: process hardening; the only module with `unsafe` code.
#![deny(unsafe_code)]

pub mod audit;
pub mod config;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod ids;
#[doc(hidden)]
pub mod keys;
pub mod kms;
#[allow(unsafe_code)]
pub mod os;
pub mod policy;
pub mod record;
pub mod secret;
pub mod server;
pub mod store;
pub mod vault;

pub use error::Error;
pub use vault::Vault;
