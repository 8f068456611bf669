//! Leaving the ring: decommission (a live node streams its data to the nodes
//! that take its ranges over, then leaves) and removenode (a dead node is
//! dropped and its ranges re-replicated from the survivors).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::admin_client::AdminClient;
use tonic::Status;

use crate::membership::MemberState;
use crate::node::Node;
use crate::pages::Pages;
use crate::ring::{key_token, Ring};
use crate::storage::ScanLimit;
use crate::version::Record;

/// Versions per page when a leaving node streams its data out.
const STREAM_PAGE: usize = 1024;

/// File in the data directory recording that this node has been a full
/// member, so a restart never re-joins (and never re-streams).
pub const MEMBER_MARKER: &str = "member-state";

/// Progress of this node's own join or decommission.
#[derive(Clone, Debug, Default)]
pub struct StreamProgress {
    /// "joining", "leaving" or empty.
    pub operation: String,
    /// Keys streamed so far.
    pub keys_streamed: u64,
    /// Keys to stream in all.
    pub keys_total: u64,
    /// Last error, if streaming is retrying.
    pub last_error: Option<String>,
}

impl Node {
    fn admin_client(&self, id: &str) -> Result<AdminClient<tonic::transport::Channel>, Status> {
        let addr = self
            .membership
            .address_of(id)
            .ok_or_else(|| Status::not_found(format!("unknown node {id}")))?;
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(AdminClient::new(ch))
    }

    fn leave_response(&self) -> pb::DecommissionResponse {
        let state = self
            .membership
            .get(&self.id)
            .map(|m| m.state)
            .unwrap_or(MemberState::Normal);
        let p = self
            .stream_progress
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let progress = match state {
            MemberState::Left => 1.0,
            _ if p.keys_total == 0 => 0.0,
            _ => p.keys_streamed as f64 / p.keys_total as f64,
        };
        pb::DecommissionResponse {
            state: state.to_string(),
            keys_streamed: p.keys_streamed,
            progress,
            message: p
                .last_error
                .unwrap_or_else(|| format!("{} is {state}", self.id)),
        }
    }

    /// Starts or reports on the decommission of `id` (forwarded to that node
    /// when it is not this one). Idempotent: calling again reports progress.
    pub async fn decommission(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<pb::DecommissionResponse, Status> {
        let id = if id.is_empty() {
            self.id.clone()
        } else {
            id.to_string()
        };
        if id != self.id {
            let member = self
                .membership
                .get(&id)
                .ok_or_else(|| Status::not_found(format!("unknown node {id}")))?;
            if member.state == MemberState::Left {
                return Ok(pb::DecommissionResponse {
                    state: "left".into(),
                    progress: 1.0,
                    message: format!("{id} has left"),
                    ..Default::default()
                });
            }
            let mut client = self.admin_client(&id)?;
            return client
                .decommission(pb::DecommissionRequest {
                    node_id: id.clone(),
                })
                .await
                .map(|r| r.into_inner())
                .map_err(|s| {
                    Status::unavailable(format!("forwarding decommission to {id}: {}", s.message()))
                });
        }
        let state = self.membership.get(&self.id).map(|m| m.state);
        match state {
            Some(MemberState::Normal) => {
                let remaining = self
                    .membership
                    .members()
                    .iter()
                    .filter(|m| m.id != self.id && m.state == MemberState::Normal)
                    .count();
                if remaining == 0 {
                    return Err(Status::failed_precondition(
                        "cannot decommission the last node of the cluster",
                    ));
                }
                self.membership
                    .set(&self.id, &self.addr, MemberState::Leaving, self.clock.now());
                tracing::info!(id = %self.id, "decommission started: streaming ranges to new owners");
                let node = self.clone();
                tokio::spawn(async move { node.stream_out().await });
            }
            Some(MemberState::Leaving) | Some(MemberState::Left) => {}
            other => {
                return Err(Status::failed_precondition(format!(
                    "{} cannot be decommissioned in state {:?}",
                    self.id, other
                )))
            }
        }
        Ok(self.leave_response())
    }

    /// Records a streaming failure and waits a second before the retry;
    /// false when the node is shutting down instead.
    async fn pause_before_retry(&self, what: &str, error: String) -> bool {
        tracing::warn!(error = %error, "{what} failed; retrying");
        if let Ok(mut p) = self.stream_progress.lock() {
            p.last_error = Some(error);
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(Duration::from_secs(1)) => true,
        }
    }

    /// Streams every local version to the nodes that replicate it once this
    /// node is gone, retrying until it succeeds, then marks this node Left.
    async fn stream_out(self: Arc<Self>) {
        loop {
            match self.stream_out_once().await {
                Ok(()) => break,
                Err(e) => {
                    if !self.pause_before_retry("decommission streaming", e).await {
                        return;
                    }
                }
            }
        }
        self.membership
            .set(&self.id, &self.addr, MemberState::Left, self.clock.now());
        tracing::info!(id = %self.id, "decommission complete: node has left the ring");
        // Tell everyone at once rather than waiting for the next heartbeat.
        crate::gossip::heartbeat_round(&self).await;
    }

    /// Streams every local version to its owners on the ring without this
    /// node, page by page (a page of [`STREAM_PAGE`] versions or
    /// [`crate::storage::SCAN_PAGE_BYTES`]), so a node of any size leaves
    /// without holding its data in memory.
    async fn stream_out_once(self: &Arc<Self>) -> Result<(), String> {
        let keys_total = self.store.engine().key_count().map_err(|e| e.to_string())?;
        if let Ok(mut p) = self.stream_progress.lock() {
            *p = StreamProgress {
                operation: "leaving".into(),
                keys_total,
                ..Default::default()
            };
        }
        let future: Vec<String> = self
            .membership
            .members()
            .into_iter()
            .filter(|m| {
                m.id != self.id && matches!(m.state, MemberState::Normal | MemberState::Joining)
            })
            .map(|m| m.id)
            .collect();
        let ring = Ring::new(
            future,
            self.config.vnodes,
            self.config.replication_factor as usize,
        );
        let mut pages = Pages::new(0, 0, ScanLimit::count(STREAM_PAGE));
        while let Some(page) = pages.next(self).await? {
            let mut by_dest: HashMap<String, Vec<(Bytes, Record)>> = HashMap::new();
            for (k, r) in &page {
                for dest in ring
                    .walk(key_token(k))
                    .into_iter()
                    .take(ring.replicas_per_key())
                {
                    by_dest
                        .entry(dest.to_string())
                        .or_default()
                        .push((k.clone(), r.clone()));
                }
            }
            for (dest, recs) in by_dest {
                self.push_all(&dest, recs)
                    .await
                    .map_err(|e| format!("{dest}: {e}"))?;
            }
            if let Ok(mut p) = self.stream_progress.lock() {
                p.keys_streamed += page.len() as u64;
            }
            self.metrics.repair_keys.inc_by(page.len() as u64);
        }
        Ok(())
    }

    /// Drops a dead node for good and re-replicates its ranges: every
    /// remaining normal member runs an anti-entropy round on the new ring.
    pub async fn remove_node(self: &Arc<Self>, id: &str) -> Result<pb::RemoveNodeResponse, Status> {
        if id == self.id {
            return Err(Status::invalid_argument(
                "a node cannot remove itself; use decommission",
            ));
        }
        let member = self
            .membership
            .get(id)
            .ok_or_else(|| Status::not_found(format!("unknown node {id}")))?;
        if member.state != MemberState::Removed {
            if !self.detector.is_down(id)
                && self.detector.get(id).health != crate::detector::Health::Unknown
            {
                return Err(Status::failed_precondition(format!(
                    "{id} is still answering heartbeats; decommission it instead"
                )));
            }
            self.membership
                .set(id, &member.addr, MemberState::Removed, self.clock.now());
            self.detector.forget(id);
            crate::gossip::heartbeat_round(self).await;
        }
        let mut moved = self.anti_entropy_round().await.map_err(Status::internal)?;
        let others: Vec<String> = self
            .membership
            .members()
            .into_iter()
            .filter(|m| m.id != self.id && m.state == MemberState::Normal)
            .map(|m| m.id)
            .collect();
        let mut failures = Vec::new();
        for other in others {
            let res = match self.admin_client(&other) {
                Ok(mut c) => c.repair(pb::RepairRequest {}).await.map(|r| r.into_inner()),
                Err(e) => Err(e),
            };
            match res {
                Ok(r) => {
                    moved.keys_sent += r.keys_sent;
                    moved.keys_received += r.keys_received;
                }
                Err(e) => failures.push(format!("{other}: {}", e.message())),
            }
        }
        let message = if failures.is_empty() {
            format!("{id} removed; its ranges were re-replicated")
        } else {
            format!(
                "{id} removed; re-replication incomplete on {}",
                failures.join(", ")
            )
        };
        Ok(pb::RemoveNodeResponse {
            message,
            keys_rereplicated: moved.keys_sent + moved.keys_received,
        })
    }
}

impl Node {
    /// Records in the data directory that this node is a full member.
    pub fn write_member_marker(&self, state: MemberState) {
        let path = self.config.data_dir.join(MEMBER_MARKER);
        if let Err(e) = std::fs::write(&path, state.to_string()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write member marker");
        }
    }

    /// Joins a running cluster: waits to hear from a peer, then streams this
    /// node's future ranges from their current replicas and becomes normal.
    /// Bootstraps as normal when no member is normal yet (a new cluster).
    pub async fn join_cluster(self: Arc<Self>) {
        // Hear from someone (or give up waiting and bootstrap) before deciding.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let heard = self.membership.members().iter().any(|m| {
                m.id != self.id && self.detector.get(&m.id).health == crate::detector::Health::Up
            });
            if heard {
                break;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        loop {
            let normals = self
                .membership
                .members()
                .iter()
                .filter(|m| m.id != self.id && m.state == MemberState::Normal)
                .count();
            if normals == 0 {
                tracing::info!(id = %self.id, "no running cluster found: bootstrapping as normal");
                break;
            }
            match self.stream_in().await {
                Ok(keys) => {
                    tracing::info!(id = %self.id, keys, "join streaming complete");
                    break;
                }
                Err(e) => {
                    if !self.pause_before_retry("join streaming", e).await {
                        return;
                    }
                }
            }
        }
        self.membership
            .set(&self.id, &self.addr, MemberState::Normal, self.clock.now());
        self.write_member_marker(MemberState::Normal);
        if let Ok(mut p) = self.stream_progress.lock() {
            p.operation.clear();
            p.last_error = None;
        }
        crate::gossip::heartbeat_round(&self).await;
        tracing::info!(id = %self.id, "joined: now a normal member");
    }

    /// Pulls every version of this node's future ranges from the replicas
    /// that hold them now. Returns the keys received.
    async fn stream_in(self: &Arc<Self>) -> Result<u64, String> {
        let future = self.membership.future_ring();
        let current = self.membership.read_ring();
        let ranges = future.ranges_of(&self.id);
        if let Ok(mut p) = self.stream_progress.lock() {
            *p = StreamProgress {
                operation: "joining".into(),
                keys_total: ranges.len() as u64,
                ..Default::default()
            };
        }
        let mut received = 0u64;
        for r in ranges {
            // Each future range lies inside one current range (the future
            // ring only adds tokens), whose replicas all hold its data.
            let sources: Vec<String> = current
                .walk(r.end)
                .into_iter()
                .take(current.replicas_per_key())
                .filter(|s| *s != self.id)
                .map(String::from)
                .collect();
            let mut ok = 0;
            let mut errors = Vec::new();
            for src in &sources {
                match self.fetch_all(src, r.start, r.end).await {
                    Ok(recs) => {
                        ok += 1;
                        received += recs.len() as u64;
                        if !recs.is_empty() {
                            let ops = recs
                                .into_iter()
                                .map(|(key, record)| crate::storage::WriteOp::Put { key, record })
                                .collect();
                            self.store.write(ops).await.map_err(|e| e.to_string())?;
                        }
                    }
                    Err(e) => errors.push(format!("{src}: {e}")),
                }
            }
            // Every version acknowledged at QUORUM is on a majority of the
            // sources; pulling from a majority of them (by LWW) gets it.
            if ok < sources.len() / 2 + 1 {
                return Err(format!(
                    "range ({}, {}]: too few sources answered ({})",
                    r.start,
                    r.end,
                    errors.join("; ")
                ));
            }
            if let Ok(mut p) = self.stream_progress.lock() {
                p.keys_streamed += 1;
            }
        }
        self.metrics.repair_keys.inc_by(received);
        Ok(received)
    }
}
