//! The embedded backend: the write-ahead log (`wal`) is the durability point and the audit
//! log's home, sled 0.34 the index the other writes are applied to (`docs/storage.md`).
//!
//! `apply` appends the group's two records (two writes, one `fdatasync`), then applies its
//! key-value writes to sled, with the audit index points (`audit_index`), without a flush. A checkpointer thread flushes sled, fsyncs its files (sled's own flush uses
//! `sync_file_range` only) and gives back the log's key-value records sled no longer needs. At
//! open, every record after the last checkpoint is replayed.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use super::audit_index::{self, AuditIndex, View};
use super::backup::{self, Summary};
use super::wal::{self, Appended, AuditReader, Framed, Wal};
use super::{Entry, Group, StoreError, SyncBackend};

/// The position up to which sled held every group at its last checkpoint (8 bytes,
/// big-endian).
const APPLIED: &[u8] = b"w/applied";
/// Keys of the store itself, never part of a snapshot.
const INTERNAL: &[u8] = b"w/";
/// How long a reopen waits for in-flight readers to release the old handle's file lock.
const REOPEN_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Sizes and intervals of the embedded backend.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// sled's page cache.
    pub cache_bytes: u64,
    /// zstd compression of sled's pages, for stores created with this setting.
    pub compression: bool,
    /// Size of a log segment.
    pub segment_bytes: u64,
    /// Log bytes after which a checkpoint runs.
    pub checkpoint_bytes: u64,
    /// A checkpoint runs at least this often while anything was written.
    pub checkpoint_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            compression: false,
            segment_bytes: 64 << 20,
            checkpoint_bytes: 16 << 20,
            checkpoint_interval: Duration::from_secs(5),
        }
    }
}

/// The log in front of sled, in a data directory.
pub(crate) struct Embedded {
    inner: Arc<Inner>,
    checkpointer: Option<thread::JoinHandle<()>>,
}

struct Inner {
    db_path: PathBuf,
    wal_dir: PathBuf,
    options: Options,
    /// `None` after sled failed, until `recover` reopens it.
    db: RwLock<Option<sled::Db>>,
    /// Held exclusively while a group is applied to sled key by key, shared by single-key
    /// reads: a read sees a group wholly or not at all.
    applying: RwLock<()>,
    wal: Mutex<Wal>,
    applied: AtomicU64,
    /// The position of the last group durable in the log (audit reads see up to it).
    logged: AtomicU64,
    audit: AuditIndex,
    /// The last archived entry (`docs/audit-log.md`, "Archiving"): segments holding only
    /// entries up to it are removed at checkpoints.
    archived: AtomicU64,
    /// Held shared by audit reads (they open segment files by the headers they took), and
    /// tried exclusively by the removal of archived segments, which waits for none of them.
    segment_readers: RwLock<()>,
    checkpoint: Mutex<Checkpoint>,
    wake: Condvar,
}

#[derive(Default)]
struct Checkpoint {
    /// Log bytes since the last checkpoint.
    bytes: u64,
    stop: bool,
    /// Start positions of backups in progress: the key-value records after them are kept.
    pins: Vec<u64>,
    /// The archived entry and the released segments for which the last removal found
    /// nothing more to remove.
    removal_done: Option<(u64, usize)>,
}

/// The commit core over the embedded backend in `dir`: what the daemon runs.
pub async fn open_store(dir: &Path, options: Options) -> Result<super::Store, StoreError> {
    super::Store::open(Arc::new(Embedded::open(dir, options)?)).await
}

impl Embedded {
    /// Opens (or creates) the store in `dir` (`dir/db`, `dir/wal`), replaying the log.
    pub(crate) fn open(dir: &Path, options: Options) -> Result<Self, StoreError> {
        let db_path = dir.join("db");
        let wal_dir = dir.join("wal");
        fs::create_dir_all(&wal_dir).map_err(|e| StoreError::Io(e.to_string()))?;
        let db = open_db(&db_path, &options)?;
        // A store of the first format kept its audit log in sled; this one would not see it.
        if db
            .scan_prefix(crate::audit::chain::ENTRIES)
            .next()
            .is_some()
        {
            return Err(StoreError::Corrupt(
                "this store keeps its audit log in sled (storage format 1), which this version \
                 does not read; there is no migration from it"
                    .into(),
            ));
        }
        let started = Instant::now();
        let index = AuditIndex::default();
        let (applied, replayed, segments) = replay(&db, &wal_dir, &index)?;
        let wal = Wal::open(&wal_dir, options.segment_bytes, segments)?;
        let logged = wal.last_position().unwrap_or(0).max(applied);
        index.load(View {
            db: &db,
            dir: &wal_dir,
            headers: wal.headers(),
            bound: logged,
        })?;
        let inner = Arc::new(Inner {
            db_path,
            wal_dir: wal_dir.clone(),
            options,
            db: RwLock::new(Some(db)),
            applying: RwLock::new(()),
            wal: Mutex::new(wal),
            applied: AtomicU64::new(applied),
            logged: AtomicU64::new(logged),
            audit: index,
            archived: AtomicU64::new(0),
            segment_readers: RwLock::new(()),
            checkpoint: Mutex::default(),
            wake: Condvar::new(),
        });
        // Recovery ends with a checkpoint: the replayed groups reach sled's files, and the
        // key-value records of every old segment (with any torn tail) are given back.
        inner.checkpoint()?;
        if replayed > 0 {
            tracing::info!(
                replayed,
                position = applied,
                ms = started.elapsed().as_millis() as u64,
                "write-ahead log replayed"
            );
        }
        let for_thread = inner.clone();
        let checkpointer = thread::Builder::new()
            .name("vaultd-checkpoint".into())
            .spawn(move || for_thread.run_checkpoints())
            .map_err(|e| StoreError::Backend(format!("cannot start checkpointer: {e}")))?;
        Ok(Self {
            inner,
            checkpointer: Some(checkpointer),
        })
    }
}

#[cfg(test)]
impl Embedded {
    /// The next append writes its log record, then fails as a failed `fdatasync` would.
    pub(super) fn dangerous_fail_next_sync(&self) {
        self.inner
            .wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dangerous_fail_next_sync = true;
    }
}

impl Embedded {
    /// Up to `limit` of sled's entries under `prefix` after `after`.
    fn scan_sled(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let db = self.inner.db()?;
        let mut out = Vec::new();
        let iter = match after {
            Some(after) => {
                let mut start = after.to_vec();
                start.push(0);
                db.range(start..)
            }
            None => db.range(prefix.to_vec()..),
        };
        for item in iter {
            let (k, v) = item.map_err(sled_error)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.inner.lock_checkpoint().stop = true;
        self.inner.wake.notify_all();
        if let Some(thread) = self.checkpointer.take() {
            let _ = thread.join();
        }
    }
}

impl SyncBackend for Embedded {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let found = if audit_index::is_audit_key(key) {
            self.inner
                .audit_view(|view| self.inner.audit.get(view, key).unwrap_or(Ok(None)))
        } else {
            self.inner
                .whole_groups(|db| Ok(db.get(key).map_err(sled_error)?.map(|v| v.to_vec())))
        };
        self.inner.unless_io_failed(found)
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let found = if audit_index::is_audit_key(prefix) {
            self.inner.audit_view(|view| {
                let found = self.inner.audit.scan(view, prefix, after, limit);
                found.unwrap_or_else(|| Ok(Vec::new()))
            })
        } else {
            self.scan_sled(prefix, after, limit)
        };
        self.inner.unless_io_failed(found)
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        if let Some(last) = self.inner.audit.last(prefix) {
            return Ok(last);
        }
        let found = self.inner.whole_groups(|db| {
            let last = db
                .scan_prefix(prefix)
                .next_back()
                .transpose()
                .map_err(sled_error)?;
            Ok(last.map(|(k, v)| (k.to_vec(), v.to_vec())))
        });
        self.inner.unless_io_failed(found)
    }

    fn audit_page(&self, after: u64, limit: usize) -> Result<super::AuditPage, StoreError> {
        let page = self
            .inner
            .audit_view(|view| self.inner.audit.page(view, after, limit));
        self.inner.unless_io_failed(page)
    }

    fn archive_audit(&self, through: u64) -> Result<(), StoreError> {
        self.inner.archived.fetch_max(through, Ordering::AcqRel);
        self.inner.lock_checkpoint().bytes += 1;
        self.inner.wake.notify_all();
        Ok(())
    }

    fn apply(&self, group: &Group) -> Result<(), StoreError> {
        // After an I/O error dropped sled's handle, the first group reopens it.
        self.recover()?;
        let db = self.inner.db()?;
        let framed = Framed::new(group)?;
        let at = self
            .inner
            .wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(&framed)?;
        self.inner.logged.store(group.position, Ordering::Release);
        self.inner.audit.appended(group);
        let applied = {
            let _whole = self
                .inner
                .applying
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            apply_to_sled(&db, group, at, &self.inner.audit)
        };
        if let Err(e) = applied {
            // The group is durable in the log; sled is reopened and the log replayed.
            *self
                .inner
                .db
                .write()
                .unwrap_or_else(PoisonError::into_inner) = None;
            return Err(e);
        }
        self.inner.applied.store(group.position, Ordering::Release);
        let mut checkpoint = self.inner.lock_checkpoint();
        checkpoint.bytes += framed.bytes();
        if checkpoint.bytes >= self.inner.options.checkpoint_bytes {
            self.inner.wake.notify_all();
        }
        Ok(())
    }

    fn position(&self) -> u64 {
        self.inner.applied.load(Ordering::Acquire)
    }

    fn recover(&self) -> Result<(), StoreError> {
        if self.inner.db().is_ok() {
            // Only the log failed; it starts a new segment by itself.
            return Ok(());
        }
        let mut slot = self
            .inner
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let deadline = Instant::now() + REOPEN_LOCK_WAIT;
        let db = loop {
            match open_db(&self.inner.db_path, &self.inner.options) {
                Ok(db) => break db,
                // Readers that cloned the old handle may still hold sled's file lock.
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(e),
            }
        };
        let (applied, _, _) = replay(&db, &self.inner.wal_dir, &self.inner.audit)?;
        self.inner.applied.store(applied, Ordering::Release);
        *slot = Some(db);
        Ok(())
    }

    fn backup(&self, vault_id: &str, out: &mut dyn std::io::Write) -> Result<Summary, StoreError> {
        let inner = &self.inner;
        let start = {
            let mut checkpoint = inner.lock_checkpoint();
            let start = inner.applied.load(Ordering::Acquire);
            checkpoint.pins.push(start);
            start
        };
        let result = (|| {
            let db = inner.db()?;
            let mut file = backup::Writer::new(out, vault_id, start)?;
            for item in db.iter() {
                let (k, v) = item.map_err(sled_error)?;
                if !k.starts_with(INTERNAL) {
                    file.entry(&k, &v)?;
                }
            }
            // The scan is fuzzy; the groups logged since `start` make it exact at `end`. A group
            // is logged before sled sees any of it, so every write the scan can have seen is in
            // a group at or below the log's last position.
            let (headers, end) = {
                let wal = inner.wal.lock().unwrap_or_else(PoisonError::into_inner);
                (
                    wal.headers(),
                    wal.last_position().unwrap_or(start).max(start),
                )
            };
            // The audit log up to `start`, one group per record, from the audit regions.
            let mut next = 1;
            let mut reader = AuditReader::new(&inner.wal_dir, headers, start, 0, 0);
            while let Some((_, _, record)) = reader.next_record()? {
                next = record.position + 1;
                file.group(&Group {
                    position: record.position,
                    writes: record.writes().collect(),
                })?;
            }
            if start > 0 && next != start + 1 {
                return Err(StoreError::Corrupt(format!(
                    "the log lacks positions {next}..{start} needed by the backup"
                )));
            }
            wal::read(&inner.wal_dir, start, end, |group, _| {
                if group.position != next {
                    return Err(StoreError::Corrupt("log positions out of order".into()));
                }
                next += 1;
                file.group(&group)
            })?;
            if next != end + 1 {
                return Err(StoreError::Corrupt(format!(
                    "the log lacks positions {next}..{end} needed by the backup"
                )));
            }
            file.finish(end)
        })();
        let mut checkpoint = inner.lock_checkpoint();
        if let Some(i) = checkpoint.pins.iter().position(|&p| p == start) {
            checkpoint.pins.swap_remove(i);
        }
        result
    }
}

impl Inner {
    /// Passes `result` on; an I/O error first drops sled's handle. sled keeps the first I/O
    /// error of its background writer and fails every later call with it, and after a failed
    /// `fsync` its pages may be lost, so the next group reopens it and replays the log
    /// from the last checkpoint.
    fn unless_io_failed<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e @ StoreError::Io(_)) = &result {
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if slot.take().is_some() {
                tracing::error!(error = %e, "storage I/O failed; sled is reopened before the next write");
            }
        }
        result
    }

    fn db(&self) -> Result<sled::Db, StoreError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Runs an audit log read over what is durable in the log.
    fn audit_view<T>(
        &self,
        read: impl FnOnce(&View<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db()?;
        // The bound first: every segment a record up to it is in is then among the headers
        // (a segment abandoned after a failed sync is then followed by the one that
        // supersedes it).
        let _files = self
            .segment_readers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let bound = self.logged.load(Ordering::Acquire);
        let headers = self
            .wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .headers();
        read(&View {
            db: &db,
            dir: &self.wal_dir,
            headers,
            bound,
        })
    }

    /// Runs a single-key read while no group is being applied, so it sees groups whole.
    fn whole_groups<T>(
        &self,
        read: impl FnOnce(&sled::Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db()?;
        let _whole = self.applying.read().unwrap_or_else(PoisonError::into_inner);
        read(&db)
    }

    fn lock_checkpoint(&self) -> std::sync::MutexGuard<'_, Checkpoint> {
        self.checkpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The checkpointer: wakes when enough log was written, or at the interval if any was.
    fn run_checkpoints(&self) {
        loop {
            let mut state = self.lock_checkpoint();
            let deadline = Instant::now() + self.options.checkpoint_interval;
            while !state.stop && state.bytes < self.options.checkpoint_bytes {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = self
                    .wake
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let (stop, bytes) = (state.stop, state.bytes);
            state.bytes = 0;
            drop(state);
            if stop {
                // Everything is applied: after this checkpoint the key-value records of the
                // whole log can go, the active segment's included, and the next start replays
                // nothing.
                self.wal
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .close();
            }
            if (bytes > 0 || stop)
                && let Err(e) = self.unless_io_failed(self.checkpoint())
            {
                tracing::warn!(error = %e, "checkpoint failed; the log is kept until the next one");
            } else if !stop && let Err(e) = self.remove_archived() {
                tracing::warn!(error = %e, "removing archived log segments failed; tried again at the next checkpoint");
            }
            if stop {
                return;
            }
        }
    }

    /// Makes sled durable up to the applied position, then gives back the log's key-value
    /// records at or below it (those after a running backup's start are kept).
    fn checkpoint(&self) -> Result<(), StoreError> {
        let position = self.applied.load(Ordering::Acquire);
        let db = self.db()?;
        // Everything up to `position` is in sled; these record it there, for the next start.
        db.insert(APPLIED, &position.to_be_bytes())
            .map_err(sled_error)?;
        if let Some((key, value)) = self.audit.checkpoint_writes() {
            db.insert(key, value).map_err(sled_error)?;
        }
        db.flush().map_err(sled_error)?;
        sync_tree(&self.db_path).map_err(|e| StoreError::Io(format!("fsync of sled: {e}")))?;
        wal::write_checkpoint(&self.wal_dir, position)
            .map_err(|e| StoreError::Io(format!("writing the checkpoint: {e}")))?;
        let through = self
            .lock_checkpoint()
            .pins
            .iter()
            .copied()
            .fold(position, u64::min);
        self.wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(through)?;
        Ok(())
    }

    /// Removes the leading log segments whose audit entries were all archived and whose
    /// key-value records sled holds durably (`docs/audit-log.md`, "Archiving"). Skipped, until
    /// a later checkpoint, while a backup runs or an audit read holds the segment list.
    fn remove_archived(&self) -> Result<(), StoreError> {
        let archived = self.archived.load(Ordering::Acquire);
        if archived == 0 {
            return Ok(());
        }
        let mut state = self.lock_checkpoint();
        if !state.pins.is_empty() {
            return Ok(());
        }
        let Ok(_files) = self.segment_readers.try_write() else {
            return Ok(());
        };
        let mut wal = self.wal.lock().unwrap_or_else(PoisonError::into_inner);
        let released = wal.released();
        if state.removal_done == Some((archived, released)) {
            return Ok(());
        }
        let headers = wal.headers();
        let bound = self.logged.load(Ordering::Acquire);
        // Segment i holds only entries below the first entry of the segments after it.
        let mut n = 0;
        while n < released && n + 1 < headers.len() {
            let first_after = audit_index::first_entry(&self.wal_dir, &headers[n + 1..], bound)?;
            if first_after.is_none_or(|seq| seq > archived + 1) {
                break;
            }
            n += 1;
        }
        if n > 0 {
            let keep = headers[n].number;
            wal.remove_leading(n)?;
            drop(wal);
            self.audit.forget_segments(&self.db()?, keep)?;
            tracing::info!(
                segments = n,
                through = archived,
                "archived audit log segments removed"
            );
        }
        state.removal_done = Some((archived, released - n));
        Ok(())
    }
}

/// Opens sled, with page compression if so configured (zstd level 1; off by default). Measured
/// (docs/performance.md): compressed pages keep the disk near 1.25x an audit entry per audited
/// request instead of about 3x, but cost about 10 µs of the writer's CPU per request (sled makes
/// a new zstd context per page fragment), about 150 MiB more RSS that keeps growing, and a
/// slower start. sled cannot switch an existing database: one created with the other setting
/// is opened as it is, and a backup restored into a new directory converts it.
fn open_db(path: &Path, options: &Options) -> Result<sled::Db, StoreError> {
    let open = |compression: bool| {
        sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .use_compression(compression)
            .compression_factor(1)
            .flush_every_ms(None)
            .open()
    };
    match open(options.compression) {
        Err(sled::Error::Unsupported(why)) if why.contains("compression") => {
            tracing::warn!(
                configured = options.compression,
                "this store was created with the other page compression setting; it is opened \
                 as it is (restore a backup into a new directory to convert it)"
            );
            open(!options.compression).map_err(sled_error)
        }
        other => other.map_err(sled_error),
    }
}

/// Re-applies every group the log holds, in order; returns the position reached, how many
/// groups were replayed, and the log's segments.
///
/// sled is applied key by key, so after a crash it may hold part of a group, and `w/applied` is
/// only a lower bound of what it holds. Every record after the last checkpoint is therefore
/// applied again: up to the checkpoint sled held everything durably; after it, the records are
/// resolved groups, so re-applying them in order ends in exactly the state after the last.
fn replay(
    db: &sled::Db,
    wal_dir: &Path,
    index: &AuditIndex,
) -> Result<(u64, u64, Vec<wal::SegmentInfo>), StoreError> {
    let stored = match db.get(APPLIED).map_err(sled_error)? {
        None => 0,
        Some(v) => u64::from_be_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("w/applied is not 8 bytes".into()))?,
        ),
    };
    // Groups up to the last checkpoint are durable in sled; the log may still hold some of them
    // (the active segment is kept), and they are not applied again.
    let checkpoint = wal::read_checkpoint(wal_dir)?;
    // First pass: where the log ends. If it ends below what sled holds (its tail was lost after
    // sled applied it), sled is the newer copy and nothing is re-applied.
    let mut log_end = None;
    let segments = wal::read(wal_dir, checkpoint, u64::MAX, |group, _| {
        log_end = Some(group.position);
        Ok(())
    })?;
    let Some(log_end) = log_end.filter(|&end| end >= stored) else {
        if log_end.is_some() {
            tracing::warn!(
                index = stored,
                "the log ends before the index's applied position; continuing from the index"
            );
        }
        return Ok((stored.max(checkpoint), 0, segments));
    };
    let mut first = true;
    let mut replayed = 0;
    wal::read(wal_dir, checkpoint, log_end, |group, at| {
        if first && group.position > stored.max(checkpoint) + 1 {
            return Err(StoreError::Corrupt(format!(
                "the log resumes at position {} but the index holds only up to {}: positions \
                 are missing",
                group.position,
                stored.max(checkpoint)
            )));
        }
        first = false;
        apply_to_sled(db, &group, at, index)?;
        replayed += 1;
        Ok(())
    })?;
    Ok((log_end, replayed, segments))
}

/// Applies a group's key-value writes one by one (sled's atomic `apply_batch` forces its I/O
/// buffer out with two `sync_file_range` calls per batch; the log already makes the group
/// atomic), then its audit index points. Audit entries and heads stay in the log, so a group
/// of reads (audit entries only) writes nothing to sled but, every MiB of log, a point.
fn apply_to_sled(
    db: &sled::Db,
    group: &Group,
    at: Appended,
    index: &AuditIndex,
) -> Result<(), StoreError> {
    let kv = group
        .writes
        .iter()
        .filter(|(key, _)| !audit_index::is_audit_key(key));
    for (key, value) in kv {
        match value {
            Some(value) => db.insert(key.as_slice(), value.as_slice()).map(drop),
            None => db.remove(key.as_slice()).map(drop),
        }
        .map_err(sled_error)?;
    }
    for (key, value) in index.index_writes(group, at) {
        db.insert(key, value).map_err(sled_error)?;
    }
    Ok(())
}

/// fsyncs every file under `dir`, and the directories.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for item in fs::read_dir(dir)? {
        let item = item?;
        let kind = item.file_type()?;
        if kind.is_dir() {
            sync_tree(&item.path())?;
        } else if kind.is_file() {
            fs::File::open(item.path())?.sync_all()?;
        }
    }
    wal::sync_dir(dir)
}

/// sled's error as the store's: its I/O errors are the disk's ([`StoreError::Io`]).
pub(super) fn sled_error(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(e) => StoreError::Io(format!("sled: {e}")),
        e @ sled::Error::Corruption { .. } => StoreError::Corrupt(format!("sled: {e}")),
        e => StoreError::Backend(format!("sled: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_store_created_without_compression() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::Config::new()
                .path(dir.path().join("db"))
                .use_compression(false)
                .open()
                .expect("old sled");
            db.insert(b"k", b"v").expect("insert");
            db.flush().expect("flush");
        }
        let store = Embedded::open(dir.path(), Options::default()).expect("opens");
        assert_eq!(store.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn refuses_a_store_that_keeps_its_audit_log_in_sled() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::Config::new()
                .path(dir.path().join("db"))
                .open()
                .expect("old sled");
            db.insert(crate::audit::chain::entry_key(1), b"{}".as_slice())
                .expect("insert");
            db.flush().expect("flush");
        }
        let err = Embedded::open(dir.path(), Options::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("storage format 1"), "{err}");
    }

    #[test]
    fn a_clean_close_leaves_no_log_to_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Embedded::open(dir.path(), Options::default()).expect("open");
            for position in 1..=3 {
                let writes = vec![(vec![b'k', position as u8], Some(vec![1]))];
                store.apply(&Group { position, writes }).expect("apply");
            }
        }
        // The log stays (it holds the audit log), cut after its audit records: no key-value
        // record is left in it.
        let wal_dir = dir.path().join("wal");
        for header in wal::headers(&wal_dir).expect("headers") {
            let len = fs::metadata(wal::segment_path(&wal_dir, header.number))
                .expect("meta")
                .len();
            assert!(len < header.kv_start, "segment {} trimmed", header.number);
        }
        assert_eq!(
            wal::read_checkpoint(&dir.path().join("wal")).expect("read"),
            3
        );
        let store = Embedded::open(dir.path(), Options::default()).expect("reopen");
        assert_eq!(store.position(), 3);
        assert_eq!(store.get(&[b'k', 3]).expect("get"), Some(vec![1]));
    }
}
