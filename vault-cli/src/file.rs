//! Files the CLI writes: created new and owner-only, beside their target until complete.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::cmd::Usage;

/// Creates a new file readable by its owner only; an existing file or symlink is an error.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Writes `bytes` to a new owner-only file, synced; an existing file is refused.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let mut file =
        create_private(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `DIR/.NAME.partial-PID` beside `path`.
pub(crate) fn partial_path(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Usage::new(format!("{} is not a file name", path.display())))?;
    let mut partial = std::ffi::OsString::from(".");
    partial.push(name);
    partial.push(format!(".partial-{}", std::process::id()));
    Ok(path.with_file_name(partial))
}

/// Syncs the directory that holds `path`, so that a file created or renamed there stays.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn partial_file_is_hidden_beside_the_target() {
        let p = partial_path(Path::new("/tmp/x/audit.ndjson")).unwrap();
        assert_eq!(p.parent(), Some(Path::new("/tmp/x")));
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".audit.ndjson.partial-"), "{name}");
        assert!(partial_path(Path::new("/")).is_err());
        let relative = partial_path(Path::new("vault.bak")).unwrap();
        assert!(
            relative
                .to_string_lossy()
                .starts_with(".vault.bak.partial-")
        );
    }

    #[test]
    fn private_files_are_new_and_owner_only() {
        let dir = std::env::temp_dir().join(format!("vault-cli-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let _ = fs::remove_file(&path);
        create_private(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = create_private(&path).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        sync_parent(&path).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }
}
