//! Stored records that fail to decode: counted, logged and copied aside.
//!
//! A record whose bytes no longer decode (a flipped bit the engine's own
//! checksums missed, a bug in an older build) must not stop a read, a
//! scan or a write batch: the engine treats it as absent, so the other
//! replicas' copy wins a quorum read, read repair or anti-entropy and is
//! written over it. Before that, the bytes are copied here, under the
//! data directory's `quarantine/` folder, so an operator can see what was
//! lost (docs/operations.md):
//!
//! - `<token>-<id>.key`: the user key, raw;
//! - `<token>-<id>.bytes`: the stored bytes that failed to decode,
//!
//! where `<token>` is the key's ring token (16 hex digits) and `<id>` a
//! hash of the key (two keys of one token get different files); a hint
//! that does not decode is kept as `hint-<id>.{key,bytes}` (its stored
//! hint key, and its bytes) and deleted from the hints. A key
//! already quarantined keeps its first copy. At most [`MAX_RECORDS`]
//! records and [`MAX_BYTES`] of stored bytes are kept; past that a bad
//! record is still skipped, counted and logged, but not copied.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use xxhash_rust::xxh3::xxh3_64;

use crate::ring::key_token;

/// Folder of the quarantine inside the data directory.
pub const DIR: &str = "quarantine";
/// Most records kept in the quarantine.
pub const MAX_RECORDS: u64 = 1000;
/// Most stored bytes (the `.bytes` files) kept in the quarantine.
pub const MAX_BYTES: u64 = 64 << 20;

/// The quarantine of one engine; see the module docs.
#[derive(Debug)]
pub(crate) struct Quarantine {
    dir: PathBuf,
    /// Records and bytes kept, as counted at open plus those added since.
    kept: Mutex<(u64, u64)>,
    /// Records that failed to decode since the engine opened.
    found: AtomicU64,
}

impl Quarantine {
    /// The quarantine under `data_dir`, counting what earlier runs kept.
    pub fn open(data_dir: &Path) -> Self {
        let dir = data_dir.join(DIR);
        let mut kept = (0, 0);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|x| x == "bytes") {
                    kept.0 += 1;
                    kept.1 += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        Quarantine {
            dir,
            kept: Mutex::new(kept),
            found: AtomicU64::new(0),
        }
    }

    /// Records that failed to decode since the engine opened (each time
    /// one was read: a bad record read twice before it was repaired
    /// counts twice).
    pub fn found(&self) -> u64 {
        self.found.load(Ordering::Relaxed)
    }

    /// Counts, logs and keeps a copy of the undecodable `raw` bytes stored
    /// for user key `key`. Never fails: a quarantine that cannot be written
    /// is logged, and the caller goes on without the record either way.
    pub fn add(&self, key: &[u8], raw: &[u8], reason: &dyn Display) {
        let token = key_token(key);
        let name = format!("{token:016x}-{:016x}", xxh3_64(key));
        let kept = self.found_one(&name, key, raw);
        // The token, not the key or value: logs may leave the machine.
        tracing::warn!(
            token = format_args!("{token:016x}"),
            key_bytes = key.len(),
            stored_bytes = raw.len(),
            %reason,
            quarantine = %kept,
            "stored record failed to decode; treated as missing until repaired from the other replicas"
        );
    }

    /// Counts, logs and keeps a copy of the undecodable hint `id` for
    /// `target` (`hint-<id>` files; `.key` holds the stored hint key).
    pub fn add_hint(&self, target: &str, id: u64, hint_key: &[u8], raw: &[u8]) {
        let name = format!("hint-{:016x}", xxh3_64(hint_key));
        let kept = self.found_one(&name, hint_key, raw);
        tracing::warn!(
            target_node = target,
            hint_id = id,
            stored_bytes = raw.len(),
            quarantine = %kept,
            "stored hint failed to decode; dropped (anti-entropy repairs what it carried)"
        );
    }

    /// Counts one bad record and keeps it as `name`; says where, for the log.
    fn found_one(&self, name: &str, key: &[u8], raw: &[u8]) -> String {
        self.found.fetch_add(1, Ordering::Relaxed);
        match self.keep(name, key, raw) {
            Ok(Some(path)) => path.display().to_string(),
            Ok(None) => "not kept: quarantine full".to_string(),
            Err(e) => format!("not kept: {e}"),
        }
    }

    /// Writes the copy; `None` when the quarantine is full.
    fn keep(&self, name: &str, key: &[u8], raw: &[u8]) -> std::io::Result<Option<PathBuf>> {
        let bytes_path = self.dir.join(format!("{name}.bytes"));
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if bytes_path.exists() {
            return Ok(Some(bytes_path));
        }
        let size = raw.len() as u64;
        if kept.0 >= MAX_RECORDS || kept.1.saturating_add(size) > MAX_BYTES {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.dir.join(format!("{name}.key")), key)?;
        // The `.bytes` file last: it is what marks a record as kept.
        std::fs::write(&bytes_path, raw)?;
        kept.0 += 1;
        kept.1 += size;
        Ok(Some(bytes_path))
    }
}
