//! Where a key's copies go: its replicas for reads and writes (both rings
//! while a join or leave is under way), the order reads ask them in, and
//! the sloppy-quorum fallbacks that stand in for replicas that are down.
//! One place next to membership, so the coordinator only asks.

use std::sync::Arc;

use crate::detector::Detector;
use crate::membership::{Membership, WriteTargets};
use crate::ring::key_token;

/// Placement of keys on the current member table and peer health.
pub struct Placement {
    id: String,
    membership: Arc<Membership>,
    detector: Arc<Detector>,
}

impl Placement {
    /// Placement as seen from node `id`.
    pub fn new(id: &str, membership: Arc<Membership>, detector: Arc<Detector>) -> Self {
        Placement {
            id: id.to_string(),
            membership,
            detector,
        }
    }

    /// This node's id.
    pub fn self_id(&self) -> &str {
        &self.id
    }

    /// The configured replication factor (N).
    pub fn replication_factor(&self) -> usize {
        self.membership.replication_factor()
    }

    /// Replicas a key has on the read ring now (N, or fewer while the ring
    /// has fewer members).
    pub fn replicas_per_key(&self) -> usize {
        self.membership.read_ring().replicas_per_key()
    }

    /// The nodes a write of `key` goes to: its replicas in the read ring,
    /// then those of the future ring not among them; and the two replica
    /// sets its acks count in while its range moves.
    pub fn write_targets(&self, key: &[u8]) -> WriteTargets {
        self.membership.write_targets(key)
    }

    /// The replicas a read of `key` asks, in the order to ask them: this
    /// node first, nodes known down last.
    pub fn read_order(&self, key: &[u8]) -> Vec<String> {
        let mut order: Vec<String> = self
            .membership
            .read_ring()
            .preference_list(key)
            .into_iter()
            .map(String::from)
            .collect();
        order.sort_by_key(|n| (*n != self.id, self.detector.is_down(n)));
        order
    }

    /// Whether this node may take a write that one copy acknowledges,
    /// for a key whose write targets are `targets`: not before membership
    /// has converged unless it owns the key (the error says why).
    pub fn may_ack_alone(&self, targets: &[String]) -> Result<(), String> {
        self.membership
            .convergence()
            .may_ack_alone(&self.id, targets)
    }

    /// True when `node` is known down.
    pub fn is_down(&self, node: &str) -> bool {
        self.detector.is_down(node)
    }

    /// The candidates to stand in for `key`'s replicas: the nodes after it
    /// clockwise on the future ring, in order (filter with [`Fallbacks`]).
    pub fn fallbacks(&self, key: &[u8]) -> Fallbacks {
        let walk: Vec<String> = self
            .membership
            .future_ring()
            .walk(key_token(key))
            .into_iter()
            .map(String::from)
            .collect();
        Fallbacks {
            walk: walk.into_iter(),
        }
    }
}

/// The fallbacks of one key not used yet, clockwise.
pub struct Fallbacks {
    walk: std::vec::IntoIter<String>,
}

impl Fallbacks {
    /// The next healthy node that is not one of `targets`.
    pub fn next_healthy(&mut self, placement: &Placement, targets: &[String]) -> Option<String> {
        self.walk
            .find(|f| !targets.contains(f) && !placement.is_down(f))
    }
}
