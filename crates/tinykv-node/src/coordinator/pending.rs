//! A write's acks while a join or leave moves its key's range.
//!
//! The write goes to the key's replicas in the read ring and in the future
//! ring (the nodes taking the range over), and it is acknowledged only once
//! it has W acks among the read ring's replicas AND W acks among the future
//! ring's, as Cassandra counts pending replicas: a QUORUM read now asks the
//! first set and one after the change asks the second, so R + W > N must
//! hold in each. W acks over the union would not do: with N = 3 and W = 2,
//! one old replica leaving the set and the joining node could acknowledge
//! a write that two of the three future replicas, or two of the three
//! current ones, never saw.
//!
//! A node in both sets counts in both. A hinted fallback's ack (sloppy
//! quorum, never for strict writes) counts as its owner's, in each set the
//! owner is in: the same rule as without a ring change, applied per set.
//! So ALL needs every replica of both sets, ONE one of each.
//!
//! When the rings are one, or the change leaves a key's replicas alone,
//! the placement gives no sets and the write counts W acks as always: the
//! common case allocates and checks nothing more.

use crate::membership::{ReplicaSets, WriteTargets};
use crate::quorum::{Answers, QuorumError};

/// The replica set a write lacks acks in.
pub(super) struct Short<'a> {
    /// "current" (the read ring's) or "future".
    which: &'static str,
    /// Its nodes.
    nodes: &'a [String],
    /// Acks counted in it.
    got: usize,
}

/// The first of `sets` (current, then future) with fewer than `w` of the
/// owners in `acked`; none when the write has W acks in both.
pub(super) fn short<'a>(sets: &'a ReplicaSets, w: usize, acked: &[&str]) -> Option<Short<'a>> {
    [("current", &sets.read), ("future", &sets.future)]
        .into_iter()
        .map(|(which, nodes)| Short {
            which,
            nodes,
            got: nodes.iter().filter(|n| acked.contains(&n.as_str())).count(),
        })
        .find(|s| s.got < w)
}

impl Short<'_> {
    /// The quorum error of a write that ended short in this set: its acks
    /// in the set, the set named, and every failure.
    pub(super) fn error(&self, answers: &Answers<()>) -> QuorumError {
        let mut e = answers.error("write");
        e.got = self.got;
        e.scope = Some(format!(
            "among the key's {} replicas ({}; a join or leave is moving its range, and W is needed among both its current and its future replicas)",
            self.which,
            self.nodes.join(", ")
        ));
        e
    }
}

/// Why a write needing `w` acks cannot have them on `targets` (with `n`
/// replicas per key on the read ring), if it cannot.
pub(super) fn too_few_replicas(w: usize, n: usize, targets: &WriteTargets) -> Option<String> {
    if w > n || w > targets.nodes.len() {
        return Some(format!(
            "write needs {w} acks but the ring has only {n} replicas for this key"
        ));
    }
    let future = targets.sets.as_ref()?.future.len();
    (w > future).then(|| {
        format!(
            "write needs {w} acks but the key will have only {future} replicas once the join or leave under way completes, and W is needed among both its current and its future replicas"
        )
    })
}
