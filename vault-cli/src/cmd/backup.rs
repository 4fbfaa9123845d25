//! `backup create|restore|verify` (`docs/storage.md`, "Backups").
//!
//! `create` streams `GET /v1/sys/backup` into a hidden file beside FILE, created new with mode
//! 0600. It syncs the file, reads it back whole with the daemon's own reader of the format
//! (`vaultd::store::backup::read`), and only then gives it FILE's name and syncs the
//! directory. FILE is therefore a complete, checked backup, or it is not there. Without
//! `--force` FILE is never replaced: the name is given with a hard link, which fails on an
//! existing file, where a rename would replace it.
//!
//! `restore` (`vaultd::vault::restore`) and `verify` read files only; they need no daemon.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use vault_client::Client;
use vaultd::store::StoreError;
use vaultd::store::backup::{self, Summary};
use vaultd::vault::{RestoreError, RestoreOptions};

use super::{Ctx, Usage};
use crate::cli::{Backup, BackupRestore};
use crate::file::{create_private, partial_path, sync_parent};
use crate::output::{or_dash, write_fields, write_json};

/// Read and write buffer of a backup file.
const BUFFER: usize = 1 << 20;

/// Runs a `backup` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: Backup) -> anyhow::Result<()> {
    match cmd {
        Backup::Create { file, force } => create(ctx, &file, force).await,
        Backup::Restore(args) => restore(ctx, &args),
        Backup::Verify { file } => verify(ctx, &file),
    }
}

/// What `create` and `verify` print.
#[derive(Serialize)]
struct Checked<'a> {
    file: &'a Path,
    #[serde(flatten)]
    summary: Summary,
    bytes: u64,
}

/// What `restore` prints.
#[derive(Serialize)]
struct RestoreReport<'a> {
    file: &'a Path,
    data_dir: &'a Path,
    #[serde(flatten)]
    summary: &'a Summary,
    replaced: Option<&'a Path>,
}

// ----- create -----

async fn create(ctx: &Ctx, path: &Path, force: bool) -> anyhow::Result<()> {
    // Checked early so as not to download a whole backup for nothing; `place` checks again.
    if !force && fs::symlink_metadata(path).is_ok() {
        return Err(exists(path));
    }
    let partial = partial_path(path)?;
    let file =
        create_private(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let done = async {
        let (bytes, summary) = download(&ctx.client, file, &partial).await?;
        place(&partial, path, force)?;
        anyhow::Ok((bytes, summary))
    }
    .await;
    let (bytes, summary) = match done {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    write_checked(
        ctx,
        &Checked {
            file: path,
            summary,
            bytes,
        },
    )
}

/// Streams the backup into `file` (at `partial`), syncs it and checks it.
async fn download(client: &Client, file: File, partial: &Path) -> anyhow::Result<(u64, Summary)> {
    let mut out = tokio::io::BufWriter::with_capacity(BUFFER, tokio::fs::File::from_std(file));
    let bytes = client
        .backup(&mut out)
        .await
        .context("cannot back up the vault")?;
    out.into_inner()
        .sync_all()
        .await
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let summary = check(partial).context("the backup just written does not check out")?;
    Ok((bytes, summary))
}

/// Gives the checked file at `partial` the name `path` and syncs the directory.
fn place(partial: &Path, path: &Path, force: bool) -> anyhow::Result<()> {
    if force {
        fs::rename(partial, path).with_context(|| format!("cannot replace {}", path.display()))?;
    } else {
        match fs::hard_link(partial, path) {
            Ok(()) => {
                if let Err(e) = fs::remove_file(partial) {
                    eprintln!(
                        "vault-cli: warning: cannot remove {}: {e}",
                        partial.display()
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(path)),
            // A file system without hard links: rename, after one more look.
            Err(_) if fs::symlink_metadata(path).is_err() => fs::rename(partial, path)
                .with_context(|| format!("cannot create {}", path.display()))?,
            Err(_) => return Err(exists(path)),
        }
    }
    sync_parent(path).with_context(|| format!("cannot sync the directory of {}", path.display()))
}

fn exists(path: &Path) -> anyhow::Error {
    anyhow::Error::new(Usage::new(format!(
        "{} exists; pass --force to replace it",
        path.display()
    )))
}

// ----- restore -----

fn restore(ctx: &Ctx, args: &BackupRestore) -> anyhow::Result<()> {
    let (data_dir, storage) = match &args.config {
        Some(config) => {
            let overrides = vaultd::config::Overrides {
                data_dir: args.data_dir.clone(),
                ..vaultd::config::Overrides::default()
            };
            // As the daemon would read it here: the file and any `VAULTD_*` variables.
            let env = vaultd::config::Env::from_process()?;
            let config = vaultd::config::Config::load(config, &env, &overrides)?;
            (config.data_dir, config.storage)
        }
        None => (
            args.data_dir
                .clone()
                .context("--data-dir or --config is required")?,
            vaultd::store::embedded::Options::default(),
        ),
    };
    let options = RestoreOptions {
        force: args.force,
        allow_other_vault: args.allow_other_vault,
        storage,
    };
    let restored = vaultd::vault::restore(&args.file, &data_dir, options)
        .map_err(|e| restore_error(e, &args.file, &data_dir))?;
    let report = RestoreReport {
        file: &args.file,
        data_dir: &data_dir,
        summary: &restored.summary,
        replaced: restored.replaced.as_deref(),
    };
    {
        let mut out = ctx.out();
        if ctx.json {
            write_json(&mut out, &report)?;
        } else {
            let s = report.summary;
            write_fields(
                &mut out,
                &[
                    ("restored", args.file.display().to_string()),
                    ("data dir", data_dir.display().to_string()),
                    ("vault id", s.vault_id.clone()),
                    ("position", s.position.to_string()),
                    ("entries", s.entries.to_string()),
                    ("groups", s.groups.to_string()),
                    ("sha256", s.sha256.clone()),
                    ("replaced", or_dash(report.replaced.map(|p| p.display()))),
                ],
            )?;
        }
    }
    eprintln!(
        "vault-cli: start vaultd on {}: its next unseal records a backup.restore audit entry \
         (vault id, position, sha256)",
        data_dir.display()
    );
    Ok(())
}

/// Refusals that a flag overrides are usage errors (exit 2), like an existing file.
fn restore_error(e: RestoreError, file: &Path, data_dir: &Path) -> anyhow::Error {
    match e {
        RestoreError::Exists(..) | RestoreError::NotEmpty(_) | RestoreError::OtherVault { .. } => {
            anyhow::Error::new(Usage::new(e.to_string()))
        }
        RestoreError::Damaged(StoreError::Corrupt(_)) => anyhow::Error::new(e).context(format!(
            "{} is damaged or not a vaultd backup; {} was not changed",
            file.display(),
            data_dir.display()
        )),
        e => anyhow::Error::new(e).context(format!(
            "cannot restore {} into {}",
            file.display(),
            data_dir.display()
        )),
    }
}

// ----- verify -----

fn verify(ctx: &Ctx, path: &Path) -> anyhow::Result<()> {
    let summary = check(path)?;
    let bytes = fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    write_checked(
        ctx,
        &Checked {
            file: path,
            summary,
            bytes,
        },
    )
}

/// Reads the whole file: format, the end frame's counts and the checksum.
fn check(path: &Path) -> anyhow::Result<Summary> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    backup::read(&mut BufReader::with_capacity(BUFFER, file), |_| Ok(()))
        .with_context(|| format!("{} is damaged or not a vaultd backup", path.display()))
}

fn write_checked(ctx: &Ctx, checked: &Checked<'_>) -> anyhow::Result<()> {
    let mut out = ctx.out();
    if ctx.json {
        return Ok(write_json(&mut out, checked)?);
    }
    let s = &checked.summary;
    write_fields(
        &mut out,
        &[
            ("file", checked.file.display().to_string()),
            ("vault id", s.vault_id.clone()),
            ("position", s.position.to_string()),
            ("entries", s.entries.to_string()),
            ("groups", s.groups.to_string()),
            ("sha256", s.sha256.clone()),
            ("bytes", checked.bytes.to_string()),
        ],
    )?;
    Ok(())
}
