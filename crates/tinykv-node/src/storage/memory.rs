//! An in-memory engine with the same contract as the disk engines, for unit
//! tests of the layers above storage (fast, no temp dirs, no fsync).
//!
//! It is **only for tests**: nothing survives the process, and `durable` /
//! `flush` are no-ops. The contract tests in `storage::tests` run against
//! every engine, so code tested on this one behaves the same on disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use bytes::Bytes;

use super::codec::encode_hint;
use super::scan::Page;
use super::{token_segments, Engine, Hint, HintStats, ScanLimit, StorageError, WriteOp};
use crate::ring::key_token;
use crate::version::Record;

/// A stored hint: key, version, stored-at time, and its size for stats.
type HintEntry = (Bytes, Record, u64, u64);

#[derive(Default)]
struct State {
    data: BTreeMap<(u64, Bytes), Record>,
    /// `(target, id)` -> hint, so one target's hints are contiguous and ordered by id.
    hints: BTreeMap<(String, u64), HintEntry>,
    next_hint_id: u64,
    hint_bytes: u64,
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
        let st = self.read()?;
        let k = (key_token(key), Bytes::copy_from_slice(key));
        Ok(st.data.get(&k).cloned())
    }

    fn apply(&self, ops: &[WriteOp], _durable: bool) -> Result<Vec<bool>, StorageError> {
        let mut st = self
            .state
            .write()
            .map_err(|_| StorageError::Engine("memory engine lock poisoned".into()))?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let changed = match op {
                WriteOp::Put { key, record } => {
                    let k = (key_token(key), key.clone());
                    let write = st.data.get(&k).is_none_or(|old| record.supersedes(old));
                    if write {
                        st.data.insert(k, record.clone());
                    }
                    write
                }
                WriteOp::Purge { key, record } => {
                    let k = (key_token(key), key.clone());
                    let equal = st.data.get(&k) == Some(record);
                    if equal {
                        st.data.remove(&k);
                    }
                    equal
                }
                WriteOp::Hint {
                    target,
                    key,
                    record,
                    stored_at_us,
                } => {
                    let id = st.next_hint_id;
                    st.next_hint_id += 1;
                    let size = encode_hint(key, record, *stored_at_us).len() as u64;
                    st.hint_bytes += size;
                    st.hints.insert(
                        (target.clone(), id),
                        (key.clone(), record.clone(), *stored_at_us, size),
                    );
                    true
                }
                WriteOp::DeleteHints { target, ids } => {
                    let mut any = false;
                    for id in ids {
                        if let Some((_, _, _, size)) = st.hints.remove(&(target.clone(), *id)) {
                            st.hint_bytes -= size;
                            any = true;
                        }
                    }
                    any
                }
            };
            out.push(changed);
        }
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
        let mut page = Page::new(limit);
        let Some(segments) = token_segments(start, end, after.map(key_token)) else {
            return Ok(page.out);
        };
        let st = self.read()?;
        let resume = after.map(|a| (key_token(a), Bytes::copy_from_slice(a)));
        for seg in segments {
            let lower = match (&resume, seg.resume) {
                (Some(r), true) => Bound::Excluded(r.clone()),
                _ => Bound::Included((seg.lo, Bytes::new())),
            };
            let upper = if seg.hi == u64::MAX {
                Bound::Unbounded
            } else {
                Bound::Excluded((seg.hi + 1, Bytes::new()))
            };
            if !page.open() {
                break;
            }
            for ((_, k), r) in st.data.range((lower, upper)) {
                if !page.push(k.clone(), r.clone()) {
                    break;
                }
            }
        }
        Ok(page.out)
    }

    fn key_count(&self) -> Result<u64, StorageError> {
        Ok(self.read()?.data.len() as u64)
    }

    fn hints(&self, target: &str, limit: usize) -> Result<Vec<Hint>, StorageError> {
        let st = self.read()?;
        let range = (target.to_string(), 0)..=(target.to_string(), u64::MAX);
        Ok(st
            .hints
            .range(range)
            .take(limit)
            .map(|((t, id), (key, record, at, _))| Hint {
                id: *id,
                target: t.clone(),
                key: key.clone(),
                record: record.clone(),
                stored_at_us: *at,
            })
            .collect())
    }

    fn hint_stats(&self) -> Result<HintStats, StorageError> {
        let st = self.read()?;
        let mut targets: Vec<String> = st.hints.keys().map(|(t, _)| t.clone()).collect();
        targets.dedup();
        Ok(HintStats {
            count: st.hints.len() as u64,
            bytes: st.hint_bytes,
            targets,
        })
    }
}
