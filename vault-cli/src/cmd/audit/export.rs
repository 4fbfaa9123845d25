//! `audit export`: every chain page by page, byte for byte as stored, each ended by the
//! daemon's signed statement of what it holds.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use vault_client::Client;
use vault_client::audit::{CheckpointLine, Head, HeadLine};

use crate::cmd::{Ctx, Usage};
use crate::file::{create_private, partial_path};
use crate::output::{or_dash, write_fields, write_json};

/// Sequence numbers per export page: entries and heads of 5000 entries stay well under the
/// client's 16 MiB answer limit.
const EXPORT_PAGE: u32 = 5_000;
/// How a head line starts (`docs/audit-log.md`).
const HEAD_PREFIX: &[u8] = b"{\"head\"";
/// How a checkpoint line starts (`docs/audit-log.md`, "Archiving").
const CHECKPOINT_PREFIX: &[u8] = b"{\"checkpoint\"";

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

/// Runs `audit export` to `path`: with `force` it replaces an existing file, and only once the
/// export is complete.
pub(super) async fn run(ctx: &Ctx, path: &Path, force: bool) -> anyhow::Result<()> {
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
