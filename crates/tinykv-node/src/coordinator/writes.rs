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
//! Before membership has converged, a write that one copy would
//! acknowledge (W = 1) is refused unless this node is one of the key's
//! replicas (see `convergence.rs`): the copy might otherwise be on no
//! owner at all.
//!
//! The rules are per write, as for a write alone: it waits for its own W
//! acks by its own deadline (while a join or leave moves its key's range,
//! W among the key's current replicas and W among its future ones:
//! `pending.rs`); a replica known down is replaced by the next
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
use tracing::Instrument;

use super::pending::{short, too_few_replicas};
use super::{unanswered, Coordinator, InOrder, RequestError, WriteOutcome};
use crate::membership::ReplicaSets;
use crate::placement::{Fallbacks, Placement};
use crate::quorum::{Answers, Groups, Quorums};
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
    /// The key's current and future replica sets while its range moves
    /// (then W is needed in each: `pending.rs`); none otherwise.
    sets: Option<ReplicaSets>,
    /// Owners already replaced by a fallback.
    hinted_for: Vec<String>,
    /// The healthy nodes after the key's replicas, clockwise, computed on
    /// first need (most writes never need one).
    walk: Option<Fallbacks>,
    outcome: Option<Result<WriteOutcome, RequestError>>,
}

impl Progress {
    /// The next healthy node after the replicas of `key` not used yet.
    fn fallback(&mut self, placement: &Placement, key: &[u8]) -> Option<String> {
        let walk = self.walk.get_or_insert_with(|| placement.fallbacks(key));
        walk.next_healthy(placement, &self.targets)
    }

    /// Hands this write's outcome (write `i` of its batch) to `deliver`.
    fn deliver(
        &self,
        i: usize,
        deliver: &mut impl FnMut(usize, Result<WriteOutcome, RequestError>),
    ) {
        if let Some(outcome) = &self.outcome {
            deliver(i, outcome.clone());
        }
    }
}

impl Coordinator {
    /// Replicates every version of `reqs` (a client batch's writes) and
    /// returns each one's outcome, in order, once each has its W acks or
    /// has failed.
    pub async fn coordinate_writes(
        self: &Arc<Self>,
        reqs: Vec<WriteRequest>,
    ) -> Vec<Result<WriteOutcome, RequestError>> {
        let mut out = InOrder::new(reqs.len());
        self.coordinate_writes_each(reqs, |i, o| out.put(i, o))
            .await;
        out.finish("write")
    }

    /// Replicates every version of `reqs` as
    /// [`Coordinator::coordinate_writes`] does, handing each write's
    /// outcome to `deliver` as soon as it has one: a write that has its
    /// acks is not held back by a slower one of the same batch (the RESP
    /// door merges many clients' writes into a batch).
    #[tracing::instrument(level = "debug", name = "coordinate_writes", skip_all, fields(writes = reqs.len()))]
    pub async fn coordinate_writes_each(
        self: &Arc<Self>,
        reqs: Vec<WriteRequest>,
        mut deliver: impl FnMut(usize, Result<WriteOutcome, RequestError>),
    ) {
        let mut q: Quorums<()> = Quorums::new(reqs.iter().map(|r| r.w));
        let mut hinted = Hinted::default();
        let mut progress = self.start_writes(&reqs, &mut q, &mut hinted);
        let mut open = 0;
        for (i, p) in progress.iter_mut().enumerate() {
            if p.outcome.is_some() || self.settle_write(&q.requests[i], p, &hinted) {
                p.deliver(i, &mut deliver);
            } else {
                open += 1;
            }
        }
        while open > 0 {
            let Some(ev) = q.next().await else {
                break;
            };
            if ev.failure.is_none() {
                tracing::debug!(replica = %ev.node, writes = ev.requests.len(), "replica acked");
            }
            if let Some(error) = &ev.failure {
                tracing::debug!(replica = %ev.node, %error, "replica write failed");
                // The replica whose copy is missing: the call's node, or
                // the owner a failed hinted call held the hint for.
                let owner = hinted.owner(&ev.node).map(String::from);
                let replica = owner.clone().unwrap_or_else(|| ev.node.clone());
                self.keep_hints(&replica, &reqs, &ev.requests);
                for &i in &ev.requests {
                    let (req, p) = (&reqs[i], &mut progress[i]);
                    // A replacement only while the write still needs acks
                    // (it has no outcome: it is settled after every ack;
                    // the hint above keeps the version for the owner): for
                    // an owner not replaced yet, or the next fallback for
                    // one whose fallback failed.
                    let replace = owner.is_some() || !p.hinted_for.contains(&replica);
                    if replace && p.outcome.is_none() && self.sloppy(req) {
                        if let Some(fb) = p.fallback(&self.placement, &req.key) {
                            hinted.add(i, req, fb, &replica);
                            p.hinted_for.push(replica.clone());
                        }
                    }
                }
                self.send_hinted(&mut q, &mut hinted);
            }
            for &i in &ev.requests {
                let p = &mut progress[i];
                if p.outcome.is_none() && self.settle_write(&q.requests[i], p, &hinted) {
                    p.deliver(i, &mut deliver);
                    open -= 1;
                }
            }
        }
        if q.in_flight() > 0 {
            self.finish_in_background(q, hinted, reqs);
        }
        for (i, p) in progress.iter().enumerate() {
            if p.outcome.is_none() {
                deliver(i, Err(unanswered("write")));
            }
        }
    }

    /// Checks each write, picks its replicas (or fallbacks for those known
    /// down) and starts one call per replica for the whole batch.
    fn start_writes(
        self: &Arc<Self>,
        reqs: &[WriteRequest],
        q: &mut Quorums<()>,
        hinted: &mut Hinted,
    ) -> Vec<Progress> {
        let n = self.placement.replicas_per_key();
        let mut groups = Groups::default();
        let mut progress: Vec<Progress> = Vec::with_capacity(reqs.len());
        for (i, req) in reqs.iter().enumerate() {
            let targets = self.placement.write_targets(&req.key);
            let mut p = Progress {
                targets: Vec::new(),
                sets: None,
                hinted_for: Vec::new(),
                walk: None,
                outcome: None,
            };
            if let Some(why) = too_few_replicas(req.w, n, &targets) {
                p.outcome = Some(Err(RequestError::Unavailable(why)));
                progress.push(p);
                continue;
            }
            if req.w == 1 {
                if let Err(why) = self.placement.may_ack_alone(&targets.nodes) {
                    p.outcome = Some(Err(RequestError::Unavailable(why)));
                    progress.push(p);
                    continue;
                }
            }
            (p.targets, p.sets) = (targets.nodes, targets.sets);
            let sloppy = self.sloppy(req);
            for owner in p.targets.clone() {
                if sloppy && self.placement.is_down(&owner) {
                    if let Some(fb) = p.fallback(&self.placement, &req.key) {
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
        self.send_hinted(q, hinted);
        for g in groups.into_groups() {
            let count = g.requests.len();
            let call = self.replicas.write(&g.node, g.entries, g.deadline);
            q.call(g.node, g.requests, g.deadline, async move {
                call.await.map(|()| vec![(); count])
            });
        }
        progress
    }

    /// Lets the calls still running when every write has its answer finish
    /// in a task: the remaining replicas still get their versions, and a
    /// failed one leaves its hints.
    fn finish_in_background(
        self: &Arc<Self>,
        mut q: Quorums<()>,
        hinted: Hinted,
        reqs: Vec<WriteRequest>,
    ) {
        let me = self.clone();
        tokio::spawn(
            async move {
                while let Some(ev) = q.next().await {
                    if ev.failure.is_some() {
                        let replica = hinted.owner(&ev.node).unwrap_or(&ev.node);
                        me.keep_hints(replica, &reqs, &ev.requests);
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// Whether `req` may use hinted fallbacks for failed or down replicas.
    fn sloppy(&self, req: &WriteRequest) -> bool {
        self.settings.hinted_handoff && self.settings.sloppy_quorum && !req.strict
    }

    /// Settles write `p` from its answers (see [`Coordinator::settle`]):
    /// W acks, or, while its key's range moves, W acks among each of the
    /// key's current and future replicas, a hinted ack counting as its
    /// owner's (`hinted` names the owners).
    fn settle_write(&self, answers: &Answers<()>, p: &mut Progress, hinted: &Hinted) -> bool {
        let outcome = |a: &Answers<()>| WriteOutcome { acks: a.ok.len() };
        let Some(sets) = &p.sets else {
            return self.settle("write", answers, &mut p.outcome, outcome);
        };
        let acked: Vec<&str> = answers
            .ok
            .iter()
            .map(|(node, ())| hinted.owner(node).unwrap_or(node))
            .collect();
        match short(sets, answers.required, &acked) {
            None => p.outcome = Some(Ok(outcome(answers))),
            Some(s) if answers.running() == 0 => {
                self.metrics
                    .quorum_failures
                    .with_label_values(&["write"])
                    .inc();
                p.outcome = Some(Err(s.error(answers).into()));
            }
            Some(_) => {}
        }
        p.outcome.is_some()
    }

    /// Sends the hinted writes `hinted` collected, one call per fallback,
    /// owner and deadline.
    fn send_hinted(&self, q: &mut Quorums<()>, hinted: &mut Hinted) {
        for g in std::mem::take(&mut hinted.pending).into_groups() {
            let Some((fallback, owner)) = hinted.labels.get(&g.node) else {
                continue;
            };
            let count = g.requests.len();
            let call = self
                .replicas
                .write_hints(fallback, owner, g.entries, g.deadline);
            q.call(g.node, g.requests, g.deadline, async move {
                call.await.map(|()| vec![(); count])
            });
        }
    }

    /// Keeps the versions of writes `items` on this node as hints for the
    /// replica `owner`, whose call failed (unless hinted handoff is off or
    /// the owner is this node).
    fn keep_hints(&self, owner: &str, reqs: &[WriteRequest], items: &[usize]) {
        let me = self.placement.self_id();
        if !self.settings.hinted_handoff || owner == me {
            return;
        }
        let versions: Vec<(Bytes, Record)> = items
            .iter()
            .map(|&i| (reqs[i].key.clone(), reqs[i].record.clone()))
            .collect();
        let deadline = Instant::now() + self.settings.repair_timeout;
        let call = self.replicas.write_hints(me, owner, versions, deadline);
        let owner = owner.to_string();
        tokio::spawn(
            async move {
                if let Err(error) = call.await {
                    tracing::debug!(owner, %error, "hint not stored");
                }
            }
            .in_current_span(),
        );
    }
}
