//! The admin calls of backup and restore: `ScanRange` pages through this
//! node's own versions of a token range, `WriteVersions` writes versions as
//! they were (timestamp, writer, expiry, tombstone) through the coordinator.

use std::sync::Arc;

use bytes::Bytes;
use tinykv_proto::tinykv as pb;
use tonic::{Request, Status};

use super::{check_key, deadline_at, header_timeout, replicas_needed, Rules};
use crate::clock::Clock;
use crate::coordinator::{Coordinator, WriteRequest};
use crate::storage::{ScanLimit, Store};
use crate::version::Record;

/// Most versions one `ScanRange` page returns.
pub const MAX_SCAN_PAGE: usize = 4096;
/// Most versions one `WriteVersions` call takes.
pub const MAX_WRITE_VERSIONS: usize = 1024;
/// Longest writer id accepted in a restored version.
const MAX_WRITER_BYTES: usize = 255;

/// What backup and restore use of the node.
pub struct BackupParts {
    /// Scanned by `ScanRange`.
    pub store: Store,
    /// Writes restored versions.
    pub coordinator: Arc<Coordinator>,
    /// Refuses restored timestamps too far ahead of this node's clock.
    pub clock: Arc<Clock>,
    /// Limits, default consistency and deadline.
    pub rules: Rules,
}

fn to_version(key: Bytes, r: Record) -> pb::KeyVersion {
    pb::KeyVersion {
        key,
        value: r.value,
        timestamp: r.timestamp,
        writer: r.writer,
        tombstone: r.tombstone,
        expires_at_us: r.expires_at,
    }
}

impl BackupParts {
    /// One page of this node's versions in `(start, end]`.
    pub async fn scan_range(
        &self,
        r: pb::ScanRangeRequest,
    ) -> Result<pb::ScanRangeResponse, Status> {
        if r.after_key.len() > crate::config::MAX_KEY_BYTES {
            return Err(Status::invalid_argument(
                "after_key is longer than a key may be",
            ));
        }
        // The page is cut at half the message limit: the version that
        // reaches the budget is its last, and one version is at most a
        // value of the largest size, so the answer stays within the limit.
        let limit = ScanLimit {
            count: (r.limit as usize).clamp(1, MAX_SCAN_PAGE),
            bytes: self.rules.message_limit / 2,
        };
        let engine = self.store.engine().clone();
        let after = (!r.after_key.is_empty()).then_some(r.after_key);
        let page = tokio::task::spawn_blocking(move || {
            engine.scan(r.start, r.end, after.as_deref(), limit)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("storage: {e}")))?;
        let more = limit.filled_by(&page);
        let last_key = page.last().map(|(k, _)| k.clone()).unwrap_or_default();
        let versions = page
            .into_iter()
            .filter(|(_, rec)| rec.timestamp > r.since)
            .map(|(k, rec)| to_version(k, rec))
            .collect();
        Ok(pb::ScanRangeResponse {
            versions,
            more,
            last_key,
        })
    }

    /// Checks one version to restore and makes its record.
    fn record_of(&self, v: pb::KeyVersion) -> Result<(Bytes, Record), Status> {
        check_key(&v.key)?;
        if v.value.len() > self.rules.max_value_bytes {
            return Err(Status::invalid_argument(format!(
                "value is {} bytes; the limit is {} bytes",
                v.value.len(),
                self.rules.max_value_bytes
            )));
        }
        if v.tombstone && !v.value.is_empty() {
            return Err(Status::invalid_argument("a tombstone carries no value"));
        }
        if v.timestamp == 0 || v.writer.is_empty() || v.writer.len() > MAX_WRITER_BYTES {
            return Err(Status::invalid_argument(
                "a version needs a timestamp and a writer id of 1 to 255 bytes",
            ));
        }
        self.clock
            .admit_client(v.timestamp)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let record = if v.tombstone {
            Record::tombstone(v.timestamp, v.writer)
        } else {
            Record::value(v.value, v.timestamp, v.writer).expiring(v.expires_at_us)
        };
        Ok((v.key, record))
    }

    /// Writes `req`'s versions as given, each at W.
    pub async fn write_versions(
        &self,
        req: Request<pb::WriteVersionsRequest>,
    ) -> Result<pb::WriteVersionsResponse, Status> {
        let header = header_timeout(&req);
        let r = req.into_inner();
        if r.versions.len() > MAX_WRITE_VERSIONS {
            return Err(Status::invalid_argument(format!(
                "{} versions in one call; the limit is {MAX_WRITE_VERSIONS}",
                r.versions.len()
            )));
        }
        let n = self.coordinator.replication_factor();
        let (w, _) = replicas_needed(self.rules.default_consistency, n, r.w, "w", r.consistency)?;
        let deadline = deadline_at(
            &self.rules,
            header,
            r.timeout_ms,
            tokio::time::Instant::now(),
        );
        let mut reqs = Vec::with_capacity(r.versions.len());
        for v in r.versions {
            let (key, record) = self.record_of(v)?;
            reqs.push(WriteRequest {
                key,
                record,
                w,
                strict: false,
                deadline,
            });
        }
        let outcomes = self.coordinator.coordinate_writes(reqs).await;
        let mut answer = pb::WriteVersionsResponse::default();
        for o in outcomes {
            match o {
                Ok(_) => answer.written += 1,
                Err(e) => {
                    if answer.failed == 0 {
                        answer.first_error = e.to_string();
                    }
                    answer.failed += 1;
                }
            }
        }
        Ok(answer)
    }
}
