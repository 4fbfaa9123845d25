//! The library error, and the one map from an error to an HTTP status and API code.

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
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vault has no master key yet.
    #[error("vault is not initialized")]
    Uninitialized,
}

impl From<getrandom::Error> for Error {
    fn from(_: getrandom::Error) -> Self {
        Self::Random
    }
}

impl Error {
    /// The stable API error code (`docs/api.md`).
    pub fn code(&self) -> &'static str {
        match self {
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
            Self::Store(StoreError::Conflict) => "conflict",
            Self::Store(StoreError::Closed | StoreError::Io(_)) => "unavailable",
            Self::Uninitialized => "uninitialized",
        }
    }

    /// The HTTP status of this error. Exhaustive on purpose: a new variant must choose one.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::AlreadyInitialized | Self::BindingMismatch | Self::Conflict(_) => {
                StatusCode::CONFLICT
            }
            Self::DecryptionFailed | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Expired => StatusCode::GONE,
            Self::Kms(e) => e.status(),
            Self::NotFound(_) => StatusCode::NOT_FOUND,
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
            Error::Uninitialized,
        ]
        .into_iter()
        .chain(kms.into_iter().map(Error::Kms))
        .chain(store.into_iter().map(Error::Store));
        for e in errors {
            assert!(
                vault_client::API_CODES.contains(&e.code()),
                "{e:?}: {}",
                e.code()
            );
            let parsed = vault_client::ApiCode::parse(e.code());
            assert!(!matches!(parsed, vault_client::ApiCode::Other(_)), "{e:?}");
        }
    }
}
