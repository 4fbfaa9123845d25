//! `audit archive --before SEQ --out FILE`: the oldest entries of a chain to a sealed archive,
//! then out of the live log (`docs/audit-log.md`, "Archiving"). The file is written, synced
//! and verified before the daemon is asked to remove anything, and the daemon verifies its
//! own log again before it does.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use vault_client::audit::{CheckpointLine, HeadLine, LogVerifier, public_key};
use vault_client::wire::AuditArchiveRequest;

use crate::cmd::{Ctx, Usage};
use crate::file::{create_private, sync_parent};
use crate::output::{write_fields, write_json};

/// Sequence numbers per export page (as `audit export`).
const EXPORT_PAGE: u64 = 5_000;

/// What an archive holds, as printed.
#[derive(Debug, Serialize)]
struct Archived {
    file: String,
    first: u64,
    through: u64,
    entries: u64,
    archive_sha256: String,
    checkpoint: CheckpointLine,
}

/// Archives the entries of `node`'s chain (by default the daemon's own) before `before`, up to
/// the last signed head among them, to the new file `out`.
pub(crate) async fn run(
    ctx: &Ctx,
    before: u64,
    out: &Path,
    node: Option<&str>,
) -> anyhow::Result<()> {
    let client = &ctx.client;
    let mut file = create_private(out).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            anyhow::Error::new(Usage::new(format!(
                "{} exists: an archive is written to a new file",
                out.display()
            )))
        } else {
            anyhow::Error::new(e).context(format!("cannot create {}", out.display()))
        }
    })?;
    let written = async {
        let through = write_entries(ctx, &mut file, out, before, node).await?;
        let statement = client
            .audit_statement(node, through)
            .await
            .context("cannot get the archive's signed statement (the vault must be unsealed)")?;
        let mut line = serde_json::to_vec(&statement).context("statement")?;
        line.push(b'\n');
        file.write_all(&line)
            .and_then(|()| file.sync_all())
            .and_then(|()| sync_parent(out))
            .with_context(|| format!("cannot write {}", out.display()))?;
        anyhow::Ok(statement.statement)
    }
    .await;
    let statement = match written {
        Ok(statement) => statement,
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(out);
            return Err(e);
        }
    };
    drop(file);
    // The file as written must verify before anything leaves the live log.
    let key = public_key(&client.audit_pubkey().await?.public_key)
        .context("the daemon's audit public key is not an Ed25519 key")?;
    let (report, digest) = verify_and_hash(out, key)?;
    let ends = report.head.as_ref().map(|h| (h.seq, h.hash.as_str()));
    if !report.ok || ends != Some((statement.last, statement.last_hash.as_str())) {
        anyhow::bail!(
            "{} does not verify as written ({}); nothing was archived: remove it and try again",
            out.display(),
            report
                .problems
                .first()
                .map_or("it ends elsewhere", String::as_str)
        );
    }
    let request = AuditArchiveRequest {
        node: node.map(str::to_owned),
        through: statement.last,
        last_hash: statement.last_hash.clone(),
        archive_sha256: hex::encode(digest),
    };
    let archived = client.audit_archive(&request).await.with_context(|| {
        format!(
            "the daemon did not archive; {} is complete but the live log still holds its entries",
            out.display()
        )
    })?;
    let shown = Archived {
        file: out.display().to_string(),
        first: statement.first,
        through: statement.last,
        entries: archived.entries,
        archive_sha256: request.archive_sha256,
        checkpoint: archived.checkpoint,
    };
    let mut stdout = ctx.out();
    if ctx.json {
        return Ok(write_json(&mut stdout, &shown)?);
    }
    write_fields(
        &mut stdout,
        &[
            ("file", shown.file.clone()),
            (
                "entries",
                format!("{} ({}..={})", shown.entries, shown.first, shown.through),
            ),
            ("sha256", shown.archive_sha256.clone()),
            ("checkpoint", shown.through.to_string()),
        ],
    )?;
    writeln!(
        stdout,
        "\nKeep {} where you keep exports. Verify it with the live log:\n  \
         vault-cli audit verify --offline {} LIVE-EXPORT --pubkey KEYFILE",
        shown.file, shown.file
    )?;
    Ok(())
}

/// Writes the chain's lines from its live start (its checkpoint first, if it has one) up to
/// the last signed head before `before`; returns that head's sequence number.
async fn write_entries(
    ctx: &Ctx,
    file: &mut File,
    path: &Path,
    before: u64,
    node: Option<&str>,
) -> anyhow::Result<u64> {
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    let mut after = 0u64;
    // The file's length after the last head before `before`, and that head.
    let mut cut: Option<(u64, u64)> = None;
    let mut written = 0u64;
    'pages: loop {
        let limit = EXPORT_PAGE.min(before.saturating_sub(after + 1)).max(1);
        let page = ctx
            .client
            .audit_export_page(node, after, u32::try_from(limit).unwrap_or(u32::MAX))
            .await
            .with_context(|| format!("cannot export the audit log after entry {after}"))?;
        if !page.is_empty() && page.last() != Some(&b'\n') {
            anyhow::bail!("the daemon's export page after entry {after} is not whole lines");
        }
        let mut entries = 0;
        for line in page.split_inclusive(|&b| b == b'\n') {
            let bare = &line[..line.len() - 1];
            if let Ok(c) = serde_json::from_slice::<CheckpointLine>(bare) {
                after = after.max(c.checkpoint.through);
            } else if let Ok(h) = serde_json::from_slice::<HeadLine>(bare) {
                if h.head.seq >= before {
                    break 'pages;
                }
                file.write_all(line)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                written += line.len() as u64;
                cut = Some((written, h.head.seq));
                continue;
            } else if let Ok(e) = serde_json::from_slice::<Seq>(bare) {
                if e.seq >= before {
                    break 'pages;
                }
                entries += 1;
            }
            file.write_all(line)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written += line.len() as u64;
        }
        if entries == 0 {
            break;
        }
        after += limit;
        if after + 1 >= before {
            break;
        }
    }
    let Some((len, through)) = cut else {
        return Err(Usage::new(format!(
            "the live log has no signed head before entry {before}: nothing to archive"
        ))
        .into());
    };
    // Entries after the last head before `before` stay live.
    file.set_len(len)
        .and_then(|()| file.seek(SeekFrom::End(0)).map(drop))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(through)
}

/// Verifies the archive file as an export, and its SHA-256, in one read.
fn verify_and_hash(
    path: &Path,
    key: vault_client::audit::VerifyingKey,
) -> anyhow::Result<(vault_client::audit::Report, [u8; 32])> {
    /// Hashes what is read through it.
    struct Hashing<R> {
        inner: R,
        hash: Sha256,
    }
    impl<R: Read> Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.hash.update(&buf[..n]);
            Ok(n)
        }
    }
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = BufReader::new(Hashing {
        inner: file,
        hash: Sha256::new(),
    });
    let mut verifier = LogVerifier::new(key).requiring_statements();
    super::verify::for_each_line(&mut reader, |line| {
        if !line.is_empty() {
            verifier.line(line);
        }
    })
    .with_context(|| format!("cannot read {}", path.display()))?;
    let digest = reader.into_inner().hash.finalize().into();
    Ok((verifier.finish(None), digest))
}
