//! Anti-entropy: replicas compare hash digests of the ranges they share and
//! exchange only the versions of leaves that differ. Tombstones older than
//! the grace period are purged from a range only when every replica of it
//! answered with identical digests, so they all hold the tombstone and a
//! deleted value cannot come back from a replica that missed the delete.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::internal as pb;
use tinykv_proto::tinykv::RepairResponse;

use crate::hlc::wall_micros;
use crate::merkle::{digest_spans, purgeable, Leaf};
use crate::node::Node;
use crate::pages::Pages;
use crate::peers::describe;
use crate::storage::{page_bytes, ScanLimit, WriteOp};
use crate::version::{keyed, Record};

/// Spans digested per request.
const SPANS_PER_REQUEST: usize = 4096;
/// Records per fetched page.
const PAGE: u32 = 1024;
/// Deadline of one anti-entropy RPC.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

impl Node {
    fn peer(&self, id: &str) -> Result<crate::peers::PeerConn, String> {
        let addr = self.peer_address(id)?;
        self.peers.client(&addr)
    }

    /// Every version a peer holds in `(lo, hi]`.
    pub(crate) async fn fetch_all(
        &self,
        peer: &str,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<(Bytes, Record)>, String> {
        let mut client = self.peer(peer)?;
        let mut out = Vec::new();
        let mut after = Bytes::new();
        loop {
            let mut req = tonic::Request::new(pb::FetchRangeRequest {
                start: lo,
                end: hi,
                after_key: after.clone(),
                limit: PAGE,
            });
            req.set_timeout(RPC_TIMEOUT);
            let page = client
                .fetch_range(req)
                .await
                .map_err(|s| describe(&s))?
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

    /// Sends versions to a peer in batches.
    pub(crate) async fn push_all(
        &self,
        peer: &str,
        records: Vec<(Bytes, Record)>,
    ) -> Result<u64, String> {
        let mut client = self.peer(peer)?;
        let mut bytes = 0u64;
        let limit = self.config.message_limit();
        for chunk in chunks_by_size(&records, PAGE as usize, limit) {
            bytes += chunk
                .iter()
                .map(|(k, r)| page_bytes(k, r) as u64)
                .sum::<u64>();
            let mut req = tonic::Request::new(pb::ReplicaWriteBatch {
                records: chunk.iter().map(|(k, r)| keyed(k, r)).collect(),
                from: self.id.clone(),
            });
            req.set_timeout(RPC_TIMEOUT);
            client.write_batch(req).await.map_err(|s| describe(&s))?;
        }
        Ok(bytes)
    }

    /// Every local version in `(lo, hi]`.
    pub(crate) async fn scan_all(
        self: &Arc<Self>,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<(Bytes, Record)>, String> {
        let mut pages = Pages::new(lo, hi, ScanLimit::count(PAGE as usize));
        let mut out = Vec::new();
        while let Some(page) = pages.next(self).await? {
            out.extend(page);
        }
        Ok(out)
    }

    async fn local_digest(
        self: &Arc<Self>,
        spans: Vec<(u64, u64)>,
        purge_before: u64,
    ) -> Result<Vec<Leaf>, String> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            digest_spans(node.store.engine().as_ref(), &spans, purge_before)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    async fn remote_digest(
        &self,
        peer: &str,
        spans: &[(u64, u64)],
        purge_before: u64,
    ) -> Result<Vec<Leaf>, String> {
        let mut client = self.peer(peer)?;
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
                .map_err(|s| describe(&s))?
                .into_inner();
            if d.leaf_hashes.len() != chunk.len() || d.leaf_counts.len() != chunk.len() {
                return Err("malformed digest".into());
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

    /// Brings one leaf in sync with one peer, both ways. A tombstone past
    /// the grace period (`purge_before`) is not sent to a side that has no
    /// version of its key: that side purged it (or never needed it), and
    /// sending it back would undo the purge every round.
    async fn sync_leaf(
        self: &Arc<Self>,
        peer: &str,
        (lo, hi): (u64, u64),
        purge_before: u64,
        report: &mut RepairResponse,
    ) -> Result<(), String> {
        let theirs: HashMap<Bytes, Record> =
            self.fetch_all(peer, lo, hi).await?.into_iter().collect();
        let ours = self.scan_all(lo, hi).await?;
        let mut to_send = Vec::new();
        let mut to_apply = Vec::new();
        let mut ours_keys = std::collections::HashSet::new();
        for (k, r) in ours {
            match theirs.get(&k) {
                Some(t) if !r.supersedes(t) => {
                    if t.supersedes(&r) {
                        to_apply.push((k.clone(), t.clone()));
                    }
                }
                None if purgeable(&r, purge_before) => {}
                _ => to_send.push((k.clone(), r)),
            }
            ours_keys.insert(k);
        }
        for (k, t) in theirs {
            if !ours_keys.contains(&k) && !purgeable(&t, purge_before) {
                to_apply.push((k, t));
            }
        }
        let (sent, received) = (to_send.len() as u64, to_apply.len() as u64);
        report.keys_sent += sent;
        report.keys_received += received;
        let sent_bytes = if to_send.is_empty() {
            0
        } else {
            self.push_all(peer, to_send).await?
        };
        let recv_bytes: u64 = to_apply
            .iter()
            .map(|(k, r)| (k.len() + r.approx_size()) as u64)
            .sum();
        if !to_apply.is_empty() {
            let ops = to_apply
                .into_iter()
                .map(|(key, record)| WriteOp::Put { key, record })
                .collect();
            self.store.write(ops).await.map_err(|e| e.to_string())?;
        }
        report.bytes_moved += sent_bytes + recv_bytes;
        self.metrics.repair_keys.inc_by(sent + received);
        self.metrics.repair_bytes.inc_by(sent_bytes + recv_bytes);
        Ok(())
    }

    /// Purges tombstones written before `purge_before` in `(start, end]`,
    /// page by page (a range is never read into memory whole).
    async fn purge_tombstones(
        self: &Arc<Self>,
        start: u64,
        end: u64,
        purge_before: u64,
    ) -> Result<u64, String> {
        let mut pages = Pages::new(start, end, ScanLimit::count(PAGE as usize));
        let mut purged = 0;
        while let Some(page) = pages.next(self).await? {
            let ops: Vec<WriteOp> = page
                .into_iter()
                .filter(|(_, rec)| purgeable(rec, purge_before))
                .map(|(key, record)| WriteOp::Purge { key, record })
                .collect();
            if !ops.is_empty() {
                let done = self.store.write(ops).await.map_err(|e| e.to_string())?;
                purged += done.iter().filter(|d| **d).count() as u64;
            }
        }
        Ok(purged)
    }

    /// One anti-entropy round: with each peer, compare the digests of every
    /// range both replicate (one request) and sync the ranges that differ.
    /// A range's old tombstones are purged only when every other replica of
    /// it answered with an identical digest.
    pub async fn anti_entropy_round(self: &Arc<Self>) -> Result<RepairResponse, String> {
        // One cutoff for the round, here and in the peers' digests: the
        // tombstones before it count as purged everywhere.
        let grace = u64::try_from(self.config.tombstone_grace.as_micros()).unwrap_or(u64::MAX);
        let purge_before = wall_micros().saturating_sub(grace);
        let ring = self.membership.read_ring();
        let mine: Vec<_> = ring.ranges_of(&self.id);
        let mut agree: HashMap<(u64, u64), bool> =
            mine.iter().map(|r| ((r.start, r.end), true)).collect();
        let mut report = RepairResponse::default();
        let peers: Vec<String> = ring
            .nodes()
            .iter()
            .filter(|n| **n != self.id)
            .cloned()
            .collect();
        for peer in peers {
            let spans: Vec<(u64, u64)> = mine
                .iter()
                .filter(|r| r.replicas.contains(&peer))
                .map(|r| (r.start, r.end))
                .collect();
            if spans.is_empty() {
                continue;
            }
            report.ranges_compared += spans.len() as u64;
            let theirs = match self.remote_digest(&peer, &spans, purge_before).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(peer, error = %e, "anti-entropy: peer digest failed");
                    for s in &spans {
                        agree.insert(*s, false);
                    }
                    continue;
                }
            };
            report.peers_compared += 1;
            let ours = self.local_digest(spans.clone(), purge_before).await?;
            for ((span, a), b) in spans.iter().zip(&ours).zip(&theirs) {
                if a == b {
                    continue;
                }
                agree.insert(*span, false);
                report.ranges_differing += 1;
                if let Err(e) = self
                    .sync_leaf(&peer, *span, purge_before, &mut report)
                    .await
                {
                    tracing::warn!(peer, error = %e, "anti-entropy: range sync failed");
                }
            }
        }
        for ((start, end), ok) in agree {
            if ok {
                report.tombstones_purged += self.purge_tombstones(start, end, purge_before).await?;
            }
        }
        if report.keys_sent + report.keys_received > 0 {
            tracing::info!(
                sent = report.keys_sent,
                received = report.keys_received,
                differing = report.ranges_differing,
                "anti-entropy round moved data"
            );
        }
        Ok(report)
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
