//! [`Error`]: what a [`Client`](crate::Client) call can fail with, typed after the API's codes.

use std::fmt;
use std::io;

use crate::wire::ErrorBody;

/// Why a call failed.
///
/// The daemon's refusals arrive as [`Error::Api`] with the stable [`ApiCode`]; the other variants
/// are failures on the way there. Messages never hold a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The daemon answered with an error status and an error body.
    #[error("vaultd refused the request: {message} ({code}, HTTP {status}{})", request_suffix(.request_id.as_deref()))]
    Api {
        /// The stable machine code of the error.
        code: ApiCode,
        /// The HTTP status of the answer.
        status: u16,
        /// The daemon's human-readable message.
        message: String,
        /// The request id the daemon answered with (`X-Request-Id`): the `request` of the
        /// request's audit entry and access log line.
        request_id: Option<String>,
    },
    /// The client's own settings are unusable: a TLS file that is missing, malformed or (a
    /// private key) readable by others, or a node address that does not parse.
    #[error("{0}")]
    Config(String),
    /// The socket or node could not be reached (over TLS: also a failed handshake, e.g. a
    /// server certificate that does not verify), or the connection broke.
    #[error("cannot connect to vaultd")]
    Connect(#[source] io::Error),
    /// The answer could not be written to the caller's output ([`Client::backup`](crate::Client::backup)).
    #[error("cannot write the answer to the output")]
    Output(#[source] io::Error),
    /// The answer was not HTTP or JSON of the expected shape.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The call did not complete within the client's timeout.
    #[error("the request timed out")]
    Timeout,
}

impl Error {
    /// The API error code, when the daemon answered with one.
    pub fn code(&self) -> Option<&ApiCode> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::Config(_)
            | Self::Connect(_)
            | Self::Output(_)
            | Self::Protocol(_)
            | Self::Timeout => None,
        }
    }

    /// The request id of the daemon's refusal: quote it to find the request's audit entry and
    /// log line.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// Whether the same request may succeed if sent again later, unchanged: the vault is sealed
    /// or busy, the KMS throttled or out of reach, the caller is rate-limited or the token
    /// leased, the audit entry could not be written (the operation did not happen), or the
    /// daemon could not be reached or did not answer in time. A request that changes state and
    /// failed by a broken connection or a timeout may have been carried out: check before
    /// sending it again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { code, .. } => {
                matches!(
                    code,
                    ApiCode::Sealed
                        | ApiCode::Unavailable
                        | ApiCode::RateLimited
                        | ApiCode::Leased
                        | ApiCode::AuditUnavailable
                ) || matches!(code, ApiCode::Kms(c) if c == "kms_throttled" || c == "kms_unreachable")
            }
            Self::Connect(_) | Self::Timeout => true,
            Self::Config(_) | Self::Output(_) | Self::Protocol(_) => false,
        }
    }

    /// What the client itself retries, for idempotent calls ([`Retry`](crate::Retry)): a sealed
    /// or busy vault, a throttled KMS, a daemon that could not be reached. Not a timeout (the
    /// call already waited its whole timeout), nor a rate limit or lease (their `Retry-After`
    /// is the caller's to honour).
    pub(crate) fn retried_by_client(&self) -> bool {
        match self {
            Self::Api { code, .. } => {
                matches!(code, ApiCode::Sealed | ApiCode::Unavailable)
                    || matches!(code, ApiCode::Kms(c) if c == "kms_throttled")
            }
            Self::Connect(_) => true,
            _ => false,
        }
    }

    /// The error of a non-2xx answer: the code and message of its body, or, when the body is not
    /// an error body, a code guessed from the status.
    pub(crate) fn from_answer(status: u16, body: &[u8], request_id: Option<String>) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(parsed) => Self::Api {
                code: ApiCode::parse(&parsed.error.code),
                status,
                message: parsed.error.message,
                request_id,
            },
            Err(_) => Self::Api {
                code: ApiCode::from_status(status),
                status,
                message: format!("HTTP {status} without an error body"),
                request_id,
            },
        }
    }
}

fn request_suffix(request_id: Option<&str>) -> String {
    request_id.map_or_else(String::new, |id| format!(", request {id}"))
}

/// Every error code the daemon answers with, defined once (`docs/api.md`, "Errors"): the
/// daemon's errors take their codes from this list (checked where it builds an error answer),
/// [`ApiCode`] parses each of them to a variant of its own, and docs/api.md's table lists
/// exactly these (`tests/api.rs`).
pub const API_CODES: &[&str] = &[
    "audit_unavailable",
    "binding_mismatch",
    "conflict",
    "decryption_failed",
    "denied",
    "expired",
    "internal",
    "invalid",
    "kms_access_denied",
    "kms_decryption_failed",
    "kms_key_disabled",
    "kms_key_file",
    "kms_key_not_found",
    "kms_key_pending_deletion",
    "kms_rejected",
    "kms_throttled",
    "kms_unreachable",
    "kms_wrong_key_id",
    "leased",
    "method_not_allowed",
    "not_found",
    "rate_limited",
    "sealed",
    "share_refused",
    "timeout",
    "token_reused",
    "too_large",
    "unavailable",
    "uninitialized",
];

/// What an operator does about a KMS error `code` (`kms_*`), saying which side to change: the
/// config (then restart vaultd) or the KMS (then `vault-cli operator unseal`).
/// `docs/operator-aws.md` has the table this follows.
pub fn kms_remedy(code: &str) -> Option<&'static str> {
    Some(match code {
        "kms_access_denied" => {
            "the KMS refused vaultd's AWS identity: grant it kms:Decrypt, kms:Encrypt and \
             kms:GenerateDataKey on the key (a KMS-side change: then `vault-cli operator unseal`), \
             or fix the credentials vaultd runs with (environment or profile: restart vaultd)"
        }
        "kms_key_disabled" => {
            "enable the key (`aws kms enable-key`), then `vault-cli operator unseal`"
        }
        "kms_key_pending_deletion" => {
            "cancel the deletion (`aws kms cancel-key-deletion`, then `enable-key`), then \
             `vault-cli operator unseal`; if the key is gone, open the vault with recovery shares \
             (docs/break-glass.md)"
        }
        "kms_key_not_found" => {
            "check kms.key_id and kms.region in the config (then restart vaultd); if the key was \
             deleted, open the vault with recovery shares (docs/break-glass.md)"
        }
        "kms_wrong_key_id" => {
            "set kms.key_id to the key the master key is wrapped under (the message names it) \
             and restart vaultd; if you did not migrate it, find out why first"
        }
        "kms_decryption_failed" => {
            "the stored master key does not open under this key and vault id: check that the \
             data directory is this vault's, restore it from a backup, or use recovery shares"
        }
        "kms_key_file" => "fix the local key file (path, owner, mode 0600), then restart vaultd",
        "kms_rejected" => {
            "a setting the KMS or vaultd refused (the message says which): fix the config and \
             restart vaultd, or the key's usage in the KMS and run `vault-cli operator unseal`"
        }
        "kms_throttled" | "kms_unreachable" => {
            "transient: auto-unseal retries by itself; check the endpoint, network and \
             credentials if it lasts"
        }
        _ => return None,
    })
}

/// The stable `code` of an API error (`docs/api.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiCode {
    /// `audit_unavailable`: the audit entry could not be written; the operation did not happen.
    AuditUnavailable,
    /// `binding_mismatch`: the token's binding differs from the caller's expectation.
    BindingMismatch,
    /// `conflict`: a compare-and-set failed, or the state forbids the operation.
    Conflict,
    /// `decryption_failed`: a transit blob did not open (wrong tenant, context, or altered).
    DecryptionFailed,
    /// `denied`: the caller lacks the capability.
    Denied,
    /// `expired`: the token is past its expiry.
    Expired,
    /// `internal`: a bug or an unexpected failure in the daemon.
    Internal,
    /// `invalid`: the request is malformed.
    Invalid,
    /// `kms_*`: the KMS failed or refused; the full code names how
    /// (`kms_unreachable`, `kms_key_disabled`, `kms_decryption_failed`, …).
    Kms(String),
    /// `leased` (409): another caller holds the token's refresh lease; retry after the
    /// answer's `Retry-After` seconds, or sooner.
    Leased,
    /// `method_not_allowed`: the path exists but not with this method.
    MethodNotAllowed,
    /// `not_found`: no such tenant, token, job or path.
    NotFound,
    /// `rate_limited` (429): the caller sent too many refused requests; retry after the answer's
    /// `Retry-After` seconds.
    RateLimited,
    /// `sealed`: the vault is sealed.
    Sealed,
    /// `share_refused` (400): a recovery share is malformed, of another vault, changed, or of
    /// an earlier recovery set; it was not counted.
    ShareRefused,
    /// `timeout` (408): the request body was not sent in time.
    Timeout,
    /// `token_reused` (409): the token stored equals one of its earlier revisions (a refresh
    /// token presented twice); refused, and an alarm was raised.
    TokenReused,
    /// `too_large`: the body exceeds the limit (64 KiB).
    TooLarge,
    /// `unavailable`: the daemon is overloaded or shutting down.
    Unavailable,
    /// `uninitialized`: the vault has not been initialized.
    Uninitialized,
    /// A code this client version does not know.
    Other(String),
}

impl ApiCode {
    /// Parses the wire form (`not_found`, …). Unknown codes become [`ApiCode::Other`].
    pub fn parse(code: &str) -> Self {
        match code {
            "audit_unavailable" => Self::AuditUnavailable,
            "binding_mismatch" => Self::BindingMismatch,
            "conflict" => Self::Conflict,
            "decryption_failed" => Self::DecryptionFailed,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "internal" => Self::Internal,
            "invalid" => Self::Invalid,
            kms if kms.starts_with("kms_") => Self::Kms(kms.to_owned()),
            "leased" => Self::Leased,
            "method_not_allowed" => Self::MethodNotAllowed,
            "not_found" => Self::NotFound,
            "rate_limited" => Self::RateLimited,
            "sealed" => Self::Sealed,
            "share_refused" => Self::ShareRefused,
            "timeout" => Self::Timeout,
            "token_reused" => Self::TokenReused,
            "too_large" => Self::TooLarge,
            "unavailable" => Self::Unavailable,
            "uninitialized" => Self::Uninitialized,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The wire form of the code.
    pub fn as_str(&self) -> &str {
        match self {
            Self::AuditUnavailable => "audit_unavailable",
            Self::BindingMismatch => "binding_mismatch",
            Self::Conflict => "conflict",
            Self::DecryptionFailed => "decryption_failed",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Internal => "internal",
            Self::Invalid => "invalid",
            Self::Kms(code) => code,
            Self::Leased => "leased",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::Sealed => "sealed",
            Self::ShareRefused => "share_refused",
            Self::Timeout => "timeout",
            Self::TokenReused => "token_reused",
            Self::TooLarge => "too_large",
            Self::Unavailable => "unavailable",
            Self::Uninitialized => "uninitialized",
            Self::Other(code) => code,
        }
    }

    /// A best guess from the status alone, for an error answer without an error body.
    fn from_status(status: u16) -> Self {
        match status {
            400 => Self::Invalid,
            403 => Self::Denied,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            408 => Self::Timeout,
            409 => Self::Conflict,
            410 => Self::Expired,
            413 => Self::TooLarge,
            429 => Self::RateLimited,
            500 => Self::Internal,
            502 => Self::Kms("kms_error".to_owned()),
            503 => Self::Unavailable,
            other => Self::Other(format!("http_{other}")),
        }
    }
}

impl fmt::Display for ApiCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> [(&'static str, ApiCode); 17] {
        [
            ("audit_unavailable", ApiCode::AuditUnavailable),
            ("binding_mismatch", ApiCode::BindingMismatch),
            ("conflict", ApiCode::Conflict),
            ("denied", ApiCode::Denied),
            ("expired", ApiCode::Expired),
            ("internal", ApiCode::Internal),
            ("invalid", ApiCode::Invalid),
            (
                "kms_unreachable",
                ApiCode::Kms("kms_unreachable".to_owned()),
            ),
            ("decryption_failed", ApiCode::DecryptionFailed),
            ("method_not_allowed", ApiCode::MethodNotAllowed),
            ("not_found", ApiCode::NotFound),
            ("rate_limited", ApiCode::RateLimited),
            ("sealed", ApiCode::Sealed),
            ("share_refused", ApiCode::ShareRefused),
            ("too_large", ApiCode::TooLarge),
            ("unavailable", ApiCode::Unavailable),
            ("uninitialized", ApiCode::Uninitialized),
        ]
    }

    #[test]
    fn parses_every_known_code_and_round_trips() {
        for (text, code) in all() {
            assert_eq!(ApiCode::parse(text), code);
            assert_eq!(code.as_str(), text);
            assert_eq!(code.to_string(), text);
        }
    }

    #[test]
    fn every_api_code_has_a_variant_of_its_own() {
        for &code in API_CODES {
            let parsed = ApiCode::parse(code);
            assert!(!matches!(parsed, ApiCode::Other(_)), "{code}");
            assert_eq!(parsed.as_str(), code);
        }
    }

    #[test]
    fn keeps_unknown_codes() {
        let code = ApiCode::parse("quota_exceeded");
        assert_eq!(code, ApiCode::Other("quota_exceeded".to_owned()));
        assert_eq!(code.as_str(), "quota_exceeded");
        // Codes are case-sensitive snake_case.
        assert_eq!(
            ApiCode::parse("Sealed"),
            ApiCode::Other("Sealed".to_owned())
        );
    }

    #[test]
    fn parses_error_body() {
        let body = br#"{"error":{"code":"binding_mismatch","message":"account differs"}}"#;
        let err = Error::from_answer(409, body, None);
        assert_eq!(err.code(), Some(&ApiCode::BindingMismatch));
        match err {
            Error::Api {
                status, message, ..
            } => {
                assert_eq!(status, 409);
                assert_eq!(message, "account differs");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn error_without_body_falls_back_to_status() {
        let err = Error::from_answer(404, b"not json", None);
        assert_eq!(err.code(), Some(&ApiCode::NotFound));
        let err = Error::from_answer(418, b"", None);
        assert_eq!(err.code(), Some(&ApiCode::Other("http_418".to_owned())));
    }

    #[test]
    fn display_names_code_and_status() {
        let body = br#"{"error":{"code":"sealed","message":"vault is sealed"}}"#;
        let err = Error::from_answer(503, body, None);
        assert_eq!(
            err.to_string(),
            "vaultd refused the request: vault is sealed (sealed, HTTP 503)"
        );
        assert_eq!(Error::Timeout.code(), None);
        let err = Error::from_answer(503, body, Some("4f1c".into()));
        assert_eq!(
            err.to_string(),
            "vaultd refused the request: vault is sealed (sealed, HTTP 503, request 4f1c)"
        );
        assert_eq!(err.request_id(), Some("4f1c"));
    }

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        let api = |code: &str| {
            Error::from_answer(
                400,
                format!(r#"{{"error":{{"code":"{code}","message":""}}}}"#).as_bytes(),
                None,
            )
        };
        for code in [
            "sealed",
            "unavailable",
            "kms_throttled",
            "kms_unreachable",
            "rate_limited",
            "leased",
            "audit_unavailable",
        ] {
            assert!(api(code).is_retryable(), "{code}");
        }
        for code in [
            "denied",
            "invalid",
            "not_found",
            "conflict",
            "kms_key_disabled",
            "expired",
        ] {
            assert!(!api(code).is_retryable(), "{code}");
        }
        assert!(Error::Timeout.is_retryable());
        assert!(!Error::Config(String::new()).is_retryable());
        // The client retries by itself only what waiting fixes without the caller.
        assert!(api("sealed").retried_by_client() && !api("rate_limited").retried_by_client());
        assert!(!Error::Timeout.retried_by_client());
    }
}
