//! An in-memory backend for tests of the commit core and the conformance suite: no
//! durability, with injected failures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::backup::{self, Summary};
use super::{Entry, Group, StoreError, SyncBackend};

/// The keys, and the position of the last group applied.
type State = (BTreeMap<Vec<u8>, Vec<u8>>, u64);

/// Keys and the position, behind one lock.
#[derive(Default)]
pub(super) struct Memory {
    state: Mutex<State>,
    /// The next this many applies fail before changing anything.
    pub(super) fail_applies: AtomicUsize,
}

impl Memory {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SyncBackend for Memory {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state().0.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let state = self.state();
        let start = match after {
            Some(after) => std::ops::Bound::Excluded(after.to_vec()),
            None => std::ops::Bound::Included(prefix.to_vec()),
        };
        Ok(state
            .0
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .state()
            .0
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .last()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn apply(&self, group: &Group) -> Result<(), StoreError> {
        if self
            .fail_applies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Backend("injected failure".into()));
        }
        let mut state = self.state();
        for (key, value) in &group.writes {
            match value {
                Some(v) => state.0.insert(key.clone(), v.clone()),
                None => state.0.remove(key),
            };
        }
        state.1 = group.position;
        Ok(())
    }

    fn archive_audit(&self, through: u64) -> Result<(), StoreError> {
        let archived = |key: &Vec<u8>| {
            crate::audit::chain::is_audit_key(key)
                && crate::audit::chain::seq_of(key).is_some_and(|seq| seq <= through)
        };
        self.state().0.retain(|key, _| !archived(key));
        Ok(())
    }

    fn position(&self) -> u64 {
        self.state().1
    }

    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn backup(&self, vault_id: &str, out: &mut dyn std::io::Write) -> Result<Summary, StoreError> {
        let state = self.state();
        let mut file = backup::Writer::new(out, vault_id, state.1)?;
        for (k, v) in &state.0 {
            file.entry(k, v)?;
        }
        file.finish(state.1)
    }
}
