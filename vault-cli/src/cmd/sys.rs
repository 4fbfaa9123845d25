//! `status`, `version` and `operator init|unseal|seal` (recovery shares: `cmd::recovery`).

use anyhow::Context as _;
use vault_client::wire::{StateResponse, Status, VaultState};

use super::{Ctx, Exit};
use crate::cli::Operator;
use crate::output::{or_dash, write_fields, write_json};

/// Exit status of `status` for a vault that is not unsealed (as `vault status` does).
const EXIT_NOT_UNSEALED: u8 = 2;

/// `status`: exits 0 when unsealed, [`EXIT_NOT_UNSEALED`] when sealed or uninitialized.
pub(crate) async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let status = ctx
        .client
        .status()
        .await
        .context("cannot read the status")?;
    let mut out = ctx.out();
    if ctx.json {
        write_json(&mut out, &status)?;
    } else {
        write_status(&mut out, &status)?;
    }
    match status.state {
        VaultState::Unsealed => Ok(()),
        VaultState::Sealed | VaultState::Uninitialized => Err(Exit(EXIT_NOT_UNSEALED).into()),
    }
}

/// `version`: this CLI's version, and the daemon's when it answers.
pub(crate) async fn version(ctx: &Ctx) -> anyhow::Result<()> {
    let cli = env!("CARGO_PKG_VERSION");
    let daemon = ctx.client.status().await;
    let mut out = ctx.out();
    if ctx.json {
        let value = serde_json::json!({
            "vault_cli": cli,
            "vaultd": daemon.as_ref().ok().and_then(|s| s.version.clone()),
            "vaultd_error": daemon.as_ref().err().map(ToString::to_string),
        });
        return Ok(write_json(&mut out, &value)?);
    }
    let vaultd = match &daemon {
        Ok(status) => status
            .version
            .clone()
            .unwrap_or_else(|| "unknown (the daemon predates the version field)".into()),
        Err(e) => format!("unknown ({e})"),
    };
    Ok(write_fields(
        &mut out,
        &[("vault-cli", cli.to_owned()), ("vaultd", vaultd)],
    )?)
}

/// `operator init|unseal|seal`.
pub(crate) async fn operator(ctx: &Ctx, op: Operator) -> anyhow::Result<()> {
    let client = &ctx.client;
    let mut out = ctx.out();
    match op {
        Operator::Init => {
            let init = client.init().await.context("cannot initialize the vault")?;
            if ctx.json {
                write_json(&mut out, &init)?;
            } else {
                write_fields(
                    &mut out,
                    &[
                        ("vault id", init.vault_id),
                        ("master key", format!("v{}", init.master_key_version)),
                        ("state", state_name(init.state).to_owned()),
                    ],
                )?;
            }
        }
        Operator::Seal => {
            let state = client.seal().await.context("cannot seal the vault")?;
            write_state(ctx, &mut out, &state)?;
        }
        Operator::Recover { identity, share } => {
            drop(out);
            return super::recovery::recover(ctx, identity, share).await;
        }
        Operator::Recovery(what) => {
            drop(out);
            return super::recovery::create(ctx, what).await;
        }
        Operator::Unseal => {
            let state = client.unseal().await.context("cannot unseal the vault")?;
            write_state(ctx, &mut out, &state)?;
        }
    }
    Ok(())
}

fn write_state(
    ctx: &Ctx,
    out: &mut impl std::io::Write,
    state: &StateResponse,
) -> std::io::Result<()> {
    if ctx.json {
        write_json(out, state)
    } else {
        writeln!(out, "vault is {}", state_name(state.state))
    }
}

fn write_status(out: &mut impl std::io::Write, status: &Status) -> std::io::Result<()> {
    write_fields(
        out,
        &[
            ("state", state_name(status.state).to_owned()),
            ("vault id", or_dash(status.vault_id.as_deref())),
            ("kms provider", status.kms.provider.clone()),
            ("kms key id", status.kms.key_id.clone()),
            (
                "configured kms key",
                match status.kms.configured_key_id.as_deref() {
                    Some(c)
                        if c == status.kms.key_id
                            || status.kms.key_id.ends_with(&format!("/{c}")) =>
                    {
                        "the same".to_owned()
                    }
                    Some(c) => format!(
                        "{c} (differs: set kms.key_id to the key above before the next restart)"
                    ),
                    None => "-".to_owned(),
                },
            ),
            (
                "master key",
                or_dash(status.master_key_version.map(|v| format!("v{v}"))),
            ),
            ("tenants", or_dash(status.tenants)),
            ("tokens", or_dash(status.tokens)),
            ("version", or_dash(status.version.as_deref())),
        ],
    )
}

/// The wire name of a state.
pub(crate) fn state_name(state: VaultState) -> &'static str {
    match state {
        VaultState::Sealed => "sealed",
        VaultState::Uninitialized => "uninitialized",
        VaultState::Unsealed => "unsealed",
    }
}
