//! `token put|get|list|delete`.

use std::io::Write;

use anyhow::Context as _;
use vault_client::ExpiryFilter;
use vault_client::wire::{Binding, Expect, PutToken, TokenMeta};

use super::{Ctx, write_secret};
use crate::cli::{Token, TokenGet, TokenPut};
use crate::input::{Mode, read_binding_file, read_lines, read_secret};
use crate::output::{Table, or_dash, write_fields, write_json};

/// Runs a `token` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: Token) -> anyhow::Result<()> {
    match cmd {
        Token::Delete { tenant, id } => {
            let deleted = ctx
                .client
                .delete_token(&tenant, &id)
                .await
                .with_context(|| format!("cannot delete token {tenant}/{id}"))?;
            let mut out = ctx.out();
            if ctx.json {
                write_json(&mut out, &deleted)?;
            } else {
                writeln!(out, "deleted token {tenant}/{id}")?;
            }
            Ok(())
        }
        Token::Get(args) => get(ctx, args).await,
        Token::List {
            tenant,
            after,
            limit,
            expired,
            expiring_within,
        } => {
            let expiry = match (expired, expiring_within) {
                (true, _) => Some(ExpiryFilter::Expired),
                (false, Some(within)) => Some(ExpiryFilter::Within(within)),
                (false, None) => None,
            };
            let list = ctx
                .client
                .list_tokens_where(&tenant, after.as_deref(), limit, expiry)
                .await
                .with_context(|| format!("cannot list the tokens of tenant {tenant}"))?;
            let mut out = ctx.out();
            if ctx.json {
                return Ok(write_json(&mut out, &list)?);
            }
            let mut table = Table::new(&[
                "ID", "BANK", "SCOPE", "REVISION", "KEY", "EXPIRES", "UPDATED",
            ]);
            for t in &list.items {
                table.row(vec![
                    t.id.clone(),
                    t.binding.bank.clone(),
                    t.binding.scope.clone(),
                    t.revision.to_string(),
                    format!("v{}", t.key_version),
                    or_dash(t.expires_at),
                    t.updated_at.to_string(),
                ]);
            }
            table.write(&mut out)?;
            if let Some(next) = list.next {
                eprintln!("vault-cli: more tokens follow: --after {next}");
            }
            Ok(())
        }
        Token::Put(args) => put(ctx, args).await,
    }
}

async fn put(ctx: &Ctx, args: TokenPut) -> anyhow::Result<()> {
    let mode = if args.binary {
        Mode::Binary
    } else {
        Mode::Text
    };
    let secret = read_secret(args.secret_file.as_deref(), "token", mode)?;
    let personal = read_binding_file(&args.binding_file)?;
    let body = PutToken {
        secret,
        binding: Binding {
            subject: personal.subject.to_string(),
            bank: args.bank,
            account: personal.account.to_string(),
            scope: args.scope,
        },
        expires_at: args.expires_at,
        expected_revision: args.expected_revision,
        lease: None,
    };
    let (tenant, id) = (&args.tenant, &args.id);
    let kind = if args.decoy { "decoy" } else { "token" };
    let stored = if args.decoy {
        ctx.client.put_decoy(tenant, id, &body).await
    } else {
        ctx.client.put_token(tenant, id, &body).await
    }
    .with_context(|| format!("cannot store {kind} {tenant}/{id}"))?;
    drop(body);
    let mut out = ctx.out();
    if ctx.json {
        write_json(&mut out, &stored)?;
    } else {
        writeln!(
            out,
            "stored {kind} {tenant}/{id}: revision {}, key version {}",
            stored.revision, stored.key_version
        )?;
    }
    Ok(())
}

async fn get(ctx: &Ctx, args: TokenGet) -> anyhow::Result<()> {
    let (tenant, id) = (&args.tenant, &args.id);
    if args.meta {
        let meta = ctx
            .client
            .token(tenant, id)
            .await
            .with_context(|| format!("cannot read token {tenant}/{id}"))?;
        let mut out = ctx.out();
        if ctx.json {
            return Ok(write_json(&mut out, &meta)?);
        }
        return Ok(write_meta(&mut out, tenant, &meta)?);
    }
    let names: Vec<&str> = [
        (args.expect_account_stdin, "account"),
        (args.expect_subject_stdin, "subject"),
    ]
    .into_iter()
    .filter_map(|(wanted, name)| wanted.then_some(name))
    .collect();
    let mut lines = if names.is_empty() {
        Vec::new()
    } else {
        read_lines(&names)?
    }
    .into_iter();
    let mut next = |wanted: bool| wanted.then(|| lines.next()).flatten();
    let account = next(args.expect_account_stdin);
    let subject = next(args.expect_subject_stdin);
    let expect =
        (account.is_some() || subject.is_some() || args.expect_scope.is_some()).then(|| Expect {
            account: account.as_deref().map(|a| a.to_string()),
            subject: subject.as_deref().map(|s| s.to_string()),
            scope: args.expect_scope.clone(),
        });
    let token = ctx
        .client
        .unseal_token(tenant, id, expect)
        .await
        .with_context(|| format!("cannot unseal token {tenant}/{id}"))?;
    if ctx.json {
        return Ok(write_json(&mut ctx.out(), &token)?);
    }
    Ok(write_secret(token.secret().expose_secret())?)
}

fn write_meta(out: &mut impl Write, tenant: &str, meta: &TokenMeta) -> std::io::Result<()> {
    write_fields(
        out,
        &[
            ("tenant", tenant.to_owned()),
            ("id", meta.id.clone()),
            ("subject", meta.binding.subject.clone()),
            ("bank", meta.binding.bank.clone()),
            ("account", meta.binding.account.clone()),
            ("scope", meta.binding.scope.clone()),
            ("expires", or_dash(meta.expires_at)),
            ("revision", meta.revision.to_string()),
            ("key version", meta.key_version.to_string()),
            ("updated", meta.updated_at.to_string()),
        ],
    )
}
