//! Changing a key's expiry (`expire`, `persist`): a read at the request's
//! consistency, then a new version carrying the value read and the new
//! expiry, written at the request's consistency. LWW makes it a plain
//! write: a put racing with it wins if it is newer, as with any two puts.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::{Coordinator, ReadOutcome, ReadRequest, RequestError, WriteRequest};
use crate::version::{Expiry, KeyTtl, Record};

/// One expiry change to coordinate.
#[derive(Clone, Debug)]
pub struct ExpireRequest {
    /// The key.
    pub key: Bytes,
    /// The new expiry: [`Expiry::Never`] removes it (persist).
    pub expiry: Expiry,
    /// Answers needed for the read (R).
    pub r: usize,
    /// Acks needed for the write (W).
    pub w: usize,
    /// Count only the key's own replicas toward W.
    pub strict: bool,
    /// When the request fails if it has not finished.
    pub deadline: Instant,
    /// The coordinator's node id (the new version's writer).
    pub writer: String,
    /// The new version's timestamp, from the coordinator's clock; also the
    /// instant the read value must be live at.
    pub stamp: u64,
}

/// How an expiry change ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpireOutcome {
    /// No live value (missing, deleted or expired): nothing was written.
    NotFound,
    /// The new version was written with `acks` acknowledgements.
    Written {
        /// The version written.
        record: Record,
        /// Acknowledgements received (as for a put).
        acks: usize,
    },
}

impl ReadOutcome {
    /// The winner if it is a value live at `now` (HLC µs).
    pub fn live(&self, now: u64) -> Option<&Record> {
        self.winner.as_ref().filter(|w| w.is_live(now))
    }

    /// The key's time to live at `now`, as this read saw it.
    pub fn ttl(&self, now: u64) -> KeyTtl {
        self.winner.as_ref().map_or(KeyTtl::Missing, |w| w.ttl(now))
    }
}

/// The version an expiry change writes over `old`: its value and the new
/// expiry, stamped `stamp` or just after `old` if that is not older (a
/// client may have stamped `old` ahead of this node's clock).
pub fn with_new_expiry(old: &Record, expiry: Expiry, stamp: u64, writer: &str) -> Record {
    let ts = stamp.max(old.timestamp.saturating_add(1));
    Record::value(old.value.clone(), ts, writer).expiring(expiry.resolve(ts))
}

impl Coordinator {
    /// Reads `req.key` at R and, if it holds a live value, writes the value
    /// again with the new expiry at W.
    #[tracing::instrument(level = "debug", name = "coordinate_expire", skip_all)]
    pub async fn expire(
        self: &Arc<Self>,
        req: ExpireRequest,
    ) -> Result<ExpireOutcome, RequestError> {
        let read = ReadRequest {
            key: req.key.clone(),
            r: req.r,
            deadline: req.deadline,
        };
        let outcome = self
            .coordinate_reads(vec![read])
            .await
            .pop()
            .unwrap_or_else(|| Err(RequestError::Unavailable("read was not coordinated".into())))?;
        let Some(old) = outcome.live(req.stamp) else {
            return Ok(ExpireOutcome::NotFound);
        };
        let record = with_new_expiry(old, req.expiry, req.stamp, &req.writer);
        let write = WriteRequest {
            key: req.key,
            record: record.clone(),
            w: req.w,
            strict: req.strict,
            deadline: req.deadline,
        };
        let written = self
            .coordinate_writes(vec![write])
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(RequestError::Unavailable(
                    "write was not coordinated".into(),
                ))
            })?;
        Ok(ExpireOutcome::Written {
            record,
            acks: written.acks,
        })
    }
}
