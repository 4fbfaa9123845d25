//! The backup file: a consistent snapshot as a stream of frames with a SHA-256 trailer
//! (`docs/storage.md`, "Backups"). A backend writes it with [`Writer`]; [`read`] checks a file
//! and yields its contents.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Group, StoreError};

/// First bytes of a backup file.
pub(crate) const MAGIC: &[u8; 8] = b"vaultbak";
/// The format this code writes and reads.
pub const VERSION: u32 = 1;

const HEADER: u8 = 1;
const ENTRY: u8 = 2;
const GROUP: u8 = 3;
const END: u8 = 4;
/// Largest frame a reader accepts (a group of 1,024 batches of 64 KiB fits).
const MAX_FRAME: usize = 256 << 20;

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The vault the snapshot is of.
    pub vault_id: String,
    /// The log position the snapshot is consistent at.
    pub position: u64,
    /// Keys in the scan.
    pub entries: u64,
    /// Groups re-applied after the scan.
    pub groups: u64,
    /// SHA-256 of the file before its trailer, hex.
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    vault_id: String,
    created_at: i64,
    start_position: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    position: u64,
    entries: u64,
    groups: u64,
}

/// Writes a backup to a stream.
pub(crate) struct Writer<'a> {
    out: &'a mut dyn io::Write,
    vault_id: String,
    hash: Sha256,
    entries: u64,
    groups: u64,
    buf: Vec<u8>,
}

impl<'a> Writer<'a> {
    /// Starts a backup of vault `vault_id` whose scan begins at log position `start`.
    pub(crate) fn new(
        out: &'a mut dyn io::Write,
        vault_id: &str,
        start: u64,
    ) -> Result<Self, StoreError> {
        let mut w = Self {
            out,
            vault_id: vault_id.to_owned(),
            hash: Sha256::new(),
            entries: 0,
            groups: 0,
            buf: Vec::with_capacity(1 << 16),
        };
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&VERSION.to_le_bytes());
        w.raw(&head)?;
        let header = serde_json::to_vec(&Header {
            vault_id: vault_id.to_owned(),
            created_at: vault_client::Timestamp::now().0,
            start_position: start,
        })
        .expect("headers serialize");
        w.frame(HEADER, &[&header])?;
        Ok(w)
    }

    /// One key of the scan.
    pub(crate) fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.entries += 1;
        let klen = u32::try_from(key.len())
            .map_err(|_| too_big())?
            .to_le_bytes();
        self.frame(ENTRY, &[&klen, key, value])
    }

    /// One group to re-apply after the scan.
    pub(crate) fn group(&mut self, group: &Group) -> Result<(), StoreError> {
        self.groups += 1;
        let mut payload = Vec::with_capacity(group.encoded_len());
        group.encode_into(&mut payload);
        self.frame(GROUP, &[&payload])
    }

    /// Ends the backup at `position` and writes the checksum.
    pub(crate) fn finish(mut self, position: u64) -> Result<Summary, StoreError> {
        let end = serde_json::to_vec(&End {
            position,
            entries: self.entries,
            groups: self.groups,
        })
        .expect("end frames serialize");
        self.frame(END, &[&end])?;
        self.flush_buf()?;
        let digest: [u8; 32] = self.hash.finalize().into();
        self.out.write_all(&digest).map_err(write_error)?;
        self.out.flush().map_err(write_error)?;
        Ok(Summary {
            vault_id: self.vault_id,
            position,
            entries: self.entries,
            groups: self.groups,
            sha256: hex::encode(digest),
        })
    }

    fn frame(&mut self, kind: u8, parts: &[&[u8]]) -> Result<(), StoreError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(len).map_err(|_| too_big())?;
        self.buf.push(kind);
        self.buf.extend_from_slice(&len.to_le_bytes());
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), StoreError> {
        self.hash.update(&self.buf);
        self.out.write_all(&self.buf).map_err(write_error)?;
        self.buf.clear();
        Ok(())
    }
}

/// One item of a backup, in file order.
#[derive(Debug)]
pub enum Item {
    /// A key of the scan.
    Entry(Vec<u8>, Vec<u8>),
    /// A group to re-apply after every entry.
    Group(Group),
}

/// Reads a backup from `input`, calling `each` with every item; returns its summary once the
/// checksum and the end frame's counts have been checked. A caller that must not act on a
/// damaged file reads it twice: once with an `each` that does nothing, then for real.
pub fn read(
    input: &mut dyn Read,
    mut each: impl FnMut(Item) -> Result<(), StoreError>,
) -> Result<Summary, StoreError> {
    let mut r = Hashing {
        input,
        hash: Sha256::new(),
    };
    let mut head = [0u8; 12];
    r.exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(bad("not a vaultd backup file"));
    }
    if u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) != VERSION {
        return Err(bad("unsupported backup format version"));
    }
    let (kind, header) = r.frame()?;
    if kind != HEADER {
        return Err(bad("the file does not start with a header"));
    }
    let header: Header = serde_json::from_slice(&header).map_err(|_| bad("bad header"))?;
    let (mut entries, mut groups) = (0u64, 0u64);
    let end: End = loop {
        let (kind, payload) = r.frame()?;
        match kind {
            ENTRY => {
                if groups > 0 {
                    return Err(bad("an entry after a group"));
                }
                let klen = payload
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                    .ok_or_else(|| bad("short entry"))?;
                if payload.len() < 4 + klen {
                    return Err(bad("short entry"));
                }
                entries += 1;
                each(Item::Entry(
                    payload[4..4 + klen].to_vec(),
                    payload[4 + klen..].to_vec(),
                ))?;
            }
            GROUP => {
                groups += 1;
                each(Item::Group(
                    Group::decode(&payload).map_err(|_| bad("bad group"))?,
                ))?;
            }
            END => break serde_json::from_slice(&payload).map_err(|_| bad("bad end frame"))?,
            _ => return Err(bad("unknown frame")),
        }
    };
    let digest: [u8; 32] = r.hash.clone().finalize().into();
    let mut stored = [0u8; 32];
    r.input
        .read_exact(&mut stored)
        .map_err(|_| bad("the checksum is missing (the file is cut short)"))?;
    let mut rest = [0u8; 1];
    if !matches!(r.input.read(&mut rest), Ok(0)) {
        return Err(bad("bytes after the checksum"));
    }
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &stored[..])) {
        return Err(bad("checksum mismatch: the file is damaged or was altered"));
    }
    if end.entries != entries || end.groups != groups {
        return Err(bad("the end frame's counts do not match the file"));
    }
    Ok(Summary {
        vault_id: header.vault_id,
        position: end.position,
        entries,
        groups,
        sha256: hex::encode(digest),
    })
}

struct Hashing<'a> {
    input: &'a mut dyn Read,
    hash: Sha256,
}

impl Hashing<'_> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.input
            .read_exact(buf)
            .map_err(|_| bad("the file is cut short"))?;
        self.hash.update(&*buf);
        Ok(())
    }

    fn frame(&mut self) -> Result<(u8, Vec<u8>), StoreError> {
        let mut head = [0u8; 5];
        self.exact(&mut head)?;
        let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(bad("a frame is too large"));
        }
        let mut payload = vec![0u8; len];
        self.exact(&mut payload)?;
        Ok((head[0], payload))
    }
}

fn bad(why: &str) -> StoreError {
    StoreError::Corrupt(format!("backup file: {why}"))
}

fn too_big() -> StoreError {
    StoreError::Backend("backup: a key or value is too large".into())
}

fn write_error(e: io::Error) -> StoreError {
    StoreError::Backend(format!("writing the backup: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, "v-test", 3).expect("start");
        w.entry(b"a", b"1").expect("entry");
        w.entry(b"b", b"").expect("entry");
        w.group(&Group {
            position: 4,
            writes: vec![(b"a".to_vec(), None)],
        })
        .expect("group");
        let summary = w.finish(4).expect("finish");
        assert_eq!(
            (summary.entries, summary.groups, summary.position),
            (2, 1, 4)
        );
        out
    }

    #[test]
    fn round_trips() {
        let bytes = sample();
        let mut items = Vec::new();
        let summary = read(&mut bytes.as_slice(), |item| {
            items.push(format!("{item:?}"));
            Ok(())
        })
        .expect("reads");
        assert_eq!(summary.position, 4);
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_refused() {
        let bytes = sample();
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(
                read(&mut damaged.as_slice(), |_| Ok(())).is_err(),
                "flip at {at}"
            );
            assert!(read(&mut &bytes[..at], |_| Ok(())).is_err(), "cut at {at}");
        }
    }
}
