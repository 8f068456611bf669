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
use std::path::Path;

use bytes::Bytes;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction,
};

use super::codec::{corrupt, data_key, decode_hint, decode_record, hint_id, hint_key, user_key};
use super::plan::{plan, Counters, Stored};
use super::scan::Page;
use super::{
    token_segments, Engine, EngineTuning, Hint, HintStats, ScanLimit, StorageError, WriteOp,
};
use crate::ring::key_token;
use crate::version::Record;

/// The database file inside the data directory.
pub const FILE: &str = "data.redb";

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const HINTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("hints");
const HINT_TARGETS: TableDefinition<&str, u64> = TableDefinition::new("hint_targets");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Maps any redb error to [`StorageError::Engine`]; redb has one error type
/// per operation and the callers only need the message.
fn eng<E: Display>(e: E) -> StorageError {
    StorageError::Engine(e.to_string())
}

/// Loads the counters: the `meta` table's scalars and `hint_targets`.
fn load_counters(
    meta: &impl ReadableTable<&'static str, u64>,
    targets: &impl ReadableTable<&'static str, u64>,
) -> Result<Counters, StorageError> {
    let mut c = Counters::default();
    for entry in meta.iter().map_err(eng)? {
        let (k, v) = entry.map_err(eng)?;
        if !c.set_scalar(k.value(), v.value()) {
            tracing::warn!(name = k.value(), "unknown storage meta entry");
        }
    }
    for entry in targets.iter().map_err(eng)? {
        let (k, v) = entry.map_err(eng)?;
        c.targets.insert(k.value().to_string(), v.value());
    }
    Ok(c)
}

/// The stored state inside a write transaction, for the planner.
struct TxState<'t> {
    data: &'t Table<'t, &'static [u8], &'static [u8]>,
    hints: &'t Table<'t, &'static [u8], &'static [u8]>,
}

impl Stored for TxState<'_> {
    fn record(&self, dk: &[u8]) -> Result<Option<Record>, StorageError> {
        match self.data.get(dk).map_err(eng)? {
            Some(g) => decode_record(user_key(dk), g.value()).map(Some),
            None => Ok(None),
        }
    }

    fn hint_size(&self, hk: &[u8]) -> Result<Option<u64>, StorageError> {
        Ok(self
            .hints
            .get(hk)
            .map_err(eng)?
            .map(|g| g.value().len() as u64))
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
        Self::open_tuned(dir, &EngineTuning::default())
    }

    /// [`RedbEngine::open`] with the page cache sized by `tuning` (redb
    /// has no stamp index: its read before a write is a B-tree lookup in
    /// the same transaction).
    pub fn open_tuned(dir: &Path, tuning: &EngineTuning) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Engine(format!("create {}: {e}", dir.display())))?;
        let mut builder = Database::builder();
        if let Some(bytes) = tuning.cache_bytes {
            builder.set_cache_size(usize::try_from(bytes).unwrap_or(usize::MAX));
        }
        let db = builder.create(dir.join(FILE)).map_err(eng)?;
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

    /// The counters as of the last commit.
    fn counters(&self) -> Result<Counters, StorageError> {
        let tx = self.db.begin_read().map_err(eng)?;
        let meta = tx.open_table(META).map_err(eng)?;
        let targets = tx.open_table(HINT_TARGETS).map_err(eng)?;
        load_counters(&meta, &targets)
    }

    /// Works the batch out against the transaction's state, then writes
    /// every touched key once and the counters that changed.
    fn write_ops(tx: &WriteTransaction, ops: &[WriteOp]) -> Result<Vec<bool>, StorageError> {
        let mut data = tx.open_table(DATA).map_err(eng)?;
        let mut hints = tx.open_table(HINTS).map_err(eng)?;
        let mut targets = tx.open_table(HINT_TARGETS).map_err(eng)?;
        let mut meta = tx.open_table(META).map_err(eng)?;
        let before = load_counters(&meta, &targets)?;
        let state = TxState {
            data: &data,
            hints: &hints,
        };
        let (planned, out) = plan(&state, &before, ops)?;
        for (dk, r) in &planned.data {
            match r {
                Some(r) => {
                    data.insert(dk.as_slice(), r.encode().as_slice())
                        .map_err(eng)?;
                }
                None => {
                    data.remove(dk.as_slice()).map_err(eng)?;
                }
            }
        }
        for (hk, v) in &planned.hints {
            match v {
                Some(v) => {
                    hints.insert(hk.as_slice(), v.as_slice()).map_err(eng)?;
                }
                None => {
                    hints.remove(hk.as_slice()).map_err(eng)?;
                }
            }
        }
        let c = &planned.counters;
        for (name, now, was) in c.scalars(&before) {
            if now != was {
                meta.insert(name, now).map_err(eng)?;
            }
        }
        for (target, now) in c.changed_targets(&before) {
            match now {
                Some(n) => targets.insert(target, n).map_err(eng)?,
                None => targets.remove(target).map_err(eng)?,
            };
        }
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
        limit: ScanLimit,
    ) -> Result<Vec<(Bytes, Record)>, StorageError> {
        super::check_resume(after)?;
        let mut page = Page::new(limit);
        let Some(segments) = token_segments(start, end, after.map(key_token)) else {
            return Ok(page.out);
        };
        let tx = self.db.begin_read().map_err(eng)?;
        let data = tx.open_table(DATA).map_err(eng)?;
        let resume = after.map(data_key).unwrap_or_default();
        for seg in segments {
            if !page.open() {
                break;
            }
            let (lower, upper) = seg.data_key_bounds(&resume);
            let bounds = (
                lower.as_ref().map(Vec::as_slice),
                upper.as_ref().map(Vec::as_slice),
            );
            for entry in data.range::<&[u8]>(bounds).map_err(eng)? {
                let (k, v) = entry.map_err(eng)?;
                let key = user_key(k.value());
                if !page.push(Bytes::copy_from_slice(key), decode_record(key, v.value())?) {
                    break;
                }
            }
        }
        Ok(page.out)
    }

    fn key_count(&self) -> Result<u64, StorageError> {
        Ok(self.counters()?.key_count)
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
        let c = self.counters()?;
        Ok(HintStats {
            count: c.hint_count,
            bytes: c.hint_bytes,
            targets: c.targets.into_keys().collect(),
        })
    }
}
