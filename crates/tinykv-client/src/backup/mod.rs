//! Logical backup and restore of a whole cluster (docs/backup.md).
//!
//! [`take`] reads every token range from a quorum of its replicas (one
//! with `fast`), merges their versions by the LWW rule and writes them,
//! tombstones and expiries included, to checksummed data files listed in
//! a manifest. [`restore`] checks every file's checksum first, then writes
//! the versions back by key through the normal write path, with their
//! original timestamps (or new ones with `overwrite`), so it works on a
//! cluster of any size.

mod format;
mod restore;
mod take;

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use tinykv_proto::tinykv as pb;

use crate::ClientError;

pub use format::{
    verify, DataReader, DataWriter, FileEntry, Manifest, RangeEntry, FORMAT_VERSION, MAGIC,
    MANIFEST, MAX_RECORD_BYTES,
};
pub use restore::{restore, RestoreOptions, RestoreReport};
pub use take::{take, BackupOptions};

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A node's call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A file could not be read or written.
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    /// A data file does not match the manifest's checksum or size.
    #[error("{}: checksum mismatch, the file is corrupted ({detail}); nothing was restored", file.display())]
    Checksum { file: PathBuf, detail: String },
    /// A file is not what the format says.
    #[error("{}: corrupted backup: {detail}", file.display())]
    Corrupt { file: PathBuf, detail: String },
    /// Too few replicas of a range answered.
    #[error(
        "range ({start}, {end}]: {got} of the {need} replicas needed answered (last error: {last})"
    )]
    Range {
        start: u64,
        end: u64,
        got: usize,
        need: usize,
        last: String,
    },
    /// The directory already holds a backup.
    #[error("{}: already holds a backup (manifest.json); give an empty or new directory", dir.display())]
    Exists { dir: PathBuf },
    /// Some versions were not written.
    #[error(
        "restore incomplete: {failed} versions not written ({first}); restoring again is safe"
    )]
    Incomplete { failed: u64, first: String },
    /// The ring answered with nothing to back up.
    #[error("bad topology: {0}")]
    Topology(String),
}

impl BackupError {
    fn io(file: &Path, source: std::io::Error) -> Self {
        BackupError::Io {
            file: file.to_path_buf(),
            source,
        }
    }

    fn corrupt(file: &Path, detail: impl Into<String>) -> Self {
        BackupError::Corrupt {
            file: file.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// What a running backup or restore reports, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Ranges read so far of all of them.
    Ranges { done: u64, total: u64 },
    /// Versions written back so far of all of them.
    Versions { done: u64, total: u64 },
}

/// The LWW order of two versions of a key, as the nodes order them:
/// timestamp, writer, tombstone, value, expiry; `Greater` means `a` wins.
pub fn lww_cmp(a: &pb::KeyVersion, b: &pb::KeyVersion) -> Ordering {
    a.timestamp
        .cmp(&b.timestamp)
        .then_with(|| a.writer.cmp(&b.writer))
        .then_with(|| a.tombstone.cmp(&b.tombstone))
        .then_with(|| a.value.cmp(&b.value))
        .then_with(|| a.expires_at_us.cmp(&b.expires_at_us))
}

/// Microseconds since the epoch by this machine's clock.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
