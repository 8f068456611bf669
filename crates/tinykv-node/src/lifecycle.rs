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
use crate::ring::{key_token, Ring};
use crate::version::Record;

/// Progress of this node's own decommission.
#[derive(Clone, Debug, Default)]
pub struct LeaveProgress {
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
            .leave_progress
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

    /// Streams every local version to the nodes that replicate it once this
    /// node is gone, retrying until it succeeds, then marks this node Left.
    async fn stream_out(self: Arc<Self>) {
        loop {
            match self.stream_out_once().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "decommission streaming failed; retrying");
                    if let Ok(mut p) = self.leave_progress.lock() {
                        p.last_error = Some(e);
                    }
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
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

    async fn stream_out_once(self: &Arc<Self>) -> Result<(), String> {
        let all = self.scan_all(0, 0).await?;
        if let Ok(mut p) = self.leave_progress.lock() {
            *p = LeaveProgress {
                keys_total: all.len() as u64,
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
        for chunk in all.chunks(1024) {
            let mut by_dest: HashMap<String, Vec<(Bytes, Record)>> = HashMap::new();
            for (k, r) in chunk {
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
            if let Ok(mut p) = self.leave_progress.lock() {
                p.keys_streamed += chunk.len() as u64;
            }
            self.metrics.repair_keys.inc_by(chunk.len() as u64);
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
