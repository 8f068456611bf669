//! Working out a write batch, the same way for every disk engine: each op
//! is decided against the stored state plus the earlier ops of its batch
//! (LWW for puts, exact match for purges, hint ids and counters), and the
//! result is the final state of every touched key and the new counters,
//! which the engine then writes in one atomic batch or transaction.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::codec::{encode_hint, hint_key};
use super::{StorageError, WriteOp};
use crate::version::Record;

/// What an engine's stored state answers while a batch is worked out.
pub(crate) trait Stored {
    /// The stored version under data key `dk` (`Corrupt` if undecodable).
    fn record(&self, dk: &[u8]) -> Result<Option<Record>, StorageError>;
    /// The size of the stored hint under hint key `hk`, if there is one.
    fn hint_size(&self, hk: &[u8]) -> Result<Option<u64>, StorageError>;
    /// How `record` orders against the stored version under `dk`, when the
    /// engine knows without reading it (a stored version exists then);
    /// `None`: read it with [`Stored::record`].
    fn known_order(&self, _dk: &[u8], _record: &Record) -> Option<Ordering> {
        None
    }
}

/// The counters an engine keeps beside its data, in the same batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub key_count: u64,
    pub hint_count: u64,
    pub hint_bytes: u64,
    pub next_hint_id: u64,
    /// Hints per target (targets with none are absent).
    pub targets: BTreeMap<String, u64>,
}

impl Counters {
    /// Sets the scalar counter stored under `name`; false if there is none.
    pub fn set_scalar(&mut self, name: &str, value: u64) -> bool {
        let slot = match name {
            "key_count" => &mut self.key_count,
            "hint_count" => &mut self.hint_count,
            "hint_bytes" => &mut self.hint_bytes,
            "next_hint_id" => &mut self.next_hint_id,
            _ => return false,
        };
        *slot = value;
        true
    }

    /// The scalar counters by their stored names, each with its value now
    /// and in `before`, for writing back only those that changed.
    pub fn scalars(&self, before: &Counters) -> [(&'static str, u64, u64); 4] {
        [
            ("key_count", self.key_count, before.key_count),
            ("hint_count", self.hint_count, before.hint_count),
            ("hint_bytes", self.hint_bytes, before.hint_bytes),
            ("next_hint_id", self.next_hint_id, before.next_hint_id),
        ]
    }

    /// Targets whose hint count differs from `before`, with the new count
    /// (`None`: no hints left).
    pub fn changed_targets<'a>(
        &'a self,
        before: &'a Counters,
    ) -> impl Iterator<Item = (&'a str, Option<u64>)> + 'a {
        let names: BTreeSet<&String> = before.targets.keys().chain(self.targets.keys()).collect();
        names.into_iter().filter_map(move |t| {
            let now = self.targets.get(t).copied();
            (before.targets.get(t).copied() != now).then_some((t.as_str(), now))
        })
    }
}

/// A worked-out batch: the final state of every data and hint key it
/// touches (`None`: removed), and the counters after it.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub data: HashMap<Vec<u8>, Option<Record>>,
    pub hints: HashMap<Vec<u8>, Option<Vec<u8>>>,
    pub counters: Counters,
}

impl Plan {
    fn record(&self, stored: &impl Stored, dk: &[u8]) -> Result<Option<Record>, StorageError> {
        match self.data.get(dk) {
            Some(r) => Ok(r.clone()),
            None => stored.record(dk),
        }
    }

    fn hint_size(&self, stored: &impl Stored, hk: &[u8]) -> Result<Option<u64>, StorageError> {
        match self.hints.get(hk) {
            Some(h) => Ok(h.as_ref().map(|v| v.len() as u64)),
            None => stored.hint_size(hk),
        }
    }
}

/// Works out `ops` against `stored` and `counters` (as of the last commit):
/// the plan to write and, for each op, whether it changes anything.
pub(crate) fn plan(
    stored: &impl Stored,
    counters: &Counters,
    ops: &[WriteOp],
) -> Result<(Plan, Vec<bool>), StorageError> {
    let mut p = Plan {
        counters: counters.clone(),
        ..Plan::default()
    };
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(one(stored, &mut p, op)?);
    }
    Ok((p, out))
}

fn one(stored: &impl Stored, p: &mut Plan, op: &WriteOp) -> Result<bool, StorageError> {
    Ok(match op {
        WriteOp::Put { key, record } => {
            let dk = super::codec::data_key(key);
            // A key this batch already wrote is decided against that
            // version; otherwise the engine may know the order without a read.
            let known = if p.data.contains_key(&dk) {
                None
            } else {
                stored.known_order(&dk, record)
            };
            let write = match known {
                Some(order) => order == Ordering::Greater,
                None => match p.record(stored, &dk) {
                    Ok(None) => {
                        p.counters.key_count += 1;
                        true
                    }
                    Ok(Some(old)) => record.supersedes(&old),
                    Err(StorageError::Corrupt { .. }) => {
                        // The stored bytes do not decode (the engine has
                        // counted, logged and quarantined them): any
                        // incoming version is written over them, whichever
                        // path brings it. Overwriting is the only way to
                        // repair the key, and only the other replicas can
                        // say which version is right. The trade-off: if
                        // the bad bytes were a tombstone newer than the
                        // incoming version, that version is back on this
                        // replica until LWW against the other replicas'
                        // tombstone (read repair, anti-entropy) deletes it
                        // again; a tombstone already purged elsewhere
                        // cannot be told apart from no version at all, as
                        // on a replica that lost its disk. The stamps of
                        // recently written keys still refuse a version
                        // older than the one they know was stored.
                        true
                    }
                    Err(e) => return Err(e),
                },
            };
            if write {
                p.data.insert(dk, Some(record.clone()));
            }
            write
        }
        WriteOp::Purge { key, record } => {
            let dk = super::codec::data_key(key);
            let equal = match p.record(stored, &dk) {
                Ok(current) => current.as_ref() == Some(record),
                // A corrupt record is never the version to purge.
                Err(StorageError::Corrupt { .. }) => false,
                Err(e) => return Err(e),
            };
            if equal {
                p.data.insert(dk, None);
                p.counters.key_count = p.counters.key_count.saturating_sub(1);
            }
            equal
        }
        WriteOp::Hint {
            target,
            key,
            record,
            stored_at_us,
        } => {
            let c = &mut p.counters;
            let hk = hint_key(target, c.next_hint_id)?;
            let v = encode_hint(key, record, *stored_at_us);
            c.next_hint_id += 1;
            c.hint_count += 1;
            c.hint_bytes += v.len() as u64;
            *c.targets.entry(target.clone()).or_default() += 1;
            p.hints.insert(hk, Some(v));
            true
        }
        WriteOp::DeleteHints { target, ids } => {
            let mut removed = 0u64;
            for id in ids {
                let hk = hint_key(target, *id)?;
                if let Some(size) = p.hint_size(stored, &hk)? {
                    removed += 1;
                    p.counters.hint_bytes = p.counters.hint_bytes.saturating_sub(size);
                    p.hints.insert(hk, None);
                }
            }
            if removed > 0 {
                let c = &mut p.counters;
                c.hint_count = c.hint_count.saturating_sub(removed);
                let left = c
                    .targets
                    .get(target.as_str())
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(removed);
                if left == 0 {
                    c.targets.remove(target.as_str());
                } else {
                    c.targets.insert(target.clone(), left);
                }
            }
            removed > 0
        }
    })
}
