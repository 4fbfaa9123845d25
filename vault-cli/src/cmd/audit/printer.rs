//! Entries as table rows under one header, one JSON object per line, or CSV rows.

use std::io::{self, Write};

use vault_client::audit::{Actor, Entry};

use crate::cmd::Ctx;
use crate::output::{Columns, or_dash, write_csv};

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
pub(super) struct EntryPrinter {
    style: Style,
    columns: Columns,
}

impl EntryPrinter {
    pub(super) fn new(ctx: &Ctx) -> Self {
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
    pub(super) fn header(&mut self, out: &mut impl Write) -> io::Result<()> {
        match self.style {
            Style::Json => Ok(()),
            Style::Csv => write_csv(out, [CSV_COLUMNS]),
            Style::Table => {
                let titles: Vec<String> = COLUMNS.iter().map(|(t, _)| (*t).to_owned()).collect();
                self.columns.write(out, &titles)
            }
        }
    }

    pub(super) fn entries(&mut self, out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
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
pub(crate) fn actor_name(actor: &Actor) -> String {
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
