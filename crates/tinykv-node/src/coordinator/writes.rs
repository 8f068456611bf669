//! The write path: every put and delete, alone or in a client batch, is
//! coordinated here.
//!
//! A client batch's writes are grouped by replica: each replica gets one call
//! carrying every version of the batch it holds (one engine batch for this
//! node's own copies, one queued item for each peer), and each write counts
//! the acks of the calls it is in. So a batch of k writes makes at most one
//! call per node, not 3k replica calls with their futures, channels and
//! tasks (those were a measurable share of a coordinator's CPU).
//!
//! The rules are per write, as for a write alone: it waits for its own W
//! acks by its own deadline; a replica known down is replaced by the next
//! healthy node clockwise, which keeps a hint for the owner and (sloppy
//! quorum, unless strict) counts toward W; a replica call that fails is
//! replaced the same way while the write still lacks acks, and leaves a hint
//! on this node for the owner whatever the write's fate. Calls still running
//! when every write has its answer finish in a background task, so the other
//! replicas still get the version (or a hint is kept).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::{RequestError, WriteOutcome};
use crate::node::Node;
use crate::quorum::{CallResult, QuorumError};
use crate::ring::key_token;
use crate::version::Record;

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

/// A finished replica call.
enum Done {
    /// A call to one of the writes' own replicas, for the writes `items`.
    Replica {
        node: String,
        items: Vec<usize>,
        result: CallResult<()>,
    },
    /// A hinted write to a fallback node for `owner`, for write `item`.
    Hinted {
        label: String,
        item: usize,
        result: CallResult<()>,
    },
}

type Calls = FuturesUnordered<BoxFuture<'static, Done>>;

/// One write's progress.
struct Progress {
    targets: Vec<String>,
    acks: usize,
    /// Calls made for it that have not finished.
    running: usize,
    /// Owners already replaced by a fallback.
    hinted_for: Vec<String>,
    failures: Vec<(String, String)>,
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

/// A replica's share of the writes: the call it gets.
struct Group {
    node: String,
    deadline: Instant,
    items: Vec<usize>,
    entries: Vec<(Bytes, Record)>,
}

impl Node {
    /// Replicates one version and waits for `w` acknowledgements.
    pub async fn coordinate_write(
        self: &Arc<Self>,
        key: Bytes,
        record: Record,
        w: usize,
        strict: bool,
        deadline: Instant,
    ) -> Result<WriteOutcome, RequestError> {
        let req = WriteRequest {
            key,
            record,
            w,
            strict,
            deadline,
        };
        self.coordinate_writes(vec![req])
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(RequestError::Unavailable(
                    "write was not coordinated".into(),
                ))
            })
    }

    /// Replicates every version of `reqs` (a client batch's writes) and
    /// returns each one's outcome, in order, once each has its W acks or
    /// has failed.
    pub async fn coordinate_writes(
        self: &Arc<Self>,
        reqs: Vec<WriteRequest>,
    ) -> Vec<Result<WriteOutcome, RequestError>> {
        let hinting = self.config.hinted_handoff;
        let n = self.membership.read_ring().replicas_per_key();
        let mut calls: Calls = FuturesUnordered::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut progress: Vec<Progress> = Vec::with_capacity(reqs.len());
        for (i, req) in reqs.iter().enumerate() {
            let targets = self.membership.write_targets(&req.key);
            let mut p = Progress {
                targets: Vec::new(),
                acks: 0,
                running: 0,
                hinted_for: Vec::new(),
                failures: Vec::new(),
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
                        self.call_hinted(&calls, i, req, fb, &owner);
                        p.hinted_for.push(owner);
                        p.running += 1;
                        continue;
                    }
                }
                let group = match groups
                    .iter_mut()
                    .position(|g| g.node == owner && g.deadline == req.deadline)
                {
                    Some(g) => &mut groups[g],
                    None => {
                        groups.push(Group {
                            node: owner,
                            deadline: req.deadline,
                            items: Vec::new(),
                            entries: Vec::new(),
                        });
                        let last = groups.len() - 1;
                        &mut groups[last]
                    }
                };
                group.items.push(i);
                group.entries.push((req.key.clone(), req.record.clone()));
                p.running += 1;
            }
            progress.push(p);
        }
        for g in groups {
            let node = self.clone();
            calls.push(Box::pin(async move {
                let result = tokio::time::timeout_at(
                    g.deadline,
                    node.replica_write_all(&g.node, g.entries, g.deadline),
                )
                .await
                .unwrap_or_else(|_| Err("deadline exceeded".into()));
                Done::Replica {
                    node: g.node,
                    items: g.items,
                    result,
                }
            }));
        }

        let mut open = 0;
        for (req, p) in reqs.iter().zip(progress.iter_mut()) {
            if p.outcome.is_none() && !self.settle(req.w, p) {
                open += 1;
            }
        }
        while open > 0 {
            let Some(done) = calls.next().await else {
                break;
            };
            let mut touched = Vec::new();
            match done {
                Done::Replica {
                    node,
                    items,
                    result,
                } => {
                    if result.is_err() && hinting && node != self.id {
                        self.spawn_hints(&node, &reqs, &items);
                    }
                    for &i in &items {
                        let (req, p) = (&reqs[i], &mut progress[i]);
                        p.running -= 1;
                        match &result {
                            Ok(()) => p.acks += 1,
                            Err(e) => {
                                p.failures.push((node.clone(), e.clone()));
                                // A replacement only while the write still
                                // needs acks (the hint above keeps the rest).
                                if p.outcome.is_none()
                                    && p.acks < req.w
                                    && self.sloppy(req)
                                    && !p.hinted_for.contains(&node)
                                {
                                    if let Some(fb) = p.fallback(self, &req.key) {
                                        self.call_hinted(&calls, i, req, fb, &node);
                                        p.hinted_for.push(node.clone());
                                        p.running += 1;
                                    }
                                }
                            }
                        }
                    }
                    touched = items;
                }
                Done::Hinted {
                    label,
                    item,
                    result,
                } => {
                    let p = &mut progress[item];
                    p.running -= 1;
                    match result {
                        Ok(()) => p.acks += 1,
                        Err(e) => p.failures.push((label, e)),
                    }
                    touched.push(item);
                }
            }
            for i in touched {
                let (req, p) = (&reqs[i], &mut progress[i]);
                if p.outcome.is_none() && self.settle(req.w, p) {
                    open -= 1;
                }
            }
        }
        if !calls.is_empty() {
            // The remaining replicas still get their versions, and a failed
            // one leaves its hints.
            let node = self.clone();
            tokio::spawn(async move {
                while let Some(done) = calls.next().await {
                    if let Done::Replica {
                        node: replica,
                        items,
                        result: Err(_),
                    } = done
                    {
                        if hinting && replica != node.id {
                            node.spawn_hints(&replica, &reqs, &items);
                        }
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

    /// Gives an unanswered write its outcome once it has `w` acks, or has
    /// too few with no call left to make them; true when it got one.
    fn settle(&self, w: usize, p: &mut Progress) -> bool {
        if p.acks >= w {
            p.outcome = Some(Ok(WriteOutcome { acks: p.acks }));
        } else if p.running == 0 {
            self.metrics
                .quorum_failures
                .with_label_values(&["write"])
                .inc();
            p.outcome = Some(Err(RequestError::Quorum(QuorumError {
                op: "write",
                required: w,
                got: p.acks,
                failures: std::mem::take(&mut p.failures),
            })));
        }
        p.outcome.is_some()
    }

    /// Writes `req`'s version to `fallback` as a hint for `owner`.
    fn call_hinted(
        self: &Arc<Self>,
        calls: &Calls,
        item: usize,
        req: &WriteRequest,
        fallback: String,
        owner: &str,
    ) {
        let (node, k, r, owner) = (
            self.clone(),
            req.key.clone(),
            req.record.clone(),
            owner.to_string(),
        );
        let deadline = req.deadline;
        calls.push(Box::pin(async move {
            let result = tokio::time::timeout_at(
                deadline,
                node.replica_write(&fallback, k, r, Some(&owner), deadline),
            )
            .await
            .unwrap_or_else(|_| Err("deadline exceeded".into()));
            Done::Hinted {
                label: format!("{fallback} (hint for {owner})"),
                item,
                result,
            }
        }));
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
