//! Background rewrap jobs (`docs/key-rotation.md`): re-encrypt stored records to each tenant's
//! current data key version, in batches. Each batch is one atomic write of the moved records,
//! their per-version counts, the job's cursor and an audit entry, so a job resumes exactly where
//! it stopped. Jobs run while the vault is unsealed and are resumed at every unseal.
//!
//! A job runs on one node at a time, under a lease in its record (`docs/ha.md`, "Jobs"): every
//! batch checks the record as the runner last wrote it and renews the lease, so a node whose
//! lease was taken writes nothing more; [`Vault::watch_jobs`] resumes jobs whose lease lapsed.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime};

use vault_client::Timestamp;
use vault_client::audit::Outcome;
use vault_client::wire::{Job, JobStarted, JobState, VaultState};

use super::layout::{self, JobRecord, Lease, TenantRecord};
use super::tenants::not_found;
use super::{Keys, Vault, random_id};
use crate::audit::Event;
use crate::error::Error;
use crate::ids::{TenantId, TokenId};
use crate::record::{self, Header, RecordSlot};
use crate::store::{Batch, CommitFuture, StoreError};

/// Records examined per batch.
const PAGE: usize = 2000;

/// The node id on the embedded store, which one process opens.
pub const LOCAL_NODE: &str = "local";

/// How long a job's lease holds without renewal, unless configured (`[jobs] lease_seconds`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Which node this is, for job leases, and how long a lease holds (`docs/ha.md`, "Jobs").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOptions {
    /// This node's id: `[postgres] node_id`, or [`LOCAL_NODE`].
    pub node: String,
    /// How long a lease holds without renewal; the watcher looks for lapsed leases every third
    /// of it.
    pub lease: Duration,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            node: LOCAL_NODE.to_owned(),
            lease: DEFAULT_LEASE,
        }
    }
}

impl Vault {
    /// Starts a job that rewraps the records of `tenant` (or of every tenant).
    pub async fn start_rewrap(
        &self,
        tenant: Option<&TenantId>,
        rate: Option<u64>,
        ev: &mut Event,
    ) -> Result<JobStarted, Error> {
        let keys = self.keys()?;
        if rate.is_some_and(|r| !(1..=vault_client::wire::MAX_REWRAP_RATE).contains(&r)) {
            return Err(Error::Invalid(format!(
                "rate is 1-{} records per second",
                vault_client::wire::MAX_REWRAP_RATE
            )));
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
            lease: Some(self.new_lease(now_ms())),
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
        let (job, _) = self.stored_job(id).await?;
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

    /// Resumes, every third of the lease period while the vault is unsealed, the running jobs
    /// that have no runner in this process and whose lease lapsed (a node that died), is this
    /// node's own (a process of this node that died, or a runner a seal stopped) or is absent.
    /// Runs until the task is dropped.
    pub async fn watch_jobs(self) {
        let mut tick = tokio::time::interval(self.renew_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.state() != VaultState::Unsealed {
                continue;
            }
            if let Err(e) = self.resume_jobs().await {
                tracing::warn!(error = %e, "could not look for rewrap jobs to resume");
            }
        }
    }

    /// Starts a runner for every running job this node may take (after a restart, a seal, or
    /// another node's death): see [`Vault::watch_jobs`].
    pub(super) async fn resume_jobs(&self) -> Result<(), Error> {
        let now = now_ms();
        for (_, bytes) in self.store().scan(layout::JOBS, None, usize::MAX).await? {
            let job: JobRecord = layout::decode(&bytes, "job record")?;
            if job.state == JobState::Running && self.may_take(job.lease.as_ref(), now) {
                let holder = job.lease.map(|l| l.node);
                if self.spawn_job(job.id.clone()) {
                    tracing::info!(job = %job.id, done = job.done, total = job.total, ?holder, "resuming rewrap job");
                }
            }
        }
        Ok(())
    }

    /// Whether this node may run a job under `lease` at `now` (unix ms).
    fn may_take(&self, lease: Option<&Lease>, now: i64) -> bool {
        lease.is_none_or(|l| l.node == self.inner.jobs.node || l.expires_at_ms <= now)
    }

    /// A lease for this node from `now` (unix ms).
    fn new_lease(&self, now: i64) -> Lease {
        let period = i64::try_from(self.inner.jobs.lease.as_millis()).unwrap_or(i64::MAX);
        Lease {
            node: self.inner.jobs.node.clone(),
            expires_at_ms: now.saturating_add(period),
        }
    }

    /// How often leases are looked at: a third of the lease period.
    fn renew_interval(&self) -> Duration {
        (self.inner.jobs.lease / 3).max(Duration::from_millis(10))
    }

    /// Job `id` as stored, with its bytes (what a batch that changes it checks).
    async fn stored_job(&self, id: &str) -> Result<(JobRecord, Vec<u8>), Error> {
        let bytes = self
            .store()
            .get(&layout::job(id))
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
        Ok((layout::decode(&bytes, "job record")?, bytes))
    }

    /// Takes the lease of job `id` as of `now` (unix ms) if this node may: the job as this node
    /// holds it, or `None` (not running, another node's live lease, or another node took it
    /// first). A lease of this node's own is not written again: the first progress batch renews
    /// it. Taking another node's lease appends the `records_rewrap_resumed` key event in the
    /// same checked batch.
    async fn take_lease(&self, id: &str, now: i64) -> Result<Option<(JobRecord, Vec<u8>)>, Error> {
        let (mut job, bytes) = self.stored_job(id).await?;
        let me = &self.inner.jobs.node;
        if job.state != JobState::Running || !self.may_take(job.lease.as_ref(), now) {
            return Ok(None);
        }
        if job.lease.as_ref().is_some_and(|l| &l.node == me) {
            return Ok(Some((job, bytes)));
        }
        let previous = job.lease.replace(self.new_lease(now));
        let written = layout::encode(&job);
        let mut batch = Batch::default();
        batch
            .check(layout::job(id), Some(bytes))
            .put(layout::job(id), written.clone());
        if let Some(previous) = &previous {
            let keys = self.keys()?;
            let mut ev = Event::system("keys.rewrap.resumed");
            ev.master_key_version = Some(keys.meta.master_key_version);
            ev.tenant.clone_from(&job.tenant);
            ev.key_event()
                .detail
                .insert("event".into(), "records_rewrap_resumed".into());
            ev.detail.insert("job".into(), id.to_owned());
            ev.detail.insert("node".into(), me.clone());
            ev.detail
                .insert("previous_node".into(), previous.node.clone());
            ev.detail.insert("done".into(), job.done.to_string());
            batch.log(ev.entry(Outcome::Ok, None));
        }
        match self.commit(batch).await {
            Ok(()) => {}
            Err(Error::Store(StoreError::Conflict)) => {
                tracing::info!(job = %id, "another node took the lease of the rewrap job first");
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        match &previous {
            Some(previous) => tracing::warn!(
                job = %id,
                previous_node = %previous.node,
                done = job.done,
                total = job.total,
                "took over a rewrap job whose lease lapsed"
            ),
            None => tracing::info!(job = %id, "took the lease of a rewrap job"),
        }
        Ok(Some((job, written)))
    }

    /// Starts a runner for job `id` unless one runs in this process; whether it started one.
    fn spawn_job(&self, id: String) -> bool {
        let fresh = self
            .inner
            .jobs_running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        if !fresh {
            return false;
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
        true
    }

    /// Takes the job's lease and runs the job to its end, or until another node takes the lease.
    /// Two batches are in flight at a time: page n+1 is prepared while page n commits. Each batch
    /// checks the job record as the batch before it writes it (lease included) and renews the
    /// lease, so a failed batch fails the one behind it too, and both pages are read again from
    /// the stored cursor: nothing is skipped. A record that names another holder then means the
    /// lease was taken: the runner stops, having written nothing since.
    async fn run_job(&self, id: &str) -> Result<(), Error> {
        let started = Instant::now();
        let mut done_here = 0u64;
        // The job as the last batch sent leaves it (`None`: read it from the store).
        let Some(taken) = self.take_lease(id, now_ms()).await? else {
            return Ok(());
        };
        let mut expected = Some(taken);
        // The batch in flight, and how many records it moves.
        let mut in_flight: Option<(CommitFuture, u64)> = None;
        loop {
            let keys = self.keys()?;
            let (mut job, bytes) = match expected.take() {
                Some(known) => known,
                None => self.stored_job(id).await?,
            };
            if job.state != JobState::Running {
                return Ok(());
            }
            let holder = job.lease.as_ref().map(|l| l.node.as_str());
            if holder != Some(self.inner.jobs.node.as_str()) {
                tracing::warn!(
                    job = %id,
                    holder = ?holder,
                    done = job.done,
                    "lost the lease of a rewrap job to another node; this node stops running it"
                );
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
                match self.complete_job(job, bytes, &keys).await {
                    // Read the record again: the lease may have been taken.
                    Err(Error::Store(StoreError::Conflict)) => continue,
                    other => return other,
                }
            };
            job.cursor = Some(
                String::from_utf8(last.clone())
                    .map_err(|_| StoreError::Corrupt("record key".into()))?,
            );
            let mut batch = Batch::default();
            let moved = self.rewrap_page(&keys, &page, &mut batch).await?;
            job.done += moved;
            job.lease = Some(self.new_lease(now_ms()));
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
            let contents = record::Contents {
                binding: &opened.binding,
                secret: opened.secret.expose_secret(),
                decoy: opened.decoy,
            };
            let sealed = record::seal_record(&new_dek, slot, header, contents)?;
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
        job.lease = None;
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

    /// Marks the job failed, while this node holds its lease (checked in the same batch).
    async fn fail_job(&self, id: &str, error: &Error) -> Result<(), Error> {
        let (mut job, bytes) = self.stored_job(id).await?;
        let ours = job
            .lease
            .as_ref()
            .is_none_or(|l| l.node == self.inner.jobs.node);
        if job.state != JobState::Running || !ours {
            return Ok(());
        }
        job.state = JobState::Failed;
        job.finished_at = Some(Timestamp::now().unix());
        job.error = Some(error.to_string());
        job.lease = None;
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

/// The wall clock in unix milliseconds (leases are judged by it, `docs/ha.md`).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vault_client::wire::Binding;

    use super::*;
    use crate::kms::local::LocalKms;
    use crate::secret::Secret;
    use crate::store::{Store, embedded};
    use crate::vault::PutToken;

    const N: usize = 400;

    /// A vault over `store` as node `node`: several nodes on one store, as on PostgreSQL.
    async fn node(store: &Arc<Store>, keys: &std::path::Path, node: &str) -> Vault {
        let kms = LocalKms::open(keys, "k", true).expect("local kms");
        let jobs = JobOptions {
            node: node.to_owned(),
            lease: DEFAULT_LEASE,
        };
        Vault::open_with_jobs(store.clone(), Arc::new(kms), jobs)
            .await
            .expect("open")
    }

    fn ev() -> Event {
        Event::system("test")
    }

    async fn record(vault: &Vault, id: &str) -> Vec<u8> {
        vault
            .store()
            .get(&layout::job(id))
            .await
            .expect("get")
            .expect("job record")
    }

    /// Records per data key version.
    async fn per_version(vault: &Vault, tenant: &TenantId) -> Vec<(u32, u64)> {
        let info = vault.tenant_info(tenant).await.expect("tenant");
        info.key_versions
            .iter()
            .map(|v| (v.version, v.records))
            .collect()
    }

    fn running_here(vault: &Vault, id: &str) -> bool {
        vault
            .inner
            .jobs_running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_whose_lease_was_taken_writes_no_more_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = embedded::Options {
            cache_bytes: 16 << 20,
            segment_bytes: 4 << 20,
            ..embedded::Options::default()
        };
        let store = Arc::new(
            embedded::open_store(&dir.path().join("data"), options)
                .await
                .expect("store"),
        );
        let keys = dir.path().join("keys");
        let a = node(&store, &keys, "node-a").await;
        a.init(&mut ev()).await.expect("init");
        let b = node(&store, &keys, "node-b").await;
        b.unseal(&mut ev()).await.expect("unseal b");
        let acme = TenantId::parse("acme").expect("tenant id");
        a.create_tenant(&acme, &mut ev()).await.expect("tenant");
        for i in 0..N {
            let put = PutToken {
                secret: Secret::from(format!("secret-{i}").as_str()),
                binding: Binding {
                    subject: "user-42".into(),
                    bank: "example-bank".into(),
                    account: "DE01".into(),
                    scope: "accounts".into(),
                },
                expires_at: None,
                expected_revision: None,
                lease: None,
                decoy: false,
            };
            let token = TokenId::parse(&format!("tok-{i:04}")).expect("token id");
            a.put_token(&acme, &token, &put, &mut ev())
                .await
                .expect("put");
        }
        a.rotate_tenant(&acme, &mut ev()).await.expect("rotate");
        // 40 records/s: a page of 10 every quarter second, for about ten seconds.
        let id = a
            .start_rewrap(Some(&acme), Some(40), &mut ev())
            .await
            .expect("start")
            .id;
        while a.job(&id).await.expect("job").done == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // B's clock is an hour ahead: to B, A's live lease has lapsed, and B takes it.
        let taken = loop {
            let skewed = now_ms() + 3_600_000;
            if let Some((job, bytes)) = b.take_lease(&id, skewed).await.expect("take") {
                break (job, bytes);
            }
        };
        assert_eq!(
            taken.0.lease.as_ref().map(|l| l.node.as_str()),
            Some("node-b")
        );
        let done = taken.0.done;
        assert!(done > 0 && done < N as u64, "taken mid-run: {done}");
        // A's batches in flight fail their check, and A stops without writing anything more.
        for _ in 0..500 {
            if !running_here(&a, &id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!running_here(&a, &id), "a still runs the job");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            record(&a, &id).await,
            taken.1,
            "a wrote progress after losing the lease"
        );
        assert_eq!(
            per_version(&a, &acme).await,
            [(1, N as u64 - done), (2, done)]
        );
        // A's resume pass leaves B's live lease alone.
        a.resume_jobs().await.expect("resume");
        assert!(!running_here(&a, &id));

        // B goes on from the recorded cursor and finishes: every record moved exactly once.
        assert!(b.spawn_job(id.clone()));
        let job = loop {
            let job = b.job(&id).await.expect("job");
            if job.state != JobState::Running {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            (job.state, job.done, job.total),
            (JobState::Completed, N as u64, N as u64)
        );
        assert_eq!(per_version(&b, &acme).await, [(1, 0), (2, N as u64)]);
        // The takeover is in the audit log, with the node it was taken from.
        let entries = b
            .store()
            .scan(crate::audit::chain::ENTRIES, None, usize::MAX)
            .await
            .expect("audit");
        let resumed: Vec<String> = entries
            .iter()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .filter(|e| e.contains("records_rewrap_resumed"))
            .collect();
        assert_eq!(resumed.len(), 1, "{resumed:?}");
        assert!(
            resumed[0].contains("\"previous_node\":\"node-a\""),
            "{}",
            resumed[0]
        );
    }
}
