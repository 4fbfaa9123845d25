//! `audit tail|search|verify|pubkey|export` (`archive` is `cmd::archive`).
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

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read as _, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use vault_client::audit::{
    Actor, Anchor, CheckpointLine, Entry, Head, HeadLine, LogVerifier, Report, hex, public_key,
};
use vault_client::wire::{AuditChain, AuditChains};
use vault_client::{AuditQuery, Client};

use super::{AuditProblems, Ctx, Usage};
use crate::cli::{Audit, AuditReceipt, AuditSearch, AuditVerify};
use crate::file::{create_private, partial_path};
use crate::input::read_lines;
use crate::output::{Columns, or_dash, write_csv, write_fields, write_json};

/// Entries per `GET /v1/audit` page (the daemon's largest).
const PAGE: u64 = 10_000;
/// Sequence numbers per export page: entries and heads of 5000 entries stay well under the
/// client's 16 MiB answer limit.
const EXPORT_PAGE: u32 = 5_000;
/// How often `tail -f` asks for new entries.
const POLL: Duration = Duration::from_secs(1);
/// Longest export line `verify --offline` reads whole; a longer one is reported unreadable.
const MAX_LINE: usize = 1024 * 1024;
/// Longest key file read.
const MAX_KEYFILE: u64 = 4096;
/// How a head line starts (`docs/audit-log.md`).
const HEAD_PREFIX: &[u8] = b"{\"head\"";
/// How a checkpoint line starts (`docs/audit-log.md`, "Archiving").
const CHECKPOINT_PREFIX: &[u8] = b"{\"checkpoint\"";

/// Runs an `audit` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: Audit) -> anyhow::Result<()> {
    match cmd {
        Audit::Archive { before, out, node } => {
            super::archive::run(ctx, before, &out, node.as_deref()).await
        }
        Audit::Export { file, force } => export(ctx, &file, force).await,
        Audit::Pubkey => pubkey(ctx).await,
        Audit::Report(args) => super::report::run(ctx, args).await,
        Audit::Receipt(AuditReceipt::Verify { file, pubkey }) => {
            super::receipt::verify(ctx, &file, &pubkey)
        }
        Audit::Search(args) => search(ctx, args).await,
        Audit::Tail {
            lines,
            follow,
            node,
        } => tail(ctx, lines, follow, node.as_deref()).await,
        Audit::Verify(args) => verify(ctx, args).await,
    }
}

// ----- tail -----

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

async fn tail(ctx: &Ctx, lines: u64, follow: bool, node: Option<&str>) -> anyhow::Result<()> {
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

fn page_limit(wanted: u64) -> u32 {
    u32::try_from(wanted.clamp(1, PAGE)).expect("PAGE fits in u32")
}

// ----- search -----

async fn search(ctx: &Ctx, args: AuditSearch) -> anyhow::Result<()> {
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

// ----- verify -----

async fn verify(ctx: &Ctx, args: AuditVerify) -> anyhow::Result<()> {
    let anchor = args.since_head.as_ref();
    let report = match (args.offline.as_slice(), &args.pubkey) {
        ([_, ..], Some(keyfile)) => {
            verify_files(&args.offline, keyfile, anchor, &args.accept_adopted)?
        }
        ([], None) => {
            let head = anchor.map(|a| format!("{}:{}", a.seq, hex(&a.hash)));
            ctx.client
                .audit_verify_with(head.as_deref(), &args.accept_adopted, args.full)
                .await
                .context("cannot verify the audit log")?
        }
        _ => return Err(Usage::new("--offline and --pubkey go together").into()),
    };
    {
        let mut out = ctx.out();
        if ctx.json {
            write_json(&mut out, &report)?;
        } else {
            write_report(&mut out, &report)?;
        }
    }
    if report.ok && report.problems.is_empty() {
        Ok(())
    } else {
        Err(AuditProblems(report.problems.len().max(1)).into())
    }
}

/// The audit public key in `keyfile` (hex, as `audit pubkey` prints it).
pub(super) fn read_public_key(keyfile: &Path) -> anyhow::Result<vault_client::audit::VerifyingKey> {
    let mut text = String::new();
    File::open(keyfile)
        .and_then(|f| f.take(MAX_KEYFILE).read_to_string(&mut text))
        .with_context(|| format!("cannot read the key file {}", keyfile.display()))?;
    public_key(&text).with_context(|| {
        format!(
            "{} does not hold an Ed25519 public key in hex (as `vault-cli audit pubkey` prints it)",
            keyfile.display()
        )
    })
}

/// Verifies an export with the public key alone: no daemon, no socket.
pub(super) fn verify_file(
    file: &Path,
    keyfile: &Path,
    anchor: Option<&Anchor>,
    accept: &[u64],
) -> anyhow::Result<Report> {
    verify_files(&[file.to_owned()], keyfile, anchor, accept)
}

/// Verifies archives and an export, read in order as one log (`docs/audit-log.md`,
/// "Archiving"), with the public key alone.
fn verify_files(
    files: &[PathBuf],
    keyfile: &Path,
    anchor: Option<&Anchor>,
    accept: &[u64],
) -> anyhow::Result<Report> {
    let key = read_public_key(keyfile)?;
    let mut verifier = LogVerifier::new(key)
        .accepting(accept)
        .requiring_statements();
    for file in files {
        let mut reader = File::open(file)
            .map(BufReader::new)
            .with_context(|| format!("cannot open {}", file.display()))?;
        for_each_line(&mut reader, |line| {
            // Blank lines carry nothing (an editor's trailing newline); every other line counts.
            if !line.is_empty() {
                verifier.line(line);
            }
        })
        .with_context(|| format!("cannot read {}", file.display()))?;
    }
    Ok(verifier.finish(anchor))
}

/// Calls `each` with every line of `reader`, without its `\n`, exactly as it is otherwise. A
/// line longer than [`MAX_LINE`] is passed cut short (so it reads as damaged) and its rest
/// skipped.
pub(super) fn for_each_line(
    reader: &mut impl BufRead,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > MAX_LINE {
            skip_line(reader)?;
        }
        each(&line);
    }
}

fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            reader.consume(i + 1);
            return Ok(());
        }
        let len = buf.len();
        reader.consume(len);
    }
}

/// Entries checked, and where a resumed verification began.
fn entries(checked: u64, resumed_after: Option<u64>) -> String {
    match resumed_after {
        None => checked.to_string(),
        Some(seq) => format!(
            "{checked} after head {seq}, which an earlier verify found sound (--full rereads all)"
        ),
    }
}

fn write_report(out: &mut impl Write, report: &Report) -> io::Result<()> {
    let verdict = if report.ok {
        "ok".to_owned()
    } else {
        match report.problems.len() {
            1 => "FAILED: 1 problem".to_owned(),
            n => format!("FAILED: {n} problems"),
        }
    };
    let head = report
        .head
        .as_ref()
        .map(|h| format!("{}:{}", h.seq, h.hash));
    let mut fields = vec![
        ("verification", verdict),
        ("entries", entries(report.entries, report.resumed_after)),
        ("head", or_dash(head.as_deref())),
        ("signed through", or_dash(report.signed_through)),
    ];
    if let Some(through) = report.checkpoint {
        fields.push((
            "from checkpoint",
            format!("{through}: entries up to it are archived (verify the archives with it)"),
        ));
    }
    // Several nodes' chains: one line each, with the head to record.
    fields.extend(report.chains.iter().map(|c| {
        let head = c.head.as_ref().map(|h| format!("{}:{}", h.seq, h.hash));
        let state = if c.ok { "ok" } else { "FAILED" };
        let resumed = c
            .resumed_after
            .map_or(String::new(), |seq| format!(" after head {seq}"));
        let text = format!(
            "{} {state}, {} entries{resumed}, head {}, signed through {}",
            c.node,
            c.entries,
            or_dash(head.as_deref()),
            or_dash(c.signed_through)
        );
        ("chain", text)
    }));
    fields.extend(report.problems.iter().map(|p| ("problem", p.clone())));
    fields.extend(report.accepted.iter().map(|a| ("accepted", a.clone())));
    // Not findings: what a sealed vault wrote before it could sign (docs/audit-log.md).
    fields.extend(
        report
            .sealed_periods
            .iter()
            .map(|p| ("sealed period", p.clone())),
    );
    write_fields(out, &fields)?;
    if report.ok && report.chains.len() > 1 {
        writeln!(
            out,
            "\nRecord each chain's head outside this machine. Later,\n  \
             vault-cli audit verify --since-head SEQ:HASH\n\
             fails unless one of the chains still contains that head."
        )?;
    } else if report.ok
        && let Some(head) = head
    {
        writeln!(
            out,
            "\nRecord this head outside this machine. Later,\n  \
             vault-cli audit verify --since-head {head}\n\
             fails unless the log still contains it (an older copy or a cut tail would not)."
        )?;
    }
    out.flush()
}

// ----- pubkey -----

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

// ----- export -----

/// What an export wrote.
#[derive(Debug, Default, Serialize)]
struct ExportSummary {
    file: PathBuf,
    /// The nodes whose chains were written, in order (empty: an embedded store's one chain).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    chains: Vec<String>,
    entries: u64,
    heads: u64,
    /// Signed statements written, one per chain (`docs/audit-log.md`, "Sealed exports").
    statements: u64,
    last_entry: Option<u64>,
    last_head: Option<Head>,
}

async fn export(ctx: &Ctx, path: &Path, force: bool) -> anyhow::Result<()> {
    // With --force, write beside FILE and replace it only once the export is complete.
    let write_path = if force {
        partial_path(path)?
    } else {
        path.to_owned()
    };
    let mut file = create_private(&write_path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists && !force {
            anyhow::Error::new(Usage::new(format!(
                "{} exists; pass --force to replace it",
                path.display()
            )))
        } else {
            anyhow::Error::new(e).context(format!("cannot create {}", write_path.display()))
        }
    })?;
    let written = write_export(&ctx.client, &mut file, path).await;
    let summary = match written.and_then(|s| {
        file.sync_all()
            .with_context(|| format!("cannot write {}", write_path.display()))?;
        if force {
            fs::rename(&write_path, path)
                .with_context(|| format!("cannot replace {}", path.display()))?;
        }
        Ok(s)
    }) {
        Ok(summary) => summary,
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(&write_path);
            return Err(e);
        }
    };
    let mut out = ctx.out();
    if ctx.json {
        return Ok(write_json(&mut out, &summary)?);
    }
    let last_head = summary.last_head.as_ref();
    let mut fields = vec![("file", path.display().to_string())];
    if !summary.chains.is_empty() {
        fields.push(("chains", summary.chains.join(",")));
    }
    fields.extend([
        ("entries", summary.entries.to_string()),
        ("heads", summary.heads.to_string()),
        ("signed statements", summary.statements.to_string()),
        ("last entry", or_dash(summary.last_entry)),
        (
            "last head",
            or_dash(last_head.map(|h| format!("{}:{}", h.seq, h.hash))),
        ),
        ("signed at", or_dash(last_head.map(|h| h.time))),
    ]);
    write_fields(&mut out, &fields)?;
    Ok(())
}

/// Pages through `/v1/audit/export`, chain after chain, writing every line verbatim; the last
/// entry and head of the summary are the last chain's.
async fn write_export(
    client: &Client,
    file: &mut File,
    path: &Path,
) -> anyhow::Result<ExportSummary> {
    let info = client
        .audit_chains()
        .await
        .context("cannot read the audit log's chains")?;
    let mut summary = ExportSummary {
        file: path.to_owned(),
        chains: info.chains.iter().filter_map(|c| c.node.clone()).collect(),
        ..ExportSummary::default()
    };
    for chain in &info.chains {
        write_chain(client, chain.node.as_deref(), file, path, &mut summary).await?;
    }
    Ok(summary)
}

/// Writes one chain of the export.
async fn write_chain(
    client: &Client,
    node: Option<&str>,
    file: &mut File,
    path: &Path,
    summary: &mut ExportSummary,
) -> anyhow::Result<()> {
    /// Only the sequence number of an entry line.
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    let mut after = 0u64;
    let mut chain_last = None;
    loop {
        let page = client
            .audit_export_page(node, after, EXPORT_PAGE)
            .await
            .with_context(|| format!("cannot export the audit log after entry {after}"))?;
        if !page.is_empty() && page.last() != Some(&b'\n') {
            anyhow::bail!("the daemon's export page after entry {after} is not whole lines");
        }
        let mut entries = 0u64;
        let mut last_entry = None;
        let mut last_head = None;
        for line in page.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if line.starts_with(CHECKPOINT_PREFIX) {
                // The chain starts after its archived part: pages count from there.
                let checkpoint: CheckpointLine =
                    serde_json::from_slice(line).context("the chain's checkpoint line")?;
                after = after.max(checkpoint.checkpoint.through);
            } else if line.starts_with(HEAD_PREFIX) {
                summary.heads += 1;
                last_head = Some(line);
            } else {
                entries += 1;
                last_entry = Some(line);
            }
        }
        file.write_all(&page)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(line) = last_entry {
            summary.last_entry = serde_json::from_slice::<Seq>(line).ok().map(|s| s.seq);
            chain_last = summary.last_entry.or(chain_last);
        }
        if let Some(line) = last_head {
            summary.last_head = serde_json::from_slice::<HeadLine>(line)
                .ok()
                .map(|h| h.head);
        }
        summary.entries += entries;
        // Step by the whole range, not to the last entry: each request appends an entry of its
        // own, which must not keep the export going.
        if entries == 0 {
            break;
        }
        after = after
            .checked_add(u64::from(EXPORT_PAGE))
            .context("audit sequence numbers out of range")?;
    }
    // The daemon's signed statement of what this chain's export holds: its last line.
    let Some(last) = chain_last else {
        return Ok(());
    };
    let statement = client
        .audit_statement(node, last)
        .await
        .context("cannot get the export's signed statement (the vault must be unsealed)")?;
    let mut line = serde_json::to_vec(&statement).context("statement")?;
    line.push(b'\n');
    file.write_all(&line)
        .with_context(|| format!("cannot write {}", path.display()))?;
    summary.statements += 1;
    Ok(())
}

// ----- entries as text -----

/// Column titles and the width each starts at, so that the rows `tail -f` prints poll after
/// poll line up; OP fits the longest op the daemon writes (`alarm.exfiltration_brake`), and a
/// longer cell widens its column from then on ([`Columns`]).
const COLUMNS: [(&str, usize); 9] = [
    ("SEQ", 6),
    ("TIME", 20),
    ("ACTOR", 18),
    ("OP", 24),
    ("TENANT", 10),
    ("TOKEN", 12),
    ("OUTCOME", 7),
    ("CODE", 12),
    ("KEY", 0),
];

/// The columns of `--format csv`: every field of an entry, `detail` as `key=value` pairs
/// joined by `;`.
const CSV_COLUMNS: [&str; 15] = [
    "seq",
    "node",
    "time",
    "request",
    "actor",
    "op",
    "tenant",
    "token",
    "outcome",
    "code",
    "key_version",
    "master_key_version",
    "subject_hmac",
    "account_hmac",
    "detail",
];

/// How entries are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Table,
    Json,
    Csv,
}

/// Prints entries as table rows under one header, one JSON object per line, or CSV rows.
struct EntryPrinter {
    style: Style,
    columns: Columns,
}

impl EntryPrinter {
    fn new(ctx: &Ctx) -> Self {
        let style = match (ctx.json, ctx.csv) {
            (true, _) => Style::Json,
            (false, true) => Style::Csv,
            (false, false) => Style::Table,
        };
        Self::with_style(style)
    }

    fn with_style(style: Style) -> Self {
        Self {
            style,
            columns: Columns::new(COLUMNS.iter().map(|(_, w)| *w).collect()),
        }
    }

    /// The column titles (nothing with `json`).
    fn header(&mut self, out: &mut impl Write) -> io::Result<()> {
        match self.style {
            Style::Json => Ok(()),
            Style::Csv => write_csv(out, [CSV_COLUMNS]),
            Style::Table => {
                let titles: Vec<String> = COLUMNS.iter().map(|(t, _)| (*t).to_owned()).collect();
                self.columns.write(out, &titles)
            }
        }
    }

    fn entries(&mut self, out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
        match self.style {
            Style::Csv => return write_csv(out, entries.iter().map(csv_row)),
            Style::Json => {
                for e in entries {
                    serde_json::to_writer(&mut *out, e)?;
                    writeln!(out)?;
                }
            }
            Style::Table => {
                for e in entries {
                    self.columns.write(out, &entry_row(e))?;
                }
            }
        }
        Ok(())
    }
}

/// An entry's fields in [`CSV_COLUMNS`] order; absent fields are empty.
fn csv_row(e: &Entry) -> [String; 15] {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let detail: Vec<String> = e.detail.iter().map(|(k, v)| format!("{k}={v}")).collect();
    [
        e.seq.to_string(),
        opt(e.node.clone()),
        e.time.to_string(),
        e.request.clone(),
        actor_name(&e.actor),
        e.op.clone(),
        opt(e.tenant.clone()),
        opt(e.token.clone()),
        outcome_name(e.outcome).to_owned(),
        opt(e.code.clone()),
        opt(e.key_version.map(|v| v.to_string())),
        opt(e.master_key_version.map(|v| v.to_string())),
        opt(e.subject_hmac.clone()),
        opt(e.account_hmac.clone()),
        detail.join(";"),
    ]
}

fn outcome_name(outcome: vault_client::audit::Outcome) -> &'static str {
    match outcome {
        vault_client::audit::Outcome::Denied => "denied",
        vault_client::audit::Outcome::Error => "error",
        vault_client::audit::Outcome::Ok => "ok",
    }
}

/// `uid:gid/pid` of a local caller, `cert=NAME` of a certificate caller, or `system`.
pub(super) fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::Caller { uid, gid, pid } => match pid {
            Some(pid) => format!("{uid}:{gid}/{pid}"),
            None => format!("{uid}:{gid}"),
        },
        Actor::Certificate { cert } => format!("cert={cert}"),
        Actor::System(_) => "system".to_owned(),
    }
}

fn entry_row(e: &Entry) -> [String; 9] {
    let actor = actor_name(&e.actor);
    let key = match (e.key_version, e.master_key_version) {
        (Some(k), Some(m)) => format!("v{k}/m{m}"),
        (Some(k), None) => format!("v{k}"),
        (None, Some(m)) => format!("m{m}"),
        (None, None) => "-".to_owned(),
    };
    let outcome = outcome_name(e.outcome);
    [
        e.seq.to_string(),
        e.time.to_string(),
        actor,
        e.op.clone(),
        or_dash(e.tenant.as_deref()),
        or_dash(e.token.as_deref()),
        outcome.to_owned(),
        or_dash(e.code.as_deref()),
        key,
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn lines(input: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for_each_line(&mut &input[..], |l| out.push(l.to_vec())).unwrap();
        out
    }

    #[test]
    fn splits_lines_exactly() {
        assert_eq!(lines(b"a\nb\r\n\nc"), [&b"a"[..], b"b\r", b"", b"c"]);
        assert!(lines(b"").is_empty());
    }

    #[test]
    fn cuts_overlong_lines_and_goes_on() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(&input);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE + 1);
        assert_eq!(got[1], b"next");
    }

    #[test]
    fn rows_line_up_and_a_long_cell_widens_its_column() {
        let mut printer = EntryPrinter::with_style(Style::Table);
        let mut out = Vec::new();
        printer.header(&mut out).unwrap();
        let row =
            |op: &str| -> Vec<String> { ["1", "t", "a", op, "acme"].map(String::from).to_vec() };
        printer
            .columns
            .write(&mut out, &row("alarm.exfiltration_brake"))
            .unwrap();
        let long = "x".repeat(30);
        printer.columns.write(&mut out, &row(&long)).unwrap();
        printer.columns.write(&mut out, &row("token.put")).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let tenant_at = |line: &str| line.find("acme").or_else(|| line.find("TENANT")).unwrap();
        assert!(
            lines[0].starts_with("SEQ     TIME                  ACTOR"),
            "{}",
            lines[0]
        );
        // The longest op the daemon writes fits: the row lines up with the header.
        assert_eq!(tenant_at(lines[1]), tenant_at(lines[0]), "{text}");
        // A longer one widens OP for itself and every row after it.
        assert!(tenant_at(lines[2]) > tenant_at(lines[0]), "{text}");
        assert_eq!(tenant_at(lines[3]), tenant_at(lines[2]), "{text}");
    }
}
