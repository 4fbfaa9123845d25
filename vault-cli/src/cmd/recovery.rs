//! `operator recovery create` and `operator recover`: break-glass recovery shares
//! (`docs/break-glass.md`). A share is decrypted here, with its holder's age identity; the
//! daemon receives only the decrypted line, and never the identity.

use std::fs;
use std::io::{BufReader, Read as _, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use vault_client::Secret;
use vault_client::wire::{RecoverProgress, VaultState};
use zeroize::Zeroizing;

use super::{Ctx, Usage};
use crate::cli::Recovery;
use crate::input::{Mode, read_secret};
use crate::output::{Table, write_json};

/// How an age file starts, armored or binary.
const AGE_STARTS: [&[u8]; 2] = [
    b"-----BEGIN AGE ENCRYPTED FILE-----",
    b"age-encryption.org/",
];

/// `operator recovery create`.
pub(crate) async fn create(ctx: &Ctx, what: Recovery) -> anyhow::Result<()> {
    let Recovery::Create {
        threshold,
        mut recipient,
        recipients_file,
        out,
    } = what;
    if let Some(path) = &recipients_file {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        recipient.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    if recipient.is_empty() {
        return Err(Usage::new("give the holders' age recipients: --recipient age1… (repeat) or --recipients-file FILE").into());
    }
    // Check the directory before the daemon replaces the set: a failure after it would leave
    // the new shares unwritten and the old ones void.
    prepare_dir(&out)?;
    let set = ctx
        .client
        .create_recovery(threshold, &recipient)
        .await
        .context("cannot create the recovery shares")?;
    let mut rows = Table::new(&["SHARE", "HOLDER", "FILE"]);
    let mut files = Vec::with_capacity(set.shares.len());
    for share in &set.shares {
        let path = out.join(format!("share-{}.age", share.index));
        crate::file::write_new(&path, share.share.as_bytes())?;
        rows.row(vec![
            share.index.to_string(),
            share.holder.clone(),
            path.display().to_string(),
        ]);
        files.push(path);
    }
    let mut stdout = ctx.out();
    if ctx.json {
        let value = serde_json::json!({
            "vault_id": set.vault_id,
            "threshold": set.threshold,
            "shares": set.shares.iter().zip(&files).map(|(s, f)| serde_json::json!({
                "index": s.index, "holder": s.holder, "file": f,
            })).collect::<Vec<_>>(),
        });
        return Ok(write_json(&mut stdout, &value)?);
    }
    rows.write(&mut stdout)?;
    writeln!(
        stdout,
        "{} of {} shares open vault {} without the KMS; hand each file to its holder only",
        set.threshold,
        set.shares.len(),
        set.vault_id
    )?;
    Ok(())
}

/// `operator recover`.
pub(crate) async fn recover(
    ctx: &Ctx,
    identity: Option<PathBuf>,
    share: Option<PathBuf>,
) -> anyhow::Result<()> {
    let input = read_secret(share.as_deref(), "recovery share", Mode::Binary)?;
    let line = if AGE_STARTS
        .iter()
        .any(|start| input.expose_secret().starts_with(start))
    {
        let identity = identity.ok_or_else(|| {
            Usage::new(
                "the share is age-encrypted: give the holder's identity with --identity FILE",
            )
        })?;
        decrypt(&identity, input.expose_secret())?
    } else {
        input
    };
    let progress = ctx
        .client
        .recover(line)
        .await
        .context("the daemon did not accept the share")?;
    write_progress(ctx, &progress)
}

fn write_progress(ctx: &Ctx, progress: &RecoverProgress) -> anyhow::Result<()> {
    let mut out = ctx.out();
    if ctx.json {
        return Ok(write_json(&mut out, progress)?);
    }
    match progress.state {
        VaultState::Unsealed => {
            writeln!(
                out,
                "share accepted ({} of {}): the vault is unsealed, without the KMS",
                progress.accepted, progress.threshold
            )?;
            drop(out);
            eprintln!(
                "vault-cli: move the master key to a working KMS key now: vault-cli keys kms migrate NEW_KEY"
            );
        }
        VaultState::Sealed | VaultState::Uninitialized => writeln!(
            out,
            "share accepted ({} of {}): the vault stays sealed until {} more",
            progress.accepted,
            progress.threshold,
            progress.threshold.saturating_sub(progress.accepted)
        )?,
    }
    Ok(())
}

/// Decrypts an age file with the identities in `identity_file`.
fn decrypt(identity_file: &Path, ciphertext: &[u8]) -> anyhow::Result<Secret> {
    let file = fs::File::open(identity_file)
        .with_context(|| format!("cannot open {}", identity_file.display()))?;
    let identities = age::IdentityFile::from_buffer(BufReader::new(file))
        .and_then(|f| f.into_identities().map_err(std::io::Error::other))
        .with_context(|| format!("{} is not an age identity file", identity_file.display()))?;
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(ciphertext))
        .context("the share is not a readable age file")?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .with_context(|| {
            format!(
                "the share does not decrypt with {}: is it yours?",
                identity_file.display()
            )
        })?;
    let mut plain = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plain)
        .context("the share's age file is damaged")?;
    Ok(Secret::from_slice(&plain))
}

/// Creates `dir` (0700) if missing; refuses a directory that already holds shares.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let taken = fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("share-"));
    if taken {
        return Err(Usage::new(format!(
            "{} already holds share files: give an empty directory",
            dir.display()
        ))
        .into());
    }
    Ok(())
}
