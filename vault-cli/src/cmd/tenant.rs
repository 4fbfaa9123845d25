//! `tenant create|list|show|destroy`.

use std::io::Write;

use anyhow::Context as _;
use vault_client::wire::TenantInfo;

use super::{Ctx, Usage};
use crate::cli::Tenant;
use crate::output::{Table, write_fields, write_json};

/// Runs a `tenant` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: Tenant) -> anyhow::Result<()> {
    let client = &ctx.client;
    match cmd {
        Tenant::Create { tenant } => {
            let info = client
                .create_tenant(&tenant)
                .await
                .with_context(|| format!("cannot create tenant {tenant}"))?;
            show(ctx, &info)
        }
        Tenant::Receipt { tenant, out } => {
            super::receipt::fetch(ctx, &tenant, out.as_deref()).await
        }
        Tenant::Destroy {
            tenant,
            confirm,
            receipt,
        } => {
            if confirm != tenant {
                return Err(Usage::new(format!(
                    "refusing to destroy tenant {tenant}: --confirm must repeat its name"
                ))
                .into());
            }
            if let Some(path) = receipt.as_deref().filter(|p| p.exists()) {
                return Err(Usage::new(format!(
                    "{} exists: give --receipt a new file (nothing was destroyed)",
                    path.display()
                ))
                .into());
            }
            let done = client
                .destroy_tenant(&tenant)
                .await
                .with_context(|| format!("cannot destroy tenant {tenant}"))?;
            let mut out = ctx.out();
            if ctx.json {
                write_json(&mut out, &done)?;
            } else {
                writeln!(
                    out,
                    "destroyed tenant {}: {} key versions, {} tokens",
                    done.tenant, done.destroyed_key_versions, done.deleted_tokens
                )?;
            }
            if let (Some(path), Some(text)) = (receipt, done.receipt.as_deref()) {
                super::receipt::write_receipt(&path, text)?;
                eprintln!("vault-cli: erasure receipt written to {}", path.display());
            }
            Ok(())
        }
        Tenant::List => {
            let list = client.list_tenants().await.context("cannot list tenants")?;
            let mut out = ctx.out();
            if ctx.json {
                return Ok(write_json(&mut out, &list)?);
            }
            let mut table = Table::new(&["NAME", "KEY VERSION", "TOKENS", "CREATED"]);
            for t in &list.tenants {
                table.row(vec![
                    t.name.clone(),
                    t.current_key_version.to_string(),
                    t.tokens.to_string(),
                    t.created_at.to_string(),
                ]);
            }
            Ok(table.write(&mut out)?)
        }
        Tenant::Show { tenant } => {
            let info = client
                .tenant(&tenant)
                .await
                .with_context(|| format!("cannot read tenant {tenant}"))?;
            show(ctx, &info)
        }
    }
}

fn show(ctx: &Ctx, info: &TenantInfo) -> anyhow::Result<()> {
    let mut out = ctx.out();
    if ctx.json {
        return Ok(write_json(&mut out, info)?);
    }
    write_fields(
        &mut out,
        &[
            ("name", info.name.clone()),
            ("created", info.created_at.to_string()),
            ("key version", info.current_key_version.to_string()),
            ("tokens", info.tokens.to_string()),
        ],
    )?;
    writeln!(out)?;
    let mut table = Table::new(&["VERSION", "CREATED", "RECORDS"]);
    for v in &info.key_versions {
        table.row(vec![
            v.version.to_string(),
            v.created_at.to_string(),
            v.records.to_string(),
        ]);
    }
    Ok(table.write(&mut out)?)
}
