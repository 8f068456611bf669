//! The node's answer to `Status`: members, their health and ownership,
//! this node's storage and its join or leave in progress.

use std::sync::Arc;

use tinykv_proto::tinykv as pb;

use crate::cleanup::Cleanup;
use crate::detector::{Detector, Health};
use crate::lifecycle::Lifecycle;
use crate::membership::Membership;
use crate::storage::Store;

/// What status reports about this node that never changes while it runs.
#[derive(Clone, Debug)]
pub struct Facts {
    /// This node's id.
    pub id: String,
    /// Virtual nodes per member.
    pub vnodes: u32,
    /// The durability policy as shown ("always", "periodic(100ms)").
    pub sync: String,
    /// The cluster name, or empty.
    pub cluster_name: String,
    /// `--max-clock-offset`: a member further off is shown as skewed.
    pub max_clock_offset: std::time::Duration,
}

/// Builds status reports from the subsystems' state.
pub struct NodeStatus {
    facts: Facts,
    membership: Arc<Membership>,
    detector: Arc<Detector>,
    store: crate::storage::Store,
    lifecycle: Arc<Lifecycle>,
    cleanup: Arc<Cleanup>,
}

impl NodeStatus {
    /// Reports on node `facts.id`.
    pub fn new(
        facts: Facts,
        membership: Arc<Membership>,
        detector: Arc<Detector>,
        store: Store,
        lifecycle: Arc<Lifecycle>,
        cleanup: Arc<Cleanup>,
    ) -> Self {
        NodeStatus {
            facts,
            membership,
            detector,
            store,
            lifecycle,
            cleanup,
        }
    }

    /// One member's row as this node sees it.
    fn member(&self, m: crate::membership::Member, ownership: (f64, f64)) -> pb::MemberStatus {
        let (health, phi, last_seen, since, offset_us) = if m.id == self.facts.id {
            ("up", 0.0, 0, 0, 0)
        } else {
            let h = self.detector.get(&m.id);
            let shown = match h.health {
                Health::Unknown => "unknown",
                other => other.as_str(),
            };
            let last = h.since_last.map(|d| d.as_millis() as u64).unwrap_or(0);
            (
                shown,
                h.phi,
                last,
                h.since_us as i64,
                h.offset_us.unwrap_or(0),
            )
        };
        let limit_us = i64::try_from(self.facts.max_clock_offset.as_micros()).unwrap_or(i64::MAX);
        pb::MemberStatus {
            node_id: m.id,
            address: m.addr,
            health: health.into(),
            state: m.state.to_string(),
            primary_ownership: ownership.0,
            replica_ownership: ownership.1,
            last_seen_ms_ago: last_seen,
            health_since_us: since,
            phi,
            clock_offset_ms: offset_us / 1000,
            clock_skewed: offset_us.unsigned_abs() > limit_us.unsigned_abs(),
        }
    }

    /// This node's view of the cluster.
    pub fn report(&self) -> pb::StatusResponse {
        let ring = self.membership.read_ring();
        let ownership = ring.ownership();
        let members = self
            .membership
            .members()
            .into_iter()
            .map(|m| {
                let own = ownership.get(&m.id).copied().unwrap_or((0.0, 0.0));
                self.member(m, own)
            })
            .collect();
        let stats = self.store.engine().hint_stats().unwrap_or_default();
        let own = self
            .membership
            .get(&self.facts.id)
            .map(|m| m.state.to_string())
            .unwrap_or_default();
        let p = self.lifecycle.progress();
        let cleanup = self.cleanup.progress();
        // A join or leave in progress is the operation shown; else a
        // running cleanup round.
        let (operation, progress) = if p.operation.is_empty() && cleanup.running {
            ("cleanup".to_string(), cleanup.fraction)
        } else {
            (p.operation.clone(), p.fraction())
        };
        pb::StatusResponse {
            node_id: self.facts.id.clone(),
            replication_factor: self.membership.replication_factor() as u32,
            vnodes: self.facts.vnodes,
            members,
            version: env!("CARGO_PKG_VERSION").into(),
            sync: self.facts.sync.clone(),
            local_keys: self.store.engine().key_count().unwrap_or(0),
            pending_hints: stats.count,
            state: own,
            operation_progress: progress,
            operation,
            cluster_name: self.facts.cluster_name.clone(),
            cleanup_pending: cleanup.pending,
            operation_reason: p.reason.clone().unwrap_or_default(),
        }
    }
}
