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

use crate::clock::Clock;
use crate::detector::{Detector, Health};
use crate::directory::Directory;
use crate::hlc::wall_micros;
use crate::identity::Claims;
use crate::membership::{Member, MemberState, Membership, MAX_MEMBERS};
use crate::metrics::Metrics;

/// Addresses found through DNS and the node id that answered at each.
#[derive(Default)]
struct DnsSeen(Mutex<HashMap<SocketAddr, String>>);

/// Addresses whose node refused this one's cluster name, so the warning is
/// logged once per address, not every round.
#[derive(Default)]
struct Foreign(Mutex<HashSet<String>>);

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

    /// Notes that the node at `addr` refused this node's credentials
    /// (logged once per address: every round would repeat it).
    fn unauthenticated(&self, addr: &str, status: &tonic::Status) {
        if let Ok(mut seen) = self.0.lock() {
            if seen.insert(format!("unauthenticated {addr}")) {
                tracing::warn!(
                    peer = %addr,
                    reason = %status.message(),
                    "the node at this address refuses this node's calls: do both have the same cluster secret?"
                );
            }
        }
    }
}

/// Why a peer's heartbeat was refused.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The heartbeat's table has more rows than a cluster may have.
    #[error("the heartbeat carries {0} member rows; at most {MAX_MEMBERS} are accepted")]
    TooManyMembers(usize),
}

/// The well-formed rows of a peer's member table (malformed ones are
/// skipped), before their versions are checked against the clock.
pub(crate) fn well_formed(rows: &[pb::MemberInfo]) -> impl Iterator<Item = Member> + '_ {
    rows.iter().filter_map(Member::from_info)
}

/// Who this node is and how it finds others, fixed at start.
#[derive(Clone, Debug)]
pub struct Identity {
    /// This node's id.
    pub id: String,
    /// The address it tells others to use.
    pub addr: String,
    /// `--peers-dns`: a name whose addresses are probed for members.
    pub peers_dns: Option<String>,
    /// How often heartbeats go out.
    pub interval: Duration,
}

/// Heartbeats and the member table: this node's own row, the rows it
/// merges from others, and what it learns of their health.
pub struct Gossip {
    me: Identity,
    clock: Arc<Clock>,
    membership: Arc<Membership>,
    detector: Arc<Detector>,
    directory: Directory,
    metrics: Arc<Metrics>,
    dns_seen: DnsSeen,
    foreign: Foreign,
    /// What peers' tables say of this node (see `identity.rs`).
    claims: Claims,
}

impl Gossip {
    /// Gossip for node `me`.
    pub fn new(
        me: Identity,
        clock: Arc<Clock>,
        membership: Arc<Membership>,
        detector: Arc<Detector>,
        directory: Directory,
        metrics: Arc<Metrics>,
    ) -> Self {
        // The row this process starts with is its own (a joining node's
        // is stamped at start), not an earlier member's.
        let claims = Claims::default();
        if let Some(own) = membership.get(&me.id) {
            claims.announced(own.version);
        }
        Gossip {
            me,
            clock,
            membership,
            detector,
            directory,
            metrics,
            dns_seen: DnsSeen::default(),
            foreign: Foreign::default(),
            claims,
        }
    }

    /// What peers' tables say of this node: whether one knows it as a
    /// member with data.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The `--peers-dns` name, which may bring members the table does
    /// not hold.
    pub fn peers_dns(&self) -> Option<&str> {
        self.me.peers_dns.as_deref()
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.me.id
    }

    /// This node's lifecycle state in its own table.
    pub fn own_state(&self) -> Option<MemberState> {
        self.membership.get(&self.me.id).map(|m| m.state)
    }

    /// Sets this node's own state, with a version that wins everywhere it
    /// is gossiped.
    pub fn announce(&self, state: MemberState) {
        self.membership
            .set(&self.me.id, &self.me.addr, state, self.clock.now());
        if let Some(me) = self.membership.get(&self.me.id) {
            self.claims.announced(me.version);
        }
    }

    /// Keeps this node's own row true: if gossip carried a stale address for
    /// it (a restarted pod with a new IP, say), re-announce the current one
    /// with a higher version. A row saying it left or was removed is kept.
    pub fn assert_self(&self) {
        if let Some(me) = self.membership.get(&self.me.id) {
            if me.addr != self.me.addr
                && !matches!(me.state, MemberState::Left | MemberState::Removed)
            {
                tracing::info!(stale = %me.addr, current = %self.me.addr, "re-announcing this node's address");
                self.announce(me.state);
            }
        }
    }

    /// The rows of a peer's table this node takes: well-formed ones whose
    /// version (a clock reading) is not beyond the clock offset, so no row
    /// can win every later change by a version far in the future. None: the
    /// table has more rows than any cluster may have.
    fn accepted(&self, rows: &[pb::MemberInfo], from: &str) -> Option<Vec<Member>> {
        if rows.len() > MAX_MEMBERS {
            tracing::warn!(
                from,
                rows = rows.len(),
                "member table with too many rows ignored"
            );
            return None;
        }
        Some(
            well_formed(rows)
                .filter(|m| self.clock.admit(m.version, from).is_ok())
                .collect(),
        )
    }

    /// Answers a peer's heartbeat: merges its table and sends ours.
    pub fn receive(&self, hb: pb::HeartbeatRequest) -> Result<pb::HeartbeatResponse, GossipError> {
        let rows = self
            .accepted(&hb.members, &hb.from)
            .ok_or(GossipError::TooManyMembers(hb.members.len()))?;
        self.claims.note(&self.me.id, &hb.from, &rows);
        self.membership.merge(rows);
        self.assert_self();
        if !hb.from.is_empty() {
            self.detector.heartbeat(&hb.from);
            self.answered(&hb.from);
        }
        Ok(pb::HeartbeatResponse {
            from: self.me.id.clone(),
            now_us: wall_micros(),
            members: self
                .membership
                .members()
                .iter()
                .map(Member::to_info)
                .collect(),
        })
    }

    /// One heartbeat round: the table to every member (and every address
    /// behind `--peers-dns` not known yet), answers merged and timed.
    #[tracing::instrument(level = "debug", name = "heartbeat_round", skip(self))]
    pub async fn round(&self) {
        self.assert_self();
        let members = self.membership.members();
        let table: Vec<pb::MemberInfo> = members.iter().map(Member::to_info).collect();
        let mut targets: Vec<(Option<String>, String)> = members
            .iter()
            .filter(|m| {
                m.id != self.me.id && !matches!(m.state, MemberState::Left | MemberState::Removed)
            })
            .map(|m| (Some(m.id.clone()), m.addr.clone()))
            .collect();
        for (id, _) in &targets {
            if let Some(id) = id {
                self.detector.expect(id);
            }
        }
        targets.extend(self.discover().await.into_iter().map(|a| (None, a)));
        let calls = targets
            .into_iter()
            .map(|(id, addr)| self.exchange(id, addr, table.clone()));
        join_all(calls).await;
        self.assert_self();
        for (id, health) in self.detector.evaluate() {
            tracing::info!(peer = %id, health = health.as_str(), "peer health changed");
        }
        self.export_health();
        self.membership.check_convergence();
    }

    /// Notes, for convergence, that member `id` answered (a heartbeat
    /// sent or answered); ids not in the table are not kept.
    fn answered(&self, id: &str) {
        if self.membership.convergence().is_converged() || self.membership.get(id).is_none() {
            return;
        }
        self.membership.convergence().heard(id);
        // The last answer may complete it: no need to wait for the round.
        self.membership.check_convergence();
    }

    /// One heartbeat to `addr` (member `id`, or an address found by DNS).
    async fn exchange(&self, id: Option<String>, addr: String, table: Vec<pb::MemberInfo>) {
        if id.as_deref().is_some_and(|i| self.directory.cut_off(i)) {
            return;
        }
        let Ok(mut client) = self.directory.peers().client(&addr) else {
            return;
        };
        let sent = wall_micros();
        let mut req = tonic::Request::new(pb::HeartbeatRequest {
            from: self.me.id.clone(),
            sent_at_us: sent,
            members: table,
        });
        req.set_timeout(self.me.interval.max(Duration::from_millis(500)));
        let resp = match client.heartbeat(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                if crate::cluster_name::is_mismatch(&s) {
                    self.foreign.refused(&addr, &s);
                } else if s.code() == tonic::Code::Unauthenticated {
                    self.foreign.unauthenticated(&addr, &s);
                }
                return;
            }
        };
        if resp.from.is_empty() || self.directory.cut_off(&resp.from) {
            return;
        }
        if id.is_none() {
            if let (Ok(sa), Ok(mut c)) = (addr.parse::<SocketAddr>(), self.dns_seen.0.lock()) {
                c.insert(sa, resp.from.clone());
            }
        }
        // The peer's claims about this node first: start-up identification
        // reads "a peer answered" from the detector, and must then see what
        // that peer said of it (a lost disk), not an empty claim.
        if let Some(rows) = self.accepted(&resp.members, &resp.from) {
            self.claims.note(&self.me.id, &resp.from, &rows);
            self.membership.merge(rows);
        }
        self.detector.heartbeat(&resp.from);
        self.answered(&resp.from);
        let received = wall_micros();
        let midpoint = sent / 2 + received / 2;
        let offset_us = i64::try_from(resp.now_us)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(midpoint).unwrap_or(i64::MAX));
        self.detector.clock_offset(&resp.from, offset_us);
        self.metrics
            .peer_clock_offset
            .with_label_values(&[&resp.from])
            .set(offset_us as f64 / 1e6);
        let skew = (offset_us as f64).abs() / 1e6;
        if skew > self.metrics.clock_skew.get() {
            self.metrics.clock_skew.set(skew);
        }
    }

    /// Each member's health as a gauge per state.
    fn export_health(&self) {
        for m in self.membership.members() {
            if m.id == self.me.id {
                continue;
            }
            let current = self.detector.get(&m.id).health;
            for h in [Health::Unknown, Health::Up, Health::Suspect, Health::Down] {
                self.metrics
                    .member_health
                    .with_label_values(&[&m.id, h.as_str()])
                    .set(if h == current { 1.0 } else { 0.0 });
            }
        }
    }

    /// Addresses behind `--peers-dns` that no known member answered from yet.
    async fn discover(&self) -> Vec<String> {
        let Some(name) = self.me.peers_dns.as_deref() else {
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
        let cache = self
            .dns_seen
            .0
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        addrs
            .into_iter()
            .filter(|a| match cache.get(a) {
                None => true,
                Some(id) => self.membership.get(id).is_none(),
            })
            .map(|a| a.to_string())
            .collect()
    }
}
