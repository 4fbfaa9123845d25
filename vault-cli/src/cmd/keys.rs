//! `keys rotate|rewrap|job|retire|config|history`: key rotation, rewrap of stored records,
//! retirement and key history (`docs/key-rotation.md`).
//!
//! `keys rewrap` starts a background job in the daemon and, unless `--detach`, polls it until it
//! ends: a progress bar on stderr when stderr is a terminal, otherwise a plain progress line at
//! most every [`PLAIN_EVERY`]. Interrupting the CLI does not stop the job.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal as _, Write};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use vault_client::Client;
use vault_client::audit::Entry;
use vault_client::wire::{Job, JobState, KeyHistory, KmsRotated};

use super::Ctx;
use super::audit::actor_name;
use crate::cli::{Keys, Kms, Rotate};
use crate::output::{Table, or_dash, write_fields, write_json};

/// How often a waiting `keys rewrap` asks for the job's progress.
const POLL: Duration = Duration::from_millis(250);
/// Least time between two plain progress lines (stderr not a terminal).
const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// The progress bar (indicatif template).
const BAR_TEMPLATE: &str =
    "{spinner} rewrap [{bar:40}] {pos}/{len} records ({percent}%) {msg}, eta {eta}";

/// Runs a `keys` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: Keys) -> anyhow::Result<()> {
    let client = &ctx.client;
    match cmd {
        Keys::Config {
            tenant,
            min_decryption_version,
        } => {
            let config = client
                .set_key_config(&tenant, min_decryption_version)
                .await
                .with_context(|| format!("cannot configure the keys of tenant {tenant}"))?;
            let mut out = ctx.out();
            if ctx.json {
                return Ok(write_json(&mut out, &config)?);
            }
            writeln!(
                out,
                "tenant {tenant}: transit blobs under versions below v{} are refused",
                config.min_decryption_version
            )?;
            Ok(())
        }
        Keys::History { tenant, versions } => history(ctx, tenant.as_deref(), versions).await,
        Keys::Job { id } => {
            let job = client
                .job(&id)
                .await
                .with_context(|| format!("cannot read job {id}"))?;
            let mut out = ctx.out();
            if ctx.json {
                return Ok(write_json(&mut out, &job)?);
            }
            Ok(write_job(&mut out, &job)?)
        }
        Keys::Retire { tenant, below } => {
            let retired = client
                .retire(&tenant, below)
                .await
                .with_context(|| format!("cannot retire the data keys of tenant {tenant}"))?;
            let mut out = ctx.out();
            if ctx.json {
                return Ok(write_json(&mut out, &retired)?);
            }
            writeln!(
                out,
                "tenant {}: destroyed {}; minimum decryption version v{}",
                retired.tenant,
                versions_list(&retired.retired_versions),
                retired.min_decryption_version
            )?;
            Ok(())
        }
        Keys::Rewrap {
            tenant,
            rate,
            detach,
        } => rewrap(ctx, tenant.as_deref(), rate, detach).await,
        Keys::Kms(Kms::Migrate { key_id }) => {
            let moved =
                ctx.client.migrate_kms(&key_id).await.with_context(|| {
                    format!("cannot migrate the master key to KMS key {key_id}")
                })?;
            write_moved(ctx, &moved, "migrated")
        }
        Keys::Rotate(what) => rotate(ctx, what).await,
    }
}

/// The answer of `keys rotate kms` and `keys kms migrate`, and what to change next.
fn write_moved(ctx: &Ctx, moved: &KmsRotated, verb: &str) -> anyhow::Result<()> {
    {
        let mut out = ctx.out();
        if ctx.json {
            write_json(&mut out, moved)?;
        } else {
            writeln!(
                out,
                "master key v{} {verb} from KMS key {} to {}",
                moved.master_key_version, moved.old_kms_key_id, moved.kms_key_id
            )?;
        }
    }
    eprintln!(
        "vault-cli: set kms.key_id = {:?} in the daemon's config before its next restart",
        moved.kms_key_id
    );
    Ok(())
}

// ----- rotate -----

async fn rotate(ctx: &Ctx, what: Rotate) -> anyhow::Result<()> {
    let client = &ctx.client;
    match what {
        Rotate::Kms { key_id } => {
            let moved = client
                .rotate_kms(&key_id)
                .await
                .with_context(|| format!("cannot move the master key to KMS key {key_id}"))?;
            write_moved(ctx, &moved, "moved")
        }
        Rotate::Master => {
            let rotated = client
                .rotate_master()
                .await
                .context("cannot rotate the master key (if the call timed out, `vault-cli status` shows whether it happened)")?;
            let mut out = ctx.out();
            if ctx.json {
                return Ok(write_json(&mut out, &rotated)?);
            }
            writeln!(
                out,
                "master key rotated to v{} under KMS key {}: {} data keys rewrapped in {} ms; \
                 the old version is destroyed",
                rotated.master_key_version,
                rotated.kms_key_id,
                rotated.rewrapped_data_keys,
                rotated.millis
            )?;
            Ok(())
        }
        Rotate::Tenant { tenant } => {
            let rotated = client
                .rotate_tenant(&tenant)
                .await
                .with_context(|| format!("cannot rotate the data key of tenant {tenant}"))?;
            let mut out = ctx.out();
            if ctx.json {
                return Ok(write_json(&mut out, &rotated)?);
            }
            writeln!(
                out,
                "tenant {}: data key v{} is current; older versions still decrypt",
                rotated.tenant, rotated.key_version
            )?;
            Ok(())
        }
    }
}

// ----- rewrap -----

async fn rewrap(
    ctx: &Ctx,
    tenant: Option<&str>,
    rate: Option<u64>,
    detach: bool,
) -> anyhow::Result<()> {
    let started = ctx
        .client
        .start_rewrap(tenant, rate)
        .await
        .with_context(|| match tenant {
            Some(t) => format!("cannot start the rewrap of tenant {t}"),
            None => "cannot start the rewrap".to_owned(),
        })?;
    if detach {
        let mut out = ctx.out();
        if ctx.json {
            write_json(&mut out, &started)?;
        } else {
            writeln!(out, "{}", started.id)?;
        }
        return Ok(());
    }
    let job = wait(&ctx.client, &started.id).await?;
    {
        let mut out = ctx.out();
        if ctx.json {
            write_json(&mut out, &job)?;
        } else if job.state == JobState::Completed {
            let secs = job
                .finished_at
                .map_or(0, |f| f.unix().saturating_sub(job.started_at.unix()));
            writeln!(
                out,
                "rewrap job {} completed: {} records rewrapped in {secs} s ({:.0} records/s)",
                job.id, job.done, job.rate
            )?;
        }
    }
    match job.state {
        JobState::Completed => Ok(()),
        JobState::Failed | JobState::Running => Err(anyhow::anyhow!(
            "rewrap job {} failed after {} of {} records: {}",
            job.id,
            job.done,
            job.total,
            job.error.as_deref().unwrap_or("no reason given")
        )),
    }
}

/// Polls the job until it is no longer running, showing its progress on stderr.
async fn wait(client: &Client, id: &str) -> anyhow::Result<Job> {
    let mut progress = Progress::new(id);
    loop {
        let job = client.job(id).await.with_context(|| {
            format!(
                "cannot read the progress of rewrap job {id} (it goes on in the daemon: \
                 `vault-cli keys job {id}`)"
            )
        })?;
        progress.show(&job);
        if job.state != JobState::Running {
            progress.finish();
            return Ok(job);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How progress is shown.
enum Progress {
    /// An indicatif bar on stderr, a terminal.
    Bar(ProgressBar),
    /// Plain lines on stderr, at most one every [`PLAIN_EVERY`].
    Lines { id: String, last: Option<Instant> },
}

impl Progress {
    fn new(id: &str) -> Self {
        if io::stderr().is_terminal() {
            let bar = ProgressBar::new(0).with_style(bar_style());
            bar.enable_steady_tick(Duration::from_millis(100));
            Self::Bar(bar)
        } else {
            Self::Lines {
                id: id.to_owned(),
                last: None,
            }
        }
    }

    fn show(&mut self, job: &Job) {
        // More records than counted at the start (a rotation meanwhile) must not overflow it.
        let len = job.total.max(job.done);
        match self {
            Self::Bar(bar) => {
                bar.set_length(len);
                bar.set_position(job.done);
                bar.set_message(format!("{:.0} records/s", job.rate));
            }
            Self::Lines { id, last } => {
                if job.state == JobState::Running && last.is_some_and(|t| t.elapsed() < PLAIN_EVERY)
                {
                    return;
                }
                *last = Some(Instant::now());
                eprintln!(
                    "vault-cli: rewrap job {id}: {}/{len} records ({}%), {:.0} records/s, {}",
                    job.done,
                    percent(job.done, len),
                    job.rate,
                    state_name(job.state)
                );
            }
        }
    }

    fn finish(self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(BAR_TEMPLATE)
        .expect("BAR_TEMPLATE is a valid template (unit test)")
        .progress_chars("=> ")
}

/// `done` of `len` in whole percent; nothing to do is 100 %.
fn percent(done: u64, len: u64) -> u64 {
    if len == 0 {
        return 100;
    }
    u64::try_from(u128::from(done) * 100 / u128::from(len)).unwrap_or(u64::MAX)
}

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Running => "running",
    }
}

fn write_job(out: &mut impl Write, job: &Job) -> io::Result<()> {
    let len = job.total.max(job.done);
    let mut fields = vec![
        ("id", job.id.clone()),
        ("kind", job.kind.clone()),
        ("state", state_name(job.state).to_owned()),
        (
            "tenant",
            job.tenant.clone().unwrap_or_else(|| "(all)".to_owned()),
        ),
        (
            "progress",
            format!(
                "{}/{} records ({}%)",
                job.done,
                job.total,
                percent(job.done, len)
            ),
        ),
        ("rate", format!("{:.0} records/s", job.rate)),
        (
            "rate limit",
            or_dash(job.rate_limit.map(|r| format!("{r} records/s"))),
        ),
        ("started", job.started_at.to_string()),
        ("finished", or_dash(job.finished_at)),
    ];
    if let Some(error) = &job.error {
        fields.push(("error", error.clone()));
    }
    write_fields(out, &fields)
}

// ----- history -----

async fn history(ctx: &Ctx, tenant: Option<&str>, versions: bool) -> anyhow::Result<()> {
    let history = ctx
        .client
        .key_history(tenant)
        .await
        .with_context(|| match tenant {
            Some(t) => format!("cannot read the key history of tenant {t}"),
            None => "cannot read the key history".to_owned(),
        })?;
    let mut out = ctx.out();
    if ctx.json {
        return Ok(write_json(&mut out, &history)?);
    }
    match (ctx.csv, versions) {
        (true, false) => Ok(events_table(&history).write_csv(&mut out)?),
        (true, true) => Ok(versions_table(&history).write_csv(&mut out)?),
        (false, true) => Ok(versions_table(&history).write(&mut out)?),
        (false, false) => Ok(write_history(&mut out, &history)?),
    }
}

/// Detail keys shown in the VERSIONS and KMS KEY columns; the others go to DETAIL.
const SHOWN: &[&str] = &[
    "event",
    "kms_key_id",
    "min_decryption_version",
    "old_kms_key_id",
    "previous_master_key_version",
    "previous_version",
    "retired_versions",
];

fn write_history(out: &mut impl Write, history: &KeyHistory) -> io::Result<()> {
    let master = &history.master;
    write_fields(
        out,
        &[
            ("master key", format!("v{}", master.version)),
            ("kms key id", master.kms_key_id.clone()),
            ("created", master.created_at.to_string()),
        ],
    )?;
    writeln!(out)?;
    events_table(history).write(out)?;
    writeln!(out)?;
    versions_table(history).write(out)
}

/// Every key event, one row each.
fn events_table(history: &KeyHistory) -> Table {
    let mut events = Table::new(&[
        "SEQ", "TIME", "ACTOR", "EVENT", "TENANT", "VERSIONS", "KMS KEY", "DETAIL",
    ]);
    for e in &history.events {
        events.row(event_row(e));
    }
    events
}

/// Every live data key version with its records, encryptions and age.
fn versions_table(history: &KeyHistory) -> Table {
    let mut live = Table::new(&[
        "TENANT",
        "VERSION",
        "CURRENT",
        "RECORDS",
        "ENCRYPTIONS",
        "AGE(days)",
        "CREATED",
    ]);
    for t in &history.tenants {
        for v in &t.versions {
            let current = if v.version == t.current_key_version {
                "yes"
            } else {
                "no"
            };
            live.row(vec![
                t.tenant.clone(),
                v.version.to_string(),
                current.to_owned(),
                v.records.to_string(),
                v.encryptions.to_string(),
                v.age_days.to_string(),
                v.created_at.to_string(),
            ]);
        }
    }
    live
}

/// One key event as a row: SEQ TIME ACTOR EVENT TENANT VERSIONS KMS-KEY DETAIL.
fn event_row(e: &Entry) -> Vec<String> {
    let d = &e.detail;
    let event = d.get("event").cloned().unwrap_or_else(|| e.op.clone());
    vec![
        e.seq.to_string(),
        e.time.to_string(),
        actor_name(&e.actor),
        event,
        or_dash(e.tenant.as_deref()),
        versions_cell(e),
        match (d.get("old_kms_key_id"), d.get("kms_key_id")) {
            (Some(old), Some(new)) => format!("{old}->{new}"),
            (None, Some(key)) => key.clone(),
            (Some(old), None) => old.clone(),
            (None, None) => "-".to_owned(),
        },
        detail_cell(d),
    ]
}

/// Data key and master key versions: `v2 m1`, `v1->v2 m1`, `retired v1,v2 m1`, `m1->m2`.
fn versions_cell(e: &Entry) -> String {
    let d = &e.detail;
    let mut parts = Vec::new();
    match (d.get("previous_version"), e.key_version) {
        (Some(prev), Some(v)) => parts.push(format!("v{prev}->v{v}")),
        (None, Some(v)) => parts.push(format!("v{v}")),
        _ => {}
    }
    if let Some(retired) = d.get("retired_versions").filter(|r| !r.is_empty()) {
        let list: Vec<String> = retired.split(',').map(|v| format!("v{v}")).collect();
        parts.push(format!("retired {}", list.join(",")));
    }
    if let Some(min) = d.get("min_decryption_version") {
        parts.push(format!("min v{min}"));
    }
    match (d.get("previous_master_key_version"), e.master_key_version) {
        (Some(prev), Some(m)) => parts.push(format!("m{prev}->m{m}")),
        (None, Some(m)) => parts.push(format!("m{m}")),
        _ => {}
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// The details not shown in another column, `key=value` in key order.
fn detail_cell(detail: &BTreeMap<String, String>) -> String {
    let rest: Vec<String> = detail
        .iter()
        .filter(|(k, _)| !SHOWN.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if rest.is_empty() {
        "-".to_owned()
    } else {
        rest.join(" ")
    }
}

/// `v1, v2 and v3`.
fn versions_list(versions: &[u32]) -> String {
    let names: Vec<String> = versions.iter().map(|v| format!("v{v}")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => {
            format!("key versions {} and {last}", rest.join(", "))
        }
        Some((only, _)) => format!("key version {only}"),
        None => "no key versions".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vault_client::Timestamp;
    use vault_client::audit::{Actor, Outcome, SystemActor};

    use super::*;

    fn entry(detail: &[(&str, &str)], key: Option<u32>, master: Option<u32>) -> Entry {
        Entry {
            seq: 7,
            node: None,
            time: Timestamp(1_795_453_200),
            request: "r".into(),
            actor: Actor::System(SystemActor::System),
            op: "tenant.keys.rotate".into(),
            tenant: Some("acme".into()),
            token: None,
            outcome: Outcome::Ok,
            code: None,
            key_version: key,
            master_key_version: master,
            subject_hmac: None,
            account_hmac: None,
            detail: detail
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            prev: String::new(),
        }
    }

    #[test]
    fn bar_template_is_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }

    #[test]
    fn event_rows_show_versions_and_kms_keys() {
        let rotated = entry(
            &[("event", "data_key_rotated"), ("previous_version", "1")],
            Some(2),
            Some(1),
        );
        let row = event_row(&rotated);
        assert_eq!(row[2], "system");
        assert_eq!(row[3], "data_key_rotated");
        assert_eq!(row[5], "v1->v2 m1");
        assert_eq!(row[6], "-");
        assert_eq!(row[7], "-");

        let moved = entry(
            &[
                ("event", "master_key_moved_to_kms_key"),
                ("old_kms_key_id", "test"),
                ("kms_key_id", "local-2"),
            ],
            None,
            Some(2),
        );
        let row = event_row(&moved);
        assert_eq!(row[5], "m2");
        assert_eq!(row[6], "test->local-2");

        let master = entry(
            &[
                ("event", "master_key_rotated"),
                ("previous_master_key_version", "1"),
                ("kms_key_id", "test"),
                ("rewrapped_data_keys", "4"),
            ],
            None,
            Some(2),
        );
        let row = event_row(&master);
        assert_eq!(row[5], "m1->m2");
        assert_eq!(row[6], "test");
        assert_eq!(row[7], "rewrapped_data_keys=4");

        let retired = entry(
            &[("event", "data_keys_retired"), ("retired_versions", "1,2")],
            None,
            Some(1),
        );
        assert_eq!(versions_cell(&retired), "retired v1,v2 m1");
        let nothing = entry(&[("retired_versions", "")], None, None);
        assert_eq!(versions_cell(&nothing), "-");
        assert_eq!(event_row(&nothing)[3], "tenant.keys.rotate");
    }

    #[test]
    fn progress_numbers() {
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert_eq!(versions_list(&[1]), "key version v1");
        assert_eq!(versions_list(&[1, 2, 3]), "key versions v1, v2 and v3");
    }
}
