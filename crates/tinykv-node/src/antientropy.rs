//! Anti-entropy: replicas compare hash digests of the ranges they share and
//! exchange only the versions of leaves that differ. Tombstones older than
//! the grace period are purged from a range only when every replica of it
//! answered with identical digests, so they all hold the tombstone and a
//! deleted value cannot come back from a replica that missed the delete,
//! and only once membership has converged (`convergence.rs`): before, the
//! node may not know every replica.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::ReplicaError;
use crate::hlc::wall_micros;
use crate::membership::Membership;
use crate::merkle::{digest_spans, purgeable, Leaf};
use crate::metrics::Metrics;
use crate::pages::Pages;
use crate::storage::{ScanLimit, StorageError, Store, WriteOp};
use crate::transfer::{Transfer, PAGE};
use crate::version::{Record, Versions};

/// Why a repair round stopped.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// This node's storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A peer call failed.
    #[error("peer {peer}: {error}")]
    Peer {
        /// The peer.
        peer: String,
        /// Why its call failed.
        error: ReplicaError,
    },
    /// A round is running and another admin request already waits for it
    /// (one round at a time: a round scans every range this node holds).
    #[error("a repair round is running and another is already queued on this node; try again when they end")]
    Busy,
}

/// What a repair round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Peers whose digests were compared.
    pub peers_compared: u32,
    /// Ranges compared, over all peers.
    pub ranges_compared: u64,
    /// Ranges whose digests differed.
    pub ranges_differing: u64,
    /// Versions sent to peers.
    pub keys_sent: u64,
    /// Versions received from peers.
    pub keys_received: u64,
    /// Bytes of versions moved both ways.
    pub bytes_moved: u64,
    /// Tombstones purged for good.
    pub tombstones_purged: u64,
}

/// Repair rounds of this node's ranges against their other replicas.
pub struct AntiEntropy {
    id: String,
    store: Store,
    membership: Arc<Membership>,
    transfer: Transfer,
    metrics: Arc<Metrics>,
    /// How long a tombstone is kept before it may be purged.
    tombstone_grace: Duration,
    /// Held while a round runs: one round at a time.
    running: tokio::sync::Mutex<()>,
    /// Held by the one admin request that may wait for the running round.
    queued: tokio::sync::Mutex<()>,
}

impl AntiEntropy {
    /// Rounds run by node `id` over `store`.
    pub fn new(
        id: &str,
        store: Store,
        membership: Arc<Membership>,
        transfer: Transfer,
        metrics: Arc<Metrics>,
        tombstone_grace: Duration,
    ) -> Self {
        AntiEntropy {
            id: id.to_string(),
            store,
            membership,
            transfer,
            metrics,
            tombstone_grace,
            running: tokio::sync::Mutex::new(()),
            queued: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs a round for an admin, after the running one (if any) ends. At
    /// most one admin request waits: another one meanwhile is refused with
    /// [`RepairError::Busy`], so requests cannot pile up rounds.
    pub async fn round_now(&self) -> Result<RepairReport, RepairError> {
        let running = {
            let _queued = self.queued.try_lock().map_err(|_| RepairError::Busy)?;
            self.running.lock().await
        };
        let report = self.run_round().await;
        drop(running);
        report
    }

    /// Runs a round once the one running (if any) has ended: the periodic
    /// loop and a removenode's re-replication.
    pub async fn round(&self) -> Result<RepairReport, RepairError> {
        let _running = self.running.lock().await;
        self.run_round().await
    }

    /// One anti-entropy round: with each peer, compare the digests of every
    /// range both replicate (one request) and sync the ranges that differ.
    /// A range's old tombstones are purged only when every other replica of
    /// it answered with an identical digest.
    #[tracing::instrument(level = "debug", name = "repair_round", skip(self))]
    async fn run_round(&self) -> Result<RepairReport, RepairError> {
        // One cutoff for the round, here and in the peers' digests: the
        // tombstones before it count as purged everywhere.
        let grace = u64::try_from(self.tombstone_grace.as_micros()).unwrap_or(u64::MAX);
        let purge_before = wall_micros().saturating_sub(grace);
        let ring = self.membership.read_ring();
        let mine: Vec<_> = ring.ranges_of(&self.id);
        let mut agree: HashMap<(u64, u64), bool> =
            mine.iter().map(|r| ((r.start, r.end), true)).collect();
        let mut report = RepairReport::default();
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
            let differing = match self
                .compare(&peer, &spans, purge_before, &mut report)
                .await?
            {
                Some(differing) => differing,
                None => spans,
            };
            for s in differing {
                agree.insert(s, false);
            }
        }
        // A table that has not converged may miss a replica that still
        // lacks the delete: no tombstone is purged until it has.
        if self.membership.convergence().is_converged() {
            for ((start, end), ok) in agree {
                if ok {
                    report.tombstones_purged +=
                        self.purge_tombstones(start, end, purge_before).await?;
                }
            }
        } else {
            tracing::info!("membership has not converged: tombstone purge deferred");
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

    /// Compares the digests of `spans` with `peer` and syncs those that
    /// differ; returns them, or `None` when the peer's digest failed (then
    /// none of them may be purged this round).
    async fn compare(
        &self,
        peer: &str,
        spans: &[(u64, u64)],
        purge_before: u64,
        report: &mut RepairReport,
    ) -> Result<Option<Vec<(u64, u64)>>, RepairError> {
        report.ranges_compared += spans.len() as u64;
        let theirs = match self.transfer.digest(peer, spans, purge_before).await {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(peer, %error, "anti-entropy: peer digest failed");
                return Ok(None);
            }
        };
        report.peers_compared += 1;
        let ours = self.local_digest(spans.to_vec(), purge_before).await?;
        let mut differing = Vec::new();
        for ((span, a), b) in spans.iter().zip(&ours).zip(&theirs) {
            if a == b {
                continue;
            }
            differing.push(*span);
            report.ranges_differing += 1;
            if let Err(e) = self.sync_leaf(peer, *span, purge_before, report).await {
                tracing::warn!(peer, error = %e, "anti-entropy: range sync failed");
            }
        }
        Ok(Some(differing))
    }

    async fn local_digest(
        &self,
        spans: Vec<(u64, u64)>,
        purge_before: u64,
    ) -> Result<Vec<Leaf>, StorageError> {
        let engine = self.store.engine().clone();
        tokio::task::spawn_blocking(move || digest_spans(engine.as_ref(), &spans, purge_before))
            .await
            .map_err(|e| StorageError::Engine(format!("digest task: {e}")))?
    }

    /// Brings one leaf in sync with one peer, both ways. A tombstone past
    /// the grace period (`purge_before`) is not sent to a side that has no
    /// version of its key: that side purged it (or never needed it), and
    /// sending it back would undo the purge every round.
    async fn sync_leaf(
        &self,
        peer: &str,
        (lo, hi): (u64, u64),
        purge_before: u64,
        report: &mut RepairReport,
    ) -> Result<(), RepairError> {
        let failed = |error| RepairError::Peer {
            peer: peer.to_string(),
            error,
        };
        let theirs: HashMap<Bytes, Record> = self
            .transfer
            .fetch_range(peer, lo, hi)
            .await
            .map_err(failed)?
            .into_iter()
            .collect();
        let ours = Pages::all(&self.store, lo, hi, PAGE).await?;
        let (to_send, to_apply) = differences(ours, theirs, purge_before);
        let (sent, received) = (to_send.len() as u64, to_apply.len() as u64);
        report.keys_sent += sent;
        report.keys_received += received;
        let sent_bytes = if to_send.is_empty() {
            0
        } else {
            self.transfer.push(peer, to_send).await.map_err(failed)?
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
            self.store.write(ops).await?;
        }
        report.bytes_moved += sent_bytes + recv_bytes;
        self.metrics.repair_keys.inc_by(sent + received);
        self.metrics.repair_bytes.inc_by(sent_bytes + recv_bytes);
        Ok(())
    }

    /// Purges tombstones written before `purge_before`, and values that
    /// expired before it (`merkle::purgeable`), in `(start, end]`, page by
    /// page (a range is never read into memory whole).
    async fn purge_tombstones(
        &self,
        start: u64,
        end: u64,
        purge_before: u64,
    ) -> Result<u64, StorageError> {
        let mut pages = Pages::new(start, end, ScanLimit::count(PAGE));
        let mut purged = 0;
        while let Some(page) = pages.next(&self.store).await? {
            let ops: Vec<WriteOp> = page
                .into_iter()
                .filter(|(_, rec)| purgeable(rec, purge_before))
                .map(|(key, record)| WriteOp::Purge { key, record })
                .collect();
            if !ops.is_empty() {
                let done = self.store.write(ops).await?;
                purged += done.iter().filter(|d| **d).count() as u64;
            }
        }
        Ok(purged)
    }
}

/// What one leaf's sync moves: our versions the peer lacks or has older
/// (to send), and its versions we lack or have older (to apply); purgeable
/// tombstones never go to a side without the key.
fn differences(
    ours: Vec<(Bytes, Record)>,
    theirs: HashMap<Bytes, Record>,
    purge_before: u64,
) -> (Versions, Versions) {
    let mut to_send = Vec::new();
    let mut to_apply = Vec::new();
    let mut ours_keys = HashSet::new();
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
    (to_send, to_apply)
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

    fn single_node() -> AntiEntropy {
        single_node_with(Convergence::settled())
    }

    /// [`single_node`] whose membership converges as `convergence` says.
    fn single_node_with(convergence: Convergence) -> AntiEntropy {
        let member = Member {
            id: "n1".into(),
            addr: "127.0.0.1:1".into(),
            state: MemberState::Normal,
            version: 1,
        };
        let membership =
            Arc::new(Membership::new("n1", vec![member], 1, 8).with_convergence(convergence));
        let peers = Arc::new(Peers::new("n1", None, 1 << 20));
        let directory = Directory::new(membership.clone(), peers, Arc::new(Faults::default()));
        AntiEntropy::new(
            "n1",
            Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::default()),
            membership,
            Transfer::new("n1", directory, 1 << 20),
            Arc::new(Metrics::new().expect("metrics")),
            Duration::from_secs(1),
        )
    }

    #[tokio::test]
    async fn one_admin_round_waits_for_the_running_one_and_a_second_is_refused() {
        let ae = single_node();
        let running = ae.running.lock().await;
        let first = ae.round_now();
        tokio::pin!(first);
        assert!(
            futures::poll!(&mut first).is_pending(),
            "an admin round waits for the running one"
        );
        assert!(matches!(ae.round_now().await, Err(RepairError::Busy)));
        let periodic = ae.round();
        tokio::pin!(periodic);
        assert!(futures::poll!(&mut periodic).is_pending());
        drop(running);
        assert!(first.await.is_ok());
        assert!(periodic.await.is_ok());
        assert!(ae.round_now().await.is_ok());
    }

    #[tokio::test]
    async fn tombstones_are_purged_only_once_membership_has_converged() {
        // Converges at its first check (the bound is zero): rounds before
        // it run unconverged.
        let ae = single_node_with(Convergence::pending(Start {
            bound: Duration::ZERO,
            discovery: true,
            table_known: true,
        }));
        let put = WriteOp::Put {
            key: Bytes::from_static(b"deleted"),
            record: Record::tombstone(1, "n1"),
        };
        ae.store.write(vec![put]).await.expect("write");
        let report = ae.round().await.expect("round");
        assert_eq!(report.tombstones_purged, 0, "not converged yet");
        assert!(ae.store.engine().get(b"deleted").expect("get").is_some());
        assert!(ae.membership.check_convergence());
        let report = ae.round().await.expect("round");
        assert_eq!(report.tombstones_purged, 1, "converged");
        assert!(ae.store.engine().get(b"deleted").expect("get").is_none());
    }
}
