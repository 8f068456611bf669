//! The on-disk engine: one redb 4 database file, `dir/data.redb`.
//!
//! Tables (all keys compare bytewise):
//! - `data`:  `token (8 bytes BE) ++ key` -> `Record::encode()`, so a scan
//!   of a token range is one B-tree range read in ring order;
//! - `hints`: `target length (2 bytes BE) ++ target ++ id (8 bytes BE)` ->
//!   [`encode_hint`], so one target's hints are contiguous and oldest first;
//! - `hint_targets`: target -> number of hints, for [`HintStats::targets`];
//! - `meta`: counters (`key_count`, `hint_count`, `hint_bytes`,
//!   `next_hint_id`) updated inside the same write transaction as the data,
//!   so they can never drift from it and reading them is O(1).

use std::fmt::Display;
use std::ops::Bound;
use std::path::Path;

use bytes::Bytes;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction,
};

use super::codec::{
    corrupt, data_key, decode_hint, decode_record, encode_hint, hint_id, hint_key, user_key,
};
use super::{token_segments, Engine, Hint, HintStats, StorageError, WriteOp};
use crate::ring::key_token;
use crate::version::Record;

/// The database file inside the data directory.
pub const FILE: &str = "data.redb";

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const HINTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("hints");
const HINT_TARGETS: TableDefinition<&str, u64> = TableDefinition::new("hint_targets");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const KEY_COUNT: &str = "key_count";
const HINT_COUNT: &str = "hint_count";
const HINT_BYTES: &str = "hint_bytes";
const NEXT_HINT_ID: &str = "next_hint_id";

/// Maps any redb error to [`StorageError::Engine`]; redb has one error type
/// per operation and the callers only need the message.
fn eng<E: Display>(e: E) -> StorageError {
    StorageError::Engine(e.to_string())
}

/// The counters of the `meta` table, loaded once per write transaction.
#[derive(Clone)]
struct Counters {
    key_count: u64,
    hint_count: u64,
    hint_bytes: u64,
    next_hint_id: u64,
}

impl Counters {
    fn load(meta: &Table<&str, u64>) -> Result<Self, StorageError> {
        let get = |name: &str| -> Result<u64, StorageError> {
            Ok(meta.get(name).map_err(eng)?.map(|g| g.value()).unwrap_or(0))
        };
        Ok(Counters {
            key_count: get(KEY_COUNT)?,
            hint_count: get(HINT_COUNT)?,
            hint_bytes: get(HINT_BYTES)?,
            next_hint_id: get(NEXT_HINT_ID)?,
        })
    }

    /// Writes the counters that differ from `before` (most batches only
    /// overwrite keys: then the meta table is not touched at all).
    fn store(&self, before: &Counters, meta: &mut Table<&str, u64>) -> Result<(), StorageError> {
        for (name, now, was) in [
            (KEY_COUNT, self.key_count, before.key_count),
            (HINT_COUNT, self.hint_count, before.hint_count),
            (HINT_BYTES, self.hint_bytes, before.hint_bytes),
            (NEXT_HINT_ID, self.next_hint_id, before.next_hint_id),
        ] {
            if now != was {
                meta.insert(name, now).map_err(eng)?;
            }
        }
        Ok(())
    }
}

/// The production engine: crash-safe copy-on-write B-trees (redb), MVCC
/// reads that never block on the single writer.
pub struct RedbEngine {
    db: Database,
}

impl std::fmt::Debug for RedbEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbEngine").finish_non_exhaustive()
    }
}

impl RedbEngine {
    /// Opens (or creates) `dir/data.redb`, creating `dir` and the tables if
    /// needed, so a fresh data directory and a restart take the same path.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Engine(format!("create {}: {e}", dir.display())))?;
        let db = Database::create(dir.join(FILE)).map_err(eng)?;
        let tx = db.begin_write().map_err(eng)?;
        {
            tx.open_table(DATA).map_err(eng)?;
            tx.open_table(HINTS).map_err(eng)?;
            tx.open_table(HINT_TARGETS).map_err(eng)?;
            tx.open_table(META).map_err(eng)?;
        }
        tx.commit().map_err(eng)?;
        Ok(RedbEngine { db })
    }

    fn write_ops(tx: &WriteTransaction, ops: &[WriteOp]) -> Result<Vec<bool>, StorageError> {
        let mut data = tx.open_table(DATA).map_err(eng)?;
        let mut hints = tx.open_table(HINTS).map_err(eng)?;
        let mut targets = tx.open_table(HINT_TARGETS).map_err(eng)?;
        let mut meta = tx.open_table(META).map_err(eng)?;
        let before = Counters::load(&meta)?;
        let mut c = before.clone();
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let changed = match op {
                WriteOp::Put { key, record } => {
                    let dk = data_key(key);
                    let existing = data
                        .get(dk.as_slice())
                        .map_err(eng)?
                        .map(|g| Record::decode(g.value()));
                    let write = match &existing {
                        None => {
                            c.key_count += 1;
                            true
                        }
                        Some(Ok(old)) => record.supersedes(old),
                        Some(Err(e)) => {
                            // Overwriting is the only way to repair the key.
                            tracing::warn!(key = ?key, error = %e, "overwriting corrupt record");
                            true
                        }
                    };
                    if write {
                        data.insert(dk.as_slice(), record.encode().as_slice())
                            .map_err(eng)?;
                    }
                    write
                }
                WriteOp::Purge { key, record } => {
                    let dk = data_key(key);
                    let equal = match data.get(dk.as_slice()).map_err(eng)? {
                        Some(g) => Record::decode(g.value()).is_ok_and(|old| old == *record),
                        None => false,
                    };
                    if equal {
                        data.remove(dk.as_slice()).map_err(eng)?;
                        c.key_count = c.key_count.saturating_sub(1);
                    }
                    equal
                }
                WriteOp::Hint {
                    target,
                    key,
                    record,
                    stored_at_us,
                } => {
                    let hk = hint_key(target, c.next_hint_id)?;
                    let v = encode_hint(key, record, *stored_at_us);
                    hints.insert(hk.as_slice(), v.as_slice()).map_err(eng)?;
                    c.next_hint_id += 1;
                    c.hint_count += 1;
                    c.hint_bytes += v.len() as u64;
                    let n = targets
                        .get(target.as_str())
                        .map_err(eng)?
                        .map(|g| g.value())
                        .unwrap_or(0);
                    targets.insert(target.as_str(), n + 1).map_err(eng)?;
                    true
                }
                WriteOp::DeleteHints { target, ids } => {
                    let mut removed = 0u64;
                    for id in ids {
                        let hk = hint_key(target, *id)?;
                        if let Some(g) = hints.remove(hk.as_slice()).map_err(eng)? {
                            removed += 1;
                            c.hint_bytes = c.hint_bytes.saturating_sub(g.value().len() as u64);
                        }
                    }
                    if removed > 0 {
                        c.hint_count = c.hint_count.saturating_sub(removed);
                        let n = targets
                            .get(target.as_str())
                            .map_err(eng)?
                            .map(|g| g.value())
                            .unwrap_or(0)
                            .saturating_sub(removed);
                        if n == 0 {
                            targets.remove(target.as_str()).map_err(eng)?;
                        } else {
                            targets.insert(target.as_str(), n).map_err(eng)?;
                        }
                    }
                    removed > 0
                }
            };
            out.push(changed);
        }
        c.store(&before, &mut meta)?;
        Ok(out)
    }
}

impl Engine for RedbEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        let tx = self.db.begin_read().map_err(eng)?;
        let data = tx.open_table(DATA).map_err(eng)?;
        let dk = data_key(key);
        match data.get(dk.as_slice()).map_err(eng)? {
            Some(g) => decode_record(key, g.value()).map(Some),
            None => Ok(None),
        }
    }

    fn apply(&self, ops: &[WriteOp], durable: bool) -> Result<Vec<bool>, StorageError> {
        let mut tx = self.db.begin_write().map_err(eng)?;
        if !durable {
            // Committed and visible to readers, but only written out by the
            // next durable commit (see `flush`).
            tx.set_durability(Durability::None).map_err(eng)?;
        }
        // On error the transaction is dropped, which aborts it: all or nothing.
        let out = Self::write_ops(&tx, ops)?;
        tx.commit().map_err(eng)?;
        Ok(out)
    }

    fn flush(&self) -> Result<(), StorageError> {
        // redb: commits with `Durability::None` are persisted by the next
        // commit with `Durability::Immediate` (the default), even an empty one.
        let tx = self.db.begin_write().map_err(eng)?;
        tx.commit().map_err(eng)
    }

    fn scan(
        &self,
        start: u64,
        end: u64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Record)>, StorageError> {
        let mut out = Vec::new();
        let Some(segments) = token_segments(start, end, after.map(key_token)) else {
            return Ok(out);
        };
        let tx = self.db.begin_read().map_err(eng)?;
        let data = tx.open_table(DATA).map_err(eng)?;
        let resume = after.map(data_key).unwrap_or_default();
        for seg in segments {
            if out.len() >= limit {
                break;
            }
            let lo_key = seg.lo.to_be_bytes();
            let lower: Bound<&[u8]> = if seg.resume {
                Bound::Excluded(resume.as_slice())
            } else {
                Bound::Included(&lo_key[..])
            };
            let hi_key = seg.hi.wrapping_add(1).to_be_bytes();
            let upper: Bound<&[u8]> = if seg.hi == u64::MAX {
                Bound::Unbounded
            } else {
                Bound::Excluded(&hi_key[..])
            };
            for entry in data.range::<&[u8]>((lower, upper)).map_err(eng)? {
                let (k, v) = entry.map_err(eng)?;
                let key = user_key(k.value());
                out.push((Bytes::copy_from_slice(key), decode_record(key, v.value())?));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn key_count(&self) -> Result<u64, StorageError> {
        let tx = self.db.begin_read().map_err(eng)?;
        let meta = tx.open_table(META).map_err(eng)?;
        Ok(meta
            .get(KEY_COUNT)
            .map_err(eng)?
            .map(|g| g.value())
            .unwrap_or(0))
    }

    fn hints(&self, target: &str, limit: usize) -> Result<Vec<Hint>, StorageError> {
        let tx = self.db.begin_read().map_err(eng)?;
        let hints = tx.open_table(HINTS).map_err(eng)?;
        let lo = hint_key(target, 0)?;
        let hi = hint_key(target, u64::MAX)?;
        let mut out = Vec::new();
        for entry in hints
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
            .map_err(eng)?
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry.map_err(eng)?;
            let k = k.value();
            let id = hint_id(k)?;
            let (key, record, stored_at_us) =
                decode_hint(v.value()).ok_or_else(|| corrupt(k, "malformed hint"))?;
            out.push(Hint {
                id,
                target: target.to_string(),
                key,
                record,
                stored_at_us,
            });
        }
        Ok(out)
    }

    fn hint_stats(&self) -> Result<HintStats, StorageError> {
        let tx = self.db.begin_read().map_err(eng)?;
        let meta = tx.open_table(META).map_err(eng)?;
        let targets = tx.open_table(HINT_TARGETS).map_err(eng)?;
        let get = |name: &str| -> Result<u64, StorageError> {
            Ok(meta.get(name).map_err(eng)?.map(|g| g.value()).unwrap_or(0))
        };
        let mut names = Vec::new();
        for entry in targets.iter().map_err(eng)? {
            let (k, _) = entry.map_err(eng)?;
            names.push(k.value().to_string());
        }
        Ok(HintStats {
            count: get(HINT_COUNT)?,
            bytes: get(HINT_BYTES)?,
            targets: names,
        })
    }
}
