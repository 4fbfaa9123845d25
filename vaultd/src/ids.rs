//! Tenant and token identifiers, checked once at the edge ("parse, don't validate").
//!
//! An id is 1–128 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit: never
//! `/`, `..`, whitespace or control characters, so ids are safe in paths, store keys and logs.

use std::fmt;

use crate::error::Error;

/// Longest id accepted.
pub(crate) const MAX_ID_LEN: usize = 128;

fn check(kind: &str, text: &str) -> Result<(), Error> {
    let bytes = text.as_bytes();
    let ok_len = (1..=MAX_ID_LEN).contains(&bytes.len());
    let ok_first = bytes.first().is_some_and(u8::is_ascii_alphanumeric);
    let ok_chars = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{kind} id must be 1-{MAX_ID_LEN} characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
        )))
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses an id; anything outside the documented alphabet is `Error::Invalid`.
            pub fn parse(text: &str) -> Result<Self, Error> {
                check($kind, text)?;
                Ok(Self(text.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant (a company on the platform).
    TenantId,
    "tenant"
);
id_type!(
    /// A stored token's id within its tenant.
    TokenId,
    "token"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_alphabet() {
        for ok in ["a", "acme-gmbh", "Tenant_1.2", "0", &"x".repeat(128)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_paths_dots_controls_and_length() {
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "a\0b",
            "a b",
            "a\nb",
            "ü",
            "-x",
            &"x".repeat(129),
        ] {
            assert!(TokenId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
