//! The node's answer to `Status`: members, their health and ownership.

use tinykv_proto::tinykv as pb;

use crate::config::SyncMode;
use crate::detector::Health;
use crate::node::Node;

impl Node {
    /// The durability policy as shown in status.
    pub fn sync_description(&self) -> String {
        match self.config.sync {
            SyncMode::Always => "always".into(),
            SyncMode::Periodic => format!("periodic({}ms)", self.config.sync_period.as_millis()),
        }
    }

    /// This node's view of the cluster.
    pub fn status_report(&self) -> pb::StatusResponse {
        let ring = self.membership.read_ring();
        let ownership = ring.ownership();
        let members = self
            .membership
            .members()
            .into_iter()
            .map(|m| {
                let (health, phi, last_seen, since) = if m.id == self.id {
                    ("up", 0.0, 0, 0)
                } else {
                    let h = self.detector.get(&m.id);
                    let shown = match h.health {
                        Health::Unknown => "unknown",
                        other => other.as_str(),
                    };
                    let last = h.since_last.map(|d| d.as_millis() as u64).unwrap_or(0);
                    (shown, h.phi, last, h.since_us as i64)
                };
                let (primary, replica) = ownership.get(&m.id).copied().unwrap_or((0.0, 0.0));
                pb::MemberStatus {
                    node_id: m.id,
                    address: m.addr,
                    health: health.into(),
                    state: m.state.to_string(),
                    primary_ownership: primary,
                    replica_ownership: replica,
                    last_seen_ms_ago: last_seen,
                    health_since_us: since,
                    phi,
                }
            })
            .collect();
        let stats = self.store.engine().hint_stats().unwrap_or_default();
        let own = self
            .membership
            .get(&self.id)
            .map(|m| m.state.to_string())
            .unwrap_or_default();
        let p = self
            .stream_progress
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let progress = if p.keys_total == 0 {
            0.0
        } else {
            p.keys_streamed as f64 / p.keys_total as f64
        };
        pb::StatusResponse {
            node_id: self.id.clone(),
            replication_factor: self.config.replication_factor,
            vnodes: self.config.vnodes,
            members,
            version: env!("CARGO_PKG_VERSION").into(),
            sync: self.sync_description(),
            local_keys: self.store.engine().key_count().unwrap_or(0),
            pending_hints: stats.count,
            state: own,
            operation: p.operation,
            operation_progress: progress,
            cluster_name: self.config.cluster_name.clone().unwrap_or_default(),
        }
    }
}
