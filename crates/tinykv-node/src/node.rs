//! The node's shared state and its replica-level operations.
//!
//! A [`Node`] is shared (`Arc`) by the gRPC services and the background
//! loops. Calls to one replica, local or remote, go through
//! [`Node::replica_write`] and [`Node::replica_read`], so the coordinator
//! never cares whether a replica is itself.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::detector::Detector;
use crate::hlc::{wall_micros, Hlc, Observed};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::quorum::CallResult;
use crate::storage::{Store, WriteOp};
use crate::version::Record;

/// Everything a running node shares between its services and loops.
pub struct Node {
    /// This node's id.
    pub id: String,
    /// This node's advertised address.
    pub addr: String,
    /// Its configuration.
    pub config: Config,
    /// The hybrid logical clock that stamps versions.
    pub clock: Hlc,
    /// Local storage.
    pub store: Store,
    /// Member table and rings.
    pub membership: Membership,
    /// Peer health.
    pub detector: Detector,
    /// Peer connections.
    pub peers: Peers,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
    /// Peers found through `--peers-dns`.
    pub dns_seen: crate::gossip::DnsSeen,
    /// Addresses where a node of another cluster answered.
    pub foreign: crate::gossip::Foreign,
    /// Progress of this node's own join or decommission streaming.
    pub stream_progress: std::sync::Mutex<crate::lifecycle::StreamProgress>,
    /// Test-only fault switches.
    #[cfg(feature = "fault-injection")]
    pub faults: crate::faults::Faults,
}

impl Node {
    /// Moves the clock past a timestamp seen from outside, recording skew.
    pub fn observe(&self, ts: u64, from: &str) {
        if let Observed::TooFarAhead(ahead) = self.clock.observe(ts) {
            self.metrics.clock_skew_refused.inc();
            tracing::warn!(
                from,
                ahead_us = ahead,
                "timestamp too far ahead of our clock; not absorbed"
            );
        }
    }

    /// True when a message to or from `peer` must be dropped (fault injection).
    pub fn partitioned_from(&self, _peer: &str) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            return self.faults.blocks(_peer);
        }
        #[allow(unreachable_code)]
        false
    }

    /// Applies a version to this node's own replica.
    pub async fn apply_local(&self, key: Bytes, record: Record) -> Result<bool, String> {
        // Combined with the other local writes started together (a client
        // batch's puts) into one engine batch.
        self.store
            .write_one(WriteOp::Put { key, record })
            .await
            .map_err(|e| e.to_string())
    }

    /// Stores a hint on this node for `target`.
    pub async fn store_hint(&self, target: &str, key: Bytes, record: Record) -> Result<(), String> {
        self.store_hints(target, vec![(key, record)]).await
    }

    /// Stores hints on this node for `target`, in one storage batch; none
    /// once the hint limit is reached.
    pub async fn store_hints(
        &self,
        target: &str,
        versions: Vec<(Bytes, Record)>,
    ) -> Result<(), String> {
        let stats = self
            .store
            .engine()
            .hint_stats()
            .map_err(|e| e.to_string())?;
        if stats.count >= self.config.max_hints {
            self.metrics.hints_dropped.inc();
            tracing::warn!(
                target,
                hints = stats.count,
                "hint limit reached; dropping hint (anti-entropy will repair)"
            );
            return Err("hint limit reached".into());
        }
        let n = versions.len() as u64;
        let now = wall_micros();
        let ops = versions
            .into_iter()
            .map(|(key, record)| WriteOp::Hint {
                target: target.to_string(),
                key,
                record,
                stored_at_us: now,
            })
            .collect();
        self.store.write(ops).await.map_err(|e| e.to_string())?;
        self.metrics.hints_stored.inc_by(n);
        Ok(())
    }

    /// Stores versions on `node` (this node or a peer) as hints for
    /// `owner`, in one call, by the deadline. A peer without `WriteHints`
    /// gets one `Write` per version, all at once.
    pub async fn replica_write_hints(
        self: &Arc<Self>,
        node: &str,
        owner: &str,
        versions: Vec<(Bytes, Record)>,
        deadline: Instant,
    ) -> CallResult<()> {
        if node == self.id {
            return self.store_hints(owner, versions).await;
        }
        let addr = self.peer_address(node)?;
        self.peers
            .write_hints(&addr, owner, versions, deadline)
            .await
    }

    /// Writes a version to replica `node` (or stores it there as a hint for
    /// `hint_for`), by the deadline.
    pub async fn replica_write(
        self: &Arc<Self>,
        node: &str,
        key: Bytes,
        record: Record,
        hint_for: Option<&str>,
        deadline: Instant,
    ) -> CallResult<()> {
        if node == self.id {
            return match hint_for {
                Some(t) => Box::pin(self.store_hint(t, key, record)).await,
                None => self.apply_local(key, record).await.map(|_| ()),
            };
        }
        let addr = self.peer_address(node)?;
        match hint_for {
            // Plain replica writes are coalesced per peer.
            None => self.peers.write(&addr, key, record, deadline).await,
            Some(owner) => {
                self.peers
                    .write_hint(&addr, owner, key, record, deadline)
                    .await
            }
        }
    }

    /// The address of peer `node`, unless it is unknown or cut off.
    pub(crate) fn peer_address(&self, node: &str) -> CallResult<String> {
        if self.partitioned_from(node) {
            return Err("unreachable (fault injected)".into());
        }
        self.membership
            .address_of(node)
            .ok_or_else(|| format!("unknown member {node}"))
    }

    /// Applies versions on replica `node` (this node or a peer), answered
    /// together: the write path sends each replica of a client batch one.
    pub async fn replica_write_all(
        self: &Arc<Self>,
        node: &str,
        entries: Vec<(Bytes, Record)>,
        deadline: Instant,
    ) -> CallResult<()> {
        if node == self.id {
            let ops = entries
                .into_iter()
                .map(|(key, record)| WriteOp::Put { key, record })
                .collect();
            return self
                .store
                .write(ops)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        let addr = self.peer_address(node)?;
        self.peers.write_all(&addr, entries, deadline).await
    }

    /// Reads replica `node`'s versions of `keys` (this node's or a peer's),
    /// answered together, in order: the read path asks each replica of a
    /// client batch once.
    pub async fn replica_read_all(
        self: &Arc<Self>,
        node: &str,
        keys: Vec<Bytes>,
        deadline: Instant,
    ) -> CallResult<Vec<Option<Record>>> {
        if node == self.id {
            return keys
                .iter()
                .map(|k| self.store.get(k).map_err(|e| e.to_string()))
                .collect();
        }
        let addr = self.peer_address(node)?;
        let recs = self.peers.read_all(&addr, keys, deadline).await?;
        for r in recs.iter().flatten() {
            self.observe(r.timestamp, node);
        }
        Ok(recs)
    }

    /// Reads replica `node`'s version of `key`, by the deadline.
    pub async fn replica_read(
        self: &Arc<Self>,
        node: &str,
        key: Bytes,
        deadline: Instant,
    ) -> CallResult<Option<Record>> {
        if node == self.id {
            return self.store.get(&key).map_err(|e| e.to_string());
        }
        let addr = self.peer_address(node)?;
        let rec = self.peers.read(&addr, key, deadline).await?;
        if let Some(r) = &rec {
            self.observe(r.timestamp, node);
        }
        Ok(rec)
    }
}
