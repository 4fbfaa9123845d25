//! Key material newtypes. Every key lives in a [`KeyBytes`]: a boxed 32-byte array that is
//! wiped on drop, never printed, never cloned, and reached only through `expose_secret()`.

use std::fmt;

use zeroize::Zeroize;

pub use vault_client::Secret;

/// 32 bytes of key material on the heap, wiped on drop. Its `Debug` prints `[redacted]`.
pub struct KeyBytes(Box<[u8; 32]>);

impl KeyBytes {
    /// A fresh key from the operating system's random number generator.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut key = Box::new([0u8; 32]);
        getrandom::fill(key.as_mut_slice())?;
        Ok(Self(key))
    }

    /// Copies exactly 32 bytes into a new key; any other length is refused.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: &[u8; 32] = bytes.try_into().ok()?;
        Some(Self(Box::new(*array)))
    }

    /// Moves the key out of `bytes`, wiping the source array.
    pub fn take(bytes: &mut [u8; 32]) -> Self {
        let key = Self(Box::new(*bytes));
        bytes.zeroize();
        key
    }

    /// The key bytes.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name(KeyBytes);

        impl $name {
            /// Wraps key bytes; callers obtain them only from an authenticated unwrap or the RNG.
            pub(crate) fn new(key: KeyBytes) -> Self {
                Self(key)
            }

            /// The key bytes.
            pub fn expose_secret(&self) -> &[u8; 32] {
                self.0.expose_secret()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

key_type!(
    /// The master key (MK): wraps every tenant data key and the audit key. Only its KMS-wrapped
    /// form is ever stored.
    MasterKey
);
key_type!(
    /// A tenant data key (DEK) of one version: the input of every per-record key derivation.
    DataKey
);
key_type!(
    /// The audit HMAC key: personal data appears in the audit log only as an HMAC under it.
    AuditKey
);

/// DANGEROUS: a data key from caller-chosen bytes, for known-answer vectors and benches only
/// (feature `dangerous-test-hooks`, never in a release): in the vault a data key comes only
/// from the RNG or an authenticated unwrap.
#[cfg(feature = "dangerous-test-hooks")]
pub fn dangerous_data_key(key: KeyBytes) -> DataKey {
    DataKey::new(key)
}

/// DANGEROUS: a master key from caller-chosen bytes, for benches only (feature
/// `dangerous-test-hooks`): in the vault a master key comes only from the RNG or an
/// authenticated KMS unwrap.
#[cfg(feature = "dangerous-test-hooks")]
pub fn dangerous_master_key(key: KeyBytes) -> MasterKey {
    MasterKey::new(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = KeyBytes::from_slice(&[0xAB; 32]).expect("32 bytes");
        let text = format!(
            "{key:?} {:?}",
            MasterKey::new(KeyBytes::from_slice(&[0xAB; 32]).expect("32 bytes"))
        );
        assert!(!text.to_lowercase().contains("ab"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn refuses_wrong_key_length() {
        assert!(KeyBytes::from_slice(&[0; 31]).is_none());
        assert!(KeyBytes::from_slice(&[0; 33]).is_none());
    }
}
