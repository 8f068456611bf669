//! Joining: a new member streams its future ranges from their current
//! replicas, then becomes normal.

use std::sync::Arc;
use std::time::Duration;

use super::{Lifecycle, LifecycleError, StreamProgress};
use crate::membership::MemberState;
use crate::storage::WriteOp;

/// How often a `--join` node that hears from no peer says so again.
const WAIT_LOG_EVERY: Duration = Duration::from_secs(5);

impl Lifecycle {
    /// Joins a running cluster: waits to hear from a peer, then streams this
    /// node's future ranges from their current replicas and becomes normal.
    /// Bootstraps as normal when the peers that answered are all new (a
    /// cluster forming) or, with `--bootstrap`, when none answered.
    pub(super) async fn join(self: Arc<Self>) {
        let Some(heard) = self.wait_to_hear_from_a_peer().await else {
            return;
        };
        // A `--join` node on a wiped or replaced disk: say so (the join
        // path is the repair either way).
        if let Some(claim) = self.parts.gossip.claims().claim() {
            let reason = super::identify::lost_data_reason(&self.id, &claim);
            if self.progress().reason.as_deref() != Some(reason.as_str()) {
                tracing::warn!(id = %self.id, "{reason}");
                self.update(|p| p.reason = Some(reason));
            }
        }
        let me = &*self;
        if heard {
            match self.retry("join streaming", move || me.join_once()).await {
                None => return,
                Some(None) => {
                    tracing::info!(id = %self.id, "no running cluster found: bootstrapping as normal")
                }
                Some(Some(keys)) => tracing::info!(id = %self.id, keys, "join streaming complete"),
            }
        }
        self.parts.gossip.announce(MemberState::Normal);
        self.write_member_marker(MemberState::Normal);
        self.update(|p| {
            p.operation.clear();
            p.last_error = None;
            p.reason = None;
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

    /// Waits to hear from any member: a node that hears from nobody cannot
    /// tell whether the cluster exists, and bootstrapping alone would split
    /// it. Says which peers it waits for, in the log every
    /// [`WAIT_LOG_EVERY`] and in status; with `--bootstrap` it stops
    /// waiting after `wait_bound`. Whether a peer answered (false: the
    /// node bootstraps alone); None when the node shuts down first.
    async fn wait_to_hear_from_a_peer(&self) -> Option<bool> {
        let start = tokio::time::Instant::now();
        let mut next_log = start + Duration::from_secs(1);
        let mut waited = false;
        while !self.heard_a_peer() {
            let now = tokio::time::Instant::now();
            if self.parts.bootstrap && now - start >= self.parts.wait_bound {
                tracing::info!(id = %self.id, bound = ?self.parts.wait_bound, "--bootstrap: no peer answered; starting a new cluster");
                if waited {
                    self.update(|p| p.reason = None);
                }
                return Some(false);
            }
            if now >= next_log {
                let reason = self.waiting_reason();
                tracing::warn!(id = %self.id, "{reason}");
                self.update(|p| {
                    p.operation = "joining".into();
                    p.reason = Some(reason);
                });
                next_log = now + WAIT_LOG_EVERY;
                waited = true;
            }
            tokio::select! {
                _ = self.parts.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        if waited {
            tracing::info!(id = %self.id, "a peer answered: joining");
            self.update(|p| p.reason = None);
        }
        Some(true)
    }

    /// Why a `--join` node waits, naming the peers it waits for.
    fn waiting_reason(&self) -> String {
        let mut peers: Vec<String> = self
            .parts
            .membership
            .members()
            .into_iter()
            .filter(|m| {
                m.id != self.id && !matches!(m.state, MemberState::Left | MemberState::Removed)
            })
            .map(|m| format!("{} ({})", m.id, m.addr))
            .collect();
        if let Some(name) = self.parts.gossip.peers_dns() {
            peers.push(format!("the addresses behind --peers-dns {name}"));
        }
        let peers = if peers.is_empty() {
            "none configured".to_string()
        } else {
            peers.join(", ")
        };
        format!("waiting for peers to answer before joining (--join; no peer has answered, so this node cannot tell whether the cluster exists): {peers}; start them, or pass --bootstrap to start a new cluster")
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
                reason: p.reason.take(),
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
