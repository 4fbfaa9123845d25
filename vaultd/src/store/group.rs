//! A resolved group: what the commit core hands a backend, and its byte encoding (the payload
//! of a log record and of a backup's group frame; `docs/storage.md`).

use super::StoreError;

/// One resolved write: the key and its new value (`None`: removed).
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// The writes of one group commit, checked and resolved: applying it twice gives the same state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// The group's number: the first is 1, each next one + 1.
    pub position: u64,
    /// Writes in order; each key at most once.
    pub writes: Vec<Write>,
}

const PUT: u8 = 1;
const DELETE: u8 = 0;

impl Group {
    /// Bytes of the encoded payload.
    pub(crate) fn encoded_len(&self) -> usize {
        12 + self
            .writes
            .iter()
            .map(|(k, v)| 5 + k.len() + v.as_ref().map_or(0, |v| 4 + v.len()))
            .sum::<usize>()
    }

    /// Appends the payload encoding to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        encode_writes(self.position, &self.writes.iter().collect::<Vec<_>>(), out);
    }

    /// The group in `payload`; every byte must be used.
    pub fn decode(payload: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader(payload);
        let position = u64::from_le_bytes(r.array()?);
        let count = u32::from_le_bytes(r.array()?);
        // Each write takes at least 5 bytes: a count beyond that is corrupt, not an allocation.
        if count as usize > payload.len() / 5 {
            return Err(corrupt());
        }
        let mut writes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let tag = r.take(1)?[0];
            let key = r.sized()?.to_vec();
            let value = match tag {
                PUT => Some(r.sized()?.to_vec()),
                DELETE => None,
                _ => return Err(corrupt()),
            };
            writes.push((key, value));
        }
        if !r.0.is_empty() {
            return Err(corrupt());
        }
        Ok(Self { position, writes })
    }
}

/// Appends the encoding of a group at `position` with `writes` to `out` (also a log's key-value
/// record, `wal`).
pub(super) fn encode_writes(position: u64, writes: &[&Write], out: &mut Vec<u8>) {
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(&len32(writes.len()).to_le_bytes());
    for (key, value) in writes {
        out.push(if value.is_some() { PUT } else { DELETE });
        out.extend_from_slice(&len32(key.len()).to_le_bytes());
        out.extend_from_slice(key);
        if let Some(value) = value {
            out.extend_from_slice(&len32(value.len()).to_le_bytes());
            out.extend_from_slice(value);
        }
    }
}

/// A length as the format's u32; lengths are bounded far below (request bodies are 64 KiB and
/// a group holds at most 1,024 batches).
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("lengths in a group fit in u32")
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("group encoding".into())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    fn sized(&mut self) -> Result<&'a [u8], StoreError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(position: u64, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
            let group = Group { position, writes };
            let mut bytes = Vec::new();
            group.encode_into(&mut bytes);
            prop_assert_eq!(bytes.len(), group.encoded_len());
            prop_assert_eq!(Group::decode(&bytes).expect("decodes"), group);
        }

        #[test]
        fn decoding_never_panics(bytes: Vec<u8>) {
            let _ = Group::decode(&bytes);
        }
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = Vec::new();
        Group::default().encode_into(&mut bytes);
        bytes.push(0);
        assert!(Group::decode(&bytes).is_err());
    }
}
