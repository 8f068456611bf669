//! Bulk transfers between nodes, as anti-entropy, hint replay and
//! streaming use them: fetching a peer's versions of a token range page by
//! page, pushing versions in messages cut below the peer's limit, and
//! asking a peer for the digests of ranges.

use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::internal as pb;

use crate::directory::Directory;
use crate::error::ReplicaError;
use crate::merkle::Leaf;
use crate::storage::page_bytes;
use crate::version::{keyed, Record};

/// Spans digested per request.
const SPANS_PER_REQUEST: usize = 4096;
/// Records per fetched or pushed page.
pub const PAGE: usize = 1024;
/// Deadline of one transfer RPC.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Moves versions between this node and its peers.
#[derive(Clone)]
pub struct Transfer {
    id: String,
    directory: Directory,
    /// Bytes of versions per pushed message (the client message limit, half
    /// a peer message).
    message_limit: usize,
}

impl Transfer {
    /// Transfers as node `id`, pushing at most `message_limit` bytes of
    /// versions per message.
    pub fn new(id: &str, directory: Directory, message_limit: usize) -> Self {
        Transfer {
            id: id.to_string(),
            directory,
            message_limit,
        }
    }

    /// Every version peer `peer` holds in `(lo, hi]`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn fetch_range(
        &self,
        peer: &str,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<(Bytes, Record)>, ReplicaError> {
        let mut client = self.directory.client(peer)?;
        let mut out = Vec::new();
        let mut after = Bytes::new();
        loop {
            let mut req = tonic::Request::new(pb::FetchRangeRequest {
                start: lo,
                end: hi,
                after_key: after.clone(),
                limit: PAGE as u32,
            });
            req.set_timeout(RPC_TIMEOUT);
            let page = client
                .fetch_range(req)
                .await
                .map_err(|s| ReplicaError::from_status(&s))?
                .into_inner();
            for kr in page.records {
                if let Some(r) = kr.record {
                    after = kr.key.clone();
                    out.push((kr.key, Record::from(r)));
                }
            }
            if !page.more {
                return Ok(out);
            }
        }
    }

    /// Sends versions to peer `peer` in messages cut by count and bytes;
    /// returns the bytes sent.
    #[tracing::instrument(level = "debug", skip(self, records), fields(versions = records.len()))]
    pub async fn push(
        &self,
        peer: &str,
        records: Vec<(Bytes, Record)>,
    ) -> Result<u64, ReplicaError> {
        let mut client = self.directory.client(peer)?;
        let mut bytes = 0u64;
        for chunk in chunks_by_size(&records, PAGE, self.message_limit) {
            bytes += chunk
                .iter()
                .map(|(k, r)| page_bytes(k, r) as u64)
                .sum::<u64>();
            let mut req = tonic::Request::new(pb::ReplicaWriteBatch {
                records: chunk.iter().map(|(k, r)| keyed(k, r)).collect(),
                from: self.id.clone(),
            });
            req.set_timeout(RPC_TIMEOUT);
            client
                .write_batch(req)
                .await
                .map_err(|s| ReplicaError::from_status(&s))?;
        }
        Ok(bytes)
    }

    /// Peer `peer`'s digest of each span, purging (for the digest) the
    /// tombstones written before `purge_before`.
    pub async fn digest(
        &self,
        peer: &str,
        spans: &[(u64, u64)],
        purge_before: u64,
    ) -> Result<Vec<Leaf>, ReplicaError> {
        let mut client = self.directory.client(peer)?;
        let mut out = Vec::with_capacity(spans.len());
        for chunk in spans.chunks(SPANS_PER_REQUEST) {
            let mut req = tonic::Request::new(pb::RangeDigestRequest {
                spans: chunk
                    .iter()
                    .map(|&(start, end)| pb::TokenSpan { start, end })
                    .collect(),
                purge_before,
            });
            req.set_timeout(RPC_TIMEOUT);
            let d = client
                .range_digest(req)
                .await
                .map_err(|s| ReplicaError::from_status(&s))?
                .into_inner();
            if d.leaf_hashes.len() != chunk.len() || d.leaf_counts.len() != chunk.len() {
                return Err(ReplicaError::Malformed("digest of the wrong length".into()));
            }
            out.extend(d.leaf_hashes.iter().zip(d.leaf_counts).map(|(h, count)| {
                let mut b = [0u8; 8];
                let n = h.len().min(8);
                b[..n].copy_from_slice(&h[..n]);
                Leaf {
                    hash: u64::from_be_bytes(b),
                    count,
                }
            }));
        }
        Ok(out)
    }
}

/// `records` cut into consecutive chunks of at most `max_len` versions and
/// `max_bytes` (keys and versions, roughly as encoded); a version larger
/// than `max_bytes` is a chunk of its own. Each chunk is one message to a
/// peer, which refuses messages past its limit.
fn chunks_by_size(
    records: &[(Bytes, Record)],
    max_len: usize,
    max_bytes: usize,
) -> Vec<&[(Bytes, Record)]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (k, r)) in records.iter().enumerate() {
        let size = page_bytes(k, r);
        if i > start && (i - start == max_len || bytes + size > max_bytes) {
            chunks.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_by_count_and_bytes_and_keep_every_version_in_order() {
        let rec = |n: usize| (Bytes::from("k"), Record::value(vec![0u8; n].into(), 1, "w"));
        // approx size: 1 (key) + n + 1 (writer) + 16.
        let records: Vec<_> = [10, 10, 10, 500, 10, 1000, 10, 10, 10, 10]
            .into_iter()
            .map(rec)
            .collect();
        let chunks = chunks_by_size(&records, 3, 600);
        let lens: Vec<Vec<usize>> = chunks
            .iter()
            .map(|c| c.iter().map(|(_, r)| r.value.len()).collect())
            .collect();
        assert_eq!(
            lens,
            vec![
                vec![10, 10, 10],
                vec![500, 10],
                vec![1000],
                vec![10, 10, 10],
                vec![10]
            ]
        );
        assert!(chunks_by_size(&[], 3, 600).is_empty());
    }
}
