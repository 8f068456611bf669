//! Coordinating client requests: any node sends a request to all N replicas
//! of the key in parallel and answers once W (or R) of them have.
//!
//! Writes (in `writes.rs`) use a sloppy quorum: a replica that fails (or is
//! known down) is replaced by the next healthy node clockwise, which stores
//! the version as a hint for the owner and, unless the request is strict,
//! counts toward W. Every failed replica write also leaves a hint on the
//! coordinator, so the owner gets the version once it is back. A client
//! batch's writes make one call per replica for all of them. Reads ask all
//! N replicas (or, with `--read-fanout needed`, R of them, this node first,
//! and the next one when one fails or is slow), merge the answers by LWW,
//! and repair stale or missing replicas among those that answered, in the
//! background.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::ReadFanout;
use crate::node::Node;
use crate::quorum::{Quorum, QuorumError};
use crate::version::{merge, Record};

mod writes;
pub use writes::WriteRequest;

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

impl Node {
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
