//! `audit verify`: by the daemon, or `--offline` from an export file and the public key alone.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use vault_client::audit::{Anchor, LogVerifier, Report, public_key};

use crate::cli::AuditVerify;
use crate::cmd::{AuditProblems, Ctx, Usage};
use crate::output::{or_dash, write_fields, write_json};

/// Longest export line `verify --offline` reads whole; a longer one is reported unreadable.
const MAX_LINE: usize = 1024 * 1024;
/// Longest key file read.
const MAX_KEYFILE: u64 = 4096;

/// Runs `audit verify`; problems found are [`AuditProblems`] once the report is printed.
pub(super) async fn run(ctx: &Ctx, args: AuditVerify) -> anyhow::Result<()> {
    let anchor = args.since_head.as_ref();
    let report = match (args.offline.as_slice(), &args.pubkey) {
        ([_, ..], Some(keyfile)) => {
            verify_files(&args.offline, keyfile, anchor, &args.accept_adopted)?
        }
        ([], None) => {
            let head = anchor.map(|a| format!("{}:{}", a.seq, hex::encode(a.hash)));
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
pub(crate) fn read_public_key(keyfile: &Path) -> anyhow::Result<vault_client::audit::VerifyingKey> {
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
pub(crate) fn verify_file(
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
pub(crate) fn for_each_line(
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
}
