//! Joining: a new member streams its future ranges from their current
//! replicas, then becomes normal.

use std::sync::Arc;
use std::time::Duration;

use super::{Lifecycle, LifecycleError, StreamProgress};
use crate::detector::Health;
use crate::membership::MemberState;
use crate::storage::WriteOp;

impl Lifecycle {
    /// Joins a running cluster: waits to hear from a peer, then streams this
    /// node's future ranges from their current replicas and becomes normal.
    /// Bootstraps as normal when no member is normal yet (a new cluster).
    pub(super) async fn join(self: Arc<Self>) {
        if !self.wait_to_hear_from_a_peer().await {
            return;
        }
        let me = &*self;
        match self.retry("join streaming", move || me.join_once()).await {
            None => return,
            Some(None) => {
                tracing::info!(id = %self.id, "no running cluster found: bootstrapping as normal")
            }
            Some(Some(keys)) => tracing::info!(id = %self.id, keys, "join streaming complete"),
        }
        self.parts.gossip.announce(MemberState::Normal);
        self.write_member_marker(MemberState::Normal);
        self.update(|p| {
            p.operation.clear();
            p.last_error = None;
        });
        self.parts.gossip.round().await;
        tracing::info!(id = %self.id, "joined: now a normal member");
    }

    /// One try at joining: streams this node's future ranges in (how many
    /// versions), or None when no member is normal yet (a new cluster).
    async fn join_once(&self) -> Result<Option<u64>, LifecycleError> {
        let normals = self
            .parts
            .membership
            .members()
            .iter()
            .filter(|m| m.id != self.id && m.state == MemberState::Normal)
            .count();
        if normals == 0 {
            return Ok(None);
        }
        self.stream_in().await.map(Some)
    }

    /// Waits up to 10 s to hear from any member (then decides anyway);
    /// false when the node shuts down first.
    async fn wait_to_hear_from_a_peer(&self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let heard =
                self.parts.membership.members().iter().any(|m| {
                    m.id != self.id && self.parts.detector.get(&m.id).health == Health::Up
                });
            if heard {
                return true;
            }
            tokio::select! {
                _ = self.parts.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        true
    }

    /// Pulls every version of this node's future ranges from the replicas
    /// that hold them now. Returns the keys received.
    async fn stream_in(&self) -> Result<u64, LifecycleError> {
        let future = self.parts.membership.future_ring();
        let current = self.parts.membership.read_ring();
        let ranges = future.ranges_of(&self.id);
        self.update(|p| {
            *p = StreamProgress {
                operation: "joining".into(),
                keys_total: ranges.len() as u64,
                ..Default::default()
            }
        });
        let mut received = 0u64;
        for r in ranges {
            // Each future range lies inside one current range (the future
            // ring only adds tokens), whose replicas all hold its data.
            let sources: Vec<String> = current
                .walk(r.end)
                .into_iter()
                .take(current.replicas_per_key())
                .filter(|s| *s != self.id)
                .map(String::from)
                .collect();
            received += self.pull_range(&sources, r.start, r.end).await?;
            self.update(|p| p.keys_streamed += 1);
        }
        self.parts.metrics.repair_keys.inc_by(received);
        Ok(received)
    }

    /// Pulls `(lo, hi]` from each of `sources`; fails unless a majority of
    /// them answered. Returns the versions received.
    async fn pull_range(
        &self,
        sources: &[String],
        lo: u64,
        hi: u64,
    ) -> Result<u64, LifecycleError> {
        let mut ok = 0;
        let mut received = 0;
        let mut errors = Vec::new();
        for src in sources {
            match self.parts.transfer.fetch_range(src, lo, hi).await {
                Ok(recs) => {
                    ok += 1;
                    received += recs.len() as u64;
                    if !recs.is_empty() {
                        let ops = recs
                            .into_iter()
                            .map(|(key, record)| WriteOp::Put { key, record })
                            .collect();
                        self.parts.store.write(ops).await?;
                    }
                }
                Err(e) => errors.push(format!("{src}: {e}")),
            }
        }
        // Every version acknowledged at QUORUM is on a majority of the
        // sources; pulling from a majority of them (by LWW) gets it.
        if ok < sources.len() / 2 + 1 {
            return Err(LifecycleError::TooFewSources {
                range: (lo, hi),
                errors: errors.join("; "),
            });
        }
        Ok(received)
    }
}
