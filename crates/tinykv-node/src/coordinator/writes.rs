//! The write path: every put and delete, alone or in a client batch, is
//! coordinated here.
//!
//! A client batch's writes are grouped by replica: each replica gets one call
//! carrying every version of the batch it holds (one engine batch for this
//! node's own copies, one queued item for each peer), and each write counts
//! the acks of the calls it is in. So a batch of k writes makes one call per
//! node, not 3k replica calls with their futures, channels and tasks (those
//! were a measurable share of a coordinator's CPU). Hinted writes are
//! grouped the same way, per fallback and owner.
//!
//! The rules are per write, as for a write alone: it waits for its own W
//! acks by its own deadline; a replica known down is replaced by the next
//! healthy node clockwise, which keeps a hint for the owner and (sloppy
//! quorum, unless strict) counts toward W; a replica call that fails is
//! replaced the same way while the write still lacks acks, and leaves a
//! hint on this node for the owner whatever the write's fate; so does a
//! failed fallback call (then the next fallback is tried while acks are
//! missing), so a version is never left without a copy or a hint for each
//! owner. Calls still running when every write has its answer finish in a
//! background task, so the other replicas still get the version (or a hint
//! is kept).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::{RequestError, WriteOutcome};
use crate::node::Node;
use crate::quorum::{Answers, Groups, Quorums};
use crate::ring::key_token;
use crate::version::Record;

/// Hinted writes: versions for an owner that is down (or failed), stored
/// by a fallback node. They are grouped per fallback, owner and deadline,
/// so a client batch's writes for one owner make one call, and each call's
/// label names its fallback and owner.
#[derive(Default)]
struct Hinted {
    /// Every hinted call's label, with its fallback and owner.
    labels: HashMap<String, (String, String)>,
    /// Versions not sent yet, by label.
    pending: Groups<(Bytes, Record)>,
}

impl Hinted {
    /// Queues write `item`'s version for `fallback`, as a hint for `owner`.
    fn add(&mut self, item: usize, req: &WriteRequest, fallback: String, owner: &str) {
        let label = format!("{fallback} (hint for {owner})");
        self.pending.add(
            &label,
            req.deadline,
            item,
            (req.key.clone(), req.record.clone()),
        );
        self.labels
            .entry(label)
            .or_insert_with(|| (fallback, owner.to_string()));
    }

    /// The owner a hinted call (by its label) kept hints for.
    fn owner(&self, label: &str) -> Option<&str> {
        self.labels.get(label).map(|(_, owner)| owner.as_str())
    }
}

/// One write to coordinate.
#[derive(Clone, Debug)]
pub struct WriteRequest {
    /// The key.
    pub key: Bytes,
    /// The version to store (a value or a tombstone).
    pub record: Record,
    /// Acks needed (W).
    pub w: usize,
    /// Count only the key's own replicas, not hinted fallbacks.
    pub strict: bool,
    /// When the write fails if it has fewer than W acks.
    pub deadline: Instant,
}

/// One write's state besides its answers.
struct Progress {
    targets: Vec<String>,
    /// Owners already replaced by a fallback.
    hinted_for: Vec<String>,
    /// The healthy nodes after the key's replicas, clockwise, computed on
    /// first need (most writes never need one).
    walk: Option<std::vec::IntoIter<String>>,
    outcome: Option<Result<WriteOutcome, RequestError>>,
}

impl Progress {
    /// The next healthy node after the replicas of `key` not used yet.
    fn fallback(&mut self, node: &Node, key: &[u8]) -> Option<String> {
        let walk = self.walk.get_or_insert_with(|| {
            node.membership
                .future_ring()
                .walk(key_token(key))
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
                .into_iter()
        });
        let targets = &self.targets;
        walk.find(|f| !targets.contains(f) && !node.detector.is_down(f))
    }
}

impl Node {
    /// Replicates every version of `reqs` (a client batch's writes) and
    /// returns each one's outcome, in order, once each has its W acks or
    /// has failed.
    pub async fn coordinate_writes(
        self: &Arc<Self>,
        reqs: Vec<WriteRequest>,
    ) -> Vec<Result<WriteOutcome, RequestError>> {
        let hinting = self.config.hinted_handoff;
        let n = self.membership.read_ring().replicas_per_key();
        let mut q: Quorums<()> = Quorums::new(reqs.iter().map(|r| r.w));
        let mut groups = Groups::default();
        let mut progress: Vec<Progress> = Vec::with_capacity(reqs.len());
        let mut hinted = Hinted::default();
        for (i, req) in reqs.iter().enumerate() {
            let targets = self.membership.write_targets(&req.key);
            let mut p = Progress {
                targets: Vec::new(),
                hinted_for: Vec::new(),
                walk: None,
                outcome: None,
            };
            if req.w > n || req.w > targets.len() {
                p.outcome = Some(Err(RequestError::Unavailable(format!(
                    "write needs {} acks but the ring has only {n} replicas for this key",
                    req.w
                ))));
                progress.push(p);
                continue;
            }
            p.targets = targets;
            let sloppy = self.sloppy(req);
            for owner in p.targets.clone() {
                if sloppy && self.detector.is_down(&owner) {
                    if let Some(fb) = p.fallback(self, &req.key) {
                        hinted.add(i, req, fb, &owner);
                        p.hinted_for.push(owner);
                        continue;
                    }
                }
                groups.add(
                    &owner,
                    req.deadline,
                    i,
                    (req.key.clone(), req.record.clone()),
                );
            }
            progress.push(p);
        }
        self.send_hinted(&mut q, &mut hinted);
        for g in groups.into_groups() {
            let node = self.clone();
            let (replica, deadline, count) = (g.node.clone(), g.deadline, g.requests.len());
            q.call(g.node, g.requests, deadline, async move {
                node.replica_write_all(&replica, g.entries, deadline)
                    .await
                    .map(|()| vec![(); count])
            });
        }

        let mut open = 0;
        for (i, p) in progress.iter_mut().enumerate() {
            if p.outcome.is_none() && !self.settle_write(&q.requests[i], p) {
                open += 1;
            }
        }
        while open > 0 {
            let Some(ev) = q.next().await else {
                break;
            };
            if ev.failure.is_some() {
                // The replica whose copy is missing: the call's node, or
                // the owner a failed hinted call held the hint for.
                let owner = hinted.owner(&ev.node).map(String::from);
                let replica = owner.clone().unwrap_or_else(|| ev.node.clone());
                if hinting && replica != self.id {
                    self.spawn_hints(&replica, &reqs, &ev.requests);
                }
                for &i in &ev.requests {
                    let (req, p) = (&reqs[i], &mut progress[i]);
                    // A replacement only while the write still needs acks
                    // (the hint above keeps the version for the owner): for
                    // an owner not replaced yet, or the next fallback for
                    // one whose fallback failed.
                    let replace = owner.is_some() || !p.hinted_for.contains(&replica);
                    if replace
                        && p.outcome.is_none()
                        && !q.requests[i].reached()
                        && self.sloppy(req)
                    {
                        if let Some(fb) = p.fallback(self, &req.key) {
                            hinted.add(i, req, fb, &replica);
                            p.hinted_for.push(replica.clone());
                        }
                    }
                }
                self.send_hinted(&mut q, &mut hinted);
            }
            for &i in &ev.requests {
                let p = &mut progress[i];
                if p.outcome.is_none() && self.settle_write(&q.requests[i], p) {
                    open -= 1;
                }
            }
        }
        if q.in_flight() > 0 {
            // The remaining replicas still get their versions, and a failed
            // one leaves its hints.
            let node = self.clone();
            tokio::spawn(async move {
                while let Some(ev) = q.next().await {
                    let replica = hinted.owner(&ev.node).unwrap_or(&ev.node);
                    if ev.failure.is_some() && hinting && replica != node.id {
                        node.spawn_hints(replica, &reqs, &ev.requests);
                    }
                }
            });
        }
        progress
            .into_iter()
            .map(|p| {
                p.outcome.unwrap_or_else(|| {
                    Err(RequestError::Unavailable(
                        "write ended without an answer".into(),
                    ))
                })
            })
            .collect()
    }

    /// Whether `req` may use hinted fallbacks for failed or down replicas.
    fn sloppy(&self, req: &WriteRequest) -> bool {
        self.config.hinted_handoff && self.config.sloppy_quorum && !req.strict
    }

    /// Settles write `p` from its answers (see [`Node::settle`]).
    fn settle_write(&self, answers: &Answers<()>, p: &mut Progress) -> bool {
        self.settle("write", answers, &mut p.outcome, |a| WriteOutcome {
            acks: a.ok.len(),
        })
    }

    /// Sends the hinted writes `hinted` collected, one call per fallback,
    /// owner and deadline.
    fn send_hinted(self: &Arc<Self>, q: &mut Quorums<()>, hinted: &mut Hinted) {
        for g in std::mem::take(&mut hinted.pending).into_groups() {
            let Some((fallback, owner)) = hinted.labels.get(&g.node).cloned() else {
                continue;
            };
            let (node, deadline, count) = (self.clone(), g.deadline, g.requests.len());
            q.call(g.node, g.requests, deadline, async move {
                node.replica_write_hints(&fallback, &owner, g.entries, deadline)
                    .await
                    .map(|()| vec![(); count])
            });
        }
    }

    /// Keeps the versions of writes `items` on this node as hints for the
    /// replica `owner`, whose call failed.
    fn spawn_hints(self: &Arc<Self>, owner: &str, reqs: &[WriteRequest], items: &[usize]) {
        let versions: Vec<(Bytes, Record)> = items
            .iter()
            .map(|&i| (reqs[i].key.clone(), reqs[i].record.clone()))
            .collect();
        let (node, owner) = (self.clone(), owner.to_string());
        tokio::spawn(async move {
            for (key, record) in versions {
                if let Err(e) = node.store_hint(&owner, key, record).await {
                    tracing::debug!(owner, error = %e, "hint not stored");
                }
            }
        });
    }
}
