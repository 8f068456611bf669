//! The read path: every get, alone or in a client batch, is coordinated
//! here.
//!
//! A client batch's reads are grouped by replica: each replica is asked once
//! for every key of the batch it holds, and each read counts the answers of
//! the calls it is in. The rules are per read, as for a read alone: ask the
//! key's replicas (all N, or with `--read-fanout needed` the R needed, this
//! node first and known-down nodes last), ask the next replica when one
//! fails or, once, when no quorum has formed after the speculative-retry
//! delay; answer with the LWW winner of the first R answers; then repair, in
//! the background, every replica that answered with a stale version or
//! none, over all answers that arrive by the deadline.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::Instrument;

use super::{unanswered, Coordinator, InOrder, ReadOutcome, RequestError};
use crate::config::ReadFanout;
use crate::quorum::{Answers, Groups, Quorums};
use crate::version::{merge, Record};

/// One read to coordinate.
#[derive(Clone, Debug)]
pub struct ReadRequest {
    /// The key.
    pub key: Bytes,
    /// Answers needed (R).
    pub r: usize,
    /// When the read fails if it has fewer than R answers.
    pub deadline: Instant,
}

/// Per read: the replicas not asked yet.
type Pending = Vec<std::vec::IntoIter<String>>;

impl Coordinator {
    /// Reads every key of `reqs` (a client batch's gets) and returns each
    /// one's outcome, in order, once each has its R answers or has failed.
    pub async fn coordinate_reads(
        self: &Arc<Self>,
        reqs: Vec<ReadRequest>,
    ) -> Vec<Result<ReadOutcome, RequestError>> {
        let mut out = InOrder::new(reqs.len());
        self.coordinate_reads_each(reqs, |i, o| out.put(i, o)).await;
        out.finish("read")
    }

    /// Reads every key of `reqs` as [`Coordinator::coordinate_reads`] does,
    /// handing each read's outcome to `deliver` as soon as it has one: a
    /// read whose quorum formed is not held back by a slower one of the
    /// same batch (the RESP door merges many clients' reads into a batch).
    #[tracing::instrument(level = "debug", name = "coordinate_reads", skip_all, fields(reads = reqs.len()))]
    pub async fn coordinate_reads_each(
        self: &Arc<Self>,
        reqs: Vec<ReadRequest>,
        mut deliver: impl FnMut(usize, Result<ReadOutcome, RequestError>),
    ) {
        let mut q: Quorums<Option<Record>> = Quorums::new(reqs.iter().map(|r| r.r));
        let (mut pending, refused) = self.start_reads(&reqs, &mut q);
        // Per read, once delivered: whether it succeeded.
        let mut done: Vec<Option<bool>> = vec![None; reqs.len()];
        let mut open = 0;
        for (i, refusal) in refused.into_iter().enumerate() {
            match refusal.or_else(|| self.settle_read(&q.requests[i])) {
                Some(outcome) => {
                    done[i] = Some(outcome.is_ok());
                    deliver(i, outcome);
                }
                None => open += 1,
            }
        }
        // Armed only while some read has a replica left to ask.
        let speculate = tokio::time::sleep(self.settings.speculative_retry);
        tokio::pin!(speculate);
        let mut speculated = pending.iter().all(|p| p.len() == 0);
        while open > 0 {
            let asked: Vec<usize> = tokio::select! {
                ev = q.next() => {
                    let Some(ev) = ev else { break };
                    if ev.failure.is_none() {
                        tracing::debug!(replica = %ev.node, reads = ev.requests.len(), "replica answered");
                    }
                    if let Some(error) = &ev.failure {
                        tracing::debug!(replica = %ev.node, %error, "replica read failed");
                        for &i in &ev.requests {
                            if done[i].is_none() && !q.requests[i].reached() {
                                self.ask_next(&mut q, &reqs, &mut pending, i);
                            }
                        }
                    }
                    ev.requests
                }
                _ = &mut speculate, if !speculated => {
                    speculated = true;
                    tracing::debug!("no quorum by the speculative-retry delay: asking one more replica");
                    for (i, d) in done.iter().enumerate() {
                        if d.is_none() {
                            self.ask_next(&mut q, &reqs, &mut pending, i);
                        }
                    }
                    Vec::new()
                }
            };
            for i in asked {
                if done[i].is_some() {
                    continue;
                }
                if let Some(outcome) = self.settle_read(&q.requests[i]) {
                    done[i] = Some(outcome.is_ok());
                    deliver(i, outcome);
                    open -= 1;
                }
            }
        }
        let repair: Vec<bool> = done.iter().map(|d| *d == Some(true)).collect();
        self.spawn_read_repair(reqs, repair, q);
        for (i, d) in done.iter().enumerate() {
            if d.is_none() {
                deliver(i, Err(unanswered("read")));
            }
        }
    }

    /// Checks each read and asks its first replicas (all, or the R needed),
    /// one call per replica for the whole batch.
    fn start_reads(
        &self,
        reqs: &[ReadRequest],
        q: &mut Quorums<Option<Record>>,
    ) -> (Pending, Vec<Option<Result<ReadOutcome, RequestError>>>) {
        let mut groups = Groups::default();
        let mut pending: Pending = Vec::with_capacity(reqs.len());
        let mut outcomes = Vec::with_capacity(reqs.len());
        for (i, req) in reqs.iter().enumerate() {
            let order = self.placement.read_order(&req.key);
            if req.r > order.len() {
                outcomes.push(Some(Err(RequestError::Unavailable(format!(
                    "read needs {} replies but the ring has only {} replicas for this key",
                    req.r,
                    order.len()
                )))));
                pending.push(Vec::new().into_iter());
                continue;
            }
            let first = match self.settings.read_fanout {
                ReadFanout::All => order.len(),
                ReadFanout::Needed => req.r,
            };
            let mut rest = order.into_iter();
            for replica in rest.by_ref().take(first) {
                groups.add(&replica, req.deadline, i, req.key.clone());
            }
            pending.push(rest);
            outcomes.push(None);
        }
        for g in groups.into_groups() {
            let call = self.replicas.read(&g.node, g.entries, g.deadline);
            q.call(g.node, g.requests, g.deadline, call);
        }
        (pending, outcomes)
    }

    /// Asks read `i`'s next replica, if one is left.
    fn ask_next(
        &self,
        q: &mut Quorums<Option<Record>>,
        reqs: &[ReadRequest],
        pending: &mut [std::vec::IntoIter<String>],
        i: usize,
    ) {
        let Some(replica) = pending[i].next() else {
            return;
        };
        let call = self
            .replicas
            .read(&replica, vec![reqs[i].key.clone()], reqs[i].deadline);
        q.call(replica, vec![i], reqs[i].deadline, call);
    }

    /// The read's outcome from its answers, once it has one (see
    /// [`Coordinator::settle`]).
    fn settle_read(
        &self,
        answers: &Answers<Option<Record>>,
    ) -> Option<Result<ReadOutcome, RequestError>> {
        let mut outcome = None;
        self.settle("read", answers, &mut outcome, |a| ReadOutcome {
            winner: merge(a.ok.iter().filter_map(|(_, v)| v.as_ref())).cloned(),
            answered: a.ok.len(),
        });
        outcome
    }

    /// Read repair for the reads marked in `repair` (those that reached
    /// their quorum), over every answer that arrives by the deadline: each
    /// replica that answered with an older version, or none, gets the
    /// winner. Runs in a task only when there is something to wait for or
    /// to repair.
    fn spawn_read_repair(
        self: &Arc<Self>,
        reqs: Vec<ReadRequest>,
        repair: Vec<bool>,
        q: Quorums<Option<Record>>,
    ) {
        if q.in_flight() == 0 && stale_replicas(&q.requests, &repair).is_empty() {
            return;
        }
        let me = self.clone();
        let task = async move {
            let answers = q.finish().await;
            let deadline = Instant::now() + me.settings.repair_timeout;
            let repairs =
                stale_replicas(&answers, &repair)
                    .into_iter()
                    .map(|(i, replica, winner)| {
                        me.metrics.read_repairs.inc();
                        let call = me.replicas.write(
                            &replica,
                            vec![(reqs[i].key.clone(), winner)],
                            deadline,
                        );
                        async move {
                            if let Err(error) = call.await {
                                tracing::debug!(replica, %error, "read repair failed");
                            }
                        }
                    });
            futures::future::join_all(repairs).await;
        };
        tokio::spawn(task.instrument(tracing::debug_span!("read_repair")));
    }
}

/// The replicas to repair: for each read marked in `repair`, every replica
/// whose answer is older than the winner of all answers, or empty, with the
/// winner.
fn stale_replicas(
    answers: &[Answers<Option<Record>>],
    repair: &[bool],
) -> Vec<(usize, String, Record)> {
    let mut out = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        if !repair.get(i).copied().unwrap_or(false) {
            continue;
        }
        let Some(winner) = merge(a.ok.iter().filter_map(|(_, v)| v.as_ref())) else {
            continue;
        };
        for (replica, version) in &a.ok {
            let stale = match version {
                None => true,
                Some(v) => winner.supersedes(v),
            };
            if stale {
                out.push((i, replica.clone(), winner.clone()));
            }
        }
    }
    out
}
