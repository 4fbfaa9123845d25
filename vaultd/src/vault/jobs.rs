//! Background rewrap jobs (`docs/key-rotation.md`): re-encrypt stored records to each tenant's
//! current data key version, in batches. Each batch is one atomic write of the moved records,
//! their per-version counts, the job's cursor and an audit entry, so a job resumes exactly where
//! it stopped. Jobs run while the vault is unsealed and are resumed at every unseal.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use vault_client::Timestamp;
use vault_client::audit::Outcome;
use vault_client::wire::{Job, JobStarted, JobState};

use super::layout::{self, JobRecord, TenantRecord};
use super::tenants::not_found;
use super::{Keys, Vault, random_id};
use crate::audit::Event;
use crate::error::Error;
use crate::ids::{TenantId, TokenId};
use crate::record::{self, Header, RecordSlot};
use crate::store::{Batch, CommitFuture, StoreError};

/// Records examined per batch.
const PAGE: usize = 2000;

impl Vault {
    /// Starts a job that rewraps the records of `tenant` (or of every tenant).
    pub async fn start_rewrap(
        &self,
        tenant: Option<&TenantId>,
        rate: Option<u64>,
        ev: &mut Event,
    ) -> Result<JobStarted, Error> {
        let keys = self.keys()?;
        if rate == Some(0) {
            return Err(Error::Invalid(
                "rate must be at least 1 record per second".into(),
            ));
        }
        let tenants: Vec<TenantId> = match tenant {
            Some(t) => {
                self.load_tenant(t).await?.ok_or_else(|| not_found(t))?;
                vec![t.clone()]
            }
            None => self.tenant_ids().await?,
        };
        let mut total = 0;
        for t in &tenants {
            if let Some((record, _)) = self.load_tenant(t).await? {
                total += self
                    .record_counts(t)
                    .await?
                    .iter()
                    .filter(|(v, _)| *v != record.current)
                    .map(|(_, n)| n)
                    .sum::<u64>();
            }
        }
        let id = random_id()?[..16].to_owned();
        let job = JobRecord {
            id: id.clone(),
            kind: "rewrap".into(),
            tenant: tenant.map(ToString::to_string),
            state: JobState::Running,
            cursor: None,
            done: 0,
            total,
            rate_limit: rate,
            started_at: Timestamp::now().unix(),
            finished_at: None,
            error: None,
        };
        ev.master_key_version = Some(keys.meta.master_key_version);
        ev.key_event()
            .detail
            .insert("event".into(), "records_rewrap_started".into());
        ev.detail.insert("job".into(), id.clone());
        ev.detail.insert("total".into(), total.to_string());
        let mut batch = Batch::default();
        batch
            .check(layout::job(&id), None)
            .put(layout::job(&id), layout::encode(&job))
            .log(ev.entry(Outcome::Ok, None));
        self.commit(batch).await?;
        ev.mark_recorded();
        tracing::info!(job = %id, total, tenant = ?job.tenant, "rewrap job started");
        self.spawn_job(id.clone());
        Ok(JobStarted { id })
    }

    /// A job's progress.
    pub async fn job(&self, id: &str) -> Result<Job, Error> {
        let valid =
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(Error::Invalid("job ids are 1-64 letters and digits".into()));
        }
        let bytes = self
            .store()
            .get(&layout::job(id))
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
        let job: JobRecord = layout::decode(&bytes, "job record")?;
        let end = job.finished_at.unwrap_or_else(|| Timestamp::now().unix());
        let secs = (end - job.started_at).max(1);
        Ok(Job {
            rate: job.done as f64 / secs as f64,
            id: job.id,
            kind: job.kind,
            state: job.state,
            tenant: job.tenant,
            done: job.done,
            total: job.total,
            rate_limit: job.rate_limit,
            started_at: Timestamp(job.started_at),
            finished_at: job.finished_at.map(Timestamp),
            error: job.error,
        })
    }

    /// Starts a runner for every job still running (after a restart or a seal).
    pub(super) async fn resume_jobs(&self) -> Result<(), Error> {
        for (_, bytes) in self.store().scan(layout::JOBS, None, usize::MAX).await? {
            let job: JobRecord = layout::decode(&bytes, "job record")?;
            if job.state == JobState::Running {
                tracing::info!(job = %job.id, done = job.done, total = job.total, "resuming rewrap job");
                self.spawn_job(job.id);
            }
        }
        Ok(())
    }

    fn spawn_job(&self, id: String) {
        let fresh = self
            .inner
            .jobs_running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        if !fresh {
            return;
        }
        let vault = self.clone();
        tokio::spawn(async move {
            match vault.run_job(&id).await {
                Ok(()) => {}
                Err(Error::Sealed | Error::Uninitialized) => {
                    tracing::info!(job = %id, "rewrap job paused: vault sealed")
                }
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "rewrap job failed");
                    let _ = vault.fail_job(&id, &e).await;
                }
            }
            vault
                .inner
                .jobs_running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }

    /// Runs the job to its end. Two batches are in flight at a time: page n+1 is prepared while
    /// page n commits. Each batch checks the job record as the batch before it writes it, so a
    /// failed batch fails the one behind it too, and both pages are read again from the stored
    /// cursor: nothing is skipped.
    async fn run_job(&self, id: &str) -> Result<(), Error> {
        let started = Instant::now();
        let mut done_here = 0u64;
        // The job as the last batch sent leaves it (`None`: read it from the store).
        let mut expected: Option<(JobRecord, Vec<u8>)> = None;
        // The batch in flight, and how many records it moves.
        let mut in_flight: Option<(CommitFuture, u64)> = None;
        loop {
            let keys = self.keys()?;
            let (mut job, bytes) = match expected.take() {
                Some(known) => known,
                None => {
                    let bytes = self
                        .store()
                        .get(&layout::job(id))
                        .await?
                        .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
                    (layout::decode::<JobRecord>(&bytes, "job record")?, bytes)
                }
            };
            if job.state != JobState::Running {
                return Ok(());
            }
            let prefix = job
                .tenant
                .as_deref()
                .map_or_else(|| b"r/".to_vec(), layout::records);
            let cursor = job.cursor.as_ref().map(|c| c.as_bytes().to_vec());
            // Rate-limited jobs commit about four times a second, so progress (and the rate) is smooth.
            let page_size = job.rate_limit.map_or(PAGE, |r| {
                usize::try_from(r / 4).unwrap_or(PAGE).clamp(1, PAGE)
            });
            let page = self
                .store()
                .scan(&prefix, cursor.as_deref(), page_size)
                .await?;
            let Some((last, _)) = page.last() else {
                if let Some((commit, _)) = in_flight.take() {
                    match self.settle(true, commit).await {
                        Ok(()) => {}
                        Err(Error::Store(StoreError::Conflict)) => continue,
                        Err(e) => return Err(e),
                    }
                }
                return self.complete_job(job, bytes, &keys).await;
            };
            job.cursor = Some(
                String::from_utf8(last.clone())
                    .map_err(|_| StoreError::Corrupt("record key".into()))?,
            );
            let mut batch = Batch::default();
            let moved = self.rewrap_page(&keys, &page, &mut batch).await?;
            job.done += moved;
            let written = layout::encode(&job);
            batch
                .check(layout::job(id), Some(bytes))
                .put(layout::job(id), written.clone());
            let mut ev = Event::system("keys.rewrap.batch");
            ev.master_key_version = Some(keys.meta.master_key_version);
            ev.tenant.clone_from(&job.tenant);
            ev.detail.insert("job".into(), id.to_owned());
            ev.detail.insert("records".into(), moved.to_string());
            batch.log(ev.entry(Outcome::Ok, None));
            let commit = self.store().commit(batch);
            if let Some((previous, previous_moved)) = in_flight.take() {
                match self.settle(true, previous).await {
                    Ok(()) => done_here += previous_moved,
                    Err(e) => {
                        // The batch just sent checked what the failed one would have written.
                        let _ = self.settle(true, commit).await;
                        match e {
                            Error::Store(StoreError::Conflict) => continue,
                            other => return Err(other),
                        }
                    }
                }
            }
            in_flight = Some((commit, moved));
            expected = Some((job, written));
            if let Some(rate) = expected.as_ref().and_then(|(j, _)| j.rate_limit) {
                let due = Duration::from_secs_f64(done_here as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Adds the rewrap of every record of `page` not under its tenant's current version to
    /// `batch`; returns how many.
    async fn rewrap_page(
        &self,
        keys: &Keys,
        page: &[crate::store::Entry],
        batch: &mut Batch,
    ) -> Result<u64, Error> {
        let mut tenants: HashMap<String, Option<(TenantRecord, TenantId)>> = HashMap::new();
        let mut moved = 0;
        for (key, bytes) in page {
            let text =
                std::str::from_utf8(key).map_err(|_| StoreError::Corrupt("record key".into()))?;
            let (tenant, token) = text
                .strip_prefix("r/")
                .and_then(|rest| rest.split_once('/'))
                .ok_or_else(|| StoreError::Corrupt("record key".into()))?;
            if !tenants.contains_key(tenant) {
                let id = TenantId::parse(tenant)?;
                let loaded = self.load_tenant(&id).await?.map(|(record, tenant_bytes)| {
                    batch.check(layout::tenant(tenant), Some(tenant_bytes));
                    (record, id)
                });
                tenants.insert(tenant.to_owned(), loaded);
            }
            // A tenant being destroyed: its records go with it.
            let Some((record, tenant_id)) = tenants.get(tenant).and_then(Option::as_ref) else {
                continue;
            };
            let header =
                record::peek_header(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if header.key_version == record.current {
                continue;
            }
            let token = TokenId::parse(token)?;
            let slot = RecordSlot {
                vault_id: &keys.meta.vault_id,
                tenant,
                token: token.as_str(),
            };
            let old_dek = self
                .dek(keys, tenant_id, record, header.key_version)
                .await?;
            let opened = record::open_record(&old_dek, slot, bytes).map_err(|_| {
                StoreError::Corrupt(format!("token {token} of tenant {tenant} does not decrypt"))
            })?;
            let new_dek = self.dek(keys, tenant_id, record, record.current).await?;
            let header = Header {
                key_version: record.current,
                ..header
            };
            let sealed = record::seal_record(
                &new_dek,
                slot,
                header,
                &opened.binding,
                opened.secret.expose_secret(),
            )?;
            batch
                .check(key.clone(), Some(bytes.clone()))
                .put(key.clone(), sealed)
                .add(layout::counter(tenant, opened.header.key_version), -1)
                .add(layout::counter(tenant, record.current), 1)
                .add(layout::encryptions(tenant, record.current), 1);
            moved += 1;
        }
        Ok(moved)
    }

    async fn complete_job(
        &self,
        mut job: JobRecord,
        bytes: Vec<u8>,
        keys: &Keys,
    ) -> Result<(), Error> {
        job.state = JobState::Completed;
        job.finished_at = Some(Timestamp::now().unix());
        let mut ev = Event::system("keys.rewrap.completed");
        ev.master_key_version = Some(keys.meta.master_key_version);
        ev.tenant.clone_from(&job.tenant);
        ev.key_event()
            .detail
            .insert("event".into(), "records_rewrapped".into());
        ev.detail.insert("job".into(), job.id.clone());
        ev.detail.insert("records".into(), job.done.to_string());
        let mut batch = Batch::default();
        batch
            .check(layout::job(&job.id), Some(bytes))
            .put(layout::job(&job.id), layout::encode(&job))
            .log(ev.entry(Outcome::Ok, None));
        self.commit(batch).await?;
        tracing::info!(job = %job.id, records = job.done, "rewrap job completed");
        Ok(())
    }

    async fn fail_job(&self, id: &str, error: &Error) -> Result<(), Error> {
        let bytes = self
            .store()
            .get(&layout::job(id))
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
        let mut job: JobRecord = layout::decode(&bytes, "job record")?;
        job.state = JobState::Failed;
        job.finished_at = Some(Timestamp::now().unix());
        job.error = Some(error.to_string());
        let mut ev = Event::system("keys.rewrap.failed");
        ev.tenant.clone_from(&job.tenant);
        ev.key_event()
            .detail
            .insert("event".into(), "records_rewrap_failed".into());
        ev.detail.insert("job".into(), id.to_owned());
        let mut batch = Batch::default();
        batch
            .check(layout::job(id), Some(bytes))
            .put(layout::job(id), layout::encode(&job))
            .log(ev.entry(Outcome::Error, Some(error.code())));
        self.commit(batch).await
    }

    /// Every tenant id.
    pub(super) async fn tenant_ids(&self) -> Result<Vec<TenantId>, Error> {
        self.store()
            .scan(layout::TENANTS, None, usize::MAX)
            .await?
            .into_iter()
            .map(|(key, _)| {
                std::str::from_utf8(&key[layout::TENANTS.len()..])
                    .ok()
                    .and_then(|n| TenantId::parse(n).ok())
                    .ok_or_else(|| StoreError::Corrupt("tenant key".into()).into())
            })
            .collect()
    }
}
