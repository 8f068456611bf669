//! Restoring a backup: checksums first, then every version by key.

use std::path::PathBuf;

use tinykv_proto::tinykv as pb;

use super::format::{verify, DataReader, Manifest};
use super::{now_us, BackupError, Progress};
use crate::{Client, Consistency};

/// Most versions per write call (the node takes up to 1,024).
const BATCH_VERSIONS: usize = 256;
/// A write call is sent once its versions reach this many bytes (with one
/// value of the largest size after them, it stays within a node's message
/// limit: that value's size plus 1 MiB).
const BATCH_BYTES: usize = 512 << 10;

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// The backup directory.
    pub dir: PathBuf,
    /// Write every version with a new timestamp (now, or just after its
    /// own if that is later), so it wins over anything the cluster holds;
    /// without it the original timestamps are kept and newer data wins.
    pub overwrite: bool,
    /// Acks each version waits for.
    pub consistency: Consistency,
}

/// What a restore wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Files read.
    pub files: u64,
    /// Versions written (each reached its acks).
    pub versions: u64,
    /// How many of them were tombstones.
    pub tombstones: u64,
}

/// Writes one batch; every version must reach its acks.
async fn send(
    client: &Client,
    batch: &mut Vec<pb::KeyVersion>,
    consistency: Consistency,
) -> Result<u64, BackupError> {
    let versions = std::mem::take(batch);
    let n = versions.len() as u64;
    let answer = client.write_versions(versions, consistency).await?;
    if answer.failed > 0 {
        return Err(BackupError::Incomplete {
            failed: u64::from(answer.failed),
            first: answer.first_error,
        });
    }
    Ok(n)
}

/// Restores the backup in `opts.dir` into the cluster `client` reaches.
/// Every file's checksum is checked before anything is written.
pub async fn restore(
    client: &Client,
    opts: &RestoreOptions,
    progress: &dyn Fn(Progress),
) -> Result<RestoreReport, BackupError> {
    let manifest = Manifest::load(&opts.dir)?;
    for f in &manifest.files {
        verify(&opts.dir, f)?;
    }
    let stamp = now_us();
    let total = manifest.versions;
    let mut report = RestoreReport::default();
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for f in &manifest.files {
        let mut reader = DataReader::open(&opts.dir, &f.name)?;
        let mut in_file = 0u64;
        while let Some(mut v) = reader.next_version()? {
            in_file += 1;
            if opts.overwrite {
                v.timestamp = stamp.max(v.timestamp.saturating_add(1));
            }
            report.tombstones += u64::from(v.tombstone);
            batch_bytes += v.key.len() + v.value.len();
            batch.push(v);
            if batch.len() >= BATCH_VERSIONS || batch_bytes >= BATCH_BYTES {
                report.versions += send(client, &mut batch, opts.consistency).await?;
                batch_bytes = 0;
                progress(Progress::Versions {
                    done: report.versions,
                    total,
                });
            }
        }
        if in_file != f.versions {
            return Err(BackupError::corrupt(
                &opts.dir.join(&f.name),
                format!("{in_file} versions; the manifest says {}", f.versions),
            ));
        }
        report.files += 1;
    }
    if !batch.is_empty() {
        report.versions += send(client, &mut batch, opts.consistency).await?;
    }
    progress(Progress::Versions {
        done: report.versions,
        total,
    });
    Ok(report)
}
