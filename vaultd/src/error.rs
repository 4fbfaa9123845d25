//! The library error, from the engine to the wire: every failure an answer can carry, and the
//! one map from an error to an HTTP status and API code (`docs/api.md`, "Errors").

use std::time::Duration;

use http::StatusCode;

use crate::kms::KmsError;
use crate::store::StoreError;

/// Everything a vault operation can fail with. Messages never contain secrets or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `init` on a vault that already has a master key.
    #[error("vault is already initialized")]
    AlreadyInitialized,
    /// The audit entry could not be written durably, so the operation was not acknowledged. A
    /// write and its entry share one atomic batch: both took effect or neither did.
    #[error(
        "audit log unavailable: the operation was not acknowledged (a write and its audit entry stand or fall together)"
    )]
    AuditUnavailable,
    /// The token's binding does not match what the caller expected.
    #[error("token binding does not match the expectation")]
    BindingMismatch,
    /// A compare-and-set or state conflict.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A caller-supplied sealed blob did not authenticate (wrong tenant, context, or altered).
    #[error("decryption failed")]
    DecryptionFailed,
    /// The token is past its expiry time.
    #[error("token has expired")]
    Expired,
    /// Bad input from the caller.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The KMS provider failed.
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The OS random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// The vault is sealed.
    #[error("vault is sealed")]
    Sealed,
    /// A recovery share was refused (`docs/break-glass.md`); it does not count.
    #[error("recovery share refused: {0}")]
    ShareRefused(String),
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vault has no master key yet.
    #[error("vault is not initialized")]
    Uninitialized,
    /// The caller does not hold a capability the request needs, where it needs it.
    #[error("{0}")]
    Denied(String),
    /// The path names no endpoint.
    #[error("no endpoint {0}")]
    NoEndpoint(String),
    /// The endpoint does not take this method; these are the ones it takes.
    #[error("method not allowed; allowed: {0}")]
    MethodNotAllowed(&'static str),
    /// The request body took longer than the server allows.
    #[error("the request body took too long")]
    Timeout,
    /// The request body is over this many bytes.
    #[error("request body is over {0} bytes")]
    TooLarge(usize),
    /// Another caller holds the token's refresh lease (`docs/leases.md`) for `wait` more.
    #[error("the token is leased by another caller for a refresh; retry in {} s", retry_seconds(*.wait))]
    Leased {
        /// Until the lease lapses.
        wait: Duration,
    },
    /// The token stored equals one of its earlier revisions: a refresh token used twice.
    #[error(
        "the token equals one of its earlier revisions (a refresh token stored twice); refused, and an alarm was raised"
    )]
    TokenReused,
    /// The caller is past one of its limits (`server/callers.rs`); nothing was done.
    #[error("{} for this caller; retry in {} s", .limit.reason(), retry_seconds(*.wait))]
    RateLimited {
        /// Which limit.
        limit: Limit,
        /// How long until a retry can succeed.
        wait: Duration,
    },
}

/// Which per-caller limit a [`Error::RateLimited`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The budget of refused requests (denied, malformed, for no endpoint).
    Refused,
    /// A request quota of the caller's policy rule.
    Quota,
    /// An exfiltration brake of the caller's policy rule (`docs/alarms.md`).
    Brake,
}

impl Limit {
    fn reason(self) -> &'static str {
        match self {
            Self::Refused => "too many refused requests (denied, malformed or for no endpoint)",
            Self::Quota => "a request quota of its policy rule is spent",
            Self::Brake => {
                "one more distinct token than an exfiltration brake of its policy rule allows (an alarm is raised)"
            }
        }
    }
}

/// `wait` in whole seconds for `Retry-After`, rounded up, at least 1.
pub(crate) fn retry_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

impl From<getrandom::Error> for Error {
    fn from(_: getrandom::Error) -> Self {
        Self::Random
    }
}

impl Error {
    /// Bad input from the caller, saying what is wrong with it.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// The stable API error code (`docs/api.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Denied(_) => "denied",
            Self::NoEndpoint(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Timeout => "timeout",
            Self::TooLarge(_) => "too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Leased { .. } => "leased",
            Self::TokenReused => "token_reused",
            Self::AlreadyInitialized | Self::Conflict(_) => "conflict",
            Self::AuditUnavailable => "audit_unavailable",
            Self::BindingMismatch => "binding_mismatch",
            Self::DecryptionFailed => "decryption_failed",
            Self::Expired => "expired",
            Self::Invalid(_) => "invalid",
            Self::Kms(e) => e.code(),
            Self::NotFound(_) => "not_found",
            Self::Random | Self::Store(StoreError::Backend(_) | StoreError::Corrupt(_)) => {
                "internal"
            }
            Self::Sealed => "sealed",
            Self::ShareRefused(_) => "share_refused",
            Self::Store(StoreError::Conflict) => "conflict",
            Self::Store(StoreError::Closed | StoreError::Io(_)) => "unavailable",
            Self::Uninitialized => "uninitialized",
        }
    }

    /// The HTTP status of this error. Exhaustive on purpose: a new variant must choose one.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Denied(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::AlreadyInitialized
            | Self::BindingMismatch
            | Self::Conflict(_)
            | Self::Leased { .. }
            | Self::TokenReused => StatusCode::CONFLICT,
            Self::DecryptionFailed | Self::Invalid(_) | Self::ShareRefused(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Expired => StatusCode::GONE,
            Self::Kms(e) => e.status(),
            Self::NotFound(_) | Self::NoEndpoint(_) => StatusCode::NOT_FOUND,
            Self::Random | Self::Store(StoreError::Backend(_) | StoreError::Corrupt(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::AuditUnavailable
            | Self::Sealed
            | Self::Uninitialized
            | Self::Store(StoreError::Closed | StoreError::Io(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Store(StoreError::Conflict) => StatusCode::CONFLICT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::KmsError;

    #[test]
    fn every_error_answers_with_a_code_the_client_knows() {
        let kms = [
            KmsError::AccessDenied(String::new()),
            KmsError::DecryptionFailed,
            KmsError::KeyDisabled(String::new()),
            KmsError::KeyFile(String::new()),
            KmsError::KeyNotFound(String::new()),
            KmsError::KeyPendingDeletion(String::new()),
            KmsError::Rejected(String::new()),
            KmsError::Throttled,
            KmsError::Unreachable(String::new()),
            KmsError::KeyNotConfigured {
                configured: String::new(),
                wrapping: String::new(),
            },
            KmsError::WrongKeyId {
                expected: String::new(),
                actual: String::new(),
            },
        ];
        let store = [
            StoreError::Backend(String::new()),
            StoreError::Io(String::new()),
            StoreError::Closed,
            StoreError::Conflict,
            StoreError::Corrupt(String::new()),
        ];
        let errors = [
            Error::AlreadyInitialized,
            Error::AuditUnavailable,
            Error::BindingMismatch,
            Error::Conflict(String::new()),
            Error::DecryptionFailed,
            Error::Expired,
            Error::Invalid(String::new()),
            Error::NotFound(String::new()),
            Error::Random,
            Error::Sealed,
            Error::ShareRefused(String::new()),
            Error::Uninitialized,
            Error::Denied(String::new()),
            Error::NoEndpoint(String::new()),
            Error::MethodNotAllowed("GET"),
            Error::Timeout,
            Error::TooLarge(1),
            Error::RateLimited {
                limit: Limit::Quota,
                wait: Duration::from_millis(1),
            },
            Error::Leased {
                wait: Duration::from_secs(1),
            },
            Error::TokenReused,
        ]
        .into_iter()
        .chain(kms.into_iter().map(Error::Kms))
        .chain(store.into_iter().map(Error::Store));
        for e in errors {
            listed(&e);
            assert!(
                vault_client::API_CODES.contains(&e.code()),
                "{e:?}: {}",
                e.code()
            );
            let parsed = vault_client::ApiCode::parse(e.code());
            assert!(!matches!(parsed, vault_client::ApiCode::Other(_)), "{e:?}");
        }
    }

    /// Does not compile until a new variant is added to the list above as well.
    fn listed(e: &Error) {
        match e {
            Error::AlreadyInitialized
            | Error::AuditUnavailable
            | Error::BindingMismatch
            | Error::Conflict(_)
            | Error::DecryptionFailed
            | Error::Expired
            | Error::Invalid(_)
            | Error::Kms(_)
            | Error::NotFound(_)
            | Error::Random
            | Error::Sealed
            | Error::ShareRefused(_)
            | Error::Store(_)
            | Error::Uninitialized
            | Error::Denied(_)
            | Error::NoEndpoint(_)
            | Error::MethodNotAllowed(_)
            | Error::Timeout
            | Error::TooLarge(_)
            | Error::RateLimited { .. }
            | Error::Leased { .. }
            | Error::TokenReused => {}
        }
    }

    #[test]
    fn a_rate_limit_says_when_to_retry_in_whole_seconds() {
        let e = Error::RateLimited {
            limit: Limit::Quota,
            wait: Duration::from_millis(1500),
        };
        assert_eq!(
            e.to_string(),
            "a request quota of its policy rule is spent for this caller; retry in 2 s"
        );
        assert_eq!(retry_seconds(Duration::ZERO), 1);
        assert_eq!(retry_seconds(Duration::from_secs(7200)), 7200);
    }
}
