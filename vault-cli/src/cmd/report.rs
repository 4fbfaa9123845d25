//! `audit report --out FILE.html`: the auditor's report as one self-contained HTML file, from the
//! live daemon or offline from an export and the public key (`docs/auditor-guide.md`, "The
//! report"). Its Content-Security-Policy allows inline styles and nothing else: no script, no
//! font, no image or style from anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufReader, Write as _};
use std::path::Path;

use anyhow::Context as _;
use vault_client::AuditQuery;
use vault_client::Timestamp;
use vault_client::audit::{Entry, Outcome, Report};
use vault_client::wire::KeyHistory;

use super::Ctx;
use super::Usage;
use crate::cli::AuditReportArgs;
use crate::file::{create_private, partial_path};

/// Entries read per page from the daemon.
const PAGE: u32 = 10_000;
/// The timeline's drawing area.
const WIDTH: f64 = 900.0;
const LANE: f64 = 28.0;
const LEFT: f64 = 150.0;

/// What the report is made of.
struct Input {
    source: String,
    vault_id: Option<String>,
    verification: Report,
    entries: Vec<Entry>,
    /// The live daemon's key history (versions, records, policy); `None` offline.
    history: Option<KeyHistory>,
    max_key_age_days: Option<u64>,
}

/// `audit report`.
pub(crate) async fn run(ctx: &Ctx, args: AuditReportArgs) -> anyhow::Result<()> {
    let input = match (&args.offline, &args.pubkey) {
        (Some(file), Some(key)) => offline(file, key, args.max_key_age_days)?,
        (None, None) => live(ctx, args.max_key_age_days).await?,
        _ => return Err(Usage::new("--offline and --pubkey go together").into()),
    };
    let html = render(&input, Timestamp::now());
    write_file(&args.out, args.force, html.as_bytes())?;
    let mut out = ctx.out();
    writeln!(
        out,
        "report written to {} ({} entries, verification {})",
        args.out.display(),
        input.entries.len(),
        if input.verification.ok {
            "ok"
        } else {
            "FAILED"
        }
    )?;
    Ok(())
}

async fn live(ctx: &Ctx, max_key_age_days: Option<u64>) -> anyhow::Result<Input> {
    let client = &ctx.client;
    let verification = client
        .audit_verify(None)
        .await
        .context("cannot verify the audit log")?;
    let history = client
        .key_history(None)
        .await
        .context("cannot read the key history (the auditor grant has keys:metadata)")?;
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .audit(&AuditQuery {
                after,
                limit: Some(PAGE),
                ..AuditQuery::default()
            })
            .await
            .context("cannot read the audit log")?;
        entries.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let vault_id = client.audit_pubkey().await.ok().map(|k| k.vault_id);
    let max_key_age_days = max_key_age_days.or(history.rotation.and_then(|r| r.max_dek_age_days));
    Ok(Input {
        source: "the live daemon".into(),
        vault_id,
        verification,
        entries,
        history: Some(history),
        max_key_age_days,
    })
}

fn offline(file: &Path, key: &Path, max_key_age_days: Option<u64>) -> anyhow::Result<Input> {
    let verification = super::audit::verify_file(file, key, None, &[])?;
    let mut reader = File::open(file)
        .map(BufReader::new)
        .with_context(|| format!("cannot open {}", file.display()))?;
    let mut entries = Vec::new();
    super::audit::for_each_line(&mut reader, |line| {
        if let Ok(entry) = serde_json::from_slice::<Entry>(line) {
            entries.push(entry);
        }
    })
    .with_context(|| format!("cannot read {}", file.display()))?;
    Ok(Input {
        source: format!("the export {}", file.display()),
        vault_id: None,
        verification,
        entries,
        history: None,
        max_key_age_days,
    })
}

fn write_file(path: &Path, force: bool, bytes: &[u8]) -> anyhow::Result<()> {
    let target = if force {
        partial_path(path)?
    } else {
        path.to_owned()
    };
    let mut file = create_private(&target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::Error::new(Usage::new(format!(
                "{} exists; pass --force to replace it",
                path.display()
            )))
        } else {
            anyhow::Error::new(e).context(format!("cannot create {}", target.display()))
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", target.display()))?;
    if force {
        fs::rename(&target, path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    Ok(())
}

/// HTML-escapes text for element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}\
.ok{color:#176f2c;font-weight:bold}.bad{color:#b00020;font-weight:bold}.muted{color:#777}\
svg text{font:12px system-ui,sans-serif}";

/// The whole page.
fn render(input: &Input, now: Timestamp) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>vaultd audit report</title><style>{STYLE}</style></head><body>\
         <h1>vaultd audit report</h1><p>Vault <code id=\"vault-id\">{}</code>, from {}, made {} \
         (UTC) by vault-cli {}.</p>",
        esc(input.vault_id.as_deref().unwrap_or("(not in an export)")),
        esc(&input.source),
        now,
        env!("CARGO_PKG_VERSION"),
    );
    verification(&mut h, &input.verification);
    let events: Vec<&Entry> = input
        .entries
        .iter()
        .filter(|e| e.outcome == Outcome::Ok && e.detail.contains_key("event"))
        .collect();
    timeline(&mut h, &events);
    versions(&mut h, input);
    retired(&mut h, &events);
    access(&mut h, &input.entries);
    h.push_str("</body></html>\n");
    h
}

fn verification(h: &mut String, r: &Report) {
    let (class, verdict) = if r.ok {
        ("ok", "ok".to_owned())
    } else {
        ("bad", format!("FAILED: {} problem(s)", r.problems.len()))
    };
    let _ = write!(
        h,
        "<h2>Verification</h2><p id=\"verification\" data-ok=\"{}\">Verification: \
         <span class=\"{class}\">{verdict}</span></p><table>\
         <tr><th>entries</th><td>{}</td></tr><tr><th>head</th><td><code>{}</code></td></tr>\
         <tr><th>signed through</th><td>{}</td></tr></table>",
        r.ok,
        r.entries,
        esc(&r
            .head
            .as_ref()
            .map_or("-".into(), |h| format!("{}:{}", h.seq, h.hash))),
        r.signed_through.map_or("-".into(), |s| s.to_string()),
    );
    for (title, list) in [
        ("Problems", &r.problems),
        ("Sealed periods (not problems)", &r.sealed_periods),
        ("Accepted adoptions", &r.accepted),
    ] {
        if !list.is_empty() {
            let _ = write!(h, "<h3>{title}</h3><ul>");
            for item in list {
                let _ = write!(h, "<li>{}</li>", esc(item));
            }
            h.push_str("</ul>");
        }
    }
}

/// One lane per tenant and one for the master key; a marker per key event.
fn timeline(h: &mut String, events: &[&Entry]) {
    h.push_str("<h2>Key rotation timeline</h2>");
    let mut lanes: Vec<String> = vec!["master key".into()];
    let tenants: BTreeSet<&str> = events.iter().filter_map(|e| e.tenant.as_deref()).collect();
    lanes.extend(tenants.iter().map(|t| format!("tenant {t}")));
    let (Some(first), Some(last)) = (
        events.iter().map(|e| e.time.unix()).min(),
        events.iter().map(|e| e.time.unix()).max(),
    ) else {
        h.push_str("<p class=\"muted\">No key events.</p>");
        return;
    };
    let span = (last - first).max(1);
    let count = u32::try_from(lanes.len()).unwrap_or(u32::MAX);
    let height = LANE * f64::from(count) + 40.0;
    let _ = write!(
        h,
        "<svg id=\"timeline\" width=\"{}\" height=\"{height}\" \
         role=\"img\" aria-label=\"key events over time\">",
        LEFT + WIDTH + 20.0
    );
    for (i, lane) in lanes.iter().enumerate() {
        let y = LANE * (f64::from(u32::try_from(i).unwrap_or(0)) + 0.5) + 10.0;
        let _ = write!(
            h,
            "<text x=\"4\" y=\"{}\">{}</text><line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" \
             stroke=\"#ddd\"/>",
            y + 4.0,
            esc(lane),
            LEFT + WIDTH
        );
    }
    for e in events {
        let lane = e
            .tenant
            .as_deref()
            .and_then(|t| tenants.iter().position(|x| *x == t))
            .map_or(0, |i| i + 1);
        let y = LANE * (f64::from(u32::try_from(lane).unwrap_or(0)) + 0.5) + 10.0;
        #[allow(clippy::cast_precision_loss)] // seconds of a span, drawn to a pixel
        let x = LEFT + WIDTH * ((e.time.unix() - first) as f64 / span as f64);
        let event = e.detail.get("event").map_or("", String::as_str);
        let color = match event {
            "data_key_created" | "master_key_created" => "#1f77b4",
            "data_key_rotated" | "master_key_rotated" => "#2ca02c",
            "data_keys_retired" | "data_keys_destroyed" => "#d62728",
            _ => "#9467bd",
        };
        let _ = write!(
            h,
            "<circle class=\"event\" data-event=\"{}\" cx=\"{x:.1}\" cy=\"{y}\" r=\"6\" fill=\"{color}\">\
             <title>{} {} {} (seq {})</title></circle>",
            esc(event),
            e.time,
            esc(e.tenant.as_deref().unwrap_or("master key")),
            esc(event),
            e.seq
        );
    }
    let _ = write!(
        h,
        "<text x=\"{LEFT}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        height - 6.0,
        Timestamp(first),
        LEFT + WIDTH,
        height - 6.0,
        Timestamp(last)
    );
    h.push_str(
        "<p class=\"muted\">Blue: created; green: rotated; red: retired or destroyed; purple: \
         other key events (rewraps, KMS moves, recovery). Hover a marker for its time and seq.</p>",
    );
}

fn versions(h: &mut String, input: &Input) {
    h.push_str("<h2>Records per key version</h2>");
    let Some(history) = &input.history else {
        h.push_str(
            "<p class=\"muted\">Not in an export: run the report against the live daemon.</p>",
        );
        return;
    };
    let policy = input.max_key_age_days;
    let _ = write!(
        h,
        "<p>Master key v{} under KMS key <code>{}</code>, created {}. Rotation policy: {}.</p>\
         <table id=\"versions\"><tr><th>tenant</th><th>version</th><th>current</th><th>records</th>\
         <th>encryptions</th><th>age (days)</th><th>against the policy</th></tr>",
        history.master.version,
        esc(&history.master.kms_key_id),
        history.master.created_at,
        policy.map_or("none configured".into(), |d| format!("at most {d} days")),
    );
    for t in &history.tenants {
        for v in &t.versions {
            let current = v.version == t.current_key_version;
            let judgement = match (current, policy) {
                (false, _) if v.records > 0 => {
                    "<span class=\"bad\">records under an older version</span>".to_owned()
                }
                (false, _) => "older version, no records".to_owned(),
                (true, Some(max)) if v.age_days >= max => {
                    "<span class=\"bad\">overdue</span>".to_owned()
                }
                (true, Some(max)) => {
                    format!("<span class=\"ok\">{} days left</span>", max - v.age_days)
                }
                (true, None) => "-".to_owned(),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>v{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{judgement}</td></tr>",
                esc(&t.tenant),
                v.version,
                if current { "yes" } else { "no" },
                v.records,
                v.encryptions,
                v.age_days,
            );
        }
    }
    h.push_str("</table>");
}

fn retired(h: &mut String, events: &[&Entry]) {
    h.push_str(
        "<h2>Retired and destroyed versions</h2><table id=\"retired\"><tr><th>time</th>\
                <th>tenant</th><th>what</th><th>versions</th></tr>",
    );
    let mut any = false;
    for e in events {
        let (what, versions) = match e.detail.get("event").map(String::as_str) {
            Some("data_keys_retired") => ("retired", e.detail.get("retired_versions")),
            Some("data_keys_destroyed") => (
                "destroyed (tenant erased)",
                e.detail.get("destroyed_key_versions"),
            ),
            _ => continue,
        };
        any = true;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{what}</td><td>{}</td></tr>",
            e.time,
            esc(e.tenant.as_deref().unwrap_or("-")),
            esc(versions.map_or("-", String::as_str)),
        );
    }
    h.push_str("</table>");
    if !any {
        h.push_str("<p class=\"muted\">None.</p>");
    }
}

/// Per day: unseals per tenant, denials, purges, erasures.
fn access(h: &mut String, entries: &[Entry]) {
    #[derive(Default)]
    struct Day {
        unseals: BTreeMap<String, u64>,
        denials: u64,
        purges: u64,
        erasures: u64,
    }
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for e in entries {
        let day = e.time.to_string().chars().take(10).collect::<String>();
        let d = days.entry(day).or_default();
        match (e.op.as_str(), e.outcome) {
            ("token.unseal" | "token.lease", Outcome::Ok) => {
                *d.unseals
                    .entry(e.tenant.clone().unwrap_or_default())
                    .or_insert(0) += 1;
            }
            ("token.purge", Outcome::Ok) => d.purges += 1,
            ("tenant.destroy", Outcome::Ok) => d.erasures += 1,
            (_, Outcome::Denied) => d.denials += 1,
            _ => {}
        }
    }
    h.push_str(
        "<h2>Access summary</h2><table id=\"access\"><tr><th>day (UTC)</th>\
                <th>unseals per tenant</th><th>denials</th><th>purges</th><th>erasures</th></tr>",
    );
    for (day, d) in &days {
        let unseals: Vec<String> = d
            .unseals
            .iter()
            .map(|(t, n)| format!("{}: {n}", esc(t)))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{day}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if unseals.is_empty() {
                "-".to_owned()
            } else {
                unseals.join(", ")
            },
            d.denials,
            d.purges,
            d.erasures
        );
    }
    h.push_str(
        "</table><p class=\"muted\">Unseals count token.unseal and token.lease (a refresh \
                reads the token); denials are every entry answered denied.</p>",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
