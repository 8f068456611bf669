//! The default on-disk engine: fjall, a log-structured merge tree, in
//! `dir/fjall/`.
//!
//! A batch is appended to fjall's journal (one `write` to the OS per batch,
//! an `fsync` when the batch must be durable) and inserted into an
//! in-memory table; background threads flush memtables into sorted tables
//! and compact them. Compared with a copy-on-write B-tree (redb, the
//! engine before it, rewrote whole pages on every commit), a small write
//! costs a journal append instead of several page writes: ~40x less
//! written to disk for 100-byte values, and several times less CPU
//! (docs/benchmarks.md).
//!
//! Keyspaces (all keys compare bytewise, layout in [`super::codec`]):
//! - `data`:  data key -> `Record::encode()`;
//! - `hints`: hint key -> encoded hint;
//! - `meta`:  counters (`key_count`, `hint_count`, `hint_bytes`,
//!   `next_hint_id`, and `target:<id>` per hint target) written in the same
//!   atomic batch as the data they count, so they never drift from it.
//!
//! Writes are read-modify-write (LWW needs the stored version), so `apply`
//! runs under one lock; most puts are decided from the in-memory stamps of
//! recently written keys ([`Stamps`]) instead of a lookup.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::codec::{corrupt, data_key, decode_hint, decode_record, hint_id, hint_key, user_key};
use super::plan::{plan, Counters, Stored};
use super::quarantine::Quarantine;
use super::scan::Page;
use super::stamps::Stamps;
use super::{
    token_segments, Engine, EngineTuning, Hint, HintStats, ScanLimit, StorageError, WriteOp,
};
use crate::ring::key_token;
use crate::version::Record;

/// Folder of the database inside the data directory.
pub const DIR: &str = "fjall";

const TARGET_PREFIX: &str = "target:";

/// Block cache shared by the keyspaces. Small on purpose: five nodes share
/// a laptop in `make run`, and the OS page cache holds the tables too.
const CACHE_BYTES: u64 = 16 << 20;
/// Memtable size of the `data` keyspace before it is flushed to a table.
const DATA_MEMTABLE_BYTES: u64 = 16 << 20;
/// Memtable size of the small `hints` and `meta` keyspaces.
const SMALL_MEMTABLE_BYTES: u64 = 4 << 20;
/// Journals kept before memtables are force-flushed (fjall's minimum).
const MAX_JOURNAL_BYTES: u64 = 64 << 20;
/// Background flush and compaction threads.
const WORKER_THREADS: usize = 2;
/// Keys whose LWW stamp is kept in memory ([`Stamps`]) by default: two
/// generations of 7/8 of 2^17, the most a hash table of 2^17 slots holds,
/// about 16 MiB.
pub const STAMP_KEYS: usize = 2 * 114_688;

fn eng<E: Display>(e: E) -> StorageError {
    StorageError::Engine(e.to_string())
}

/// An LSM-tree engine (fjall); see the module docs.
pub struct FjallEngine {
    db: Database,
    data: Keyspace,
    hints: Keyspace,
    meta: Keyspace,
    /// Held for the whole of `apply` (read-modify-write).
    writer: Mutex<WriterState>,
    /// A copy of the counters for readers, updated after each commit that
    /// changed them, so `key_count` never waits for a batch in progress.
    published: RwLock<Counters>,
    /// The database folder, where the journal files are.
    path: PathBuf,
    /// Set when a journal write or fsync failed: what it should have made
    /// durable may be lost, and the OS may have dropped the error for the
    /// next fsync (fjall itself refuses writes after a failed journal
    /// write), so every later write and flush fails and the node reports
    /// itself not serving (restart it).
    failed: OnceLock<String>,
    /// Where records that fail to decode are counted and copied.
    quarantine: Quarantine,
}

/// What the write path keeps between batches.
struct WriterState {
    /// The counters as of the last commit.
    counters: Counters,
    /// The stored stamps of recently written keys.
    stamps: Stamps,
}

/// The stored state as a batch is worked out: the engine, and the stamps
/// that spare most puts their lookup.
struct View<'a> {
    engine: &'a FjallEngine,
    stamps: &'a Stamps,
}

impl Stored for View<'_> {
    fn record(&self, dk: &[u8]) -> Result<Option<Record>, StorageError> {
        self.engine.stored(dk)
    }

    fn hint_size(&self, hk: &[u8]) -> Result<Option<u64>, StorageError> {
        let hint = self.engine.hints.get(hk).map_err(eng)?;
        Ok(hint.map(|v| v.len() as u64))
    }

    fn known_order(&self, dk: &[u8], record: &Record) -> Option<std::cmp::Ordering> {
        self.stamps.order(dk, record)
    }
}

impl std::fmt::Debug for FjallEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallEngine").finish_non_exhaustive()
    }
}

fn u64_value(name: &[u8], v: &[u8]) -> Result<u64, StorageError> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(name, "meta counter is not 8 bytes"))
}

impl FjallEngine {
    /// Opens (or creates) the database in `dir/fjall`, creating `dir` if
    /// needed; a restart replays the journal, so every batch that was
    /// handed to the OS before a crash of the process is there.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_tuned(dir, &EngineTuning::default())
    }

    /// [`FjallEngine::open`] with the block cache and stamp index sized by
    /// `tuning`.
    pub fn open_tuned(dir: &Path, tuning: &EngineTuning) -> Result<Self, StorageError> {
        let path = dir.join(DIR);
        std::fs::create_dir_all(&path)
            .map_err(|e| StorageError::Engine(format!("create {}: {e}", path.display())))?;
        let db = Database::builder(&path)
            .cache_size(tuning.cache_bytes.unwrap_or(CACHE_BYTES))
            .worker_threads(WORKER_THREADS)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()
            .map_err(eng)?;
        let data = db
            .keyspace("data", || {
                KeyspaceCreateOptions::default().max_memtable_size(DATA_MEMTABLE_BYTES)
            })
            .map_err(eng)?;
        let small = || KeyspaceCreateOptions::default().max_memtable_size(SMALL_MEMTABLE_BYTES);
        let hints = db.keyspace("hints", small).map_err(eng)?;
        let meta = db.keyspace("meta", small).map_err(eng)?;
        let counters = Self::load_counters(&meta)?;
        Ok(FjallEngine {
            db,
            data,
            hints,
            meta,
            writer: Mutex::new(WriterState {
                counters: counters.clone(),
                stamps: Stamps::new(tuning.stamp_keys),
            }),
            published: RwLock::new(counters),
            path,
            failed: OnceLock::new(),
            quarantine: Quarantine::open(dir),
        })
    }

    fn load_counters(meta: &Keyspace) -> Result<Counters, StorageError> {
        let mut c = Counters::default();
        for entry in meta.iter() {
            let (k, v) = entry.into_inner().map_err(eng)?;
            let value = u64_value(&k, &v)?;
            match std::str::from_utf8(&k) {
                Ok(name) if c.set_scalar(name, value) => {}
                Ok(name) => match name.strip_prefix(TARGET_PREFIX) {
                    Some(target) => {
                        c.targets.insert(target.to_string(), value);
                    }
                    None => tracing::warn!(name, "unknown storage meta entry"),
                },
                Err(_) => return Err(corrupt(&k, "meta key is not UTF-8")),
            }
        }
        Ok(c)
    }

    /// Adds the counters that differ from `before` to `batch`.
    fn store_counters(&self, batch: &mut fjall::OwnedWriteBatch, before: &Counters, c: &Counters) {
        for (name, now, was) in c.scalars(before) {
            if now != was {
                batch.insert(&self.meta, name, now.to_be_bytes());
            }
        }
        for (target, now) in c.changed_targets(before) {
            let name = format!("{TARGET_PREFIX}{target}");
            match now {
                Some(n) => batch.insert(&self.meta, name, n.to_be_bytes()),
                None => batch.remove(&self.meta, name),
            }
        }
    }

    fn lock_err() -> StorageError {
        StorageError::Engine("fjall engine lock poisoned".into())
    }

    /// The stored version under data key `dk`; `Corrupt` (after the bytes
    /// were quarantined) when it does not decode.
    fn stored(&self, dk: &[u8]) -> Result<Option<Record>, StorageError> {
        match self.data.get(dk).map_err(eng)? {
            Some(v) => self.decode(user_key(dk), &v).map(Some),
            None => Ok(None),
        }
    }

    /// Decodes the stored bytes `v` of `key`, quarantining them if they
    /// do not decode.
    fn decode(&self, key: &[u8], v: &[u8]) -> Result<Record, StorageError> {
        decode_record(key, v).inspect_err(|e| self.quarantine.add(key, v, e))
    }

    /// Deletes hints of `target` that do not decode (already quarantined):
    /// they can never be delivered, and left in place they would be read
    /// again at every replay and keep the hint counters up for good.
    /// Anti-entropy repairs what they carried. Failing, it only logs: the
    /// next read of the hints tries again.
    fn drop_bad_hints(&self, target: &str, ids: Vec<u64>) {
        if ids.is_empty() {
            return;
        }
        let target = target.to_string();
        if let Err(e) = self.apply(&[WriteOp::DeleteHints { target, ids }], false) {
            tracing::warn!(error = %e, "could not delete undecodable hints");
        }
    }

    /// Stores `bytes` as they are under hint key `hk`, as a corrupted
    /// hint would be on disk (for tests).
    #[cfg(test)]
    pub(crate) fn write_raw_hint(&self, hk: &[u8], bytes: &[u8]) -> Result<(), StorageError> {
        self.hints.insert(hk, bytes).map_err(eng)
    }

    /// Stores `bytes` as they are under `key`, as a corrupted record would
    /// be on disk (for tests: no counter changes, so the key should exist).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn write_raw(&self, key: &[u8], bytes: &[u8]) -> Result<(), StorageError> {
        self.data.insert(data_key(key), bytes).map_err(eng)?;
        self.db.persist(PersistMode::SyncAll).map_err(eng)
    }

    fn check_failed(&self) -> Result<(), StorageError> {
        match self.failed.get() {
            Some(why) => Err(StorageError::Engine(format!(
                "storage failed earlier ({why}); restart the node"
            ))),
            None => Ok(()),
        }
    }

    /// Makes the engine fail as after a failed fsync (for tests).
    #[cfg(test)]
    pub(crate) fn inject_failure(&self, why: &str) {
        let _ = self.fail(StorageError::Engine(why.to_string()));
    }

    /// Remembers the first fatal failure and passes the error on.
    fn fail(&self, e: StorageError) -> StorageError {
        if self.failed.set(e.to_string()).is_ok() {
            tracing::error!(error = %e, "storage failed; refusing writes until restarted");
        }
        e
    }

    /// fsyncs every journal file through a handle of our own. fjall's own
    /// `persist(SyncAll)` holds the journal lock for the whole fsync, which
    /// stalls every writer for a disk round trip once per sync window; the
    /// journal's written bytes are already in the OS, and fsync makes all of
    /// a file's written pages durable whichever descriptor asks. A sealed
    /// journal was fsynced when it was sealed, so syncing it again is cheap;
    /// one deleted meanwhile was flushed into tables.
    fn sync_journals(&self) -> Result<(), StorageError> {
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| StorageError::Engine(format!("list {}: {e}", self.path.display())))?;
        for entry in entries {
            let path = entry
                .map_err(|e| StorageError::Engine(format!("list {}: {e}", self.path.display())))?
                .path();
            if path.extension().is_none_or(|x| x != "jnl") {
                continue;
            }
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(StorageError::Engine(format!(
                        "open {}: {e}",
                        path.display()
                    )))
                }
            };
            if let Err(e) = file.sync_data() {
                let e = StorageError::Engine(format!("fsync {}: {e}", path.display()));
                return Err(self.fail(e));
            }
        }
        Ok(())
    }
}

impl Engine for FjallEngine {
    /// A record that does not decode reads as missing: a quorum read then
    /// takes the other replicas' version and read repair writes it here.
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        match self.stored(&data_key(key)) {
            Err(StorageError::Corrupt { .. }) => Ok(None),
            r => r,
        }
    }

    fn apply(&self, ops: &[WriteOp], durable: bool) -> Result<Vec<bool>, StorageError> {
        self.check_failed()?;
        let mut state = self.writer.lock().map_err(|_| Self::lock_err())?;
        let view = View {
            engine: self,
            stamps: &state.stamps,
        };
        let (planned, out) = plan(&view, &state.counters, ops)?;
        let c = planned.counters;
        // Every batch reaches the OS before `apply` returns (a crash of the
        // process loses nothing); a durable one is also fsynced.
        let mode = if durable {
            PersistMode::SyncAll
        } else {
            PersistMode::Buffer
        };
        let mut batch = self.db.batch().durability(Some(mode));
        for (dk, r) in &planned.data {
            match r {
                Some(r) => batch.insert(&self.data, dk.as_slice(), r.encode()),
                None => batch.remove(&self.data, dk.as_slice()),
            }
        }
        for (hk, v) in planned.hints {
            match v {
                Some(v) => batch.insert(&self.hints, hk, v),
                None => batch.remove(&self.hints, hk),
            }
        }
        self.store_counters(&mut batch, &state.counters, &c);
        // A failed journal write is fatal for fjall (it poisons itself).
        if !batch.is_empty() {
            batch.commit().map_err(|e| self.fail(eng(e)))?;
        } else if durable {
            // Nothing to write, but the caller asked for everything before
            // this batch to be durable.
            self.db
                .persist(PersistMode::SyncAll)
                .map_err(|e| self.fail(eng(e)))?;
        }
        // Only now, with the batch committed, do the stamps describe it.
        for (dk, r) in &planned.data {
            state.stamps.set(dk, r.as_ref());
        }
        if state.counters != c {
            *self.published.write().map_err(|_| Self::lock_err())? = c.clone();
            state.counters = c;
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.check_failed()?;
        // Hands fjall's journal buffer to the OS (a short hold of its
        // lock; batches are handed over at commit anyway), then fsyncs.
        self.db
            .persist(PersistMode::Buffer)
            .map_err(|e| self.fail(eng(e)))?;
        self.sync_journals()
    }

    fn failure(&self) -> Option<String> {
        self.failed.get().cloned()
    }

    fn corrupt_records(&self) -> u64 {
        self.quarantine.found()
    }

    fn flush_excludes_writes(&self) -> bool {
        false
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
        let resume = after.map(data_key).unwrap_or_default();
        for seg in segments {
            if !page.open() {
                break;
            }
            for entry in self.data.range::<Vec<u8>, _>(seg.data_key_bounds(&resume)) {
                let (k, v) = entry.into_inner().map_err(eng)?;
                let key = user_key(&k);
                // A record that does not decode is skipped (and
                // quarantined): the scan goes on, and a digest of this
                // range then differs from a healthy replica's, so
                // anti-entropy brings the key back.
                let Ok(record) = self.decode(key, &v) else {
                    continue;
                };
                if !page.push(Bytes::copy_from_slice(key), record) {
                    break;
                }
            }
        }
        Ok(page.out)
    }

    fn key_count(&self) -> Result<u64, StorageError> {
        let c = self.published.read().map_err(|_| Self::lock_err())?;
        Ok(c.key_count)
    }

    fn hints(&self, target: &str, limit: usize) -> Result<Vec<Hint>, StorageError> {
        let lo = hint_key(target, 0)?;
        let hi = hint_key(target, u64::MAX)?;
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for entry in self.hints.range(lo..=hi) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry.into_inner().map_err(eng)?;
            let id = hint_id(&k)?;
            let Some((key, record, stored_at_us)) = decode_hint(&v) else {
                self.quarantine.add_hint(target, id, &k, &v);
                bad.push(id);
                continue;
            };
            out.push(Hint {
                id,
                target: target.to_string(),
                key,
                record,
                stored_at_us,
            });
        }
        self.drop_bad_hints(target, bad);
        Ok(out)
    }

    fn under_pressure(&self) -> bool {
        // fjall stalls writers (sleeps in `commit`) from 4 sealed memtables
        // or 20 level-0 runs on; step aside well before that.
        [&self.data, &self.hints, &self.meta]
            .iter()
            .any(|k| k.sealed_memtable_count() >= 2 || k.l0_table_count() >= 12)
    }

    fn hint_stats(&self) -> Result<HintStats, StorageError> {
        let c = self.published.read().map_err(|_| Self::lock_err())?;
        Ok(HintStats {
            count: c.hint_count,
            bytes: c.hint_bytes,
            targets: c.targets.keys().cloned().collect(),
        })
    }
}
