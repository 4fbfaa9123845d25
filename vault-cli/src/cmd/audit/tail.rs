//! `audit tail [-f]`: the last entries of every chain (or one), then new ones as they come,
//! without the entries of the CLI's own requests.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use vault_client::audit::Entry;
use vault_client::{AuditQuery, Client};

use super::printer::EntryPrinter;
use super::{PAGE, by_time, chains_to_read, page_limit};
use crate::cmd::Ctx;

/// How often `tail -f` asks for new entries.
const POLL: Duration = Duration::from_secs(1);

/// Runs `audit tail`: the last `lines` entries, then with `follow` new ones every second.
pub(super) async fn run(
    ctx: &Ctx,
    lines: u64,
    follow: bool,
    node: Option<&str>,
) -> anyhow::Result<()> {
    let client = &ctx.client;
    // Request ids of our own calls: their entries are hidden.
    let mut own = HashSet::new();
    let (info, id) = client
        .audit_chains_with_request_id()
        .await
        .context("cannot find the end of the audit log")?;
    own.extend(id);
    let chains = chains_to_read(&info, node)?;
    let mut window = Vec::new();
    let mut cursors = Vec::with_capacity(chains.len());
    for chain in chains {
        let end = chain.last_seq;
        // Enough entries to have `lines` left once our own requests' entries are hidden.
        let own_count = u64::try_from(own.len()).unwrap_or(u64::MAX);
        let mut after = end.saturating_sub(lines.saturating_add(own_count));
        window.extend(
            read_chain(
                client,
                chain.node.as_deref(),
                &mut after,
                Some(end),
                &mut own,
            )
            .await?,
        );
        cursors.push((chain.node, end));
    }
    by_time(&mut window);
    let skip = window
        .len()
        .saturating_sub(usize::try_from(lines).unwrap_or(usize::MAX));
    let mut printer = EntryPrinter::new(ctx);
    {
        let mut out = ctx.out();
        printer.header(&mut out)?;
        printer.entries(&mut out, &window[skip..])?;
        out.flush()?;
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(POLL).await;
        let mut new = Vec::new();
        for (node, after) in &mut cursors {
            new.extend(read_chain(client, node.as_deref(), after, None, &mut own).await?);
        }
        by_time(&mut new);
        let mut out = ctx.out();
        printer.entries(&mut out, &new)?;
        out.flush()?;
    }
}

/// The entries of the chain of `node` after `*after` (and up to `end`, when given), page by
/// page, without those of our own requests (their ids join `own`); `*after` moves to the last
/// entry read.
async fn read_chain(
    client: &Client,
    node: Option<&str>,
    after: &mut u64,
    end: Option<u64>,
    own: &mut HashSet<String>,
) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    while end.is_none_or(|end| *after < end) {
        let query = AuditQuery {
            node: node.map(str::to_owned),
            after: Some(*after),
            limit: Some(page_limit(end.map_or(PAGE, |end| end - *after))),
            ..AuditQuery::default()
        };
        let (page, id) = client
            .audit_with_request_id(&query)
            .await
            .context("cannot read the audit log")?;
        own.extend(id);
        let Some(last) = page.entries.last() else {
            break;
        };
        *after = last.seq;
        entries.extend(
            page.entries
                .into_iter()
                .filter(|e| end.is_none_or(|end| e.seq <= end) && !own.remove(&e.request)),
        );
        if page.next.is_none() {
            break;
        }
    }
    Ok(entries)
}
