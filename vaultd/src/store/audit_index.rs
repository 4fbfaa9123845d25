//! How the embedded backend finds audit entries and heads in the log's audit regions
//! (`docs/storage.md`, "Where the audit log lives").
//!
//! sled holds a sparse index: a point `w/ax/{first_seq:020}` → (segment, offset) for the first
//! group of each segment that appended entries and then one per [`POINT_EVERY`] bytes of audit
//! records, so a sequence number is found with one sled read and at most that many bytes of
//! log; and `w/lh` → (segment, offset) of the last group with a head. Points are derived when a
//! group is applied or replayed, `w/lh` is written at checkpoints. A point that does not lead to the record it names (the log
//! was edited) is ignored and its segment read from the start. The last entry and head are
//! kept in memory; sequential readers (verify, export, pages) resume where the last page ended.

use std::path::Path;
use std::sync::{Mutex, PoisonError, RwLock};

use super::embedded::sled_error;
use super::wal::{Appended, AuditReader, HEADER_LEN, Header};
use super::{AuditPage, Entry, Group, StoreError};
use crate::audit::chain::{self, ENTRIES, HEADS};

/// Prefix of index points.
const POINTS: &[u8] = b"w/ax/";
/// The location of the last group with a head.
const LAST_HEAD: &[u8] = b"w/lh";
/// Bytes of audit records between index points: about 1,600 entries. A lookup reads at most
/// this much of the log; sled holds about 100 bytes per point, which at 64 KiB was the last
/// thing the daemon's memory grew by (≈ 1 byte per request, docs/performance.md).
pub(super) const POINT_EVERY: u64 = 1 << 20;

/// Entries or heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Entries,
    Heads,
}

/// Which part of the audit log a key names, if any.
fn kind_of(prefix: &[u8]) -> Option<Kind> {
    if prefix.starts_with(ENTRIES) {
        Some(Kind::Entries)
    } else if prefix.starts_with(HEADS) {
        Some(Kind::Heads)
    } else {
        None
    }
}

/// Whether `key` is an audit entry or head (kept in the log, never in sled).
pub(super) use chain::is_audit_key;

/// The audit log's index state of one open store.
#[derive(Default)]
pub(super) struct AuditIndex {
    /// The last entry and the last head.
    tail: RwLock<(Option<Entry>, Option<Entry>)>,
    /// Where the last point was written (segment, offset).
    last_point: Mutex<Option<(u64, u64)>>,
    /// Where the last group with a head is (segment, offset); sled's `w/lh` is set from it at
    /// each checkpoint, not at each group.
    last_head_at: Mutex<Option<(u64, u64)>>,
    /// Where the last page of entries and of heads ended: (next sequence number, segment,
    /// offset of the record holding it).
    cursors: Mutex<[Option<(u64, u64, u64)>; 2]>,
}

/// What a store read needs: sled, the log directory, the segments and the last durable position.
pub(super) struct View<'a> {
    pub(super) db: &'a sled::Db,
    pub(super) dir: &'a Path,
    pub(super) headers: Vec<Header>,
    pub(super) bound: u64,
}

impl AuditIndex {
    /// Completes the index from sled and the log after replay: the last point written, the last
    /// entry and head.
    pub(super) fn load(&self, view: View<'_>) -> Result<(), StoreError> {
        let index = self;
        let last_point = view
            .db
            .scan_prefix(POINTS)
            .next_back()
            .transpose()
            .map_err(sled_error)?;
        *index.lock_point() = match last_point {
            Some((_, v)) => Some(location(&v)?),
            None => None,
        };
        let mut tail: (Option<Entry>, Option<Entry>) = (None, None);
        let replayed = *index.lock_head();
        let head_at = match replayed {
            Some(at) => Some(at),
            None => match view.db.get(LAST_HEAD).map_err(sled_error)? {
                Some(v) => Some(location(&v)?),
                None => None,
            },
        };
        *index.lock_head() = head_at;
        if let Some((number, offset)) = head_at
            && let Some(i) = view.headers.iter().position(|h| h.number == number)
        {
            let mut reader =
                AuditReader::new(view.dir, view.headers.clone(), view.bound, i, offset);
            if let Some((_, _, record)) = reader.next_record()? {
                tail.1 = record
                    .heads
                    .last()
                    .map(|(s, h)| (chain::head_key(*s), h.clone()));
            }
        }
        let (at, offset) = index.locate(&view, u64::MAX)?;
        let mut reader = AuditReader::new(view.dir, view.headers.clone(), view.bound, at, offset);
        while let Some((_, _, record)) = reader.next_record()? {
            if let Some((seq, e)) = record.numbered().last() {
                tail.0 = Some((chain::entry_key(seq), e.to_vec()));
            }
            if let Some((seq, h)) = record.heads.last() {
                tail.1 = Some((chain::head_key(*seq), h.clone()));
            }
        }
        *index.tail.write().unwrap_or_else(PoisonError::into_inner) = tail;
        Ok(())
    }

    /// What a checkpoint writes to sled before it flushes: `w/lh`.
    pub(super) fn checkpoint_writes(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let (number, offset) = (*self.lock_head())?;
        let here = [number.to_be_bytes(), offset.to_be_bytes()].concat();
        Some((LAST_HEAD.to_vec(), here))
    }

    /// The sled writes that index `group`, appended at `at`; call with the group's own writes.
    pub(super) fn index_writes(&self, group: &Group, at: Appended) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut writes = Vec::new();
        let mut first_seq = None;
        let mut has_head = false;
        for (key, _) in &group.writes {
            match kind_of(key) {
                Some(Kind::Entries) => {
                    let seq = chain::seq_of(key).unwrap_or(u64::MAX);
                    first_seq = Some(first_seq.map_or(seq, |f: u64| f.min(seq)));
                }
                Some(Kind::Heads) => has_head = true,
                None => {}
            }
        }
        let here = [at.number.to_be_bytes(), at.audit_offset.to_be_bytes()].concat();
        if let Some(seq) = first_seq {
            let mut last = self.lock_point();
            let due = last.is_none_or(|(number, offset)| {
                number != at.number || at.audit_offset >= offset + POINT_EVERY
            });
            if due {
                let mut key = POINTS.to_vec();
                key.extend_from_slice(format!("{seq:020}").as_bytes());
                writes.push((key, here.clone()));
                *last = Some((at.number, at.audit_offset));
            }
        }
        if has_head {
            *self.lock_head() = Some((at.number, at.audit_offset));
        }
        writes
    }

    /// Records `group`'s entries and head as the log's last, once it is durable.
    pub(super) fn appended(&self, group: &Group) {
        let mut tail = self.tail.write().unwrap_or_else(PoisonError::into_inner);
        for (key, value) in &group.writes {
            let slot = match kind_of(key) {
                Some(Kind::Entries) => &mut tail.0,
                Some(Kind::Heads) => &mut tail.1,
                None => continue,
            };
            let newer = slot
                .as_ref()
                .is_none_or(|(k, _)| chain::seq_of(k) < chain::seq_of(key));
            if let (true, Some(value)) = (newer, value) {
                *slot = Some((key.clone(), value.clone()));
            }
        }
    }

    /// The last entry or head, for a prefix of the audit log.
    pub(super) fn last(&self, prefix: &[u8]) -> Option<Option<Entry>> {
        let tail = self.tail.read().unwrap_or_else(PoisonError::into_inner);
        match kind_of(prefix)? {
            Kind::Entries => Some(tail.0.clone()),
            Kind::Heads => Some(tail.1.clone()),
        }
    }

    /// The entry or head `key`, if `key` is in the audit log.
    pub(super) fn get(
        &self,
        view: &View<'_>,
        key: &[u8],
    ) -> Option<Result<Option<Vec<u8>>, StoreError>> {
        let kind = kind_of(key)?;
        let Some(seq) = chain::seq_of(key) else {
            return Some(Ok(None));
        };
        let found = self
            .read(view, kind, seq, 1)
            .map(|page| page.into_iter().find(|(k, _)| k == key).map(|(_, v)| v));
        Some(found)
    }

    /// Up to `limit` entries or heads after `after`, if `prefix` names one of them.
    pub(super) fn scan(
        &self,
        view: &View<'_>,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Option<Result<Vec<Entry>, StoreError>> {
        let kind = kind_of(prefix)?;
        if prefix != ENTRIES && prefix != HEADS {
            return Some(Err(StoreError::Backend(
                "the audit log is read by sequence number, not by a longer prefix".into(),
            )));
        }
        let from = match after {
            None => 1,
            Some(key) => match chain::seq_of(key) {
                Some(seq) => seq.saturating_add(1),
                None => {
                    return Some(Err(StoreError::Backend(
                        "audit scan after a bad key".into(),
                    )));
                }
            },
        };
        Some(self.read(view, kind, from, limit))
    }

    /// Up to `limit` entries after `after`, with the heads up to the last of them: the
    /// records read in order, from where the last page ended.
    pub(super) fn page(
        &self,
        view: &View<'_>,
        after: u64,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let from = after.saturating_add(1);
        let slot = Kind::Entries as usize;
        let mut reader = self.reader(view, slot, from)?;
        let mut page = AuditPage::default();
        while let Some((number, offset, record)) = reader.next_record()? {
            let mut full = false;
            for (seq, e) in record.numbered().filter(|(seq, _)| *seq >= from) {
                page.entries.push((seq, e.to_vec()));
                if page.entries.len() == limit {
                    self.lock_cursors()[slot] = Some((seq + 1, number, offset));
                    full = true;
                    break;
                }
            }
            let last = page.entries.last().map_or(after, |(seq, _)| *seq);
            let heads = record
                .heads
                .iter()
                .filter(|(seq, _)| *seq > after && *seq <= last);
            page.heads.extend(heads.cloned());
            if full {
                break;
            }
        }
        Ok(page)
    }

    /// A reader for sequence number `from` on: where the last page of `slot` ended if it goes
    /// on from there, else from the index.
    fn reader(&self, view: &View<'_>, slot: usize, from: u64) -> Result<AuditReader, StoreError> {
        let (at, offset) = match self.resume(view, slot, from) {
            Some(found) => found,
            None => self.locate(view, from)?,
        };
        Ok(AuditReader::new(
            view.dir,
            view.headers.clone(),
            view.bound,
            at,
            offset,
        ))
    }

    /// Where the last page of `slot` ended, if the next one starts at `from`.
    fn resume(&self, view: &View<'_>, slot: usize, from: u64) -> Option<(usize, u64)> {
        let (next, number, offset) = self.lock_cursors()[slot]?;
        if next != from {
            return None;
        }
        let i = view.headers.iter().position(|h| h.number == number)?;
        Some((i, offset))
    }

    /// Entries or heads with sequence numbers from `from` on, up to `limit` of them.
    fn read(
        &self,
        view: &View<'_>,
        kind: Kind,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let slot = kind as usize;
        let mut reader = self.reader(view, slot, from)?;
        let mut out = Vec::new();
        while let Some((number, offset, record)) = reader.next_record()? {
            match kind {
                Kind::Entries => {
                    for (seq, e) in record.numbered().filter(|(seq, _)| *seq >= from) {
                        out.push((chain::entry_key(seq), e.to_vec()));
                        if out.len() == limit {
                            self.lock_cursors()[slot] = Some((seq + 1, number, offset));
                            return Ok(out);
                        }
                    }
                    // Nothing at or after `from` can come before this record.
                    if kind == Kind::Entries && limit == 1 && record.first_seq > from {
                        return Ok(out);
                    }
                }
                Kind::Heads => {
                    for (seq, h) in record.heads.iter().filter(|(seq, _)| *seq >= from) {
                        out.push((chain::head_key(*seq), h.clone()));
                        if out.len() == limit {
                            self.lock_cursors()[slot] = Some((seq + 1, number, offset));
                            return Ok(out);
                        }
                    }
                    if limit == 1 && !record.entries.is_empty() && record.first_seq > from {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Where to start reading for sequence number `seq`: the segment index and offset of the
    /// last point at or before it that leads to the record it names, else the start of that
    /// point's segment (or of the log).
    fn locate(&self, view: &View<'_>, seq: u64) -> Result<(usize, u64), StoreError> {
        let mut until = POINTS.to_vec();
        until.extend_from_slice(format!("{seq:020}").as_bytes());
        let point = view
            .db
            .range(POINTS.to_vec()..=until)
            .next_back()
            .transpose()
            .map_err(sled_error)?;
        let Some((key, value)) = point else {
            return Ok((0, HEADER_LEN));
        };
        let (number, offset) = location(&value)?;
        let Some(i) = view.headers.iter().position(|h| h.number == number) else {
            return Ok((0, HEADER_LEN));
        };
        let named = chain::seq_of(&key);
        let mut reader = AuditReader::new(view.dir, vec![view.headers[i]], view.bound, 0, offset);
        let leads = matches!(reader.next_record(), Ok(Some((_, _, r))) if Some(r.first_seq) == named && !r.entries.is_empty());
        Ok((i, if leads { offset } else { HEADER_LEN }))
    }

    /// Drops the index points of the segments numbered below `keep`, which were removed
    /// (`docs/audit-log.md`, "Archiving"). Points are derived data: one left behind by a crash
    /// names no segment and is passed over.
    pub(super) fn forget_segments(&self, db: &sled::Db, keep: u64) -> Result<(), StoreError> {
        for point in db.scan_prefix(POINTS) {
            let (key, value) = point.map_err(sled_error)?;
            if location(&value)?.0 >= keep {
                break;
            }
            db.remove(key).map_err(sled_error)?;
        }
        Ok(())
    }

    fn lock_point(&self) -> std::sync::MutexGuard<'_, Option<(u64, u64)>> {
        self.last_point
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_head(&self) -> std::sync::MutexGuard<'_, Option<(u64, u64)>> {
        self.last_head_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_cursors(&self) -> std::sync::MutexGuard<'_, [Option<(u64, u64, u64)>; 2]> {
        self.cursors.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sequence number of the first entry in the segments `headers` (read from the first one
/// on, up to position `bound`), if they hold any.
pub(super) fn first_entry(
    dir: &Path,
    headers: &[Header],
    bound: u64,
) -> Result<Option<u64>, StoreError> {
    let mut reader = AuditReader::new(dir, headers.to_vec(), bound, 0, HEADER_LEN);
    while let Some((_, _, record)) = reader.next_record()? {
        if !record.entries.is_empty() {
            return Ok(Some(record.first_seq));
        }
    }
    Ok(None)
}

/// A (segment, offset) value.
fn location(v: &[u8]) -> Result<(u64, u64), StoreError> {
    let bad = || StoreError::Corrupt("audit index point".into());
    if v.len() != 16 {
        return Err(bad());
    }
    Ok((
        u64::from_be_bytes(v[0..8].try_into().map_err(|_| bad())?),
        u64::from_be_bytes(v[8..16].try_into().map_err(|_| bad())?),
    ))
}
