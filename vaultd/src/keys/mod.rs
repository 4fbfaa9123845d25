//! The key hierarchy (`docs/key-hierarchy.md`):
//!
//! ```text
//! KMS key ── wraps ── master key MK_m (versioned; only the KMS-wrapped form is stored)
//!                       ├─ wraps ── tenant data key DEK_{t,v}  ── derives ── one key per record
//!                       └─ wraps ── audit key
//! ```
//!
//! - `aead`: the one AES-256-GCM call site.
//! - `derive`: labels, associated-data encoding, HKDF per-record keys.
//! - `wrap`: data keys and the audit key under the master key.

pub mod aead;
pub mod derive;
pub mod wrap;
