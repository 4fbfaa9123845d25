//! Backups of the whole vault, and their restore into a stopped vault's data directory
//! (`docs/storage.md`, "Backups"). A restore leaves a marker; the next unseal records it as a
//! `backup.restore` audit entry, so the chain continues from the snapshot's head.

use std::fs::{self, File};
use std::io::BufReader;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vault_client::audit::Outcome;

use super::Vault;
use super::layout::{self, VaultMeta};
use crate::audit::Event;
use crate::error::Error;
use crate::store::backup::{self, Item, Summary};
use crate::store::embedded::{Embedded, Options};
use crate::store::{Batch, Group, StoreError, SyncBackend, Write};

/// Writes of the scan applied per group during a restore.
const RESTORE_GROUP: usize = 2048;

/// What the restore marker (`m/restored`) says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreMarker {
    vault_id: String,
    position: u64,
    sha256: String,
    restored_at: i64,
    /// The directory held another vault, replaced on `--allow-other-vault`.
    replaced_vault_id: Option<String>,
}

impl Vault {
    /// Writes a consistent snapshot of the vault to `out` while it keeps serving. Blocking:
    /// call it on a blocking thread of the runtime (`spawn_blocking`), never on an async worker.
    pub fn backup(&self, out: &mut dyn std::io::Write) -> Result<Summary, Error> {
        let meta = tokio::runtime::Handle::current().block_on(self.stored_meta())?;
        Ok(self.store().backup(&meta.vault_id, out)?)
    }

    /// At unseal: records a restore that left its marker, in one write with the marker's removal.
    pub(super) async fn record_restore(&self) {
        let marker = match self.store().get(layout::RESTORED).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the restore marker");
                return;
            }
        };
        let Ok(marker) = layout::decode::<RestoreMarker>(&marker, "restore marker") else {
            tracing::error!("the restore marker is not readable; it is left in place");
            return;
        };
        let mut ev = Event::system("backup.restore");
        ev.detail.insert("vault_id".into(), marker.vault_id.clone());
        ev.detail
            .insert("position".into(), marker.position.to_string());
        ev.detail.insert("sha256".into(), marker.sha256.clone());
        ev.detail
            .insert("restored_at".into(), marker.restored_at.to_string());
        if let Some(other) = &marker.replaced_vault_id {
            ev.detail.insert("replaced_vault_id".into(), other.clone());
        }
        let mut batch = Batch::default();
        batch
            .delete(layout::RESTORED.to_vec())
            .log(ev.entry(Outcome::Ok, None));
        match self.commit(batch).await {
            Ok(()) => tracing::warn!(
                vault_id = %marker.vault_id,
                position = marker.position,
                "this vault was restored from a backup; recorded in the audit log"
            ),
            Err(e) => tracing::error!(error = %e, "could not record the restore"),
        }
    }
}

/// How a restore may treat the target directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Replace a directory that holds a vault (kept beside it as `DIR.replaced-TIME`).
    pub force: bool,
    /// Accept a snapshot of another vault id than the one in the directory.
    pub allow_other_vault: bool,
    /// Store options for the restored directory.
    pub storage: Options,
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// The snapshot restored.
    pub summary: Summary,
    /// Where the directory's previous contents were moved, if it had any.
    pub replaced: Option<PathBuf>,
}

/// Why a restore was refused or failed; nothing in the target directory changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The directory holds a vault and `force` was not given.
    #[error("{0} already holds vault {1}: stop it and pass --force to replace it")]
    Exists(PathBuf, String),
    /// The directory holds files that are not a vault's.
    #[error("{0} is not empty and holds no vault: pass --force to replace it")]
    NotEmpty(PathBuf),
    /// The snapshot is of another vault.
    #[error(
        "the backup is of vault {backup}, but {dir} holds vault {found}: pass --allow-other-vault to replace it"
    )]
    OtherVault {
        /// The target directory.
        dir: PathBuf,
        /// The vault id in the directory.
        found: String,
        /// The vault id of the backup.
        backup: String,
    },
    /// The directory's store cannot be opened (a running vault holds it, or it is damaged).
    #[error("cannot open the store in {0} (is vaultd still running?): {1}")]
    Open(PathBuf, StoreError),
    /// The file is not an intact backup.
    #[error("{0}")]
    Damaged(StoreError),
    /// Reading the file or writing the directory failed.
    #[error("{0}")]
    Io(String),
}

/// Restores the backup `file` into the stopped vault directory `data_dir`.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    options: RestoreOptions,
) -> Result<Restored, RestoreError> {
    // First pass: the whole file must be intact before anything is touched.
    let mut snapshot_id = None;
    let summary = read_file(file, |item| {
        if let Item::Entry(key, value) = item
            && key == layout::META
        {
            let meta: VaultMeta = layout::decode(&value, "vault metadata")?;
            snapshot_id = Some(meta.vault_id);
        }
        Ok(())
    })?;
    if snapshot_id.as_deref() != Some(summary.vault_id.as_str()) {
        return Err(RestoreError::Damaged(StoreError::Corrupt(
            "backup file: its vault metadata does not name the vault of its header".into(),
        )));
    }
    let replaced_vault_id = check_target(data_dir, &summary.vault_id, options)?;

    let staging = sibling(data_dir, "restoring");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&staging)
        .map_err(io(&staging))?;
    {
        let backend = Arc::new(
            Embedded::open(&staging, options.storage)
                .map_err(|e| RestoreError::Open(staging.clone(), e))?,
        );
        let mut pending: Vec<Write> = Vec::with_capacity(RESTORE_GROUP);
        let apply = |writes: Vec<Write>| {
            backend.apply(&Group {
                position: backend.position() + 1,
                writes,
            })
        };
        read_file(file, |item| match item {
            Item::Entry(key, value) => {
                pending.push((key, Some(value)));
                if pending.len() == RESTORE_GROUP {
                    apply(std::mem::take(&mut pending))?;
                }
                Ok(())
            }
            Item::Group(group) => {
                if !pending.is_empty() {
                    apply(std::mem::take(&mut pending))?;
                }
                apply(group.writes)
            }
        })?;
        if !pending.is_empty() {
            apply(pending).map_err(RestoreError::Damaged)?;
        }
        let marker = RestoreMarker {
            vault_id: summary.vault_id.clone(),
            position: summary.position,
            sha256: summary.sha256.clone(),
            restored_at: vault_client::Timestamp::now().0,
            replaced_vault_id,
        };
        let marker = serde_json::to_vec(&marker).expect("markers serialize");
        apply(vec![(layout::RESTORED.to_vec(), Some(marker))]).map_err(RestoreError::Damaged)?;
        // Dropping the backend checkpoints: sled flushed and fsynced.
    }
    let replaced = if data_dir.exists() {
        let aside = sibling(
            data_dir,
            &format!("replaced-{}", vault_client::Timestamp::now().0),
        );
        fs::rename(data_dir, &aside).map_err(io(data_dir))?;
        Some(aside)
    } else {
        None
    };
    fs::rename(&staging, data_dir).map_err(io(data_dir))?;
    if let Some(parent) = data_dir.parent() {
        crate::store::wal::sync_dir(parent).map_err(io(parent))?;
    }
    Ok(Restored { summary, replaced })
}

/// Checks that `data_dir` may receive the snapshot of `vault_id`; returns the vault id it
/// holds if that is another one (and allowed).
fn check_target(
    data_dir: &Path,
    vault_id: &str,
    options: RestoreOptions,
) -> Result<Option<String>, RestoreError> {
    let empty = match fs::read_dir(data_dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(RestoreError::Io(format!("{}: {e}", data_dir.display()))),
    };
    if empty {
        return Ok(None);
    }
    if !data_dir.join("db").exists() {
        return match options.force {
            true => Ok(None),
            false => Err(RestoreError::NotEmpty(data_dir.to_owned())),
        };
    }
    let found = {
        let backend = Embedded::open(data_dir, options.storage)
            .map_err(|e| RestoreError::Open(data_dir.to_owned(), e))?;
        match backend
            .get(layout::META)
            .map_err(|e| RestoreError::Open(data_dir.to_owned(), e))?
        {
            None => None,
            Some(bytes) => Some(
                layout::decode::<VaultMeta>(&bytes, "vault metadata")
                    .map_err(|e| RestoreError::Open(data_dir.to_owned(), e))?
                    .vault_id,
            ),
        }
    };
    match found {
        None if options.force => Ok(None),
        None => Err(RestoreError::NotEmpty(data_dir.to_owned())),
        Some(found) if found != vault_id && !options.allow_other_vault => {
            Err(RestoreError::OtherVault {
                dir: data_dir.to_owned(),
                found,
                backup: vault_id.to_owned(),
            })
        }
        Some(found) if !options.force => Err(RestoreError::Exists(data_dir.to_owned(), found)),
        Some(found) => Ok((found != vault_id).then_some(found)),
    }
}

fn read_file(
    file: &Path,
    each: impl FnMut(Item) -> Result<(), StoreError>,
) -> Result<Summary, RestoreError> {
    let f = File::open(file).map_err(io(file))?;
    backup::read(&mut BufReader::with_capacity(1 << 20, f), each).map_err(RestoreError::Damaged)
}

/// `DIR.suffix` beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RestoreError + '_ {
    move |e| RestoreError::Io(format!("{}: {e}", path.display()))
}
