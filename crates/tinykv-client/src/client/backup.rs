//! The calls backup and restore make: the ring's ranges, one node's
//! versions of a range (a page at a time), and versions written as they
//! were.

use bytes::Bytes;
use tinykv_proto::tinykv as pb;

use super::Client;
use crate::{ClientError, Consistency};

impl Client {
    /// The ring's ranges and their replicas, as the first reachable
    /// endpoint sees them.
    pub async fn topology(&self) -> Result<pb::TopologyResponse, ClientError> {
        self.on_first_reachable(|ch| {
            let (mut kv, req) = (self.kv(ch), self.request(pb::TopologyRequest {}));
            async move { kv.topology(req).await }
        })
        .await
    }

    /// One page of the first endpoint's own versions in the token range
    /// `(start, end]`, after `after` (empty: from the start), with a
    /// timestamp above `since`.
    pub async fn scan_range(
        &self,
        (start, end): (u64, u64),
        after: Bytes,
        limit: u32,
        since: u64,
    ) -> Result<pb::ScanRangeResponse, ClientError> {
        let req = pb::ScanRangeRequest {
            start,
            end,
            after_key: after,
            limit,
            since,
        };
        Ok(self
            .admin()
            .scan_range(self.request(req))
            .await?
            .into_inner())
    }

    /// Writes `versions` as given (timestamps, writers, expiries,
    /// tombstones) through the first endpoint, each at `consistency`.
    pub async fn write_versions(
        &self,
        versions: Vec<pb::KeyVersion>,
        consistency: Consistency,
    ) -> Result<pb::WriteVersionsResponse, ClientError> {
        let (level, w) = consistency.to_wire();
        let req = pb::WriteVersionsRequest {
            versions,
            consistency: level as i32,
            w,
            timeout_ms: self.timeout_ms(),
        };
        let mut admin = self
            .admin()
            .max_encoding_message_size(crate::batch::MAX_MESSAGE);
        Ok(admin.write_versions(self.request(req)).await?.into_inner())
    }
}
