//! Hinted handoff: keeping versions for an owner that is down (as its
//! fallback, or as the coordinator of a write its call missed), replaying
//! them once it answers heartbeats again, and dropping hints that are too
//! old or whose owner left (once membership has converged). A hint for an
//! owner this node does not know is kept: a node that restarted without
//! its member table learns the owner from gossip and then delivers it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tracing::Instrument;

use crate::detector::{Detector, Health};
use crate::error::ReplicaError;
use crate::hlc::wall_micros;
use crate::membership::{Membership, MAX_MEMBERS};
use crate::metrics::Metrics;
use crate::storage::{Hint, Store, WriteOp};
use crate::transfer::Transfer;
use crate::version::Record;

/// Hints sent to one owner per batch.
const BATCH: usize = 256;

/// The limits on stored hints.
#[derive(Clone, Copy, Debug)]
pub struct HintLimits {
    /// Most hints kept at once; more are dropped (anti-entropy repairs).
    pub max_hints: u64,
    /// Hints older than this are dropped instead of replayed.
    pub max_age: Duration,
}

/// This node's hints: where they are kept and how they are delivered.
pub struct Hints {
    store: Store,
    limits: HintLimits,
    membership: Arc<Membership>,
    detector: Arc<Detector>,
    transfer: Transfer,
    metrics: Arc<Metrics>,
    /// Owners not in the member table whose kept hints were logged.
    unknown: Mutex<HashSet<String>>,
}

impl Hints {
    /// Hints kept in `store`, delivered through `transfer` to members of
    /// `membership` that `detector` sees up.
    pub fn new(
        store: Store,
        limits: HintLimits,
        membership: Arc<Membership>,
        detector: Arc<Detector>,
        transfer: Transfer,
        metrics: Arc<Metrics>,
    ) -> Self {
        Hints {
            store,
            limits,
            membership,
            detector,
            transfer,
            metrics,
            unknown: Mutex::new(HashSet::new()),
        }
    }

    /// Keeps `versions` on this node as hints for `owner`, in one storage
    /// batch; none once the hint limit is reached.
    pub async fn keep(
        &self,
        owner: &str,
        versions: Vec<(Bytes, Record)>,
    ) -> Result<(), ReplicaError> {
        let stats = self.store.engine().hint_stats()?;
        if stats.count >= self.limits.max_hints {
            self.metrics.hints_dropped.inc();
            tracing::warn!(
                owner,
                hints = stats.count,
                "hint limit reached; dropping hint (anti-entropy will repair)"
            );
            return Err(ReplicaError::HintsFull);
        }
        let n = versions.len() as u64;
        let now = wall_micros();
        let ops = versions
            .into_iter()
            .map(|(key, record)| WriteOp::Hint {
                target: owner.to_string(),
                key,
                record,
                stored_at_us: now,
            })
            .collect();
        self.store.write(ops).await?;
        self.metrics.hints_stored.inc_by(n);
        Ok(())
    }

    /// Hints stored now.
    pub fn pending(&self) -> u64 {
        self.store
            .engine()
            .hint_stats()
            .map(|s| s.count)
            .unwrap_or_default()
    }

    /// One replay round over every owner that has hints.
    pub async fn replay_round(&self) {
        let stats = match self.store.engine().hint_stats() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading hint stats failed");
                return;
            }
        };
        self.metrics.hints_pending.set(stats.count as i64);
        for owner in stats.targets {
            let span = tracing::debug_span!("hint_replay", owner = %owner);
            if let Err(e) = self.replay_to(&owner).instrument(span).await {
                tracing::debug!(owner, error = %e, "hint replay stopped");
            }
        }
    }

    async fn replay_to(&self, owner: &str) -> Result<(), ReplicaError> {
        let max_age_us = u64::try_from(self.limits.max_age.as_micros()).unwrap_or(u64::MAX);
        loop {
            let hints = self.store.engine().hints(owner, BATCH)?;
            if hints.is_empty() {
                return Ok(());
            }
            let now = wall_micros();
            let member = self.membership.get(owner);
            // Only a member known to have left is gone; a table that has
            // not converged may hold a row gossip is about to replace.
            let gone = self.membership.convergence().is_converged()
                && member.as_ref().is_some_and(|m| !m.state.in_write_ring());
            let (expired, live): (Vec<_>, Vec<_>) = hints
                .into_iter()
                .partition(|h| gone || now.saturating_sub(h.stored_at_us) > max_age_us);
            if !expired.is_empty() {
                self.metrics.hints_dropped.inc_by(expired.len() as u64);
                tracing::warn!(
                    owner,
                    dropped = expired.len(),
                    "dropping expired hints (anti-entropy will repair)"
                );
                self.delete(owner, &expired).await?;
            }
            if live.is_empty() {
                continue;
            }
            if member.is_none() {
                self.unknown_owner(owner, live.len());
                return Ok(());
            }
            if self.detector.get(owner).health != Health::Up {
                return Ok(());
            }
            // The same batched push anti-entropy and streaming use.
            let records = live
                .iter()
                .map(|h| (h.key.clone(), h.record.clone()))
                .collect();
            self.transfer.push(owner, records).await?;
            self.metrics.hints_replayed.inc_by(live.len() as u64);
            tracing::info!(owner, delivered = live.len(), "hints delivered");
            self.delete(owner, &live).await?;
        }
    }

    /// Says (once per owner until it is known) that hints for `owner`
    /// are kept although no member of that id is known.
    fn unknown_owner(&self, owner: &str, hints: usize) {
        let Ok(mut logged) = self.unknown.lock() else {
            return;
        };
        logged.retain(|o| self.membership.get(o).is_none());
        if logged.len() < MAX_MEMBERS && logged.insert(owner.to_string()) {
            tracing::info!(
                owner,
                hints,
                "keeping hints for a node not in the member table: they are delivered once gossip brings it"
            );
        }
    }

    /// Deletes delivered or expired hints.
    async fn delete(&self, owner: &str, hints: &[Hint]) -> Result<(), ReplicaError> {
        self.store
            .write(vec![WriteOp::DeleteHints {
                target: owner.to_string(),
                ids: hints.iter().map(|h| h.id).collect(),
            }])
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convergence::{Convergence, Start};
    use crate::directory::Directory;
    use crate::faults::Faults;
    use crate::membership::{Member, MemberState};
    use crate::peers::Peers;
    use crate::storage::{MemoryEngine, SyncPolicy};

    const MAX_AGE: Duration = Duration::from_secs(60);

    fn member(id: &str, state: MemberState) -> Member {
        Member {
            id: id.into(),
            addr: "127.0.0.1:1".into(),
            state,
            version: 1,
        }
    }

    /// Node n1's hints; n2 is a normal member that is down (never heard
    /// from), n3 has left the cluster, n4 is not in its table.
    fn n1() -> (Hints, Store, Arc<Metrics>) {
        n1_with(Convergence::settled())
    }

    /// [`n1`] whose membership converges as `convergence` says.
    fn n1_with(convergence: Convergence) -> (Hints, Store, Arc<Metrics>) {
        let members = vec![
            member("n1", MemberState::Normal),
            member("n2", MemberState::Normal),
            member("n3", MemberState::Left),
        ];
        let membership =
            Arc::new(Membership::new("n1", members, 1, 8).with_convergence(convergence));
        let peers = Arc::new(Peers::new("n1", None, 1 << 20));
        let directory = Directory::new(membership.clone(), peers, Arc::new(Faults::default()));
        let store = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::default());
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let limits = HintLimits {
            max_hints: 1000,
            max_age: MAX_AGE,
        };
        let hints = Hints::new(
            store.clone(),
            limits,
            membership,
            Arc::new(Detector::new(8.0, Duration::from_secs(1))),
            Transfer::new("n1", directory, 1 << 20),
            metrics.clone(),
        );
        (hints, store, metrics)
    }

    /// Stores a hint for `owner`, kept `age` ago.
    async fn hint(store: &Store, owner: &str, key: &'static str, age: Duration) {
        let record = Record::value(Bytes::from_static(b"v"), 1, "n1");
        let stored_at_us = wall_micros() - age.as_micros() as u64;
        let op = WriteOp::Hint {
            target: owner.into(),
            key: Bytes::from_static(key.as_bytes()),
            record,
            stored_at_us,
        };
        store.write(vec![op]).await.expect("hint");
    }

    fn targets(store: &Store) -> Vec<String> {
        let mut t = store.engine().hint_stats().expect("stats").targets;
        t.sort();
        t
    }

    #[tokio::test]
    async fn old_hints_and_hints_for_departed_nodes_are_dropped_and_counted() {
        let (hints, store, metrics) = n1();
        hint(&store, "n2", "fresh", Duration::ZERO).await;
        hint(&store, "n2", "old", MAX_AGE * 2).await;
        hint(&store, "n3", "for-a-node-that-left", Duration::ZERO).await;
        assert_eq!(hints.pending(), 3);

        hints.replay_round().await;

        // The fresh hint for n2 waits for n2 to come back; the rest is gone.
        assert_eq!(hints.pending(), 1);
        assert_eq!(targets(&store), vec!["n2".to_string()]);
        let kept = store.engine().hints("n2", 10).expect("hints");
        assert_eq!(kept.len(), 1);
        assert_eq!(&kept[0].key[..], b"fresh");
        assert_eq!(metrics.hints_dropped.get(), 2);
        assert_eq!(metrics.hints_replayed.get(), 0);
    }

    /// A node restarted without its member table does not know the owners
    /// of its hints yet: dropping them would lose the writes for good.
    #[tokio::test]
    async fn hints_for_a_node_not_in_the_table_are_kept() {
        let (hints, store, metrics) = n1();
        hint(&store, "n4", "for-a-stranger", Duration::ZERO).await;
        hint(&store, "n4", "old-for-a-stranger", MAX_AGE * 2).await;
        for _ in 0..3 {
            hints.replay_round().await;
        }
        assert_eq!(targets(&store), vec!["n4".to_string()]);
        let kept = store.engine().hints("n4", 10).expect("hints");
        assert_eq!(kept.len(), 1, "only the one past --max-hint-age goes");
        assert_eq!(&kept[0].key[..], b"for-a-stranger");
        assert_eq!(metrics.hints_dropped.get(), 1);
    }

    /// Before convergence a row saying a member left may be stale: its
    /// hints wait until membership has converged.
    #[tokio::test]
    async fn hints_for_a_departed_node_wait_for_convergence() {
        let (hints, store, metrics) = n1_with(Convergence::pending(Start {
            bound: Duration::from_secs(3600),
            discovery: false,
            table_known: true,
        }));
        hint(&store, "n3", "for-a-node-that-left", Duration::ZERO).await;
        hints.replay_round().await;
        assert_eq!(hints.pending(), 1, "kept before convergence");
        hints.membership.convergence().heard("n2");
        assert!(hints.membership.check_convergence());
        hints.replay_round().await;
        assert_eq!(hints.pending(), 0, "dropped after");
        assert_eq!(metrics.hints_dropped.get(), 1);
    }
}
