//! Record formats v1 and v2 (`docs/record-format.md`): stored token records and transit blobs.
//!
//! Each record or blob is encrypted under its own key, HKDF-SHA256(DEK, random 256-bit salt),
//! with a random 96-bit nonce, so no key ever encrypts more than one message.
//!
//! Stored record (all integers big-endian):
//! ```text
//! 0   1  format = 2 (1: records written before decoys, read as before)
//! 1   4  key_version      (tenant DEK version)
//! 5   8  revision
//! 13  8  expires_at       (Unix seconds; i64::MIN = never)
//! 21  8  updated_at       (Unix seconds)
//! 29 32  salt
//! 61 12  nonce
//! 73  …  AES-256-GCM ciphertext || 16-byte tag
//! ```
//! Plaintext: v2 starts with a flags byte (bit 0: a decoy, `docs/alarms.md`; the other bits 0),
//! then, as in v1, `subject, bank, account, scope` each as u16 length + UTF-8, then the secret.
//! Associated data: `aad("vaultd/v1/record", [vault_id, tenant, token_id, header[0..73]])`.
//!
//! Transit blob: `vault:v{key_version}:` + base64(`format=1 || salt (32) || nonce (12) ||
//! ciphertext || tag`), associated data `aad("vaultd/v1/transit", [vault_id, tenant,
//! key_version, context, format])`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::keys::aead::{self, NONCE_LEN, TAG_LEN};
use crate::keys::derive::{RECORD_AAD, RECORD_KEY, TRANSIT_AAD, TRANSIT_KEY, aad, record_key};
use crate::secret::{DataKey, Secret};
use vault_client::wire::Binding;

/// The record format of records written before decoys (still read), and of transit blobs.
pub(crate) const FORMAT_V1: u8 = 1;
/// The record format written: v1 with a flags byte at the start of the plaintext.
pub(crate) const FORMAT_V2: u8 = 2;
/// Flags byte of a v2 plaintext: the record is a decoy.
const FLAG_DECOY: u8 = 0x01;
/// Bytes before the ciphertext of a stored record.
pub const HEADER_LEN: usize = 73;
/// Salt length.
pub(crate) const SALT_LEN: usize = 32;
const NEVER: i64 = i64::MIN;
/// Prefix of every transit blob.
pub(crate) const TRANSIT_PREFIX: &str = "vault:v";

/// Why a record or blob could not be read. Opaque on purpose for authentication failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a well-formed v1 record or blob.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    /// Authentication failed: wrong key, wrong context, moved or altered.
    #[error("decryption failed")]
    DecryptionFailed,
}

/// The clear, authenticated header of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The tenant DEK version that encrypts it.
    pub key_version: u32,
    /// Revision, from 1.
    pub revision: u64,
    /// Expiry in Unix seconds.
    pub expires_at: Option<i64>,
    /// Write time in Unix seconds.
    pub updated_at: i64,
}

/// Where a stored record belongs: part of its associated data.
#[derive(Debug, Clone, Copy)]
pub struct RecordSlot<'a> {
    /// Vault id.
    pub vault_id: &'a str,
    /// Tenant id.
    pub tenant: &'a str,
    /// Token id.
    pub token: &'a str,
}

/// A decrypted token record.
#[derive(Debug)]
pub struct Token {
    /// Header fields.
    pub header: Header,
    /// What the token is for.
    pub binding: Binding,
    /// The token.
    pub secret: Secret,
    /// A decoy (`docs/alarms.md`): the flag is inside the ciphertext.
    pub decoy: bool,
}

/// What a record holds besides its header.
#[derive(Debug, Clone, Copy)]
pub struct Contents<'a> {
    /// What the token is for.
    pub binding: &'a Binding,
    /// The token.
    pub secret: &'a [u8],
    /// Whether it is a decoy.
    pub decoy: bool,
}

/// The format a record is written in: v2 always, v1 only for known-answer vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Without a flags byte (no decoy).
    V1,
    /// With a flags byte.
    V2,
}

/// Encrypts a token record (format v2) with fresh random salt and nonce.
pub fn seal_record(
    dek: &DataKey,
    slot: RecordSlot<'_>,
    header: Header,
    contents: Contents<'_>,
) -> Result<Vec<u8>, getrandom::Error> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt)?;
    let nonce = aead::random_nonce()?;
    Ok(seal_record_with(
        Format::V2,
        dek,
        slot,
        header,
        contents,
        &salt,
        &nonce,
    ))
}

/// DANGEROUS: [`seal_record`] with a caller-chosen salt and nonce, for known-answer vectors
/// only (feature `dangerous-test-hooks`): a repeated nonce under one record key breaks
/// AES-GCM.
#[cfg(feature = "dangerous-test-hooks")]
pub fn dangerous_seal_record_with(
    format: Format,
    dek: &DataKey,
    slot: RecordSlot<'_>,
    header: Header,
    contents: Contents<'_>,
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    seal_record_with(format, dek, slot, header, contents, salt, nonce)
}

/// [`seal_record`] with a given format, salt and nonce.
fn seal_record_with(
    format: Format,
    dek: &DataKey,
    slot: RecordSlot<'_>,
    header: Header,
    contents: Contents<'_>,
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    assert!(
        format == Format::V2 || !contents.decoy,
        "a v1 record has no room for the decoy flag"
    );
    let mut out = Vec::with_capacity(HEADER_LEN + 65 + contents.secret.len() + TAG_LEN);
    out.push(match format {
        Format::V1 => FORMAT_V1,
        Format::V2 => FORMAT_V2,
    });
    out.extend_from_slice(&header.key_version.to_be_bytes());
    out.extend_from_slice(&header.revision.to_be_bytes());
    out.extend_from_slice(&header.expires_at.unwrap_or(NEVER).to_be_bytes());
    out.extend_from_slice(&header.updated_at.to_be_bytes());
    out.extend_from_slice(salt);
    out.extend_from_slice(nonce);
    let flags = (format == Format::V2).then_some(if contents.decoy { FLAG_DECOY } else { 0 });
    let plaintext = encode_plaintext(flags, contents.binding, contents.secret);
    let key = record_key(dek, salt, RECORD_KEY);
    let aad = record_aad(slot, &out);
    out.extend_from_slice(&aead::seal(key.expose_secret(), nonce, &aad, &plaintext));
    out
}

/// Reads the clear header without a key (for counts, compare-and-set and expiry).
pub(crate) fn peek_header(bytes: &[u8]) -> Result<Header, RecordError> {
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(RecordError::Malformed("record too short"));
    }
    if bytes[0] != FORMAT_V1 && bytes[0] != FORMAT_V2 {
        return Err(RecordError::Malformed("unknown record format"));
    }
    let expires = i64::from_be_bytes(array(&bytes[13..21]));
    Ok(Header {
        key_version: u32::from_be_bytes(array(&bytes[1..5])),
        revision: u64::from_be_bytes(array(&bytes[5..13])),
        expires_at: (expires != NEVER).then_some(expires),
        updated_at: i64::from_be_bytes(array(&bytes[21..29])),
    })
}

/// Decrypts a stored record found at `slot` with the DEK of its header's key version.
pub fn open_record(
    dek: &DataKey,
    slot: RecordSlot<'_>,
    bytes: &[u8],
) -> Result<Token, RecordError> {
    let header = peek_header(bytes)?;
    let salt: [u8; SALT_LEN] = array(&bytes[29..61]);
    let nonce: [u8; NONCE_LEN] = array(&bytes[61..HEADER_LEN]);
    let key = record_key(dek, &salt, RECORD_KEY);
    let aad = record_aad(slot, &bytes[..HEADER_LEN]);
    let plaintext = aead::open(key.expose_secret(), &nonce, &aad, &bytes[HEADER_LEN..])
        .map_err(|_| RecordError::DecryptionFailed)?;
    let (decoy, rest) = match bytes[0] {
        FORMAT_V2 => match plaintext.split_first() {
            Some((&flags, rest)) if flags & !FLAG_DECOY == 0 => (flags & FLAG_DECOY != 0, rest),
            _ => return Err(RecordError::Malformed("unknown record flags")),
        },
        _ => (false, &plaintext[..]),
    };
    let (binding, secret) = decode_plaintext(rest)?;
    Ok(Token {
        header,
        binding,
        secret,
        decoy,
    })
}

/// True when `expect` (if given) equals `actual`, compared in constant time.
pub fn field_matches(expect: Option<&str>, actual: &str) -> bool {
    expect.is_none_or(|e| bool::from(e.as_bytes().ct_eq(actual.as_bytes())))
}

/// Seals a transit blob for `tenant` under DEK version `key_version`, bound to `context`.
pub fn seal_transit(
    dek: &DataKey,
    vault_id: &str,
    tenant: &str,
    key_version: u32,
    context: &str,
    plaintext: &[u8],
) -> Result<String, getrandom::Error> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt)?;
    let nonce = aead::random_nonce()?;
    Ok(seal_transit_with(
        dek,
        vault_id,
        tenant,
        key_version,
        context,
        plaintext,
        &salt,
        &nonce,
    ))
}

/// DANGEROUS: [`seal_transit`] with a caller-chosen salt and nonce, for known-answer vectors
/// and benches only (feature `dangerous-test-hooks`): a repeated nonce under one key breaks
/// AES-GCM.
#[cfg(feature = "dangerous-test-hooks")]
#[allow(clippy::too_many_arguments)]
pub fn dangerous_seal_transit_with(
    dek: &DataKey,
    vault_id: &str,
    tenant: &str,
    key_version: u32,
    context: &str,
    plaintext: &[u8],
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> String {
    seal_transit_with(
        dek,
        vault_id,
        tenant,
        key_version,
        context,
        plaintext,
        salt,
        nonce,
    )
}

/// [`seal_transit`] with a given salt and nonce.
#[allow(clippy::too_many_arguments)]
fn seal_transit_with(
    dek: &DataKey,
    vault_id: &str,
    tenant: &str,
    key_version: u32,
    context: &str,
    plaintext: &[u8],
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> String {
    let key = record_key(dek, salt, TRANSIT_KEY);
    let aad = transit_aad(vault_id, tenant, key_version, context);
    let mut raw = Vec::with_capacity(1 + SALT_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
    raw.push(FORMAT_V1);
    raw.extend_from_slice(salt);
    raw.extend_from_slice(nonce);
    raw.extend_from_slice(&aead::seal(key.expose_secret(), nonce, &aad, plaintext));
    format!("{TRANSIT_PREFIX}{key_version}:{}", STANDARD.encode(&raw))
}

/// The key version a transit blob names, and its decoded bytes.
pub fn parse_transit(blob: &str) -> Result<(u32, Vec<u8>), RecordError> {
    let rest = blob
        .strip_prefix(TRANSIT_PREFIX)
        .ok_or(RecordError::Malformed("blob must start with vault:v"))?;
    let (version, body) = rest
        .split_once(':')
        .ok_or(RecordError::Malformed("blob has no version"))?;
    let valid_digits =
        !version.is_empty() && version.len() <= 10 && version.bytes().all(|b| b.is_ascii_digit());
    let version: u32 = version
        .parse()
        .ok()
        .filter(|v| valid_digits && *v > 0)
        .ok_or(RecordError::Malformed("bad key version"))?;
    let raw = STANDARD
        .decode(body)
        .map_err(|_| RecordError::Malformed("blob is not base64"))?;
    if raw.len() < 1 + SALT_LEN + NONCE_LEN + TAG_LEN {
        return Err(RecordError::Malformed("blob too short"));
    }
    if raw[0] != FORMAT_V1 {
        return Err(RecordError::Malformed("unknown blob format"));
    }
    Ok((version, raw))
}

/// Opens a transit blob already split by [`parse_transit`].
pub fn open_transit(
    dek: &DataKey,
    vault_id: &str,
    tenant: &str,
    key_version: u32,
    context: &str,
    raw: &[u8],
) -> Result<Secret, RecordError> {
    let salt: [u8; SALT_LEN] = array(&raw[1..1 + SALT_LEN]);
    let nonce: [u8; NONCE_LEN] = array(&raw[1 + SALT_LEN..1 + SALT_LEN + NONCE_LEN]);
    let key = record_key(dek, &salt, TRANSIT_KEY);
    let aad = transit_aad(vault_id, tenant, key_version, context);
    let plain = aead::open(
        key.expose_secret(),
        &nonce,
        &aad,
        &raw[1 + SALT_LEN + NONCE_LEN..],
    )
    .map_err(|_| RecordError::DecryptionFailed)?;
    Ok(Secret::from_slice(&plain))
}

fn record_aad(slot: RecordSlot<'_>, header: &[u8]) -> Vec<u8> {
    aad(
        RECORD_AAD,
        &[
            slot.vault_id.as_bytes(),
            slot.tenant.as_bytes(),
            slot.token.as_bytes(),
            header,
        ],
    )
}

fn transit_aad(vault_id: &str, tenant: &str, key_version: u32, context: &str) -> Vec<u8> {
    aad(
        TRANSIT_AAD,
        &[
            vault_id.as_bytes(),
            tenant.as_bytes(),
            &key_version.to_be_bytes(),
            context.as_bytes(),
            &[FORMAT_V1],
        ],
    )
}

/// The plaintext of a record: the flags byte (v2 only), the binding, the secret.
fn encode_plaintext(flags: Option<u8>, binding: &Binding, secret: &[u8]) -> Zeroizing<Vec<u8>> {
    let fields = [
        &binding.subject,
        &binding.bank,
        &binding.account,
        &binding.scope,
    ];
    let len = 1 + fields.iter().map(|f| 2 + f.len()).sum::<usize>() + secret.len();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend(flags);
    for field in fields {
        let n = u16::try_from(field.len())
            .expect("binding fields are checked to be at most 1024 bytes");
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(secret);
    out
}

fn decode_plaintext(mut bytes: &[u8]) -> Result<(Binding, Secret), RecordError> {
    let mut next = || -> Result<String, RecordError> {
        let (len, rest) = bytes
            .split_first_chunk::<2>()
            .ok_or(RecordError::Malformed("binding cut short"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return Err(RecordError::Malformed("binding cut short"));
        }
        let (field, rest) = rest.split_at(len);
        bytes = rest;
        String::from_utf8(field.to_vec())
            .map_err(|_| RecordError::Malformed("binding is not UTF-8"))
    };
    let binding = Binding {
        subject: next()?,
        bank: next()?,
        account: next()?,
        scope: next()?,
    };
    Ok((binding, Secret::from_slice(bytes)))
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes
        .try_into()
        .expect("slice length fixed by the record layout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::KeyBytes;
    use proptest::prelude::*;

    fn dek(b: u8) -> DataKey {
        DataKey::new(KeyBytes::from_slice(&[b; 32]).expect("32 bytes"))
    }

    fn binding(account: &str) -> Binding {
        Binding {
            subject: "user-1".into(),
            bank: "bank".into(),
            account: account.into(),
            scope: "accounts".into(),
        }
    }

    const SLOT: RecordSlot<'static> = RecordSlot {
        vault_id: "v",
        tenant: "acme",
        token: "t1",
    };

    proptest! {
        #[test]
        fn record_round_trips(
            secret: Vec<u8>, subject in ".{0,40}", account in ".{0,40}",
            version in 1u32.., revision in 1u64.., expires: Option<i64>, updated: i64,
            decoy: bool,
        ) {
            let expires = expires.filter(|e| *e != NEVER);
            let header = Header { key_version: version, revision, expires_at: expires, updated_at: updated };
            let b = Binding { subject, bank: "b".into(), account, scope: "s".into() };
            let contents = Contents { binding: &b, secret: &secret, decoy };
            let bytes = seal_record(&dek(1), SLOT, header, contents).expect("rng");
            prop_assert_eq!(peek_header(&bytes).expect("header"), header);
            let token = open_record(&dek(1), SLOT, &bytes).expect("opens");
            prop_assert_eq!(token.header, header);
            prop_assert_eq!(&token.binding, &b);
            prop_assert_eq!(token.secret.expose_secret(), secret.as_slice());
            prop_assert_eq!(token.decoy, decoy);
            // A v1 record (no flags byte) of the same contents opens the same, never a decoy.
            let v1 = seal_record_with(Format::V1, &dek(1), SLOT, header,
                Contents { decoy: false, ..contents }, &[3; SALT_LEN], &[4; NONCE_LEN]);
            prop_assert_eq!(v1.len() + 1, bytes.len(), "a decoy is no longer than any record");
            let old = open_record(&dek(1), SLOT, &v1).expect("v1 opens");
            prop_assert_eq!((old.binding, old.decoy), (b, false));
        }

        #[test]
        fn transit_round_trips(plain: Vec<u8>, context in ".{0,30}", version in 1u32..1000) {
            let blob = seal_transit(&dek(2), "v", "acme", version, &context, &plain).expect("rng");
            let (v, raw) = parse_transit(&blob).expect("parses");
            prop_assert_eq!(v, version);
            let back = open_transit(&dek(2), "v", "acme", v, &context, &raw).expect("opens");
            prop_assert_eq!(back.expose_secret(), plain.as_slice());
            let other = format!("{context}x");
            prop_assert!(open_transit(&dek(2), "v", "acme", v, &other, &raw).is_err());
        }

        #[test]
        fn parsers_never_panic(bytes: Vec<u8>, text in ".{0,200}") {
            let _ = peek_header(&bytes);
            let _ = open_record(&dek(1), SLOT, &bytes);
            let _ = parse_transit(&text);
            let _ = decode_plaintext(&bytes);
        }
    }

    #[test]
    fn rejects_record_moved_to_other_tenant_or_token() {
        let header = Header {
            key_version: 1,
            revision: 1,
            expires_at: None,
            updated_at: 0,
        };
        let b = binding("DE01");
        let contents = Contents {
            binding: &b,
            secret: b"tok",
            decoy: false,
        };
        let bytes = seal_record(&dek(1), SLOT, header, contents).expect("rng");
        let moved = [
            RecordSlot {
                tenant: "other",
                ..SLOT
            },
            RecordSlot {
                token: "t2",
                ..SLOT
            },
        ];
        for slot in moved {
            assert_eq!(
                open_record(&dek(1), slot, &bytes).err(),
                Some(RecordError::DecryptionFailed)
            );
        }
    }

    #[test]
    fn expectation_compares_whole_values() {
        assert!(field_matches(None, "x"));
        assert!(field_matches(Some("DE01"), "DE01"));
        assert!(!field_matches(Some("DE0"), "DE01"));
        assert!(!field_matches(Some("DE011"), "DE01"));
    }

    #[test]
    fn unknown_flags_are_refused_after_decryption() {
        let header = Header {
            key_version: 1,
            revision: 1,
            expires_at: None,
            updated_at: 0,
        };
        let b = binding("DE01");
        // A v2 record whose flags byte has a bit no version defines: sealed by hand.
        let mut out = seal_record_with(
            Format::V1,
            &dek(1),
            SLOT,
            header,
            Contents {
                binding: &b,
                secret: b"tok",
                decoy: false,
            },
            &[5; SALT_LEN],
            &[6; NONCE_LEN],
        );
        out.truncate(HEADER_LEN);
        out[0] = FORMAT_V2;
        let plaintext = encode_plaintext(Some(0x02), &b, b"tok");
        let key = record_key(&dek(1), &[5; SALT_LEN], RECORD_KEY);
        let aad = record_aad(SLOT, &out);
        out.extend_from_slice(&aead::seal(
            key.expose_secret(),
            &[6; NONCE_LEN],
            &aad,
            &plaintext,
        ));
        assert_eq!(
            open_record(&dek(1), SLOT, &out).err(),
            Some(RecordError::Malformed("unknown record flags"))
        );
    }
}
