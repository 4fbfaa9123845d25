//! The JSON wire types of the vaultd HTTP API (`docs/api.md`), defined once and used by both the
//! daemon and this client.
//!
//! Answers are `#[non_exhaustive]` for clients (the daemon builds them with the
//! `construct-answers` feature), so that a field added to one is not a breaking change.
//! Requests reject unknown fields. Secrets travel as a UTF-8 string (`secret`, `plaintext`) or as
//! base64 (`secret_b64`, `plaintext_b64`); in memory they are always a [`Secret`].

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::time::Timestamp;

/// The body of every error answer: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error: a stable machine code and a human message that never holds a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct ErrorDetail {
    /// Stable code: `sealed`, `not_found`, `denied`, `binding_mismatch`, `expired`, `conflict`,
    /// `invalid`, `too_large`, `uninitialized`, `kms`, `unavailable`, `internal`, …
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Lifecycle state of the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum VaultState {
    /// Keys are in memory; token operations work.
    Unsealed,
    /// Initialized, but the master key is not in memory.
    Sealed,
    /// No master key exists yet.
    Uninitialized,
}

/// `GET /v1/sys/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct Health {
    /// Current state.
    pub state: VaultState,
    /// False while audit entries cannot be written (every operation then fails closed).
    #[serde(default = "yes")]
    pub audit_available: bool,
    /// False while the disk fails the store (full, read-only, I/O errors): requests then fail
    /// with `503 unavailable` or `503 audit_unavailable`, until a write succeeds again.
    #[serde(default = "yes")]
    pub storage_available: bool,
}

fn yes() -> bool {
    true
}

/// `GET /v1/sys/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct Status {
    /// Random id of this vault, fixed at init (absent before init).
    pub vault_id: Option<String>,
    /// Current state.
    pub state: VaultState,
    /// The KMS provider and the key that wraps the master key.
    pub kms: KmsInfo,
    /// Current master key version (absent before init).
    pub master_key_version: Option<u32>,
    /// Number of tenants (absent while sealed).
    pub tenants: Option<u64>,
    /// Number of stored tokens (absent while sealed).
    pub tokens: Option<u64>,
    /// The daemon's version (absent from daemons older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The KMS provider in use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct KmsInfo {
    /// `local` or `aws`.
    pub provider: String,
    /// The KMS key id that wraps the master key.
    pub key_id: String,
    /// The key the daemon's config names (`kms.key_id`); differs from `key_id` after a KMS
    /// migration until the config is changed, and then the next start refuses to unseal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_key_id: Option<String>,
}

/// `POST /v1/sys/init` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct InitResponse {
    /// The new vault id.
    pub vault_id: String,
    /// Always 1 after init.
    pub master_key_version: u32,
    /// State after init (`unsealed`: init leaves the vault open).
    pub state: VaultState,
}

/// `POST /v1/sys/seal` and `/v1/sys/unseal` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct StateResponse {
    /// State after the call.
    pub state: VaultState,
}

/// One data key version of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct KeyVersionInfo {
    /// Version number, from 1.
    pub version: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// Stored token records encrypted under this version.
    pub records: u64,
}

/// `GET /v1/tenants/{tenant}` and `PUT /v1/tenants/{tenant}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct TenantInfo {
    /// Tenant name.
    pub name: String,
    /// When the tenant was created.
    pub created_at: Timestamp,
    /// The version new seals use.
    pub current_key_version: u32,
    /// Every live data key version, oldest first.
    pub key_versions: Vec<KeyVersionInfo>,
    /// Stored tokens, all versions.
    pub tokens: u64,
}

/// `GET /v1/tenants` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct TenantList {
    /// Tenants in name order.
    pub tenants: Vec<TenantInfo>,
}

/// `DELETE /v1/tenants/{tenant}?confirm={tenant}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct DestroyResponse {
    /// The destroyed tenant.
    pub tenant: String,
    /// Data key versions destroyed.
    pub destroyed_key_versions: u32,
    /// Token records deleted.
    pub deleted_tokens: u64,
    /// The erasure receipt file (`vault_client::receipt`): the receipt line, then its
    /// signature line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// What a consent token was granted for. `subject` and `account` are personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// The user who gave consent.
    pub subject: String,
    /// The bank that issued the token.
    pub bank: String,
    /// The account the token reads or pays from.
    pub account: String,
    /// The consent scope, e.g. `accounts` or `payments`.
    pub scope: String,
}

/// `PUT /v1/tenants/{t}/tokens/{id}` body. On the wire the token is `secret` (UTF-8 text) or
/// `secret_b64` (base64), exactly one; the client sends text whenever the bytes are UTF-8.
#[derive(Debug, Deserialize)]
#[serde(try_from = "PutTokenWire")]
pub struct PutToken {
    /// The token.
    pub secret: Secret,
    /// What the token is for.
    pub binding: Binding,
    /// When the token stops being usable.
    pub expires_at: Option<Timestamp>,
    /// Compare-and-set: store only if the current revision is this one (0: only if absent).
    pub expected_revision: Option<u64>,
    /// The refresh lease this put ends (`docs/leases.md`): the write and the release are one.
    pub lease: Option<String>,
}

impl PutToken {
    /// A put of `secret` bound to `binding`, with no expiry, condition or lease.
    pub fn new(secret: impl Into<Secret>, binding: Binding) -> Self {
        Self {
            secret: secret.into(),
            binding,
            expires_at: None,
            expected_revision: None,
            lease: None,
        }
    }

    /// The same put with an expiry.
    #[must_use]
    pub fn expires_at(mut self, at: Timestamp) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The same put, made only if the token's revision is `revision` (0: only if absent).
    #[must_use]
    pub fn expected_revision(mut self, revision: u64) -> Self {
        self.expected_revision = Some(revision);
        self
    }

    /// The same put, ending the refresh lease `lease`.
    #[must_use]
    pub fn under_lease(mut self, lease: impl Into<String>) -> Self {
        self.lease = Some(lease.into());
        self
    }
}

/// [`PutToken`] as it travels.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct PutTokenWire {
    #[serde(default, with = "crate::secret::utf8")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    secret: Option<Secret>,
    #[serde(default, with = "crate::secret::b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    secret_b64: Option<Secret>,
    binding: Binding,
    #[serde(default)]
    expires_at: Option<Timestamp>,
    #[serde(default)]
    expected_revision: Option<u64>,
    #[serde(default)]
    lease: Option<String>,
}

impl TryFrom<PutTokenWire> for PutToken {
    type Error = String;
    fn try_from(w: PutTokenWire) -> Result<Self, String> {
        Ok(Self {
            secret: crate::secret::one_of("secret", w.secret, w.secret_b64)?,
            binding: w.binding,
            expires_at: w.expires_at,
            expected_revision: w.expected_revision,
            lease: w.lease,
        })
    }
}

impl Serialize for PutToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            secret: crate::secret::Field<'a>,
            binding: &'a Binding,
            #[serde(skip_serializing_if = "Option::is_none")]
            expires_at: Option<Timestamp>,
            #[serde(skip_serializing_if = "Option::is_none")]
            expected_revision: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            lease: Option<&'a str>,
        }
        Out {
            secret: TOKEN_SECRET.field(&self.secret),
            binding: &self.binding,
            expires_at: self.expires_at,
            expected_revision: self.expected_revision,
            lease: self.lease.as_deref(),
        }
        .serialize(s)
    }
}

/// The names a token's secret travels under.
const TOKEN_SECRET: SecretNames = SecretNames {
    text: "secret",
    b64: "secret_b64",
};

/// The two field names of a secret on the wire.
struct SecretNames {
    text: &'static str,
    b64: &'static str,
}

impl SecretNames {
    fn field<'a>(&self, secret: &'a Secret) -> crate::secret::Field<'a> {
        crate::secret::Field {
            text: self.text,
            b64: self.b64,
            secret,
        }
    }
}

/// `POST /v1/tenants/{t}/tokens/{id}/lease` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseToken {
    /// How long the lease holds, 1-300.
    pub seconds: u32,
}

/// `POST /v1/tenants/{t}/tokens/{id}/lease` answer: the lease that holds the token, and the
/// token as an unseal answers it (its fields side by side with the lease's on the wire).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct LeaseTokenResponse {
    /// The lease id: put the new token with it, or give it back.
    pub lease: String,
    /// When the lease lapses.
    pub lease_expires_at: Timestamp,
    /// The token; its `revision` is what the put under the lease expects.
    #[serde(flatten)]
    pub token: UnsealTokenResponse,
}

/// `DELETE /v1/tenants/{t}/tokens/{id}/lease` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseLease {
    /// The lease id.
    pub lease: String,
}

/// `DELETE /v1/tenants/{t}/tokens/{id}/lease` answer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct Released {
    /// False when the lease had already lapsed or been released.
    pub released: bool,
}

/// `PUT /v1/tenants/{t}/tokens/{id}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct PutTokenResponse {
    /// The new revision (1 for a new token).
    pub revision: u64,
    /// The data key version that encrypted it.
    pub key_version: u32,
}

/// Fields the caller expects the binding to have; any mismatch is `binding_mismatch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Expected account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Expected subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Expected scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `POST /v1/tenants/{t}/tokens/{id}/unseal` body (an empty body means no expectation).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UnsealToken {
    /// Optional expectation on the binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

/// `POST /v1/tenants/{t}/tokens/{id}/unseal` answer. On the wire the token is `secret` when it
/// is valid UTF-8, else `secret_b64` (base64).
#[derive(Debug, Deserialize)]
#[serde(try_from = "UnsealTokenWire")]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct UnsealTokenResponse {
    /// The token.
    pub secret: Secret,
    /// What the token is for.
    pub binding: Binding,
    /// When it expires, if ever.
    pub expires_at: Option<Timestamp>,
    /// Current revision.
    pub revision: u64,
}

impl UnsealTokenResponse {
    /// The token.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

/// [`UnsealTokenResponse`] as it travels.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct UnsealTokenWire {
    #[serde(default, with = "crate::secret::utf8")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    secret: Option<Secret>,
    #[serde(default, with = "crate::secret::b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    secret_b64: Option<Secret>,
    binding: Binding,
    #[serde(default)]
    expires_at: Option<Timestamp>,
    revision: u64,
}

impl TryFrom<UnsealTokenWire> for UnsealTokenResponse {
    type Error = String;
    fn try_from(w: UnsealTokenWire) -> Result<Self, String> {
        Ok(Self {
            secret: crate::secret::one_of("secret", w.secret, w.secret_b64)?,
            binding: w.binding,
            expires_at: w.expires_at,
            revision: w.revision,
        })
    }
}

impl Serialize for UnsealTokenResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            secret: crate::secret::Field<'a>,
            binding: &'a Binding,
            expires_at: Option<Timestamp>,
            revision: u64,
        }
        Out {
            secret: TOKEN_SECRET.field(&self.secret),
            binding: &self.binding,
            expires_at: self.expires_at,
            revision: self.revision,
        }
        .serialize(s)
    }
}

/// Token metadata: `GET /v1/tenants/{t}/tokens/{id}` and list items. Never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct TokenMeta {
    /// Token id.
    pub id: String,
    /// What the token is for.
    pub binding: Binding,
    /// When it expires, if ever.
    pub expires_at: Option<Timestamp>,
    /// Current revision.
    pub revision: u64,
    /// The data key version that encrypts it.
    pub key_version: u32,
    /// When this revision was written.
    pub updated_at: Timestamp,
    /// Whether it is a decoy (`docs/alarms.md`): present only for a caller that also holds
    /// `keys:read` on the tenant; absent for every other caller, real token or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoy: Option<bool>,
}

/// `GET /v1/tenants/{t}/tokens?after=&limit=` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct TokenList {
    /// Tokens in id order.
    pub items: Vec<TokenMeta>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// `DELETE /v1/tenants/{t}/tokens/{id}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct Deleted {
    /// Always true: a missing token is `not_found`.
    pub deleted: bool,
}

/// One plaintext to seal in transit mode. On the wire the plaintext is `plaintext` (UTF-8 text)
/// or `plaintext_b64` (base64), exactly one.
#[derive(Debug, Deserialize)]
#[serde(try_from = "TransitSealItemWire")]
pub struct TransitSealItem {
    /// The plaintext.
    pub plaintext: Secret,
    /// The caller's context, bound to the blob: unseal needs the same one.
    pub context: String,
}

impl TransitSealItem {
    /// `plaintext` bound to `context`.
    pub fn new(plaintext: impl Into<Secret>, context: impl Into<String>) -> Self {
        Self {
            plaintext: plaintext.into(),
            context: context.into(),
        }
    }
}

/// [`TransitSealItem`] as it travels.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct TransitSealItemWire {
    #[serde(default, with = "crate::secret::utf8")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    plaintext: Option<Secret>,
    #[serde(default, with = "crate::secret::b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    plaintext_b64: Option<Secret>,
    #[serde(default)]
    context: String,
}

impl TryFrom<TransitSealItemWire> for TransitSealItem {
    type Error = String;
    fn try_from(w: TransitSealItemWire) -> Result<Self, String> {
        Ok(Self {
            plaintext: crate::secret::one_of("plaintext", w.plaintext, w.plaintext_b64)?,
            context: w.context,
        })
    }
}

impl Serialize for TransitSealItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            plaintext: crate::secret::Field<'a>,
            context: &'a str,
        }
        Out {
            plaintext: PLAINTEXT.field(&self.plaintext),
            context: &self.context,
        }
        .serialize(s)
    }
}

/// `POST /v1/tenants/{t}/seal` body: one item inline (`plaintext` or `plaintext_b64`, and
/// `context`), or `items` for a batch; never both.
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "TransitSealWire")]
pub struct TransitSeal {
    /// Plaintext (single form).
    pub plaintext: Option<Secret>,
    /// Context (single form).
    pub context: Option<String>,
    /// Batch form.
    pub items: Option<Vec<TransitSealItem>>,
}

impl TransitSeal {
    /// The single form: `plaintext` bound to `context`.
    pub fn one(plaintext: impl Into<Secret>, context: impl Into<String>) -> Self {
        Self {
            plaintext: Some(plaintext.into()),
            context: Some(context.into()),
            items: None,
        }
    }

    /// The batch form.
    pub fn batch(items: Vec<TransitSealItem>) -> Self {
        Self {
            items: Some(items),
            ..Self::default()
        }
    }
}

/// [`TransitSeal`] as it travels.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct TransitSealWire {
    #[serde(default, with = "crate::secret::utf8")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    plaintext: Option<Secret>,
    #[serde(default, with = "crate::secret::b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    plaintext_b64: Option<Secret>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<TransitSealItemWire>>))]
    items: Option<Vec<TransitSealItem>>,
}

impl TryFrom<TransitSealWire> for TransitSeal {
    type Error = String;
    fn try_from(w: TransitSealWire) -> Result<Self, String> {
        let plaintext = match (w.plaintext, w.plaintext_b64) {
            (None, None) => None,
            (text, b64) => Some(crate::secret::one_of("plaintext", text, b64)?),
        };
        Ok(Self {
            plaintext,
            context: w.context,
            items: w.items,
        })
    }
}

impl Serialize for TransitSeal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            plaintext: Option<crate::secret::Field<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            context: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            items: Option<&'a [TransitSealItem]>,
        }
        Out {
            plaintext: self.plaintext.as_ref().map(|p| PLAINTEXT.field(p)),
            context: self.context.as_deref(),
            items: self.items.as_deref(),
        }
        .serialize(s)
    }
}

/// The names a transit plaintext travels under.
const PLAINTEXT: SecretNames = SecretNames {
    text: "plaintext",
    b64: "plaintext_b64",
};

/// One blob to unseal in transit mode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TransitUnsealItem {
    /// The blob, `vault:v{N}:…`.
    pub sealed: String,
    /// The context given at seal time.
    #[serde(default)]
    pub context: String,
}

/// `POST /v1/tenants/{t}/unseal` body: one item inline, or `items` for a batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TransitUnseal {
    /// The blob (single form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// Context (single form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Batch form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<TransitUnsealItem>>,
}

/// Transit seal answer, single form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct Sealed {
    /// The blob, `vault:v{N}:…`.
    pub sealed: String,
}

/// Transit unseal answer, single form (and each item of a batch): the plaintext as
/// `plaintext` when it is valid UTF-8, else `plaintext_b64` (base64).
#[derive(Debug, Deserialize)]
#[serde(try_from = "PlaintextWire")]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct Plaintext {
    /// The plaintext.
    pub plaintext: Secret,
}

/// [`Plaintext`] as it travels.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct PlaintextWire {
    #[serde(default, with = "crate::secret::utf8")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    plaintext: Option<Secret>,
    #[serde(default, with = "crate::secret::b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    plaintext_b64: Option<Secret>,
}

impl TryFrom<PlaintextWire> for Plaintext {
    type Error = String;
    fn try_from(w: PlaintextWire) -> Result<Self, String> {
        Ok(Self {
            plaintext: crate::secret::one_of("plaintext", w.plaintext, w.plaintext_b64)?,
        })
    }
}

impl Serialize for Plaintext {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PLAINTEXT.field(&self.plaintext).serialize(s)
    }
}

/// One result of a batch: the value, or the error for that item alone.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum BatchItem<T> {
    /// This item failed; the others are unaffected.
    Failed {
        /// Why.
        error: ErrorDetail,
    },
    /// This item succeeded.
    Done(T),
}

/// Batch answer of transit seal/unseal: one result per item, in order.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct Batch<T> {
    /// Results in request order.
    pub items: Vec<BatchItem<T>>,
}

/// `GET /v1/audit` answer: entries oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct AuditPage {
    /// Matching entries.
    pub entries: Vec<crate::audit::Entry>,
    /// Pass as `after` for the next page; absent when the log has been read to its end.
    pub next: Option<u64>,
}

/// `GET /v1/audit/chains` answer (`docs/audit-log.md`, "Several chains").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct AuditChains {
    /// The node whose chain the answering node appends to (absent: an embedded store's one
    /// chain).
    pub own: Option<String>,
    /// Every chain, in node order.
    pub chains: Vec<AuditChain>,
}

/// One chain of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct AuditChain {
    /// Its node (absent: an embedded store's one chain).
    pub node: Option<String>,
    /// The sequence number of its last entry (0: none yet).
    pub last_seq: u64,
}

/// `POST /v1/audit/archive` body: archive one chain's entries up to `through`, which the
/// caller has exported to a file and verified (`docs/audit-log.md`, "Archiving").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditArchiveRequest {
    /// The chain (a node of a shared PostgreSQL store); by default the answering node's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The last entry archived: one with a signed head.
    pub through: u64,
    /// That entry's chain hash (hex), as the archive's statement names it.
    pub last_hash: String,
    /// SHA-256 of the archive file (hex).
    pub archive_sha256: String,
}

/// `POST /v1/audit/archive` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct AuditArchived {
    /// The checkpoint the chain now starts at.
    pub checkpoint: crate::audit::CheckpointLine,
    /// Entries archived by this call.
    pub entries: u64,
}

/// `POST /v1/audit/hash` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditHashRequest {
    /// The value to hash, e.g. an account number an auditor searches for.
    pub value: String,
}

/// `POST /v1/audit/hash` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct AuditHash {
    /// HMAC-SHA256 of the value under the audit key, hex, as entries write it.
    pub hmac: String,
}

/// `GET /v1/audit/pubkey` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct AuditPublicKey {
    /// The vault whose log it signs.
    pub vault_id: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
}

/// State of a background job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Finished; every record it covers is under its tenant's current key version.
    Completed,
    /// Stopped on an error; see `error`.
    Failed,
    /// In progress (paused while the vault is sealed; resumed at unseal after a restart).
    Running,
}

/// `GET /v1/jobs/{id}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// `rewrap`.
    pub kind: String,
    /// State.
    pub state: JobState,
    /// The tenant it covers; absent: every tenant.
    pub tenant: Option<String>,
    /// Records rewrapped so far.
    pub done: u64,
    /// Records under old key versions when the job started.
    pub total: u64,
    /// Records per second since the job started.
    pub rate: f64,
    /// Rate limit in records per second, if any.
    pub rate_limit: Option<u64>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The most records per second a rewrap may be limited to (`RewrapStart::rate`): beyond it a
/// limit limits nothing.
pub const MAX_REWRAP_RATE: u64 = 1_000_000;

/// `POST /v1/keys/rewrap` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RewrapStart {
    /// Only this tenant; absent: every tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// At most this many records per second, 1-1000000 (`MAX_REWRAP_RATE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub rate: Option<u64>,
}

/// `POST /v1/keys/rewrap` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct JobStarted {
    /// Poll `GET /v1/jobs/{id}`.
    pub id: String,
}

/// `POST /v1/tenants/{t}/keys/rotate` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct TenantRotated {
    /// Tenant.
    pub tenant: String,
    /// The new current version.
    pub key_version: u32,
}

/// `POST /v1/keys/master/rotate` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct MasterRotated {
    /// The new master key version.
    pub master_key_version: u32,
    /// The KMS key that wraps it.
    pub kms_key_id: String,
    /// Data key versions rewrapped under it.
    pub rewrapped_data_keys: u64,
    /// Milliseconds the rotation took.
    pub millis: u64,
}

/// `POST /v1/sys/recovery` body: split a new recovery key into one share per recipient
/// (`docs/break-glass.md`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecoveryCreate {
    /// How many shares open the vault (2 or more, at most the number of recipients).
    pub threshold: u8,
    /// One age X25519 recipient (`age1…`) per share holder, 2 to 16.
    pub recipients: Vec<String>,
}

/// `POST /v1/sys/recovery` answer: the shares, each encrypted to its holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct RecoveryShares {
    /// The vault the shares open.
    pub vault_id: String,
    /// How many shares open it.
    pub threshold: u8,
    /// One per recipient, in the order given.
    pub shares: Vec<RecoveryShare>,
}

/// One recovery share, as handed to its holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct RecoveryShare {
    /// Its number, 1 to N.
    pub index: u8,
    /// The holder's age recipient it is encrypted to.
    pub holder: String,
    /// The share, an ASCII-armored age file only the holder's identity decrypts.
    pub share: String,
}

/// `POST /v1/sys/recover` body: one decrypted share (`vaultd-share-v1:…`).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecoverShare {
    /// The share line its holder decrypted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::secret::utf8"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub share: Option<Secret>,
}

/// `POST /v1/sys/recover` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct RecoverProgress {
    /// `unsealed` once `accepted` reached `threshold`, else `sealed`.
    pub state: VaultState,
    /// Distinct shares accepted since start (or since the last recovery unseal).
    pub accepted: u8,
    /// How many open the vault.
    pub threshold: u8,
}

/// `POST /v1/keys/kms/rotate` and `POST /v1/keys/kms/migrate` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KmsRotate {
    /// The KMS key to move the master key under.
    pub key_id: String,
}

/// `POST /v1/keys/kms/rotate` and `POST /v1/keys/kms/migrate` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct KmsRotated {
    /// Master key version (unchanged).
    pub master_key_version: u32,
    /// The KMS key that wrapped it before.
    pub old_kms_key_id: String,
    /// The KMS key that wraps it now.
    pub kms_key_id: String,
}

/// `POST /v1/tenants/{t}/keys/retire` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Retire {
    /// Destroy every data key version below this one.
    pub below_version: u32,
}

/// `POST /v1/tenants/{t}/keys/retire` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct Retired {
    /// Tenant.
    pub tenant: String,
    /// Versions destroyed.
    pub retired_versions: Vec<u32>,
    /// The tenant's minimum decryption version now.
    pub min_decryption_version: u32,
}

/// `POST /v1/tenants/{t}/keys/config` body and answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Transit blobs under lower versions are refused.
    pub min_decryption_version: u32,
}

/// The master key, as history shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct MasterKeyInfo {
    /// Version.
    pub version: u32,
    /// The KMS key that wraps it.
    pub kms_key_id: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// One live data key version, as history shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct LiveKeyVersion {
    /// Version.
    pub version: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// Age in whole days.
    pub age_days: u64,
    /// Stored records under it.
    pub records: u64,
    /// Records and transit blobs ever encrypted under it.
    pub encryptions: u64,
}

/// A tenant's live keys, as history shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct TenantKeys {
    /// Tenant.
    pub tenant: String,
    /// Version new seals use.
    pub current_key_version: u32,
    /// Transit blobs under lower versions are refused.
    pub min_decryption_version: u32,
    /// Live versions, oldest first.
    pub versions: Vec<LiveKeyVersion>,
}

/// `GET /v1/keys/history[?tenant=T]` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct KeyHistory {
    /// The current master key.
    pub master: MasterKeyInfo,
    /// Every key event, oldest first (audit entries).
    pub events: Vec<crate::audit::Entry>,
    /// Live data key versions per tenant.
    pub tenants: Vec<TenantKeys>,
    /// The daemon's automatic rotation policy (`[rotation]`), when it has one: what the age of
    /// each current key is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationInfo>,
}

/// The `[rotation]` policy, as [`KeyHistory`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(not(feature = "construct-answers"), non_exhaustive)]
pub struct RotationInfo {
    /// Largest age of a current data key version, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_dek_age_days: Option<u64>,
    /// Most encryptions under one data key version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_encryptions_per_version: Option<u64>,
}
