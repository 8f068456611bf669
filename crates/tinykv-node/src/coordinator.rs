//! Coordinating client requests: any node sends a request to all N replicas
//! of the key in parallel and answers once W (or R) of them have.
//!
//! Writes use a sloppy quorum: a replica that fails (or is known down) is
//! replaced by the next healthy node clockwise, which stores the version as a
//! hint for the owner and, unless the request is strict, counts toward W.
//! Every failed replica write also leaves a hint on the coordinator, so the
//! owner gets the version once it is back. Reads ask all N replicas (or,
//! with `--read-fanout needed`, R of them, this node first, and the next one
//! when one fails or is slow), merge the answers by LWW, and repair stale or
//! missing replicas among those that answered, in the background.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::ReadFanout;
use crate::node::Node;
use crate::quorum::{Quorum, QuorumError};
use crate::ring::key_token;
use crate::version::{merge, Record};

/// Why a coordinated request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not enough replicas answered.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    /// The cluster has fewer live ring members than the request needs.
    #[error("{0}")]
    Unavailable(String),
}

/// How a write ended.
#[derive(Clone, Copy, Debug)]
pub struct WriteOutcome {
    /// Acknowledgements received before answering (hinted ones included
    /// unless strict).
    pub acks: usize,
}

/// How a read ended.
#[derive(Clone, Debug)]
pub struct ReadOutcome {
    /// The winning version (may be a tombstone), or none if no replica had one.
    pub winner: Option<Record>,
    /// Replica answers merged.
    pub answered: usize,
}

/// The healthy nodes after `key`'s replicas on the ring, clockwise: where a
/// sloppy write goes when a replica is down or fails. The walk is computed
/// on the first call, which most writes never make.
struct Fallbacks<'a> {
    node: &'a Node,
    key: &'a [u8],
    targets: &'a [String],
    walk: Option<std::vec::IntoIter<String>>,
}

impl Fallbacks<'_> {
    fn next(&mut self) -> Option<String> {
        let walk = self.walk.get_or_insert_with(|| {
            self.node
                .membership
                .future_ring()
                .walk(key_token(self.key))
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
                .into_iter()
        });
        let (targets, detector) = (self.targets, &self.node.detector);
        walk.find(|f| !targets.contains(f) && !detector.is_down(f))
    }
}

impl Node {
    /// Replicates `record` for `key` and waits for `w` acknowledgements.
    pub async fn coordinate_write(
        self: &Arc<Self>,
        key: Bytes,
        record: Record,
        w: usize,
        strict: bool,
        deadline: Instant,
    ) -> Result<WriteOutcome, RequestError> {
        let targets = self.membership.write_targets(&key);
        let n = self.membership.read_ring().replicas_per_key();
        if w > n || w > targets.len() {
            return Err(RequestError::Unavailable(format!(
                "write needs {w} acks but the ring has only {n} replicas for this key"
            )));
        }
        let primaries = &targets[..];
        // The ring walk for fallbacks is only made when one is needed.
        let mut fallbacks = Fallbacks {
            node: self,
            key: &key,
            targets: primaries,
            walk: None,
        };
        let hinting = self.config.hinted_handoff;
        let sloppy = hinting && self.config.sloppy_quorum && !strict;

        let mut q = Quorum::new(w, deadline);
        let mut hinted_for: HashSet<String> = HashSet::new();
        for owner in primaries {
            if sloppy && self.detector.is_down(owner) {
                if let Some(fb) = fallbacks.next() {
                    self.spawn_hinted(&mut q, fb, owner, &key, &record, deadline);
                    hinted_for.insert(owner.clone());
                    continue;
                }
            }
            let (node, k, r) = (self.clone(), key.clone(), record.clone());
            let owner_id = owner.clone();
            let fut = async move {
                let res = node
                    .replica_write(&owner_id, k.clone(), r.clone(), None, deadline)
                    .await;
                if res.is_err() && hinting && owner_id != node.id {
                    // Keep the version for the owner whatever the quorum's fate.
                    let _ = Box::pin(node.store_hint(&owner_id, k, r)).await;
                }
                res
            };
            q.spawn(owner.clone(), fut);
        }
        while !q.reached() {
            match q.next().await {
                None => break,
                Some((failed, Some(_)))
                    if sloppy && !hinted_for.contains(&failed) && primaries.contains(&failed) =>
                {
                    if let Some(fb) = fallbacks.next() {
                        self.spawn_hinted(&mut q, fb, &failed, &key, &record, deadline);
                        hinted_for.insert(failed);
                    }
                }
                Some(_) => {}
            }
        }
        if !q.reached() {
            self.metrics
                .quorum_failures
                .with_label_values(&["write"])
                .inc();
            return Err(q.error("write").into());
        }
        let acks = q.ok.len();
        if q.in_flight() > 0 {
            // The other replicas still get the version (or a hint is kept).
            tokio::spawn(q.finish());
        }
        Ok(WriteOutcome { acks })
    }

    fn spawn_hinted(
        self: &Arc<Self>,
        q: &mut Quorum<()>,
        fallback: String,
        owner: &str,
        key: &Bytes,
        record: &Record,
        deadline: Instant,
    ) {
        let (node, k, r, owner) = (self.clone(), key.clone(), record.clone(), owner.to_string());
        let label = format!("{fallback} (hint for {owner})");
        q.spawn(label, async move {
            node.replica_write(&fallback, k, r, Some(&owner), deadline)
                .await
        });
    }

    /// Reads `key` from its replicas and waits for `r` answers.
    pub async fn coordinate_read(
        self: &Arc<Self>,
        key: Bytes,
        r: usize,
        deadline: Instant,
    ) -> Result<ReadOutcome, RequestError> {
        let ring = self.membership.read_ring();
        let replicas: Vec<String> = ring
            .preference_list(&key)
            .into_iter()
            .map(String::from)
            .collect();
        if r > replicas.len() {
            return Err(RequestError::Unavailable(format!(
                "read needs {r} replies but the ring has only {} replicas for this key",
                replicas.len()
            )));
        }
        // Ask R replicas first (this node first when it is one, known-down
        // nodes last); ask the next one when a replica fails, or when no
        // quorum has formed after the speculative-retry delay.
        let mut order: Vec<String> = replicas.clone();
        order.sort_by_key(|n| (*n != self.id, self.detector.is_down(n)));
        let mut pending = order.into_iter();
        let mut q = Quorum::new(r, deadline);
        let spawn_read = |q: &mut Quorum<Option<Record>>, rep: String| {
            let (node, k) = (self.clone(), key.clone());
            q.spawn(rep.clone(), async move {
                node.replica_read(&rep, k, deadline).await
            });
        };
        let first = match self.config.read_fanout {
            ReadFanout::All => replicas.len(),
            ReadFanout::Needed => r,
        };
        for rep in pending.by_ref().take(first) {
            spawn_read(&mut q, rep);
        }
        // Only armed when there is a replica left to ask.
        let speculate = tokio::time::sleep(self.config.read_speculative_retry);
        tokio::pin!(speculate);
        let mut speculated = pending.len() == 0;
        while !q.reached() {
            tokio::select! {
                ev = q.next() => match ev {
                    None => match pending.next() {
                        Some(rep) => spawn_read(&mut q, rep),
                        None => break,
                    },
                    Some((_, Some(_))) => {
                        if let Some(rep) = pending.next() {
                            spawn_read(&mut q, rep);
                        }
                    }
                    Some(_) => {}
                },
                _ = &mut speculate, if !speculated => {
                    speculated = true;
                    if let Some(rep) = pending.next() {
                        spawn_read(&mut q, rep);
                    }
                }
            }
        }
        if !q.reached() {
            self.metrics
                .quorum_failures
                .with_label_values(&["read"])
                .inc();
            return Err(q.error("read").into());
        }
        let winner = merge(q.ok.iter().filter_map(|(_, v)| v.as_ref())).cloned();
        let answered = q.ok.len();
        // Read repair in the background, over every answer that arrives in time.
        let node = self.clone();
        tokio::spawn(async move { node.read_repair(key, q).await });
        Ok(ReadOutcome { winner, answered })
    }

    async fn read_repair(self: Arc<Self>, key: Bytes, q: Quorum<Option<Record>>) {
        let (answers, _) = q.finish().await;
        let Some(winner) = merge(answers.iter().filter_map(|(_, v)| v.as_ref())).cloned() else {
            return;
        };
        let deadline = Instant::now() + self.config.request_timeout;
        for (replica, version) in answers {
            let stale = match &version {
                None => true,
                Some(v) => winner.supersedes(v),
            };
            if stale {
                self.metrics.read_repairs.inc();
                if let Err(e) = self
                    .replica_write(&replica, key.clone(), winner.clone(), None, deadline)
                    .await
                {
                    tracing::debug!(replica, error = %e, "read repair failed");
                }
            }
        }
    }
}
