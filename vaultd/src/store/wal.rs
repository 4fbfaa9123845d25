//! The write-ahead log: append-only, preallocated segment files of CRC32C-checked records, one
//! record per group, one `write` and one `fdatasync` per append. The byte layout and the
//! recovery rules are in `docs/storage.md`; this module follows them exactly.
//!
//! Only one thread appends (the commit core's writer, through the embedded backend); readers
//! (recovery, backups) read the files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::{Group, StoreError};

/// First bytes of every segment.
pub const MAGIC: &[u8; 8] = b"vaultwal";
/// The segment format this code writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of a segment header.
pub const HEADER_LEN: u64 = 32;
/// Bytes of a record's length and checksum.
pub const RECORD_HEADER_LEN: usize = 8;
/// Records start at multiples of this.
const ALIGN: usize = 8;
/// The least payload: a position and a write count.
const MIN_PAYLOAD: usize = 12;
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

/// A group framed as a log record: length, CRC32C of length and payload, payload, padding.
pub fn frame(group: &Group) -> Vec<u8> {
    let payload_len = group.encoded_len();
    let mut record = Vec::with_capacity(padded(RECORD_HEADER_LEN + payload_len));
    record.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    group.encode_into(&mut record);
    let len = u32::try_from(record.len() - RECORD_HEADER_LEN).expect("a group fits in u32");
    record[0..4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&record[0..4]), &record[8..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    record.resize(padded(record.len()), 0);
    record
}

/// The payload of a framed record.
pub fn payload(record: &[u8]) -> &[u8] {
    let len = u32::from_le_bytes(record[0..4].try_into().expect("4 bytes")) as usize;
    &record[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len]
}

fn padded(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
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
}

/// The path of segment `number` in `dir`.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.wal"))
}

/// The log's segments in `dir`, in number order.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
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

/// Reads the log in `dir`: calls `each` with every valid group whose position is in
/// `(after, until]`, in order, and returns the segments with their valid ranges. A torn or cut
/// tail ends the log; a damaged record with valid records after it is [`StoreError::Corrupt`]
/// naming the segment and offset. With `until` below the log's end, reading stops there and
/// the rest is not examined (a backup reading while the log grows).
pub fn read(
    dir: &Path,
    after: u64,
    until: u64,
    mut each: impl FnMut(Group) -> Result<(), StoreError>,
) -> Result<Vec<SegmentInfo>, StoreError> {
    let listed = list_segments(dir)?;
    let mut numbers = Vec::with_capacity(listed.len());
    let mut headers = Vec::with_capacity(listed.len());
    for (i, &number) in listed.iter().enumerate() {
        let path = segment_path(dir, number);
        let mut header = [0u8; HEADER_LEN as usize];
        match File::open(&path).and_then(|f| f.read_exact_at(&mut header, 0)) {
            Ok(()) => {}
            // Removed by a checkpoint since it was listed (a backup reads while the vault
            // runs): checkpoints remove the oldest segments only, which a reader of positions
            // after them does not need.
            Err(e) if e.kind() == io::ErrorKind::NotFound && numbers.is_empty() => continue,
            Err(e) => {
                return Err(corrupt_at(
                    dir,
                    number,
                    0,
                    &format!("cannot read the header: {e}"),
                ));
            }
        }
        // The newest segment may have been created (or renamed from the spare) without its
        // header reaching the disk: its first record was never synced, so it holds nothing.
        if i + 1 == listed.len() && header.iter().all(|&b| b == 0) {
            break;
        }
        headers.push(parse_header(&header, number).map_err(|why| corrupt_at(dir, number, 0, why))?);
        numbers.push(number);
    }
    let mut segments = Vec::with_capacity(numbers.len());
    let mut previous_last: Option<u64> = None;
    for (i, &number) in numbers.iter().enumerate() {
        let first = headers[i];
        if let Some(last) = previous_last
            && first > last + 1
        {
            return Err(corrupt_at(
                dir,
                number,
                0,
                &format!(
                    "positions {}..{} are missing (a segment was removed)",
                    last + 1,
                    first - 1
                ),
            ));
        }
        // A later segment that starts at or below a position of this one supersedes it from
        // there: those records were written but their sync failed (never acknowledged).
        let limit = headers.get(i + 1).copied().unwrap_or(u64::MAX);
        let data = match fs::read(segment_path(dir, number)) {
            Ok(data) => data,
            // Removed by a checkpoint since its header was read (see above).
            Err(e) if e.kind() == io::ErrorKind::NotFound && segments.is_empty() => continue,
            Err(e) => return Err(io_error(e)),
        };
        let scan =
            scan_segment(&data, first, limit, after, until, &mut each).map_err(|e| match e {
                Scan::Corrupt { offset, why } => corrupt_at(dir, number, offset, &why),
                Scan::Store(e) => e,
            })?;
        segments.push(SegmentInfo {
            number,
            first,
            last: scan.last,
        });
        if scan.stopped {
            break;
        }
        if i + 1 < numbers.len() && scan.last + 1 < limit && scan.damaged {
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
    /// Offset after the last valid record.
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
    first: u64,
    limit: u64,
    after: u64,
    until: u64,
    each: &mut impl FnMut(Group) -> Result<(), StoreError>,
) -> Result<Scanned, Scan> {
    let mut offset = HEADER_LEN as usize;
    let mut expected = first;
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
        match record_at(data, offset) {
            Some((position, payload, next)) if position == expected => {
                if position > after {
                    let group = Group::decode(payload).map_err(|_| Scan::Corrupt {
                        offset: offset as u64,
                        why: "record has a valid checksum but does not decode".into(),
                    })?;
                    each(group).map_err(Scan::Store)?;
                }
                expected += 1;
                offset = next;
            }
            Some(_) => {
                damaged = true;
                break;
            }
            None => {
                damaged = data
                    .get(offset..(offset + RECORD_HEADER_LEN).min(data.len()))
                    .is_some_and(|b| b.iter().any(|&x| x != 0));
                break;
            }
        }
    }
    // Whatever ended the records, no valid record of a later position may follow in this
    // segment: that would be a damaged record in the middle of the log.
    let mut probe = offset + ALIGN;
    while probe + RECORD_HEADER_LEN <= data.len() {
        if let Some((position, _, _)) = record_at(data, probe)
            && position >= expected
            && position < limit
        {
            return Err(Scan::Corrupt {
                offset: offset as u64,
                why: format!(
                    "damaged record (position {expected}) followed by a valid record (position \
                     {position}) at offset {probe}"
                ),
            });
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

/// The valid record at `offset`: its position, payload and the offset after it.
fn record_at(data: &[u8], offset: usize) -> Option<(u64, &[u8], usize)> {
    let header = data.get(offset..offset + RECORD_HEADER_LEN)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    if len < MIN_PAYLOAD {
        return None;
    }
    let payload = data.get(offset + RECORD_HEADER_LEN..offset + RECORD_HEADER_LEN + len)?;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if crc32c::crc32c_append(crc32c::crc32c(&header[0..4]), payload) != crc {
        return None;
    }
    let position = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    Some((position, payload, offset + padded(RECORD_HEADER_LEN + len)))
}

fn header_bytes(number: u64, first: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&number.to_le_bytes());
    h[24..32].copy_from_slice(&first.to_le_bytes());
    let crc = header_crc(&h);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

fn header_crc(h: &[u8; HEADER_LEN as usize]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&h[0..12]), &h[16..32])
}

/// The first position a segment header names.
fn parse_header(h: &[u8; HEADER_LEN as usize], number: u64) -> Result<u64, &'static str> {
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
    if first == 0 {
        return Err("segment header names position 0");
    }
    Ok(first)
}

/// The appending side of the log.
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    segments: Vec<SegmentInfo>,
    active: Option<Active>,
    next_number: u64,
    spare: Option<JoinHandle<io::Result<()>>>,
    /// A spare of the right size is in place.
    spare_ready: bool,
    /// Tests: the next append writes its record, then fails as a failed `fdatasync` would.
    #[cfg(test)]
    pub(super) dangerous_fail_next_sync: bool,
}

struct Active {
    file: File,
    offset: u64,
    len: u64,
}

impl Wal {
    /// The log in `dir` (created if missing) after [`read`] returned `segments`; appends go to a
    /// new segment. Segments are preallocated to `segment_bytes`.
    pub fn open(
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
        let segment_bytes = segment_bytes.max(HEADER_LEN + 4096);
        // A spare left by an earlier run is used if it is whole (it is renamed into place only
        // once written and synced); one being written when that run ended is not.
        let _ = fs::remove_file(dir.join(SPARE_TMP));
        let spare_ready = fs::metadata(dir.join(SPARE)).is_ok_and(|m| m.len() == segment_bytes);
        Ok(Self {
            dir: dir.to_owned(),
            segment_bytes,
            segments,
            active: None,
            next_number,
            spare: None,
            spare_ready,
            #[cfg(test)]
            dangerous_fail_next_sync: false,
        })
    }

    /// The segments, oldest first (the last is the active one once anything was appended).
    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// The position of the last record appended or found at open.
    pub fn last_position(&self) -> Option<u64> {
        self.segments
            .iter()
            .rev()
            .find(|s| s.last >= s.first)
            .map(|s| s.last)
    }

    /// Appends the framed record of the group at `position` and makes it durable: one write and
    /// one `fdatasync`. After a failure the segment is abandoned and the next append starts a
    /// new one at the same position.
    pub fn append(&mut self, position: u64, record: &[u8]) -> Result<(), StoreError> {
        let fits = self
            .active
            .as_ref()
            .is_some_and(|a| a.offset + record.len() as u64 <= a.len);
        if !fits {
            self.roll(position, record.len() as u64)?;
        }
        let active = self.active.as_mut().expect("roll left an active segment");
        let written = active
            .file
            .write_all_at(record, active.offset)
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
        active.offset += record.len() as u64;
        if let Some(last) = self.segments.last_mut() {
            last.last = position;
        }
        Ok(())
    }

    /// Starts segment `next_number` at `first`, with room for at least `need` bytes.
    fn roll(&mut self, first: u64, need: u64) -> Result<(), StoreError> {
        let number = self.next_number;
        let path = segment_path(&self.dir, number);
        let size = self.segment_bytes.max(HEADER_LEN + need);
        if self.spare.as_ref().is_some_and(JoinHandle::is_finished) {
            self.spare_ready = self
                .spare
                .take()
                .is_some_and(|h| h.join().is_ok_and(|r| r.is_ok()));
        }
        let file = if size == self.segment_bytes && std::mem::take(&mut self.spare_ready) {
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
        let header = header_bytes(number, first);
        let ready = file
            .write_all_at(&header, 0)
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
        });
        self.active = Some(Active {
            file,
            offset: HEADER_LEN,
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

    /// Stops appending to the active segment, so that [`Wal::remove_through`] may remove it too
    /// (at shutdown, after the last checkpoint).
    pub fn close(&mut self) {
        self.active = None;
    }

    /// Removes every segment (but the active one) whose records are all at or below `through`;
    /// returns how many. The directory is fsynced after.
    pub fn remove_through(&mut self, through: u64) -> Result<usize, StoreError> {
        let active = self
            .active
            .is_some()
            .then(|| self.segments.last().map(|s| s.number));
        let mut removed = 0;
        let mut kept = Vec::with_capacity(self.segments.len());
        for s in std::mem::take(&mut self.segments) {
            if s.last <= through && active.flatten() != Some(s.number) {
                match fs::remove_file(segment_path(&self.dir, s.number)) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => removed += 1,
                    Err(e) => {
                        kept.push(s);
                        tracing::warn!(error = %e, segment = s.number, "cannot remove log segment");
                    }
                }
            } else {
                kept.push(s);
            }
        }
        self.segments = kept;
        if removed > 0 {
            sync_dir(&self.dir).map_err(io_error)?;
        }
        Ok(removed)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }
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
pub fn write_checkpoint(dir: &Path, position: u64) -> io::Result<()> {
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
pub fn read_checkpoint(dir: &Path) -> Result<u64, StoreError> {
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
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn corrupt_at(dir: &Path, number: u64, offset: u64, why: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "write-ahead log is corrupt: segment {}, offset {offset}: {why}",
        segment_path(dir, number).display()
    ))
}

fn io_error(e: io::Error) -> StoreError {
    StoreError::Backend(format!("write-ahead log: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(position: u64, n: usize) -> Group {
        Group {
            position,
            writes: (0..n)
                .map(|i| {
                    (
                        format!("k/{position}/{i}").into_bytes(),
                        Some(vec![position as u8; 40]),
                    )
                })
                .collect(),
        }
    }

    fn write_log(dir: &Path, groups: u64) {
        let mut wal = Wal::open(dir, 1 << 20, Vec::new()).expect("open");
        for p in 1..=groups {
            wal.append(p, &frame(&group(p, 2))).expect("append");
        }
    }

    fn positions(dir: &Path) -> Result<Vec<u64>, StoreError> {
        let mut seen = Vec::new();
        read(dir, 0, u64::MAX, |g| {
            seen.push(g.position);
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn reads_back_what_was_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 5);
        assert_eq!(positions(dir.path()).expect("read"), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn cut_at_every_offset_keeps_exactly_the_whole_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 4);
        let path = segment_path(dir.path(), 1);
        let full = fs::read(&path).expect("read");
        let record = frame(&group(1, 2)).len();
        let end = HEADER_LEN as usize + 4 * record;
        for cut in HEADER_LEN as usize..=end {
            fs::write(&path, &full[..cut]).expect("cut");
            let whole = ((cut - HEADER_LEN as usize) / record) as u64;
            assert_eq!(
                positions(dir.path()).expect("a cut tail is not corruption"),
                (1..=whole).collect::<Vec<_>>(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn flipped_byte_in_last_record_is_a_tail_and_earlier_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 3);
        let path = segment_path(dir.path(), 1);
        let full = fs::read(&path).expect("read");
        let record = frame(&group(1, 2)).len();
        let start = HEADER_LEN as usize;
        for at in start..start + 3 * record {
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
        let segments = read(dir.path(), 0, u64::MAX, |_| Ok(())).expect("read");
        let mut wal = Wal::open(dir.path(), 1 << 20, segments).expect("open removes it");
        wal.append(3, &frame(&group(3, 1)))
            .expect("append reuses its number");
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
        wal.append(1, &frame(&group(1, 1))).expect("append");
        wal.append(2, &frame(&group(2, 1))).expect("append");
        // As after a failed sync: position 2 starts again in a new segment.
        wal.active = None;
        wal.append(2, &frame(&group(2, 3))).expect("append");
        wal.append(3, &frame(&group(3, 1))).expect("append");
        drop(wal);
        let mut writes = Vec::new();
        read(dir.path(), 0, u64::MAX, |g| {
            writes.push((g.position, g.writes.len()));
            Ok(())
        })
        .expect("read");
        assert_eq!(writes, [(1, 1), (2, 3), (3, 1)]);
        fs::remove_file(segment_path(dir.path(), 1)).expect("remove");
        let mut wal = Wal::open(dir.path(), 1 << 20, Vec::new()).expect("open");
        wal.next_number = 5;
        wal.append(7, &frame(&group(7, 1))).expect("append");
        drop(wal);
        let err = positions(dir.path()).expect_err("positions 4..6 are missing");
        assert!(err.to_string().contains("4..6"), "{err}");
    }
}
