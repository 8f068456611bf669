//! An in-memory engine with the same contract as the disk engine, for unit
//! tests of the layers above storage (fast, no temp dirs, no fsync).
//!
//! It is **only for tests**: nothing survives the process, and `durable` /
//! `flush` are no-ops. Batches are worked out by the planner the disk
//! engines share (`plan.rs`: LWW, exact-match purges, hint ids and
//! counters), over the same key layout (`codec.rs`), so only the container
//! differs: a `BTreeMap` instead of a file. The contract tests in
//! `storage::tests` run against every engine, so code tested on this one
//! behaves the same on disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use bytes::Bytes;

use super::codec::{corrupt, data_key, decode_hint, hint_id, hint_prefix, user_key};
use super::plan::{plan, Counters, Stored};
use super::scan::Page;
use super::{token_segments, Engine, Hint, HintStats, ScanLimit, StorageError, WriteOp};
use crate::ring::key_token;
use crate::version::Record;

/// The engine's state, laid out like the disk engine's (`codec`): data keys
/// to versions, hint keys to encoded hints, and the counters beside them.
#[derive(Default)]
struct State {
    data: BTreeMap<Vec<u8>, Record>,
    hints: BTreeMap<Vec<u8>, Vec<u8>>,
    counters: Counters,
}

impl Stored for State {
    fn record(&self, dk: &[u8]) -> Result<Option<Record>, StorageError> {
        Ok(self.data.get(dk).cloned())
    }

    fn hint_size(&self, hk: &[u8]) -> Result<Option<u64>, StorageError> {
        Ok(self.hints.get(hk).map(|v| v.len() as u64))
    }
}

/// A `BTreeMap` engine behind a lock; see the module docs (tests only).
#[derive(Default)]
pub struct MemoryEngine {
    state: RwLock<State>,
}

impl std::fmt::Debug for MemoryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEngine").finish_non_exhaustive()
    }
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, State>, StorageError> {
        self.state
            .read()
            .map_err(|_| StorageError::Engine("memory engine lock poisoned".into()))
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        Ok(self.read()?.data.get(&data_key(key)).cloned())
    }

    /// Works the batch out with the disk engine's planner (`plan.rs`), then
    /// writes the plan: all of it, or nothing when planning fails.
    fn apply(&self, ops: &[WriteOp], _durable: bool) -> Result<Vec<bool>, StorageError> {
        let mut st = self
            .state
            .write()
            .map_err(|_| StorageError::Engine("memory engine lock poisoned".into()))?;
        let (p, out) = plan(&*st, &st.counters, ops)?;
        for (dk, record) in p.data {
            match record {
                Some(r) => st.data.insert(dk, r),
                None => st.data.remove(&dk),
            };
        }
        for (hk, hint) in p.hints {
            match hint {
                Some(v) => st.hints.insert(hk, v),
                None => st.hints.remove(&hk),
            };
        }
        st.counters = p.counters;
        Ok(out)
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn scan(
        &self,
        start: u64,
        end: u64,
        after: Option<&[u8]>,
        limit: ScanLimit,
    ) -> Result<Vec<(Bytes, Record)>, StorageError> {
        super::check_resume(after)?;
        let mut page = Page::new(limit);
        let Some(segments) = token_segments(start, end, after.map(key_token)) else {
            return Ok(page.out);
        };
        let st = self.read()?;
        let resume = after.map(data_key).unwrap_or_default();
        for seg in segments {
            if !page.open() {
                break;
            }
            let bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>) = seg.data_key_bounds(&resume);
            for (dk, r) in st.data.range(bounds) {
                if !page.push(Bytes::copy_from_slice(user_key(dk)), r.clone()) {
                    break;
                }
            }
        }
        Ok(page.out)
    }

    fn key_count(&self) -> Result<u64, StorageError> {
        Ok(self.read()?.counters.key_count)
    }

    fn hints(&self, target: &str, limit: usize) -> Result<Vec<Hint>, StorageError> {
        let st = self.read()?;
        let prefix = hint_prefix(target)?;
        let mut out = Vec::new();
        for (hk, v) in st.hints.range(prefix.clone()..) {
            if out.len() >= limit || !hk.starts_with(&prefix) {
                break;
            }
            let (key, record, stored_at_us) =
                decode_hint(v).ok_or_else(|| corrupt(hk, "malformed hint"))?;
            out.push(Hint {
                id: hint_id(hk)?,
                target: target.to_string(),
                key,
                record,
                stored_at_us,
            });
        }
        Ok(out)
    }

    fn hint_stats(&self) -> Result<HintStats, StorageError> {
        let c = &self.read()?.counters;
        Ok(HintStats {
            count: c.hint_count,
            bytes: c.hint_bytes,
            targets: c.targets.keys().cloned().collect(),
        })
    }
}
