//! The `local` KMS provider: 256-bit keys in files `<dir>/<key_id>.key` (32 raw bytes, mode
//! 0600, in a 0700 directory). Files or directories that anyone but the owner can read or write
//! are refused. The master key is wrapped as `nonce (12) || AES-256-GCM(key, MK) || tag (16)`
//! with associated data naming the key id and every encryption-context pair.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{BoxFuture, EncryptionContext, KmsError, KmsProvider, WrappedMasterKey};
use crate::keys::aead::{self, NONCE_LEN};
use crate::keys::derive::{LOCAL_KMS_WRAP, aad};
use crate::secret::{KeyBytes, MasterKey};

/// Keys in a directory; new master keys are wrapped under `key_id`.
pub struct LocalKms {
    dir: PathBuf,
    key_id: String,
    calls: AtomicU64,
}

impl LocalKms {
    /// Opens the provider. With `create`, a missing directory (0700) and key file (0600) are
    /// created; an existing one is always checked for owner-only permissions.
    pub fn open(dir: &Path, key_id: &str, create: bool) -> Result<Self, KmsError> {
        check_key_id(key_id)?;
        if create {
            match fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(dir)
            {
                Ok(()) => {}
                Err(e) => return Err(KmsError::KeyFile(format!("{}: {e}", dir.display()))),
            }
        }
        check_private(dir, true)?;
        let kms = Self {
            dir: dir.to_owned(),
            key_id: key_id.to_owned(),
            calls: AtomicU64::new(0),
        };
        let path = kms.key_path(key_id);
        if create && !path.exists() {
            create_key_file(&path)?;
        }
        kms.load(key_id)?;
        Ok(kms)
    }

    /// Creates a new key file `<dir>/<key_id>.key` (for KMS key migration); refuses to overwrite.
    pub fn create_key(&self, key_id: &str) -> Result<(), KmsError> {
        check_key_id(key_id)?;
        create_key_file(&self.key_path(key_id))
    }

    fn key_path(&self, key_id: &str) -> PathBuf {
        self.dir.join(format!("{key_id}.key"))
    }

    fn load(&self, key_id: &str) -> Result<KeyBytes, KmsError> {
        check_key_id(key_id)?;
        let path = self.key_path(key_id);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(KmsError::KeyNotFound(key_id.to_owned()));
            }
            Err(e) => return Err(KmsError::KeyFile(format!("{}: {e}", path.display()))),
            Ok(_) => check_private(&path, false)?,
        }
        let bytes = zeroize::Zeroizing::new(
            fs::read(&path).map_err(|e| KmsError::KeyFile(format!("{}: {e}", path.display())))?,
        );
        KeyBytes::from_slice(&bytes).ok_or_else(|| {
            KmsError::KeyFile(format!("{}: must hold exactly 32 bytes", path.display()))
        })
    }

    fn wrap(
        &self,
        key_id: &str,
        mk: &MasterKey,
        context: &EncryptionContext,
    ) -> Result<WrappedMasterKey, KmsError> {
        let kek = self.load(key_id)?;
        let nonce = aead::random_nonce().map_err(|e| KmsError::KeyFile(format!("random: {e}")))?;
        let mut ciphertext = nonce.to_vec();
        ciphertext.extend(aead::seal(
            kek.expose_secret(),
            &nonce,
            &wrap_aad(key_id, context),
            mk.expose_secret(),
        ));
        Ok(WrappedMasterKey {
            key_id: key_id.to_owned(),
            ciphertext,
        })
    }

    fn unwrap(
        &self,
        wrapped: &WrappedMasterKey,
        context: &EncryptionContext,
    ) -> Result<MasterKey, KmsError> {
        let kek = self.load(&wrapped.key_id)?;
        if wrapped.ciphertext.len() < NONCE_LEN {
            return Err(KmsError::DecryptionFailed);
        }
        let (nonce, ct) = wrapped.ciphertext.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| KmsError::DecryptionFailed)?;
        let plain = aead::open(
            kek.expose_secret(),
            nonce,
            &wrap_aad(&wrapped.key_id, context),
            ct,
        )
        .map_err(|_| KmsError::DecryptionFailed)?;
        KeyBytes::from_slice(&plain)
            .map(MasterKey::new)
            .ok_or(KmsError::DecryptionFailed)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

impl KmsProvider for LocalKms {
    fn check_key_id(&self, key_id: &str) -> Result<(), String> {
        check_key_id(key_id).map_err(|e| e.to_string())
    }

    fn provider(&self) -> &'static str {
        "local"
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn generate_master_key<'a>(
        &'a self,
        key_id: &'a str,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<(MasterKey, WrappedMasterKey), KmsError>> {
        Box::pin(async move {
            self.count();
            let mk = KeyBytes::random().map_err(|e| KmsError::KeyFile(format!("random: {e}")))?;
            let mk = MasterKey::new(mk);
            let wrapped = self.wrap(key_id, &mk, context)?;
            Ok((mk, wrapped))
        })
    }

    fn unwrap_master_key<'a>(
        &'a self,
        wrapped: &'a WrappedMasterKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<MasterKey, KmsError>> {
        Box::pin(async move {
            self.count();
            self.unwrap(wrapped, context)
        })
    }

    fn rewrap_master_key<'a>(
        &'a self,
        wrapped: &'a WrappedMasterKey,
        context: &'a EncryptionContext,
        new_key_id: &'a str,
    ) -> BoxFuture<'a, Result<WrappedMasterKey, KmsError>> {
        Box::pin(async move {
            self.count();
            let mk = self.unwrap(wrapped, context)?;
            self.wrap(new_key_id, &mk, context)
        })
    }

    fn wrap_master_key<'a>(
        &'a self,
        master: &'a MasterKey,
        context: &'a EncryptionContext,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<WrappedMasterKey, KmsError>> {
        Box::pin(async move {
            self.count();
            self.wrap(key_id, master, context)
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

fn wrap_aad(key_id: &str, context: &EncryptionContext) -> Vec<u8> {
    let mut fields: Vec<&[u8]> = vec![key_id.as_bytes()];
    for (k, v) in context.pairs() {
        fields.push(k.as_bytes());
        fields.push(v.as_bytes());
    }
    aad(LOCAL_KMS_WRAP, &fields)
}

fn check_key_id(key_id: &str) -> Result<(), KmsError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= 64
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(KmsError::KeyFile(format!(
            "key id {key_id:?} must be 1-64 characters of A-Z a-z 0-9 - _"
        )))
    }
}

fn create_key_file(path: &Path) -> Result<(), KmsError> {
    let key = KeyBytes::random().map_err(|e| KmsError::KeyFile(format!("random: {e}")))?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| KmsError::KeyFile(format!("{}: {e}", path.display())))?;
    file.write_all(key.expose_secret())
        .and_then(|()| file.sync_all())
        .map_err(|e| KmsError::KeyFile(format!("{}: {e}", path.display())))?;
    Ok(())
}

/// Refuses a path that is not ours alone: group or other bits set, another owner, or a symlink
/// (`os::check_private`).
pub(crate) fn check_private(path: &Path, dir: bool) -> Result<(), KmsError> {
    let meta = fs::symlink_metadata(path)
        .map_err(|e| KmsError::KeyFile(format!("{}: {e}", path.display())))?;
    crate::os::check_private(path, &meta, dir).map_err(KmsError::KeyFile)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[tokio::test]
    async fn refuses_key_file_readable_by_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        LocalKms::open(&keys, "k1", true).expect("create");
        fs::set_permissions(keys.join("k1.key"), fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = LocalKms::open(&keys, "k1", false)
            .err()
            .expect("must refuse");
        assert!(err.to_string().contains("mode 644"), "{err}");
    }

    #[tokio::test]
    async fn refuses_key_dir_open_to_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        LocalKms::open(&keys, "k1", true).expect("create");
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o750)).expect("chmod");
        assert!(LocalKms::open(&keys, "k1", false).is_err());
    }

    #[tokio::test]
    async fn missing_key_is_key_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&keys)
            .expect("mkdir");
        assert!(matches!(
            LocalKms::open(&keys, "nope", false),
            Err(KmsError::KeyNotFound(_))
        ));
    }
}
