//! The write-ahead log, which is also where the audit log lives: append-only, preallocated
//! segment files with two regions. A group's audit entries and signed heads go to the audit
//! region, which is kept (it is the audit log); its other writes go to the key-value region,
//! which is given back once sled holds them durably (a checkpoint). Both parts of a group are
//! CRC32C-framed records written with one `fdatasync`. The byte layout and the recovery rules
//! are in `docs/storage.md`; this module follows them exactly.
//!
//! Only one thread appends (the commit core's writer, through the embedded backend); readers
//! (recovery, backups, audit reads) read the files.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::{Group, StoreError, Write};
use crate::audit::chain;

/// First bytes of every segment.
pub(crate) const MAGIC: &[u8; 8] = b"vaultwal";
/// The segment format this code writes and reads.
pub const VERSION: u32 = 2;
/// Bytes of a segment header.
pub const HEADER_LEN: u64 = 40;
/// Bytes of a record's length and checksum.
pub const RECORD_HEADER_LEN: usize = 8;
/// Records start at multiples of this.
const ALIGN: usize = 8;
/// The key-value region starts at a multiple of this, and is given back in such blocks.
const BLOCK: u64 = 4096;
/// The least audit record payload: position, key-value pointer, first sequence number and the
/// two counts.
const MIN_AUDIT_PAYLOAD: usize = 36;
/// The least key-value record payload: a position and a write count.
const MIN_KV_PAYLOAD: usize = 12;
/// The next segment, zero-filled and synced, ready to be renamed into place.
const SPARE: &str = "spare";
/// The spare while it is being written.
const SPARE_TMP: &str = "spare.tmp";
/// The position up to which sled was last made durable (`docs/storage.md`).
const CHECKPOINT: &str = "checkpoint";
/// First bytes of the checkpoint file.
const CHECKPOINT_MAGIC: &[u8; 8] = b"vaultckp";
/// Zero-fill chunk.
const ZEROS: usize = 1 << 20;
/// Bytes an audit reader reads at a time.
const READ_CHUNK: usize = 256 << 10;

/// A group split into its two records, before the key-value pointer is known.
#[derive(Debug, Clone)]
pub(crate) struct Framed {
    position: u64,
    /// The audit record's payload after the position and the key-value pointer.
    audit_body: Vec<u8>,
    /// The framed key-value record, if the group writes any key outside the audit log.
    kv: Option<Vec<u8>>,
}

impl Framed {
    /// Splits `group`: audit entries (consecutive sequence numbers) and heads go to the audit
    /// record, every other write to the key-value record. The audit log is append-only: a
    /// group that removes an audit key, or names one that is not a sequence number, is refused.
    pub(crate) fn new(group: &Group) -> Result<Self, StoreError> {
        let mut entries: Vec<(u64, &[u8])> = Vec::new();
        let mut heads: Vec<(u64, &[u8])> = Vec::new();
        let mut writes: Vec<&Write> = Vec::with_capacity(group.writes.len());
        for write in &group.writes {
            let (key, value) = write;
            let audit = [chain::ENTRIES, chain::HEADS]
                .into_iter()
                .find(|prefix| key.starts_with(prefix));
            let Some(prefix) = audit else {
                writes.push(write);
                continue;
            };
            let seq = chain::seq_of(key)
                .filter(|_| key.len() == prefix.len() + 20)
                .ok_or_else(|| append_only("an audit key that is no sequence number"))?;
            let value = value
                .as_deref()
                .ok_or_else(|| append_only("removing an audit entry or head"))?;
            if prefix == chain::ENTRIES {
                entries.push((seq, value));
            } else {
                heads.push((seq, value));
            }
        }
        entries.sort_unstable_by_key(|(seq, _)| *seq);
        let first = entries.first().map_or(0, |(seq, _)| *seq);
        if entries
            .iter()
            .enumerate()
            .any(|(i, (seq, _))| *seq != first + i as u64)
        {
            return Err(append_only(
                "audit entries of a group that are not consecutive",
            ));
        }
        let mut body = Vec::with_capacity(
            16 + entries.iter().map(|(_, e)| 4 + e.len()).sum::<usize>()
                + heads.iter().map(|(_, h)| 12 + h.len()).sum::<usize>(),
        );
        body.extend_from_slice(&first.to_le_bytes());
        body.extend_from_slice(&len32(entries.len()).to_le_bytes());
        for (_, entry) in &entries {
            body.extend_from_slice(&len32(entry.len()).to_le_bytes());
            body.extend_from_slice(entry);
        }
        body.extend_from_slice(&len32(heads.len()).to_le_bytes());
        for (seq, head) in &heads {
            body.extend_from_slice(&seq.to_le_bytes());
            body.extend_from_slice(&len32(head.len()).to_le_bytes());
            body.extend_from_slice(head);
        }
        let kv = (!writes.is_empty()).then(|| {
            let mut payload = Vec::new();
            super::group::encode_writes(group.position, &writes, &mut payload);
            frame(&payload)
        });
        Ok(Self {
            position: group.position,
            audit_body: body,
            kv,
        })
    }

    /// Bytes of both records.
    pub(crate) fn bytes(&self) -> u64 {
        self.audit_len() + self.kv_len()
    }

    /// Bytes of the framed audit record.
    fn audit_len(&self) -> u64 {
        padded(RECORD_HEADER_LEN + 20 + self.audit_body.len()) as u64
    }

    /// Bytes of the framed key-value record.
    fn kv_len(&self) -> u64 {
        self.kv.as_ref().map_or(0, |kv| kv.len() as u64)
    }

    /// The framed audit record, pointing at the key-value record at `kv_offset`.
    fn audit_record(&self, kv_offset: u64) -> Vec<u8> {
        let mut payload = Vec::with_capacity(20 + self.audit_body.len());
        payload.extend_from_slice(&self.position.to_le_bytes());
        let (offset, len) = match &self.kv {
            Some(kv) => (kv_offset, len32(kv.len())),
            None => (0, 0),
        };
        payload.extend_from_slice(&offset.to_le_bytes());
        payload.extend_from_slice(&len.to_le_bytes());
        payload.extend_from_slice(&self.audit_body);
        frame(&payload)
    }
}

/// A payload framed as a record: length, CRC32C of length and payload, payload, padding.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(padded(RECORD_HEADER_LEN + payload.len()));
    let len = len32(payload.len()).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    record.extend_from_slice(&len);
    record.extend_from_slice(&crc.to_le_bytes());
    record.extend_from_slice(payload);
    record.resize(padded(record.len()), 0);
    record
}

fn padded(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// A length as the format's u32; lengths are bounded far below (request bodies are 64 KiB and
/// a group holds at most 1,024 batches).
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("lengths in a group fit in u32")
}

fn append_only(what: &str) -> StoreError {
    StoreError::Backend(format!("the audit log is append-only: refused {what}"))
}

/// An audit record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The group's position.
    pub position: u64,
    /// Offset of the group's key-value record in the segment (0: none).
    pub kv_offset: u64,
    /// Its framed length.
    pub kv_len: u32,
    /// The sequence number of the first entry.
    pub first_seq: u64,
    /// The entries, in sequence order.
    pub entries: Vec<Vec<u8>>,
    /// Signed heads: sequence number and stored bytes.
    pub heads: Vec<(u64, Vec<u8>)>,
}

impl AuditRecord {
    /// The record in `payload`; every byte must be used.
    pub fn decode(payload: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader(payload);
        let position = r.u64()?;
        let kv_offset = r.u64()?;
        let kv_len = r.u32()?;
        let first_seq = r.u64()?;
        let count = r.u32()? as usize;
        // Each entry takes at least 4 bytes: a count beyond that is corrupt, not an allocation.
        if count > payload.len() / 4 {
            return Err(corrupt("audit record"));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(r.sized()?.to_vec());
        }
        let count = r.u32()? as usize;
        if count > payload.len() / 12 {
            return Err(corrupt("audit record"));
        }
        let mut heads = Vec::with_capacity(count);
        for _ in 0..count {
            let seq = r.u64()?;
            heads.push((seq, r.sized()?.to_vec()));
        }
        if !r.0.is_empty() {
            return Err(corrupt("audit record"));
        }
        Ok(Self {
            position,
            kv_offset,
            kv_len,
            first_seq,
            entries,
            heads,
        })
    }

    /// The payload encoding (what [`frame`] frames).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.kv_offset.to_le_bytes());
        out.extend_from_slice(&self.kv_len.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&len32(self.entries.len()).to_le_bytes());
        for entry in &self.entries {
            out.extend_from_slice(&len32(entry.len()).to_le_bytes());
            out.extend_from_slice(entry);
        }
        out.extend_from_slice(&len32(self.heads.len()).to_le_bytes());
        for (seq, head) in &self.heads {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&len32(head.len()).to_le_bytes());
            out.extend_from_slice(head);
        }
        out
    }

    /// The entries with their sequence numbers.
    pub(crate) fn numbered(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (self.first_seq + i as u64, e.as_slice()))
    }

    /// The audit log's keys and values this record holds, as writes of its group.
    pub fn writes(&self) -> impl Iterator<Item = Write> + '_ {
        let entries = self
            .numbered()
            .map(|(seq, e)| (chain::entry_key(seq), Some(e.to_vec())));
        let heads = self
            .heads
            .iter()
            .map(|(seq, h)| (chain::head_key(*seq), Some(h.clone())));
        entries.chain(heads)
    }
}

/// The writes of a key-value record's payload at `position` (a group's encoding).
fn decode_kv(payload: &[u8], position: u64) -> Result<Vec<Write>, StoreError> {
    let group = Group::decode(payload)?;
    if group.position != position {
        return Err(corrupt("key-value record of another position"));
    }
    Ok(group.writes)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} does not decode"))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt("log record"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("took 4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("took 8 bytes"),
        ))
    }

    fn sized(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The valid record at `offset` in `data` whose payload is at least `min` bytes: its payload and
/// the offset after it.
fn record_at(data: &[u8], offset: usize, min: usize) -> Option<(&[u8], usize)> {
    let header = data.get(offset..offset.checked_add(RECORD_HEADER_LEN)?)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    if len < min {
        return None;
    }
    let start = offset + RECORD_HEADER_LEN;
    let payload = data.get(start..start.checked_add(len)?)?;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if crc32c::crc32c_append(crc32c::crc32c(&header[0..4]), payload) != crc {
        return None;
    }
    Some((payload, offset + padded(RECORD_HEADER_LEN + len)))
}

fn position_of(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload[0..8].try_into().expect("payloads hold a position"))
}

/// What the log holds about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its number (and file name).
    pub number: u64,
    /// The position of its first record.
    pub first: u64,
    /// The position of its last valid record (`first - 1` while it has none).
    pub last: u64,
    /// Where its key-value region starts (the audit region ends).
    pub kv_start: u64,
    /// The offset after its last audit record, if known (it is for the segments recovery
    /// read and those appended to).
    pub audit_end: Option<u64>,
}

/// The path of segment `number` in `dir`.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.wal"))
}

/// The log's segments in `dir`, in number order.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut numbers = Vec::new();
    for item in fs::read_dir(dir).map_err(io_error)? {
        let name = item.map_err(io_error)?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = name.strip_suffix(".wal") {
            let number = number
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("unexpected file wal/{name}")))?;
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// A segment's header: its first position and where its key-value region starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The segment's number.
    pub number: u64,
    /// The position of its first record.
    pub first: u64,
    /// The offset of its key-value region.
    pub kv_start: u64,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&self.number.to_le_bytes());
        h[24..32].copy_from_slice(&self.first.to_le_bytes());
        h[32..40].copy_from_slice(&self.kv_start.to_le_bytes());
        let crc = header_crc(&h);
        h[12..16].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The header of segment `number` in `h`.
    fn decode(h: &[u8; HEADER_LEN as usize], number: u64) -> Result<Self, &'static str> {
        if &h[0..8] != MAGIC {
            return Err("not a vaultd log segment (bad magic)");
        }
        if u32::from_le_bytes(h[8..12].try_into().expect("4 bytes")) != VERSION {
            return Err("unsupported segment format version");
        }
        if u32::from_le_bytes(h[12..16].try_into().expect("4 bytes")) != header_crc(h) {
            return Err("segment header checksum mismatch");
        }
        if u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")) != number {
            return Err("segment number does not match its file name");
        }
        let first = u64::from_le_bytes(h[24..32].try_into().expect("8 bytes"));
        let kv_start = u64::from_le_bytes(h[32..40].try_into().expect("8 bytes"));
        if first == 0 {
            return Err("segment header names position 0");
        }
        if kv_start < HEADER_LEN || kv_start % BLOCK != 0 {
            return Err("segment header names an impossible key-value region");
        }
        Ok(Self {
            number,
            first,
            kv_start,
        })
    }
}

fn header_crc(h: &[u8; HEADER_LEN as usize]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&h[0..12]), &h[16..40])
}

/// The headers of the segments in `dir`, oldest first. The newest segment may have been created
/// (or renamed from the spare) without its header reaching the disk: its first record was
/// never synced, so it holds nothing and is left out. Anywhere else a bad header is damage.
pub fn headers(dir: &Path) -> Result<Vec<Header>, StoreError> {
    let listed = list_segments(dir)?;
    let mut headers = Vec::with_capacity(listed.len());
    for (i, &number) in listed.iter().enumerate() {
        let mut h = [0u8; HEADER_LEN as usize];
        File::open(segment_path(dir, number))
            .and_then(|f| f.read_exact_at(&mut h, 0))
            .map_err(|e| corrupt_at(dir, number, 0, &format!("cannot read the header: {e}")))?;
        if i + 1 == listed.len() && h.iter().all(|&b| b == 0) {
            break;
        }
        headers.push(Header::decode(&h, number).map_err(|why| corrupt_at(dir, number, 0, why))?);
    }
    Ok(headers)
}

/// Reads the log in `dir` for recovery and backups: calls `each` with every valid group whose
/// position is in `(after, until]`, in order, and returns every segment with its valid range.
/// Only the segments that may hold positions after `after` are read. A torn or cut tail ends
/// the log; a damaged record (either part of a group) with valid records after it is
/// [`StoreError::Corrupt`] naming the segment and offset. With `until` below the log's end,
/// reading stops there and the rest is not examined (a backup reading while the log grows).
pub fn read(
    dir: &Path,
    after: u64,
    until: u64,
    mut each: impl FnMut(Group, Appended) -> Result<(), StoreError>,
) -> Result<Vec<SegmentInfo>, StoreError> {
    let headers = headers(dir)?;
    // Segments before the last one starting at or below `after + 1` hold nothing after `after`.
    let start = headers
        .iter()
        .rposition(|h| h.first <= after.saturating_add(1))
        .unwrap_or(0);
    let mut segments: Vec<SegmentInfo> = headers[..start]
        .iter()
        .zip(headers.get(1..).unwrap_or_default())
        .map(|(h, next)| SegmentInfo {
            number: h.number,
            first: h.first,
            last: next.first - 1,
            kv_start: h.kv_start,
            audit_end: None,
        })
        .collect();
    let mut previous_last: Option<u64> = None;
    for (i, header) in headers.iter().enumerate().skip(start) {
        let number = header.number;
        if let Some(last) = previous_last
            && header.first > last + 1
        {
            return Err(corrupt_at(
                dir,
                number,
                0,
                &format!(
                    "positions {}..{} are missing (a segment was removed)",
                    last + 1,
                    header.first - 1
                ),
            ));
        }
        // A later segment that starts at or below a position of this one supersedes it from
        // there: those records were written but their sync failed (never acknowledged).
        let limit = headers.get(i + 1).map_or(u64::MAX, |h| h.first);
        let data = fs::read(segment_path(dir, number)).map_err(io_error)?;
        let scan =
            scan_segment(&data, header, limit, after, until, &mut each).map_err(|e| match e {
                Scan::Corrupt { offset, why } => corrupt_at(dir, number, offset, &why),
                Scan::Store(e) => e,
            })?;
        segments.push(SegmentInfo {
            number,
            first: header.first,
            last: scan.last,
            kv_start: header.kv_start,
            audit_end: Some(scan.end),
        });
        if scan.stopped {
            break;
        }
        if i + 1 < headers.len() && scan.last + 1 < limit && scan.damaged {
            return Err(corrupt_at(
                dir,
                number,
                scan.end,
                &format!(
                    "damaged record; positions {}..{} are lost",
                    scan.last + 1,
                    limit - 1
                ),
            ));
        }
        previous_last = Some(scan.last);
    }
    Ok(segments)
}

struct Scanned {
    /// Last valid position.
    last: u64,
    /// Offset after the last valid audit record.
    end: u64,
    /// A damaged record (not zeros) ended the records.
    damaged: bool,
    /// `until` was reached.
    stopped: bool,
}

enum Scan {
    Corrupt { offset: u64, why: String },
    Store(StoreError),
}

fn scan_segment(
    data: &[u8],
    header: &Header,
    limit: u64,
    after: u64,
    until: u64,
    each: &mut impl FnMut(Group, Appended) -> Result<(), StoreError>,
) -> Result<Scanned, Scan> {
    let region = &data[..data.len().min(header.kv_start as usize)];
    let mut offset = HEADER_LEN as usize;
    let mut expected = header.first;
    let mut damaged = false;
    loop {
        if expected > until {
            return Ok(Scanned {
                last: expected - 1,
                end: offset as u64,
                damaged: false,
                stopped: true,
            });
        }
        if expected >= limit {
            break;
        }
        let Some((payload, next)) = record_at(region, offset, MIN_AUDIT_PAYLOAD) else {
            damaged = region
                .get(offset..(offset + RECORD_HEADER_LEN).min(region.len()))
                .is_some_and(|b| b.iter().any(|&x| x != 0));
            break;
        };
        if position_of(payload) != expected {
            damaged = true;
            break;
        }
        if expected > after {
            let undecodable = |_| Scan::Corrupt {
                offset: offset as u64,
                why: "record has a valid checksum but does not decode".into(),
            };
            let record = AuditRecord::decode(payload).map_err(undecodable)?;
            // The key-value part was written with the audit part, before the same fdatasync:
            // if it is not whole, neither is the group.
            let Some(kv) = kv_part(data, header, &record) else {
                damaged = true;
                break;
            };
            let mut writes = kv.map_err(undecodable)?;
            writes.extend(record.writes());
            let at = Appended {
                number: header.number,
                audit_offset: offset as u64,
            };
            each(
                Group {
                    position: expected,
                    writes,
                },
                at,
            )
            .map_err(Scan::Store)?;
        }
        expected += 1;
        offset = next;
    }
    // Whatever ended the records, no valid record of a later position may follow in this
    // segment: that would be a damaged record in the middle of the log.
    let mut probe = offset + ALIGN;
    while probe + RECORD_HEADER_LEN <= region.len() {
        if let Some((payload, _)) = record_at(region, probe, MIN_AUDIT_PAYLOAD) {
            let position = position_of(payload);
            if position >= expected && position < limit {
                return Err(Scan::Corrupt {
                    offset: offset as u64,
                    why: format!(
                        "damaged record (position {expected}) followed by a valid record \
                         (position {position}) at offset {probe}"
                    ),
                });
            }
        }
        probe += ALIGN;
    }
    Ok(Scanned {
        last: expected - 1,
        end: offset as u64,
        damaged,
        stopped: false,
    })
}

/// The key-value writes of `record`'s group (none if it has no key-value part); `None` if that
/// part is not whole.
fn kv_part(
    data: &[u8],
    header: &Header,
    record: &AuditRecord,
) -> Option<Result<Vec<Write>, StoreError>> {
    if record.kv_len == 0 {
        return Some(Ok(Vec::new()));
    }
    let offset = usize::try_from(record.kv_offset).ok()?;
    if record.kv_offset < header.kv_start {
        return None;
    }
    let (payload, next) = record_at(data, offset, MIN_KV_PAYLOAD)?;
    if next - offset != record.kv_len as usize || position_of(payload) != record.position {
        return None;
    }
    Some(decode_kv(payload, record.position))
}

/// Reads audit records from the segment files a chunk at a time, from a given segment and
/// offset on, up to a position (what is durable); follows the same rules as recovery (a later
/// segment supersedes an earlier one from its first position; positions never skip).
pub struct AuditReader {
    dir: PathBuf,
    headers: Vec<Header>,
    bound: u64,
    at: usize,
    offset: u64,
    /// The last position read.
    last: Option<u64>,
    file: Option<File>,
    buf: Vec<u8>,
    buf_at: u64,
}

impl AuditReader {
    /// A reader of the segments `headers` of `dir`, from segment index `at` and `offset` on,
    /// reading no record after position `bound`.
    pub fn new(dir: &Path, headers: Vec<Header>, bound: u64, at: usize, offset: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            headers,
            bound,
            at,
            offset: offset.max(HEADER_LEN),
            last: None,
            file: None,
            buf: Vec::new(),
            buf_at: 0,
        }
    }

    /// The next record: its segment number, its offset, and the record.
    pub fn next_record(&mut self) -> Result<Option<(u64, u64, AuditRecord)>, StoreError> {
        loop {
            let Some(header) = self.headers.get(self.at).copied() else {
                return Ok(None);
            };
            let limit = self.headers.get(self.at + 1).map_or(u64::MAX, |h| h.first);
            let offset = self.offset;
            let found = self.record(&header, offset)?;
            let position = found.as_ref().map(|(payload, _)| position_of(payload));
            match (found, position) {
                (Some((payload, next)), Some(position)) if position < limit => {
                    if position > self.bound {
                        return Ok(None);
                    }
                    if self.last.is_some_and(|last| position != last + 1) {
                        return Err(corrupt_at(
                            &self.dir,
                            header.number,
                            offset,
                            &format!("position {position} follows {}", self.last.unwrap_or(0)),
                        ));
                    }
                    let record = AuditRecord::decode(&payload).map_err(|_| {
                        corrupt_at(
                            &self.dir,
                            header.number,
                            offset,
                            "audit record does not decode",
                        )
                    })?;
                    self.last = Some(position);
                    self.offset = next;
                    return Ok(Some((header.number, offset, record)));
                }
                _ => {
                    // The end of this segment's records: the next segment must go on from here.
                    let Some(next) = self.headers.get(self.at + 1) else {
                        return Ok(None);
                    };
                    if let Some(last) = self.last
                        && next.first > last + 1
                        && last < self.bound
                    {
                        return Err(corrupt_at(
                            &self.dir,
                            header.number,
                            offset,
                            &format!(
                                "damaged record; positions {}..{} are lost",
                                last + 1,
                                next.first - 1
                            ),
                        ));
                    }
                    self.at += 1;
                    self.offset = HEADER_LEN;
                    self.file = None;
                    self.buf.clear();
                }
            }
        }
    }

    /// The valid audit record at `offset` of the segment: its payload and the offset after it.
    fn record(
        &mut self,
        header: &Header,
        offset: u64,
    ) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        if offset + RECORD_HEADER_LEN as u64 > header.kv_start {
            return Ok(None);
        }
        self.fill(header, offset, RECORD_HEADER_LEN)?;
        let at = (offset - self.buf_at) as usize;
        let Some(len_bytes) = self.buf.get(at..at + 4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        let whole = padded(RECORD_HEADER_LEN + len) as u64;
        if len < MIN_AUDIT_PAYLOAD || offset + whole > header.kv_start {
            return Ok(None);
        }
        self.fill(header, offset, RECORD_HEADER_LEN + len)?;
        let at = (offset - self.buf_at) as usize;
        Ok(record_at(&self.buf, at, MIN_AUDIT_PAYLOAD)
            .map(|(payload, next)| (payload.to_vec(), self.buf_at + next as u64)))
    }

    /// Makes the buffer hold `need` bytes from `offset` (fewer at the end of the file).
    fn fill(&mut self, header: &Header, offset: u64, need: usize) -> Result<(), StoreError> {
        let held =
            offset >= self.buf_at && offset + need as u64 <= self.buf_at + self.buf.len() as u64;
        if held {
            return Ok(());
        }
        if self.file.is_none() {
            let path = segment_path(&self.dir, header.number);
            self.file = Some(File::open(&path).map_err(io_error)?);
        }
        let file = self.file.as_ref().expect("opened above");
        let want = need
            .max(READ_CHUNK)
            .min((header.kv_start - offset) as usize);
        self.buf.resize(want, 0);
        let mut got = 0;
        while got < want {
            match file.read_at(&mut self.buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        self.buf.truncate(got);
        self.buf_at = offset;
        Ok(())
    }
}

/// The appending side of the log.
pub(crate) struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    segments: Vec<SegmentInfo>,
    /// Leading segments whose key-value region was given back.
    trimmed: usize,
    active: Option<Active>,
    next_number: u64,
    /// Where the key-value record of each group since the last release ends:
    /// (position, segment, offset).
    kv_ends: VecDeque<(u64, u64, u64)>,
    spare: Option<JoinHandle<io::Result<()>>>,
    /// A spare of the right size is in place.
    spare_ready: bool,
    /// Tests: the next append writes its records, then fails as a failed `fdatasync` would.
    #[cfg(test)]
    pub(super) dangerous_fail_next_sync: bool,
}

struct Active {
    file: File,
    number: u64,
    audit_offset: u64,
    kv_start: u64,
    kv_offset: u64,
    /// The key-value region is given back up to here.
    kv_released: u64,
    len: u64,
}

/// Where an append put a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The segment.
    pub number: u64,
    /// The offset of the group's audit record.
    pub audit_offset: u64,
}

impl Wal {
    /// The log in `dir` (created if missing) after [`read`] returned `segments`; appends go to a
    /// new segment. Segments are preallocated to `segment_bytes`.
    pub(crate) fn open(
        dir: &Path,
        segment_bytes: u64,
        segments: Vec<SegmentInfo>,
    ) -> Result<Self, StoreError> {
        // A newest segment that `read` passed over (created, its header never synced) is
        // removed: it holds nothing, and its number is reused.
        if let Some(&newest) = list_segments(dir)?.last()
            && !segments.iter().any(|s| s.number == newest)
        {
            let path = segment_path(dir, newest);
            let mut header = [0u8; HEADER_LEN as usize];
            let blank = File::open(&path)
                .and_then(|f| f.read_exact_at(&mut header, 0))
                .is_ok_and(|()| header.iter().all(|&b| b == 0));
            if blank {
                fs::remove_file(&path).map_err(io_error)?;
                sync_dir(dir).map_err(io_error)?;
            }
        }
        let next_number = segments.last().map_or(1, |s| s.number + 1);
        let segment_bytes = segment_bytes.max(4 * BLOCK);
        // A spare left by an earlier run is used if it is whole (it is renamed into place only
        // once written and synced); one being written when that run ended is not.
        let _ = fs::remove_file(dir.join(SPARE_TMP));
        let spare_ready = fs::metadata(dir.join(SPARE)).is_ok_and(|m| m.len() == segment_bytes);
        Ok(Self {
            dir: dir.to_owned(),
            segment_bytes,
            segments,
            trimmed: 0,
            active: None,
            next_number,
            kv_ends: VecDeque::new(),
            spare: None,
            spare_ready,
            #[cfg(test)]
            dangerous_fail_next_sync: false,
        })
    }

    /// The segments, oldest first (the last is the active one once anything was appended).
    #[cfg(test)]
    pub(crate) fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// The segments' headers, for an [`AuditReader`].
    pub(crate) fn headers(&self) -> Vec<Header> {
        self.segments
            .iter()
            .map(|s| Header {
                number: s.number,
                first: s.first,
                kv_start: s.kv_start,
            })
            .collect()
    }

    /// The position of the last record appended or found at open.
    pub(crate) fn last_position(&self) -> Option<u64> {
        self.segments
            .iter()
            .rev()
            .find(|s| s.last >= s.first)
            .map(|s| s.last)
    }

    /// Appends the two records of the group at `position` and makes them durable: a write for
    /// each, one `fdatasync`. After a failure the segment is abandoned and the next append
    /// starts a new one at the same position.
    pub(crate) fn append(&mut self, framed: &Framed) -> Result<Appended, StoreError> {
        let (audit_len, kv_len) = (framed.audit_len(), framed.kv_len());
        let fits = self.active.as_ref().is_some_and(|a| {
            a.audit_offset + audit_len <= a.kv_start && a.kv_offset + kv_len <= a.len
        });
        if !fits {
            self.roll(framed.position, audit_len, kv_len)?;
        }
        let active = self.active.as_mut().expect("roll left an active segment");
        let audit = framed.audit_record(active.kv_offset);
        let written = framed
            .kv
            .as_ref()
            .map_or(Ok(()), |kv| active.file.write_all_at(kv, active.kv_offset))
            .and_then(|()| active.file.write_all_at(&audit, active.audit_offset))
            .and_then(|()| active.file.sync_data());
        #[cfg(test)]
        let written = match std::mem::take(&mut self.dangerous_fail_next_sync) {
            true => Err(io::Error::other("injected fdatasync failure")),
            false => written,
        };
        if let Err(e) = written {
            // After a failed fdatasync the kernel may have dropped the pages and report success
            // next time: never write to this file again.
            self.active = None;
            return Err(io_error(e));
        }
        let appended = Appended {
            number: active.number,
            audit_offset: active.audit_offset,
        };
        active.audit_offset += audit_len;
        if kv_len > 0 {
            active.kv_offset += kv_len;
            self.kv_ends
                .push_back((framed.position, active.number, active.kv_offset));
        }
        if let Some(last) = self.segments.last_mut() {
            last.last = framed.position;
            last.audit_end = Some(active.audit_offset);
        }
        Ok(appended)
    }

    /// Starts segment `next_number` at `first`, with room for records of `audit_len` and
    /// `kv_len` bytes. The two regions split the segment in halves unless a record needs more.
    fn roll(&mut self, first: u64, audit_len: u64, kv_len: u64) -> Result<(), StoreError> {
        let number = self.next_number;
        let path = segment_path(&self.dir, number);
        let half = (self.segment_bytes / 2 / BLOCK * BLOCK).max(BLOCK);
        let kv_start = half.max((HEADER_LEN + audit_len).div_ceil(BLOCK) * BLOCK);
        let size = self
            .segment_bytes
            .max(kv_start + kv_len.div_ceil(BLOCK) * BLOCK);
        if self.spare.as_ref().is_some_and(JoinHandle::is_finished) {
            self.spare_ready = self
                .spare
                .take()
                .is_some_and(|h| h.join().is_ok_and(|r| r.is_ok()));
        }
        let standard = size == self.segment_bytes && kv_start == half;
        let file = if standard && std::mem::take(&mut self.spare_ready) {
            fs::rename(self.dir.join(SPARE), &path).map_err(io_error)?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_error)?
        } else {
            allocate(&path, size).inspect_err(|_| {
                let _ = fs::remove_file(&path);
            })?
        };
        let header = Header {
            number,
            first,
            kv_start,
        };
        let ready = file
            .write_all_at(&header.encode(), 0)
            .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = ready {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(io_error(e));
        }
        self.next_number += 1;
        self.segments.push(SegmentInfo {
            number,
            first,
            last: first - 1,
            kv_start,
            audit_end: Some(HEADER_LEN),
        });
        self.active = Some(Active {
            file,
            number,
            audit_offset: HEADER_LEN,
            kv_start,
            kv_offset: kv_start,
            kv_released: kv_start,
            len: size,
        });
        if self.spare.is_none() && !self.spare_ready {
            let (dir, bytes) = (self.dir.clone(), self.segment_bytes);
            self.spare = std::thread::Builder::new()
                .name("vaultd-wal-spare".into())
                .spawn(move || prepare_spare(&dir, bytes))
                .ok();
        }
        Ok(())
    }

    /// How many leading segments have had their key-value records given back
    /// ([`Wal::release`]): only those may be removed.
    pub(crate) fn released(&self) -> usize {
        self.trimmed
    }

    /// Removes the first `n` segments, which must be released and hold only archived audit
    /// records (`docs/audit-log.md`, "Archiving"), and fsyncs the directory.
    pub(crate) fn remove_leading(&mut self, n: usize) -> Result<(), StoreError> {
        let n = n.min(self.trimmed);
        for s in &self.segments[..n] {
            match fs::remove_file(segment_path(&self.dir, s.number)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        sync_dir(&self.dir).map_err(io_error)?;
        self.segments.drain(..n);
        self.trimmed -= n;
        Ok(())
    }

    /// Stops appending to the active segment, so that [`Wal::release`] may trim it too (at
    /// shutdown, after the last checkpoint).
    pub(crate) fn close(&mut self) {
        self.active = None;
    }

    /// Gives back the key-value records of every group at or below `through` (sled holds them
    /// durably): a segment no longer appended to whose records are all at or below it is cut
    /// after its last audit record; in the active segment, the whole blocks of key-value
    /// records at or below it are punched out. The audit records stay: they are the audit log.
    pub(crate) fn release(&mut self, through: u64) -> Result<(), StoreError> {
        let active = self.active.as_ref().map(|a| a.number);
        while let Some(s) = self.segments.get(self.trimmed).copied() {
            if s.last > through || active == Some(s.number) {
                break;
            }
            trim(
                &segment_path(&self.dir, s.number),
                s.audit_end.unwrap_or(s.kv_start),
            )?;
            self.trimmed += 1;
        }
        let mut end = None;
        while let Some(&(position, number, kv_end)) = self.kv_ends.front() {
            if position > through {
                break;
            }
            self.kv_ends.pop_front();
            if active == Some(number) {
                end = Some(kv_end);
            }
        }
        if let (Some(a), Some(end)) = (self.active.as_mut(), end) {
            let end = end / BLOCK * BLOCK;
            if end > a.kv_released {
                let flags =
                    rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
                rustix::fs::fallocate(&a.file, flags, a.kv_released, end - a.kv_released)
                    .map_err(|e| io_error(e.into()))?;
                a.kv_released = end;
            }
        }
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }
}

/// Cuts the segment at `path` after `end` (its last audit record) if it is longer, and syncs it.
fn trim(path: &Path, end: u64) -> Result<(), StoreError> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(e)),
    };
    if file.metadata().map_err(io_error)?.len() > end {
        file.set_len(end).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
    }
    Ok(())
}

/// A new segment file of `size` bytes, allocated (a full disk fails here, not at an append).
fn allocate(path: &Path, size: u64) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error)?;
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size)
        .map_err(|e| io_error(e.into()))?;
    file.sync_all().map_err(io_error)?;
    Ok(file)
}

/// Writes the spare segment full of zeros and syncs it, so that appends to it later change no
/// file metadata (an fallocated extent is converted on first write, which the sync must log).
fn prepare_spare(dir: &Path, size: u64) -> io::Result<()> {
    let path = dir.join(SPARE_TMP);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let zeros = vec![0u8; ZEROS];
        let mut left = size;
        while left > 0 {
            let n = left.min(ZEROS as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        fs::rename(&path, dir.join(SPARE))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&path);
    }
    result
}

/// Records that sled holds every group up to `position` durably: `wal/checkpoint` is replaced
/// atomically (written, fsynced, renamed, directory fsynced).
pub(crate) fn write_checkpoint(dir: &Path, position: u64) -> io::Result<()> {
    let mut bytes = CHECKPOINT_MAGIC.to_vec();
    bytes.extend_from_slice(&position.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("checkpoint.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(CHECKPOINT))?;
    sync_dir(dir)
}

/// The position of the last checkpoint (0 if none was recorded).
pub(crate) fn read_checkpoint(dir: &Path) -> Result<u64, StoreError> {
    let bytes = match fs::read(dir.join(CHECKPOINT)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(e)),
    };
    let bad = || StoreError::Corrupt(format!("{}: damaged", dir.join(CHECKPOINT).display()));
    if bytes.len() != 20 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err(bad());
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..16]) != crc {
        return Err(bad());
    }
    Ok(u64::from_le_bytes(
        bytes[8..16].try_into().expect("8 bytes"),
    ))
}

/// fsyncs a directory, so that a file created, renamed or removed in it stays so.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn corrupt_at(dir: &Path, number: u64, offset: u64, why: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "write-ahead log is corrupt: segment {}, offset {offset}: {why}",
        segment_path(dir, number).display()
    ))
}

fn io_error(e: io::Error) -> StoreError {
    StoreError::Io(format!("write-ahead log: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group at `position` with `n` key-value writes and one audit entry (seq = position).
    fn group(position: u64, n: usize) -> Group {
        let mut writes: Vec<Write> = (0..n)
            .map(|i| {
                (
                    format!("k/{position}/{i}").into_bytes(),
                    Some(vec![position as u8; 40]),
                )
            })
            .collect();
        writes.push((chain::entry_key(position), Some(vec![b'e'; 30])));
        writes.push((chain::head_key(position), Some(vec![b'h'; 20])));
        Group { position, writes }
    }

    fn append(wal: &mut Wal, group: &Group) -> Appended {
        wal.append(&Framed::new(group).expect("frames"))
            .expect("append")
    }

    fn write_log(dir: &Path, groups: u64) {
        let mut wal = Wal::open(dir, 1 << 20, Vec::new()).expect("open");
        for p in 1..=groups {
            append(&mut wal, &group(p, 2));
        }
    }

    fn groups(dir: &Path, after: u64) -> Result<Vec<Group>, StoreError> {
        let mut seen = Vec::new();
        read(dir, after, u64::MAX, |g, _| {
            seen.push(g);
            Ok(())
        })?;
        Ok(seen)
    }

    fn positions(dir: &Path) -> Result<Vec<u64>, StoreError> {
        Ok(groups(dir, 0)?.iter().map(|g| g.position).collect())
    }

    /// Of each audit record of segment 1: its position, offset, the end of its payload, and the
    /// offset of its key-value record.
    fn spans(dir: &Path) -> (Header, Vec<(u64, usize, usize, usize)>) {
        let header = headers(dir).expect("headers")[0];
        let data = fs::read(segment_path(dir, 1)).expect("read");
        let mut offset = HEADER_LEN as usize;
        let mut out = Vec::new();
        while let Some((payload, next)) = record_at(&data, offset, MIN_AUDIT_PAYLOAD) {
            let record = AuditRecord::decode(payload).expect("decodes");
            let end = offset + RECORD_HEADER_LEN + payload.len();
            out.push((record.position, offset, end, record.kv_offset as usize));
            offset = next;
        }
        (header, out)
    }

    #[test]
    fn reads_back_what_was_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 5);
        assert_eq!(
            groups(dir.path(), 0).expect("read"),
            (1..=5).map(|p| group(p, 2)).collect::<Vec<_>>()
        );
        assert_eq!(
            groups(dir.path(), 3).expect("read"),
            [group(4, 2), group(5, 2)]
        );
    }

    #[test]
    fn the_audit_log_is_append_only() {
        let mut g = group(1, 1);
        g.writes.push((chain::entry_key(7), None));
        assert!(Framed::new(&g).is_err(), "removing an entry");
        let mut g = group(1, 1);
        g.writes.push((chain::entry_key(3), Some(vec![1])));
        assert!(Framed::new(&g).is_err(), "entries 1 and 3");
        let mut g = group(1, 1);
        g.writes.push((b"a/e/x".to_vec(), Some(vec![1])));
        assert!(Framed::new(&g).is_err(), "no sequence number");
    }

    #[test]
    fn a_tear_anywhere_in_the_last_group_keeps_exactly_the_whole_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 4);
        let path = segment_path(dir.path(), 1);
        let full = fs::read(&path).expect("read");
        let (header, spans) = spans(dir.path());
        let kv_start = header.kv_start as usize;
        // A power cut leaves zeros after the tear (the segment was zero-filled): in the audit
        // region, every group whose audit record is whole survives.
        for cut in spans[2].1..=spans[3].2 {
            let mut bytes = full.clone();
            bytes[cut..kv_start].fill(0);
            fs::write(&path, &bytes).expect("cut");
            let whole = spans.iter().filter(|s| s.2 <= cut).count();
            assert_eq!(
                positions(dir.path()).expect("a cut tail is not corruption"),
                (1..=whole as u64).collect::<Vec<_>>(),
                "audit cut at {cut}"
            );
        }
        // In the key-value region, the last group goes with its key-value record.
        let kv_len = spans[1].3 - spans[0].3;
        for cut in spans[3].3..spans[3].3 + kv_len - 7 {
            let mut bytes = full.clone();
            bytes[cut..].fill(0);
            fs::write(&path, &bytes).expect("cut");
            assert_eq!(
                positions(dir.path()).expect("tail"),
                [1, 2, 3],
                "kv cut at {cut}"
            );
        }
        // A flip in an earlier group's key-value record is damage in the middle of the log.
        let mut bytes = full.clone();
        bytes[spans[1].3 + 9] ^= 1;
        fs::write(&path, &bytes).expect("flip");
        let err = positions(dir.path()).expect_err("damage");
        assert!(
            err.to_string().contains("00000000000000000001.wal"),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("offset {}", spans[1].1)),
            "{err}"
        );
    }

    #[test]
    fn flipped_byte_in_last_record_is_a_tail_and_earlier_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 3);
        let path = segment_path(dir.path(), 1);
        let full = fs::read(&path).expect("read");
        let (_, spans) = spans(dir.path());
        let record = spans[1].1 - spans[0].1;
        let start = HEADER_LEN as usize;
        for at in start..start + 3 * record {
            // Padding after a payload is not covered by its checksum, and holds nothing.
            if spans.iter().any(|s| (s.2..s.1 + record).contains(&at)) {
                continue;
            }
            let mut bytes = full.clone();
            bytes[at] ^= 0x40;
            fs::write(&path, &bytes).expect("flip");
            let index = (at - start) / record;
            match positions(dir.path()) {
                Ok(seen) => {
                    assert_eq!(index, 2, "flip at {at} in record {index} must be refused");
                    assert_eq!(seen, [1, 2]);
                }
                Err(StoreError::Corrupt(why)) => {
                    assert!(
                        index < 2,
                        "flip at {at} in the last record is a tail: {why}"
                    );
                    assert!(why.contains("00000000000000000001.wal"), "{why}");
                    assert!(
                        why.contains(&format!("offset {}", start + index * record)),
                        "{why}"
                    );
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }

    #[test]
    fn a_newest_segment_without_its_header_holds_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 2);
        // As a power cut leaves a segment created just before its first record was synced.
        fs::write(segment_path(dir.path(), 2), vec![0u8; 4096]).expect("write");
        assert_eq!(positions(dir.path()).expect("read"), [1, 2]);
        let segments = read(dir.path(), 0, u64::MAX, |_, _| Ok(())).expect("read");
        let mut wal = Wal::open(dir.path(), 1 << 20, segments).expect("open removes it");
        append(&mut wal, &group(3, 1));
        drop(wal);
        assert_eq!(positions(dir.path()).expect("read"), [1, 2, 3]);
        assert_eq!(list_segments(dir.path()).expect("list"), [1, 2]);
        // Anywhere else, a missing header is damage.
        fs::write(segment_path(dir.path(), 1), vec![0u8; 4096]).expect("write");
        assert!(matches!(positions(dir.path()), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn abandoned_segment_is_superseded_and_a_missing_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), 1 << 20, Vec::new()).expect("open");
        append(&mut wal, &group(1, 1));
        append(&mut wal, &group(2, 1));
        // As after a failed sync: position 2 starts again in a new segment.
        wal.active = None;
        append(&mut wal, &group(2, 3));
        append(&mut wal, &group(3, 1));
        drop(wal);
        assert_eq!(
            groups(dir.path(), 0).expect("read"),
            [group(1, 1), group(2, 3), group(3, 1)]
        );
        let headers = headers(dir.path()).expect("headers");
        let mut reader = AuditReader::new(dir.path(), headers, u64::MAX, 0, HEADER_LEN);
        let mut read = Vec::new();
        while let Some((number, _, record)) = reader.next_record().expect("next") {
            read.push((number, record.position));
        }
        assert_eq!(read, [(1, 1), (2, 2), (2, 3)]);
        fs::remove_file(segment_path(dir.path(), 1)).expect("remove");
        let mut wal = Wal::open(dir.path(), 1 << 20, Vec::new()).expect("open");
        wal.next_number = 5;
        append(&mut wal, &group(7, 1));
        drop(wal);
        let err = positions(dir.path()).expect_err("positions 4..6 are missing");
        assert!(err.to_string().contains("4..6"), "{err}");
    }

    #[test]
    fn release_gives_back_key_value_records_and_keeps_the_audit_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Small segments: 16 KiB, key-value region from 8 KiB; big values fill it fast.
        let mut wal = Wal::open(dir.path(), 16 << 10, Vec::new()).expect("open");
        let big = |p: u64| {
            let mut g = group(p, 0);
            g.writes
                .insert(0, (format!("k/{p}").into_bytes(), Some(vec![7; 3000])));
            g
        };
        for p in 1..=8 {
            append(&mut wal, &big(p));
        }
        let segments = wal.segments().to_vec();
        assert!(segments.len() >= 3, "{segments:?}");
        let allocated = |n: u64| {
            use std::os::unix::fs::MetadataExt as _;
            fs::metadata(segment_path(dir.path(), n))
                .expect("meta")
                .blocks()
                * 512
        };
        let active = segments.last().expect("active").number;
        let before = allocated(active);
        wal.release(8).expect("release");
        for s in &segments[..segments.len() - 1] {
            let len = fs::metadata(segment_path(dir.path(), s.number))
                .expect("meta")
                .len();
            assert_eq!(
                Some(len),
                s.audit_end,
                "segment {} cut after its audit log",
                s.number
            );
        }
        assert!(allocated(active) <= before, "active segment punched");
        // Every entry still reads, and recovery after the released position needs nothing.
        let mut reader = AuditReader::new(dir.path(), wal.headers(), 8, 0, HEADER_LEN);
        let mut seqs = Vec::new();
        while let Some((_, _, record)) = reader.next_record().expect("next") {
            seqs.extend(record.numbered().map(|(seq, _)| seq));
        }
        assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
        drop(wal);
        assert_eq!(groups(dir.path(), 8).expect("read"), []);
        let err = groups(dir.path(), 0).expect_err("released key-value records are gone");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }
}
