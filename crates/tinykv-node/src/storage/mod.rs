//! Local storage: a small engine trait, its engines (fjall on disk, and an
//! in-memory one for tests), and the write path, [`Store`], that every
//! write goes through.
//!
//! Keys are kept in ring-token order (`(key_token(key), key)`), so a token
//! range can be scanned directly for anti-entropy and streaming.

use bytes::Bytes;

use crate::version::Record;

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The engine reported an error (I/O, corruption, ...).
    #[error("storage engine: {0}")]
    Engine(String),
    /// A stored record could not be decoded.
    #[error("corrupt record for key {key:?}: {reason}")]
    Corrupt {
        /// The key whose record is corrupt (lossy UTF-8).
        key: String,
        /// Why decoding failed.
        reason: String,
    },
    /// The writer has shut down; no more writes are accepted.
    #[error("storage is shutting down")]
    Closed,
    /// A key (or a hint's node id) longer than the engine can store; it
    /// is refused before it reaches the engine, whose limit is an assert.
    #[error("{what} is {len} bytes; the limit is {max} bytes")]
    TooLong {
        /// What is too long: "key" or "hint target".
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The data directory holds a database of the redb engine, which was
    /// removed (issue #15): started on it, the node would look empty and
    /// hide that data, so it refuses to start and says how to move on.
    #[error(
        "{dir} holds a redb database (data.redb) from an earlier TinyKV; this version \
         stores data with fjall only and cannot read it. Either restore the data with \
         `tinykv_client restore` from a `tinykv_client backup` taken with the older build, \
         or move {dir} away and start the node on an empty data directory with `--join` \
         so it streams its ranges from the other replicas"
    )]
    RedbData {
        /// The data directory.
        dir: String,
    },
}

/// Longest key the node stores: the engines' key limit (fjall's is 65,535
/// bytes, checked by an assert) minus the 8-byte ring token every stored
/// key starts with (`codec::data_key`).
pub const MAX_KEY_BYTES: usize = u16::MAX as usize - 8;

/// Longest node id a hint may be kept for (its stored key is the id's
/// length, the id and an 8-byte hint id).
pub const MAX_HINT_TARGET_BYTES: usize = 1024;

/// Refuses a write batch holding a key or hint target the engines cannot
/// store, before any of it is applied.
pub(crate) fn check_ops(ops: &[WriteOp]) -> Result<(), StorageError> {
    let too_long = |what, len, max| StorageError::TooLong { what, len, max };
    for op in ops {
        let (key, target) = match op {
            WriteOp::Put { key, .. } | WriteOp::Purge { key, .. } => (Some(key), None),
            WriteOp::Hint { key, target, .. } => (Some(key), Some(target)),
            WriteOp::DeleteHints { target, .. } => (None, Some(target)),
        };
        if let Some(k) = key.filter(|k| k.len() > MAX_KEY_BYTES) {
            return Err(too_long("key", k.len(), MAX_KEY_BYTES));
        }
        if let Some(t) = target.filter(|t| t.len() > MAX_HINT_TARGET_BYTES) {
            return Err(too_long("hint target", t.len(), MAX_HINT_TARGET_BYTES));
        }
    }
    Ok(())
}

/// Refuses a scan's resume key (`after`) longer than any stored key can
/// be: only a malformed request (a peer's `FetchRange`) carries one, and
/// the disk engine asserts on a key past its limit.
pub(crate) fn check_resume(after: Option<&[u8]>) -> Result<(), StorageError> {
    match after {
        Some(k) if k.len() > MAX_KEY_BYTES => Err(StorageError::TooLong {
            what: "key",
            len: k.len(),
            max: MAX_KEY_BYTES,
        }),
        _ => Ok(()),
    }
}

/// One write operation, applied atomically with the others of its batch.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Store `record` for `key` if it supersedes the stored version (LWW).
    Put {
        /// The key.
        key: Bytes,
        /// The version.
        record: Record,
    },
    /// Store a hint: a version meant for `target`, which was down.
    Hint {
        /// Node id the version is meant for.
        target: String,
        /// The key.
        key: Bytes,
        /// The version.
        record: Record,
        /// When the hint was stored (microseconds since the epoch), for age limits.
        stored_at_us: u64,
    },
    /// Delete delivered or expired hints by id.
    DeleteHints {
        /// Node id the hints were for.
        target: String,
        /// Hint ids as returned by [`Engine::hints`].
        ids: Vec<u64>,
    },
    /// Remove `key` only if its stored version is exactly `record`
    /// (tombstone purge, or dropping a range after handing it off).
    Purge {
        /// The key.
        key: Bytes,
        /// The version that must still be stored for the purge to happen.
        record: Record,
    },
}

/// A stored hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// Unique, increasing id (per engine).
    pub id: u64,
    /// Node id the version is meant for.
    pub target: String,
    /// The key.
    pub key: Bytes,
    /// The version.
    pub record: Record,
    /// When the hint was stored (microseconds since the epoch).
    pub stored_at_us: u64,
}

/// Totals over the stored hints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HintStats {
    /// Number of hints.
    pub count: u64,
    /// Approximate bytes of hinted values.
    pub bytes: u64,
    /// Node ids that have at least one hint, sorted.
    pub targets: Vec<String>,
}

/// A local key-value engine. Implementations are synchronous and must be
/// safe to read from many threads while one thread writes.
pub trait Engine: Send + Sync + 'static {
    /// The stored version of `key`, value or tombstone.
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError>;
    /// Applies `ops` in one atomic batch; for each op, whether it changed
    /// anything (a `Put` that lost to the stored version returns false).
    /// With `durable`, the batch is on stable storage when this returns.
    fn apply(&self, ops: &[WriteOp], durable: bool) -> Result<Vec<bool>, StorageError>;
    /// Makes every batch applied so far durable.
    fn flush(&self) -> Result<(), StorageError>;
    /// Whether `apply` must wait while `flush` runs. An engine whose flush
    /// only fsyncs what is already written (fjall's journal) says no, and
    /// the node keeps applying writes during the fsync.
    fn flush_excludes_writes(&self) -> bool {
        true
    }
    /// Why the engine refuses all writes until the node restarts (a failed
    /// journal write or fsync), if it does; the node then reports itself
    /// not serving.
    fn failure(&self) -> Option<String> {
        None
    }
    /// Stored records that failed to decode since the engine opened; each
    /// was read as missing or skipped, and quarantined (`quarantine`).
    fn corrupt_records(&self) -> u64 {
        0
    }
    /// Versions whose key token is in `(start, end]` (wrapping when
    /// `start >= end`), in `(token, key)` order, starting after `after`
    /// (a key previously returned), one page of `limit`.
    fn scan(
        &self,
        start: u64,
        end: u64,
        after: Option<&[u8]>,
        limit: ScanLimit,
    ) -> Result<Vec<(Bytes, Record)>, StorageError>;
    /// Number of keys stored (values and tombstones).
    fn key_count(&self) -> Result<u64, StorageError>;
    /// Up to `limit` hints for `target`, oldest first.
    fn hints(&self, target: &str, limit: usize) -> Result<Vec<Hint>, StorageError>;
    /// Totals over all hints.
    fn hint_stats(&self) -> Result<HintStats, StorageError>;
    /// Whether `apply` may block for a while now (the engine is throttling
    /// writes until background work catches up); such writes are left to
    /// the writer thread instead of an async worker.
    fn under_pressure(&self) -> bool {
        false
    }
}

pub(crate) mod codec;
mod combine;
#[cfg(test)]
mod corrupt_tests;
#[cfg(test)]
mod disk_tests;
pub mod fjall_engine;
#[cfg(test)]
mod hooked;
pub mod memory;
mod pending;
mod plan;
pub mod quarantine;
mod scan;
mod stamps;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod ttl_tests;
pub mod writer;

pub use fjall_engine::FjallEngine;
pub use memory::MemoryEngine;
pub use scan::{page_bytes, ScanLimit, SCAN_PAGE_BYTES};
pub use writer::{Store, StoreStats, SyncPolicy};

/// Memory the disk engine may use, from the node's flags; the defaults
/// suit five nodes sharing a laptop (a fjall node peaks at ~100 MiB RSS
/// under a write benchmark, docs/benchmarks.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineTuning {
    /// fjall's block cache in bytes; `None`: the default, 16 MiB.
    pub cache_bytes: Option<u64>,
    /// Keys whose stored LWW stamp fjall keeps in memory so a write can
    /// skip the read before it (about 70 bytes each); 0 turns it off.
    pub stamp_keys: usize,
}

impl Default for EngineTuning {
    fn default() -> Self {
        EngineTuning {
            cache_bytes: None,
            stamp_keys: fjall_engine::STAMP_KEYS,
        }
    }
}

/// The file of the removed redb engine in a data directory written by a
/// TinyKV from before fjall was the only engine.
pub const REDB_FILE: &str = "data.redb";

/// Opens the node's disk engine, fjall, in `dir`. Refuses a directory that
/// holds a redb database and no fjall one (the test earlier versions used
/// to pick redb for it): opening it would look like an empty node and hide
/// that data, while anti-entropy refilled it from the replicas.
pub fn open_disk(
    dir: &std::path::Path,
    tuning: &EngineTuning,
) -> Result<std::sync::Arc<dyn Engine>, StorageError> {
    if !dir.join(fjall_engine::DIR).exists() && dir.join(REDB_FILE).exists() {
        return Err(StorageError::RedbData {
            dir: dir.display().to_string(),
        });
    }
    Ok(std::sync::Arc::new(FjallEngine::open_tuned(dir, tuning)?))
}

/// One contiguous token interval `[lo, hi]` (both inclusive) of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScanSegment {
    /// Lowest token of the interval.
    pub lo: u64,
    /// Highest token of the interval.
    pub hi: u64,
    /// Whether the scan resumes strictly after the `after` key in this
    /// interval (instead of at `lo`).
    pub resume: bool,
}

impl ScanSegment {
    /// The data-key range of this segment for the disk engine (its keys
    /// start with the token, see `codec`): from `lo`, or strictly after the
    /// resume key `resume` (a data key); up to and including every key of
    /// token `hi`.
    pub(crate) fn data_key_bounds(
        &self,
        resume: &[u8],
    ) -> (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>) {
        use std::ops::Bound;
        let lower = if self.resume {
            Bound::Excluded(resume.to_vec())
        } else {
            Bound::Included(self.lo.to_be_bytes().to_vec())
        };
        let upper = match self.hi.checked_add(1) {
            None => Bound::Unbounded,
            Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
        };
        (lower, upper)
    }
}

/// Splits the ring range `(start, end]` (wrapping when `start >= end`) into
/// inclusive token intervals in scan order, dropping those before the
/// interval that holds `after_token`. Shared by every engine so they agree
/// on the wrap-around rule. `None` when `after_token` is outside the range
/// (nothing is left to return after a key that is not in it).
pub(crate) fn token_segments(
    start: u64,
    end: u64,
    after_token: Option<u64>,
) -> Option<Vec<ScanSegment>> {
    let mut segs = Vec::with_capacity(2);
    if start < end {
        segs.push((start + 1, end));
    } else {
        if start < u64::MAX {
            segs.push((start + 1, u64::MAX));
        }
        segs.push((0, end));
    }
    let skip = match after_token {
        None => 0,
        Some(t) => segs.iter().position(|&(lo, hi)| lo <= t && t <= hi)?,
    };
    Some(
        segs.into_iter()
            .enumerate()
            .skip(skip)
            .map(|(i, (lo, hi))| ScanSegment {
                lo,
                hi,
                resume: after_token.is_some() && i == skip,
            })
            .collect(),
    )
}
