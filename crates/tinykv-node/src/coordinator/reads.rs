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

use super::{ReadOutcome, RequestError};
use crate::config::ReadFanout;
use crate::node::Node;
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

impl Node {
    /// Reads every key of `reqs` (a client batch's gets) and returns each
    /// one's outcome, in order, once each has its R answers or has failed.
    pub async fn coordinate_reads(
        self: &Arc<Self>,
        reqs: Vec<ReadRequest>,
    ) -> Vec<Result<ReadOutcome, RequestError>> {
        let ring = self.membership.read_ring();
        let mut q: Quorums<Option<Record>> = Quorums::new(reqs.iter().map(|r| r.r));
        let mut groups = Groups::default();
        // Per read: the replicas not asked yet, and the outcome.
        let mut pending: Vec<std::vec::IntoIter<String>> = Vec::with_capacity(reqs.len());
        let mut outcomes: Vec<Option<Result<ReadOutcome, RequestError>>> =
            Vec::with_capacity(reqs.len());
        for (i, req) in reqs.iter().enumerate() {
            let mut order: Vec<String> = ring
                .preference_list(&req.key)
                .into_iter()
                .map(String::from)
                .collect();
            if req.r > order.len() {
                outcomes.push(Some(Err(RequestError::Unavailable(format!(
                    "read needs {} replies but the ring has only {} replicas for this key",
                    req.r,
                    order.len()
                )))));
                pending.push(Vec::new().into_iter());
                continue;
            }
            order.sort_by_key(|n| (*n != self.id, self.detector.is_down(n)));
            let first = match self.config.read_fanout {
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
            let node = self.clone();
            let (replica, deadline) = (g.node.clone(), g.deadline);
            q.call(g.node, g.requests, deadline, async move {
                node.replica_read_all(&replica, g.entries, deadline).await
            });
        }

        let mut open = 0;
        for (i, outcome) in outcomes.iter_mut().enumerate() {
            if outcome.is_none() && !self.settle_read(&q.requests[i], outcome) {
                open += 1;
            }
        }
        // Armed only while some read has a replica left to ask.
        let speculate = tokio::time::sleep(self.config.read_speculative_retry);
        tokio::pin!(speculate);
        let mut speculated = pending.iter().all(|p| p.len() == 0);
        while open > 0 {
            let asked: Vec<usize> = tokio::select! {
                ev = q.next() => {
                    let Some(ev) = ev else { break };
                    if ev.failure.is_some() {
                        for &i in &ev.requests {
                            if outcomes[i].is_none() && !q.requests[i].reached() {
                                self.ask_next(&mut q, &reqs, &mut pending, i);
                            }
                        }
                    }
                    ev.requests
                }
                _ = &mut speculate, if !speculated => {
                    speculated = true;
                    for (i, outcome) in outcomes.iter().enumerate() {
                        if outcome.is_none() {
                            self.ask_next(&mut q, &reqs, &mut pending, i);
                        }
                    }
                    Vec::new()
                }
            };
            for i in asked {
                if outcomes[i].is_none() && self.settle_read(&q.requests[i], &mut outcomes[i]) {
                    open -= 1;
                }
            }
        }
        let repair: Vec<bool> = outcomes.iter().map(|o| matches!(o, Some(Ok(_)))).collect();
        self.spawn_read_repair(reqs, repair, q);
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(RequestError::Unavailable(
                        "read ended without an answer".into(),
                    ))
                })
            })
            .collect()
    }

    /// Asks read `i`'s next replica, if one is left.
    fn ask_next(
        self: &Arc<Self>,
        q: &mut Quorums<Option<Record>>,
        reqs: &[ReadRequest],
        pending: &mut [std::vec::IntoIter<String>],
        i: usize,
    ) {
        let Some(replica) = pending[i].next() else {
            return;
        };
        let (node, key, deadline) = (self.clone(), reqs[i].key.clone(), reqs[i].deadline);
        let target = replica.clone();
        q.call(replica, vec![i], deadline, async move {
            node.replica_read(&target, key, deadline)
                .await
                .map(|v| vec![v])
        });
    }

    /// Settles read `outcome` from its answers (see [`Node::settle`]).
    fn settle_read(
        &self,
        answers: &Answers<Option<Record>>,
        outcome: &mut Option<Result<ReadOutcome, RequestError>>,
    ) -> bool {
        self.settle("read", answers, outcome, |a| ReadOutcome {
            winner: merge(a.ok.iter().filter_map(|(_, v)| v.as_ref())).cloned(),
            answered: a.ok.len(),
        })
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
        let node = self.clone();
        tokio::spawn(async move {
            let answers = q.finish().await;
            let deadline = Instant::now() + node.config.request_timeout;
            let repairs =
                stale_replicas(&answers, &repair)
                    .into_iter()
                    .map(|(i, replica, winner)| {
                        let (node, key) = (node.clone(), reqs[i].key.clone());
                        async move {
                            node.metrics.read_repairs.inc();
                            if let Err(e) = node
                                .replica_write(&replica, key, winner, None, deadline)
                                .await
                            {
                                tracing::debug!(replica, error = %e, "read repair failed");
                            }
                        }
                    });
            futures::future::join_all(repairs).await;
        });
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
