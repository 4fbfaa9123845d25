//! `transit seal|unseal|rewrap`: the caller keeps the sealed blob; the daemon keeps nothing.

use std::io::{self, Read as _, Write as _};

use anyhow::Context as _;
use vault_client::wire::{Plaintext, Sealed};

use super::{Ctx, Usage, write_secret};
use crate::cli::Transit;
use crate::input::{Mode, read_secret};
use crate::output::write_json;

/// A sealed blob is short; anything longer on stdin is a mistake.
const MAX_BLOB: u64 = 256 * 1024;

/// Runs a `transit` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: Transit) -> anyhow::Result<()> {
    match cmd {
        Transit::Rewrap {
            tenant,
            context,
            sealed,
        } => {
            let blob = blob_arg(sealed)?;
            let sealed = ctx
                .client
                .transit_rewrap(&tenant, blob.trim(), &context)
                .await
                .with_context(|| format!("cannot rewrap for tenant {tenant}"))?;
            print_sealed(ctx, sealed)
        }
        Transit::Seal {
            tenant,
            context,
            binary,
        } => {
            let mode = if binary { Mode::Binary } else { Mode::Text };
            let plaintext = read_secret(None, "plaintext", mode)?;
            let sealed = ctx
                .client
                .transit_seal(&tenant, plaintext, &context)
                .await
                .with_context(|| format!("cannot seal for tenant {tenant}"))?;
            print_sealed(ctx, sealed)
        }
        Transit::Unseal {
            tenant,
            context,
            sealed,
        } => {
            let blob = blob_arg(sealed)?;
            let plaintext = ctx
                .client
                .transit_unseal(&tenant, blob.trim(), &context)
                .await
                .with_context(|| format!("cannot unseal for tenant {tenant}"))?;
            if ctx.json {
                return Ok(write_json(&mut ctx.out(), &Plaintext { plaintext })?);
            }
            Ok(write_secret(plaintext.expose_secret())?)
        }
    }
}

/// Prints a sealed blob: the blob alone, or the API's answer with `--json`.
fn print_sealed(ctx: &Ctx, sealed: String) -> anyhow::Result<()> {
    let mut out = ctx.out();
    if ctx.json {
        write_json(&mut out, &Sealed { sealed })?;
    } else {
        writeln!(out, "{sealed}")?;
    }
    Ok(())
}

/// The blob given with `--sealed`, else read from stdin.
fn blob_arg(sealed: Option<String>) -> anyhow::Result<String> {
    sealed.map_or_else(read_blob, Ok)
}

fn read_blob() -> anyhow::Result<String> {
    let mut blob = String::new();
    io::stdin()
        .lock()
        .take(MAX_BLOB)
        .read_to_string(&mut blob)
        .context("cannot read the sealed blob from stdin")?;
    if blob.trim().is_empty() {
        return Err(Usage::new("no sealed blob: pass --sealed or pipe it on stdin").into());
    }
    Ok(blob)
}
