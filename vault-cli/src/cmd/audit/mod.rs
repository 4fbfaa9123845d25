//! `audit tail|search|verify|pubkey|export|archive`.
//!
//! Every request the CLI sends is itself an audit entry. `tail` finds the end of each chain with
//! `GET /v1/audit/chains` and hides the entries of its own requests, which it knows by the
//! request id the daemon answers with. `export` steps by whole pages and stops at the first page
//! without entries, so the entries of its own requests cannot keep it going. `verify --offline`
//! reads only files.
//!
//! Several nodes on one PostgreSQL store keep a chain each (`docs/audit-log.md`, "Several
//! chains"): `tail` and `search` read every chain and merge the entries by time (`--node` reads
//! one), `export` writes every chain, and `verify --offline` sorts a file's lines into chains.
//!
//! # Layout
//! - `tail`: `audit tail [-f]`.
//! - `search`: `audit search`, one chain or every chain merged by time.
//! - `verify`: `audit verify`, by the daemon or `--offline` from an export and the public key.
//! - `export`: `audit export`, every chain with its signed statement.
//! - `archive`: `audit archive`, the oldest entries to a sealed archive, then out of the live log.
//! - `printer`: entries as table rows, JSON lines or CSV.

mod archive;
mod export;
mod printer;
mod search;
mod tail;
mod verify;

use std::io::Write as _;

use anyhow::Context as _;
use vault_client::audit::Entry;
use vault_client::wire::{AuditChain, AuditChains};

use super::{Ctx, Usage};
use crate::cli::{Audit, AuditReceipt};
use crate::output::write_json;

pub(super) use printer::actor_name;
pub(super) use verify::{for_each_line, read_public_key, verify_file};

/// Entries per `GET /v1/audit` page (the daemon's largest).
const PAGE: u64 = 10_000;

/// Runs an `audit` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: Audit) -> anyhow::Result<()> {
    match cmd {
        Audit::Archive { before, out, node } => {
            archive::run(ctx, before, &out, node.as_deref()).await
        }
        Audit::Export { file, force } => export::run(ctx, &file, force).await,
        Audit::Pubkey => pubkey(ctx).await,
        Audit::Report(args) => super::report::run(ctx, args).await,
        Audit::Receipt(AuditReceipt::Verify { file, pubkey }) => {
            super::receipt::verify(ctx, &file, &pubkey)
        }
        Audit::Search(args) => search::run(ctx, args).await,
        Audit::Tail {
            lines,
            follow,
            node,
        } => tail::run(ctx, lines, follow, node.as_deref()).await,
        Audit::Verify(args) => verify::run(ctx, args).await,
    }
}

/// `audit pubkey`: the key that verifies the log's signed heads, as `--pubkey` files hold it.
async fn pubkey(ctx: &Ctx) -> anyhow::Result<()> {
    let key = ctx
        .client
        .audit_pubkey()
        .await
        .context("cannot read the audit public key")?;
    let mut out = ctx.out();
    if ctx.json {
        write_json(&mut out, &key)?;
    } else {
        writeln!(out, "{}", key.public_key)?;
    }
    Ok(())
}

/// The chains to read: the one `node` names, or every chain, each with its last sequence
/// number.
fn chains_to_read(info: &AuditChains, node: Option<&str>) -> anyhow::Result<Vec<AuditChain>> {
    let Some(node) = node else {
        return Ok(info.chains.clone());
    };
    if info.own.is_none() {
        return Err(Usage::new("--node names a chain of a PostgreSQL store shared by several nodes; this vault keeps one audit chain").into());
    }
    match info.chains.iter().find(|c| c.node.as_deref() == Some(node)) {
        Some(chain) => Ok(vec![chain.clone()]),
        None => {
            let names: Vec<&str> = info
                .chains
                .iter()
                .filter_map(|c| c.node.as_deref())
                .collect();
            Err(Usage::new(format!(
                "the log has no chain of node {node:?} (its chains: {})",
                names.join(", ")
            ))
            .into())
        }
    }
}

/// Entries of several chains in one order: by time, then node, then sequence number (each
/// chain's own order is kept, since its times never go back by more than a request's length).
fn by_time(entries: &mut [Entry]) {
    entries.sort_by(|a, b| (a.time, &a.node, a.seq).cmp(&(b.time, &b.node, b.seq)));
}

/// The page size to ask for when `wanted` entries are still to come.
fn page_limit(wanted: u64) -> u32 {
    u32::try_from(wanted.clamp(1, PAGE)).expect("PAGE fits in u32")
}
