//! Heartbeats, membership gossip and DNS discovery.
//!
//! Every interval the node sends its member table to every member (and to
//! every address behind `--peers-dns` that it does not know yet); answers
//! feed the failure detector and are merged into the table.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tinykv_proto::internal as pb;

use crate::detector::Health;
use crate::hlc::wall_micros;
use crate::membership::{Member, MemberState};
use crate::node::Node;

/// Addresses found through DNS and the node id that answered at each.
#[derive(Default)]
pub struct DnsSeen(Mutex<HashMap<SocketAddr, String>>);

/// Addresses whose node refused this one's cluster name, so the warning is
/// logged once per address, not every round.
#[derive(Default)]
pub struct Foreign(Mutex<HashSet<String>>);

impl Foreign {
    /// Logs that the node at `addr` belongs to another cluster (once).
    fn refused(&self, addr: &str, status: &tonic::Status) {
        if let Ok(mut seen) = self.0.lock() {
            if seen.insert(addr.to_string()) {
                tracing::warn!(
                    peer = %addr,
                    reason = %status.message(),
                    "a node of another cluster answers at this address; its membership is ignored"
                );
            }
        }
    }
}

impl Node {
    /// Keeps this node's own row true: if gossip carried a stale address for
    /// it (a restarted pod with a new IP, say), re-announce the current one
    /// with a higher version. A row saying it left or was removed is kept.
    pub fn assert_self(&self) {
        if let Some(me) = self.membership.get(&self.id) {
            if me.addr != self.addr && !matches!(me.state, MemberState::Left | MemberState::Removed)
            {
                self.membership
                    .set(&self.id, &self.addr, me.state, self.clock.now());
            }
        }
    }
}

/// Addresses behind `--peers-dns` that no known member answered from yet.
async fn discover(node: &Node) -> Vec<String> {
    let Some(name) = node.config.peers_dns.as_deref() else {
        return Vec::new();
    };
    let target = if name
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        name.to_string()
    } else {
        format!("{name}:50051")
    };
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(&target).await {
        Ok(a) => a.collect(),
        Err(e) => {
            tracing::debug!(name = %target, error = %e, "peer DNS lookup failed");
            return Vec::new();
        }
    };
    let cache = node
        .dns_seen
        .0
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    addrs
        .into_iter()
        .filter(|a| match cache.get(a) {
            None => true,
            Some(id) => node.membership.get(id).is_none(),
        })
        .map(|a| a.to_string())
        .collect()
}

/// One heartbeat round.
pub async fn heartbeat_round(node: &Arc<Node>) {
    let members = node.membership.members();
    let table: Vec<pb::MemberInfo> = members.iter().map(Member::to_info).collect();
    let mut targets: Vec<(Option<String>, String)> = members
        .iter()
        .filter(|m| m.id != node.id && !matches!(m.state, MemberState::Left | MemberState::Removed))
        .map(|m| (Some(m.id.clone()), m.addr.clone()))
        .collect();
    for (id, _) in &targets {
        if let Some(id) = id {
            node.detector.expect(id);
        }
    }
    targets.extend(discover(node).await.into_iter().map(|a| (None, a)));
    let timeout = node
        .config
        .heartbeat_interval
        .max(Duration::from_millis(500));
    let calls = targets.into_iter().map(|(id, addr)| {
        let node = node.clone();
        let table = table.clone();
        async move {
            if id.as_deref().is_some_and(|i| node.partitioned_from(i)) {
                return;
            }
            let Ok(mut client) = node.peers.client(&addr) else {
                return;
            };
            let sent = wall_micros();
            let mut req = tonic::Request::new(pb::HeartbeatRequest {
                from: node.id.clone(),
                sent_at_us: sent,
                members: table,
            });
            req.set_timeout(timeout);
            let resp = match client.heartbeat(req).await {
                Ok(r) => r.into_inner(),
                Err(s) => {
                    if crate::cluster_name::is_mismatch(&s) {
                        node.foreign.refused(&addr, &s);
                    }
                    return;
                }
            };
            if resp.from.is_empty() || node.partitioned_from(&resp.from) {
                return;
            }
            if id.is_none() {
                if let (Ok(sa), Ok(mut c)) = (addr.parse::<SocketAddr>(), node.dns_seen.0.lock()) {
                    c.insert(sa, resp.from.clone());
                }
            }
            node.detector.heartbeat(&resp.from);
            node.membership
                .merge(resp.members.iter().filter_map(Member::from_info));
            let received = wall_micros();
            let midpoint = sent / 2 + received / 2;
            let skew = (resp.now_us as f64 - midpoint as f64).abs() / 1e6;
            if skew > node.metrics.clock_skew.get() {
                node.metrics.clock_skew.set(skew);
            }
        }
    });
    join_all(calls).await;
    for (id, health) in node.detector.evaluate() {
        tracing::info!(peer = %id, health = health.as_str(), "peer health changed");
    }
    for m in node.membership.members() {
        if m.id == node.id {
            continue;
        }
        let current = node.detector.get(&m.id).health;
        for h in [Health::Unknown, Health::Up, Health::Suspect, Health::Down] {
            node.metrics
                .member_health
                .with_label_values(&[&m.id, h.as_str()])
                .set(if h == current { 1.0 } else { 0.0 });
        }
    }
}
