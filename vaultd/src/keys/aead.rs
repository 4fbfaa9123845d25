//! The one AES-256-GCM call site. Every wrap and every record goes through `seal` and `open`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

/// Nonce length in bytes (96-bit GCM nonce).
pub(crate) const NONCE_LEN: usize = 12;
/// Tag length in bytes.
pub(crate) const TAG_LEN: usize = 16;

/// Authentication failed: wrong key, wrong associated data, or altered bytes. Deliberately opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptionFailed;

/// Encrypts `plaintext` under `key`, authenticating `aad`. Returns `ciphertext || tag`.
pub(crate) fn seal(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .encrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption only fails for inputs over 64 GiB, which are bounded far lower")
}

/// Decrypts `ciphertext || tag`; the plaintext is wiped when dropped.
pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptionFailed> {
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| DecryptionFailed)
}

/// A fresh random nonce.
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], getrandom::Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_round_trip(key: [u8; 32], nonce: [u8; 12], aad: Vec<u8>, msg: Vec<u8>) {
            let ct = seal(&key, &nonce, &aad, &msg);
            prop_assert_eq!(ct.len(), msg.len() + TAG_LEN);
            let back = open(&key, &nonce, &aad, &ct).expect("authentic");
            prop_assert_eq!(back.as_slice(), msg.as_slice());
        }

        #[test]
        fn any_flipped_bit_fails(key: [u8; 32], nonce: [u8; 12], msg: Vec<u8>, bit: usize) {
            let mut ct = seal(&key, &nonce, b"aad", &msg);
            let bit = bit % (ct.len() * 8);
            ct[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(open(&key, &nonce, b"aad", &ct), Err(DecryptionFailed));
        }
    }
}
