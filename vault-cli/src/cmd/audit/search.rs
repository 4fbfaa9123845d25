//! `audit search`: the entries that match the filters, in one chain or every chain merged by
//! time.

use std::io::{self, Write as _};

use anyhow::Context as _;
use vault_client::audit::Entry;
use vault_client::wire::AuditChain;
use vault_client::{AuditQuery, Client};

use super::printer::EntryPrinter;
use super::{by_time, chains_to_read, page_limit};
use crate::cli::AuditSearch;
use crate::cmd::{Ctx, Usage};
use crate::input::read_lines;

/// Runs `audit search`.
pub(super) async fn run(ctx: &Ctx, args: AuditSearch) -> anyhow::Result<()> {
    let client = &ctx.client;
    let mut names = Vec::new();
    if args.account_stdin {
        names.push("account");
    }
    if args.subject_stdin {
        names.push("subject");
    }
    let mut values = if names.is_empty() {
        Vec::new()
    } else {
        read_lines(&names)?
    }
    .into_iter();
    let mut account_hmac = args.account_hmac;
    if args.account_stdin {
        let account = values.next().context("stdin ended early")?;
        account_hmac = Some(hash(client, &account, "account").await?);
    }
    let mut subject_hmac = args.subject_hmac;
    if args.subject_stdin {
        let subject = values.next().context("stdin ended early")?;
        subject_hmac = Some(hash(client, &subject, "subject").await?);
    }
    let info = client
        .audit_chains()
        .await
        .context("cannot read the audit log's chains")?;
    let chains = chains_to_read(&info, args.node.as_deref())?;
    let query = AuditQuery {
        node: None,
        after: args.after,
        limit: None,
        tenant: args.tenant,
        token: args.token,
        actor: args.actor,
        op: (!args.op.is_empty()).then(|| args.op.join(",")),
        outcome: args.outcome.map(Into::into),
        since: args.since,
        until: args.until,
        account_hmac,
        subject_hmac,
    };
    let mut printer = EntryPrinter::new(ctx);
    printer.header(&mut ctx.out())?;
    match chains.as_slice() {
        [chain] => {
            let query = AuditQuery {
                node: chain.node.clone(),
                ..query
            };
            search_chain(ctx, &mut printer, query, args.limit).await
        }
        _ if args.after.is_some() => {
            Err(Usage::new("--after continues the search of one chain: give its --node too").into())
        }
        _ => search_chains(ctx, &mut printer, &query, &chains, args.limit).await,
    }
}

/// Pages through up to `limit` matches of `query` (one chain), handing each page to `each`;
/// the `after` to continue with when more may match.
async fn each_match(
    ctx: &Ctx,
    mut query: AuditQuery,
    limit: u64,
    mut each: impl FnMut(Vec<Entry>) -> io::Result<()>,
) -> anyhow::Result<Option<u64>> {
    let mut remaining = limit;
    loop {
        query.limit = Some(page_limit(remaining));
        let page = ctx
            .client
            .audit(&query)
            .await
            .context("cannot search the audit log")?;
        remaining = remaining.saturating_sub(u64::try_from(page.entries.len()).unwrap_or(u64::MAX));
        each(page.entries)?;
        match page.next {
            None => return Ok(None),
            Some(next) if remaining == 0 => return Ok(Some(next)),
            Some(next) => query.after = Some(next),
        }
    }
}

/// Prints up to `limit` matches of one chain, page by page as they come.
async fn search_chain(
    ctx: &Ctx,
    printer: &mut EntryPrinter,
    query: AuditQuery,
    limit: u64,
) -> anyhow::Result<()> {
    let node = query.node.clone();
    let more = each_match(ctx, query, limit, |entries| {
        let mut out = ctx.out();
        printer.entries(&mut out, &entries)?;
        out.flush()
    })
    .await?;
    if let Some(next) = more {
        let node = node.map(|n| format!("--node {n} ")).unwrap_or_default();
        eprintln!("vault-cli: more entries may match: continue with {node}--after {next}");
    }
    Ok(())
}

/// Prints the first `limit` matches of every chain merged by time: up to `limit` from each,
/// then the earliest of them.
async fn search_chains(
    ctx: &Ctx,
    printer: &mut EntryPrinter,
    query: &AuditQuery,
    chains: &[AuditChain],
    limit: u64,
) -> anyhow::Result<()> {
    let mut found = Vec::new();
    // Per chain: where to continue if it may hold more than was printed.
    let mut more = Vec::new();
    for chain in chains {
        let query = AuditQuery {
            node: chain.node.clone(),
            ..query.clone()
        };
        let next = each_match(ctx, query, limit, |entries| {
            found.extend(entries);
            Ok(())
        })
        .await?;
        if let Some(next) = next {
            more.push((chain.node.clone(), next));
        }
    }
    by_time(&mut found);
    let shown = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .min(found.len());
    {
        let mut out = ctx.out();
        printer.entries(&mut out, &found[..shown])?;
        out.flush()?;
    }
    // A chain continues after the last of its entries printed.
    for chain in chains {
        let last_shown = found[..shown]
            .iter()
            .filter(|e| e.node == chain.node)
            .map(|e| e.seq)
            .max();
        let cut = found[shown..].iter().any(|e| e.node == chain.node);
        let after = match (cut, more.iter().find(|(n, _)| *n == chain.node)) {
            (true, _) => last_shown.unwrap_or(query.after.unwrap_or(0)),
            (false, Some((_, next))) => *next,
            (false, None) => continue,
        };
        let node = chain.node.as_deref().unwrap_or("-");
        eprintln!(
            "vault-cli: more entries may match in the chain of node {node}: continue with --node {node} --after {after}"
        );
    }
    Ok(())
}

/// The HMAC the log writes for `value`, computed by the daemon.
async fn hash(client: &Client, value: &str, what: &str) -> anyhow::Result<String> {
    client
        .audit_hash(value)
        .await
        .with_context(|| format!("cannot hash the {what}"))
}
