//! Leaving: a decommissioned node streams every version it holds to the
//! nodes that own it once this node is gone, then becomes `left`.

use std::collections::HashMap;

use bytes::Bytes;

use super::{Lifecycle, LifecycleError, StreamProgress, STREAM_PAGE};
use crate::membership::MemberState;
use crate::metrics::Backlog;
use crate::pages::{page_size, Pages};
use crate::ring::{key_token, Ring};
use crate::storage::ScanLimit;
use crate::version::Record;

impl Lifecycle {
    /// Streams every local version to the nodes that replicate it once this
    /// node is gone, retrying until it succeeds, then marks this node Left.
    pub(super) async fn stream_out(&self) {
        if self
            .retry("decommission streaming", move || self.stream_out_once())
            .await
            .is_none()
        {
            return;
        }
        self.parts.gossip.announce(MemberState::Left);
        self.write_member_marker(MemberState::Left);
        tracing::info!(id = %self.id, "decommission complete: node has left the ring");
        // Tell everyone at once rather than waiting for the next heartbeat.
        self.parts.gossip.round().await;
    }

    /// Streams every local version to its owners on the ring without this
    /// node, page by page (a page of [`STREAM_PAGE`] versions or
    /// [`crate::storage::SCAN_PAGE_BYTES`]), so a node of any size leaves
    /// without holding its data in memory.
    async fn stream_out_once(&self) -> Result<(), LifecycleError> {
        let keys_total = self.parts.store.engine().key_count()?;
        self.update(|p| {
            *p = StreamProgress {
                operation: "leaving".into(),
                keys_total,
                ..Default::default()
            }
        });
        let future: Vec<String> = self
            .parts
            .membership
            .members()
            .into_iter()
            .filter(|m| {
                m.id != self.id && matches!(m.state, MemberState::Normal | MemberState::Joining)
            })
            .map(|m| m.id)
            .collect();
        let ring = Ring::new(
            future,
            self.parts.membership.vnodes(),
            self.parts.membership.replication_factor(),
        );
        let total = Pages::bytes_in(&self.parts.store, 0, 0).await?;
        let mut backlog = Backlog::start(&self.parts.metrics.stream_pending_bytes, total);
        let mut pages = Pages::new(0, 0, ScanLimit::count(STREAM_PAGE));
        while let Some(page) = pages.next(&self.parts.store).await? {
            let page_bytes = page_size(&page);
            let mut by_dest: HashMap<String, Vec<(Bytes, Record)>> = HashMap::new();
            for (k, r) in &page {
                for dest in ring
                    .walk(key_token(k))
                    .into_iter()
                    .take(ring.replicas_per_key())
                {
                    by_dest
                        .entry(dest.to_string())
                        .or_default()
                        .push((k.clone(), r.clone()));
                }
            }
            for (dest, recs) in by_dest {
                self.parts
                    .transfer
                    .push(&dest, recs)
                    .await
                    .map_err(|error| LifecycleError::Peer { node: dest, error })?;
            }
            self.update(|p| p.keys_streamed += page.len() as u64);
            self.parts.metrics.repair_keys.inc_by(page.len() as u64);
            backlog.done(page_bytes);
        }
        backlog.finish();
        Ok(())
    }
}
