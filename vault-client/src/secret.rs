//! [`Secret`]: bytes that zeroize on drop and never print.

use std::fmt;

use zeroize::Zeroizing;

/// A secret value (a consent token, a transit plaintext). The bytes are wiped when it is dropped,
/// `Debug` prints `[redacted]`, and [`Secret::expose_secret`] is the only way to them.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of `bytes`; they are wiped when the secret is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new secret.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// The secret bytes.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, if it is valid UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::from_slice(s.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Serde for `Option<Secret>` as a UTF-8 JSON string.
pub(crate) mod utf8 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::Error as _};
    use std::borrow::Cow;

    use super::Secret;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(secret) => match secret.expose_str() {
                Some(text) => s.serialize_str(text),
                None => Err(S::Error::custom("secret is not UTF-8; send it as base64")),
            },
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        let text: Option<Cow<'de, str>> = Option::deserialize(d)?;
        match text {
            Some(Cow::Borrowed(t)) => Ok(Some(Secret::from(t))),
            Some(Cow::Owned(t)) => Ok(Some(Secret::new(t.into_bytes()))),
            None => Err(D::Error::custom("secret must be a string")),
        }
    }
}

/// Serde for reading an `Option<Secret>` from a base64 (standard alphabet, padded) JSON string
/// (writing is [`Field`]'s).
pub(crate) mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, de::Error as _};
    use std::borrow::Cow;
    use zeroize::Zeroizing;

    use super::Secret;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        let text: Option<Cow<'de, str>> = Option::deserialize(d)?;
        let Some(text) = text.map(|t| Zeroizing::new(t.into_owned())) else {
            return Err(D::Error::custom("base64 secret must be a string"));
        };
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(|_| D::Error::custom("invalid base64"))?;
        Ok(Some(Secret::new(bytes)))
    }
}

/// The one secret of a wire type from the two fields it may travel in: `name` (UTF-8 text) or
/// `{name}_b64` (base64). Exactly one must be there.
pub(crate) fn one_of(
    name: &str,
    text: Option<Secret>,
    b64: Option<Secret>,
) -> Result<Secret, String> {
    match (text, b64) {
        (Some(secret), None) | (None, Some(secret)) => Ok(secret),
        (Some(_), Some(_)) => Err(format!("give one of {name} and {name}_b64, not both")),
        (None, None) => Err(format!(
            "{name} (UTF-8 text) or {name}_b64 (base64) is required"
        )),
    }
}

/// A secret as the one field of a map that carries it (`#[serde(flatten)]` into a wire type):
/// `text` with the text when it is valid UTF-8, else `b64` with base64.
pub(crate) struct Field<'a> {
    pub(crate) text: &'static str,
    pub(crate) b64: &'static str,
    pub(crate) secret: &'a Secret,
}

impl serde::Serialize for Field<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(1))?;
        match self.secret.expose_str() {
            Some(text) => map.serialize_entry(self.text, text)?,
            None => {
                let encoded = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(self.secret.expose_secret()),
                );
                map.serialize_entry(self.b64, encoded.as_str())?;
            }
        }
        map.end()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self::new(s.into_bytes())
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}
