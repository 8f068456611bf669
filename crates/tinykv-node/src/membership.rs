//! Members, their ring states, and the ring they make.
//!
//! The member table is gossiped with heartbeats: each entry carries a version
//! and the highest version of an entry wins when tables merge, so every node
//! converges on the same table and therefore the same ring. Health (up,
//! suspect, down) is each node's own view, kept in [`crate::detector`], and
//! never changes the ring: a down node keeps its ranges.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tinykv_proto::internal::MemberInfo;

use crate::convergence::Convergence;
use crate::ring::Ring;

/// A member's place in the ring's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberState {
    /// Taking its ring positions; streaming its ranges in; not yet read from.
    Joining,
    /// A full replica.
    Normal,
    /// Streaming its ranges to the nodes that take them over.
    Leaving,
    /// Gone after a decommission; owns nothing.
    Left,
    /// Removed for good by `removenode`; owns nothing.
    Removed,
}

impl MemberState {
    /// Whether the node holds ring positions for writes.
    pub fn in_write_ring(self) -> bool {
        matches!(
            self,
            MemberState::Joining | MemberState::Normal | MemberState::Leaving
        )
    }

    /// Whether the node owns ranges once pending joins and leaves complete.
    pub fn in_future_ring(self) -> bool {
        matches!(self, MemberState::Joining | MemberState::Normal)
    }

    /// Whether the node serves reads for its ranges.
    pub fn in_read_ring(self) -> bool {
        matches!(self, MemberState::Normal | MemberState::Leaving)
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberState::Joining => "joining",
            MemberState::Normal => "normal",
            MemberState::Leaving => "leaving",
            MemberState::Left => "left",
            MemberState::Removed => "removed",
        })
    }
}

impl FromStr for MemberState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "joining" => MemberState::Joining,
            "normal" => MemberState::Normal,
            "leaving" => MemberState::Leaving,
            "left" => MemberState::Left,
            "removed" => MemberState::Removed,
            _ => return Err(format!("unknown member state {s:?}")),
        })
    }
}

/// One row of the member table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Stable node id.
    pub id: String,
    /// Current `host:port`.
    pub addr: String,
    /// Ring lifecycle state.
    pub state: MemberState,
    /// Version of this row; the highest wins on merge.
    pub version: u64,
}

impl Member {
    /// The gossip form.
    pub fn to_info(&self) -> MemberInfo {
        MemberInfo {
            node_id: self.id.clone(),
            address: self.addr.clone(),
            state: self.state.to_string(),
            version: self.version,
        }
    }

    /// Parses the gossip form; `None` for malformed rows.
    pub fn from_info(i: &MemberInfo) -> Option<Member> {
        if !valid_id(&i.node_id) || i.address.is_empty() || i.address.len() > MAX_ADDR_BYTES {
            return None;
        }
        Some(Member {
            id: i.node_id.clone(),
            addr: i.address.clone(),
            state: i.state.parse().ok()?,
            version: i.version,
        })
    }
}

/// Most members a table may hold, and so a heartbeat may carry.
pub const MAX_MEMBERS: usize = 1024;
/// Longest member id (a DNS name's limit).
pub const MAX_ID_BYTES: usize = 253;
/// Longest member address.
const MAX_ADDR_BYTES: usize = 300;

/// Whether `id` can be a member id: 1 to 253 letters, digits and `-_.:`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Where a write of one key goes, and how its acks are counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteTargets {
    /// The key's replicas in the read ring, then those of the future ring
    /// not among them: every node the write is sent to.
    pub nodes: Vec<String>,
    /// The key's two replica sets while a join or leave moves its range;
    /// none when they are one set (no ring change, or one that leaves this
    /// key's replicas alone), and then W acks among `nodes` are W acks in it.
    pub sets: Option<ReplicaSets>,
}

/// A key's replicas in the read ring (which reads ask now) and in the
/// future ring (which reads ask once the join or leave completes). A write
/// needs its W acks in each: W acks counted over their union could all but
/// one come from nodes the other set's reads never ask, and a QUORUM read
/// of that set would then miss an acknowledged write (R + W > N would not
/// hold in it). A node in both sets counts in both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSets {
    /// The read ring's replicas of the key.
    pub read: Vec<String>,
    /// The future ring's replicas of the key.
    pub future: Vec<String>,
}

struct Table {
    members: BTreeMap<String, Member>,
    read_ring: Arc<Ring>,
    future_ring: Arc<Ring>,
}

/// The member table and the rings derived from it.
pub struct Membership {
    self_id: String,
    rf: usize,
    vnodes: u32,
    table: RwLock<Table>,
    /// Bumped by every change, so the member file is written only when
    /// the table changed.
    generation: AtomicU64,
    /// Whether the table is known to be the cluster's yet.
    convergence: Convergence,
}

impl Membership {
    /// A table holding `members` (this node must be among them).
    pub fn new(self_id: &str, members: Vec<Member>, rf: usize, vnodes: u32) -> Membership {
        let members: BTreeMap<_, _> = members.into_iter().map(|m| (m.id.clone(), m)).collect();
        let (read_ring, future_ring) = rings(&members, rf, vnodes);
        Membership {
            self_id: self_id.to_string(),
            rf,
            vnodes,
            table: RwLock::new(Table {
                members,
                read_ring,
                future_ring,
            }),
            generation: AtomicU64::new(1),
            convergence: Convergence::settled(),
        }
    }

    /// The table, not converged until `convergence` says so (a table
    /// made whole in a test counts as converged from the start).
    pub fn with_convergence(mut self, convergence: Convergence) -> Self {
        self.convergence = convergence;
        self
    }

    /// Whether this table is known to be the cluster's yet.
    pub fn convergence(&self) -> &Convergence {
        &self.convergence
    }

    /// Checks whether membership has converged now (see
    /// [`Convergence::evaluate`]).
    pub fn check_convergence(&self) -> bool {
        self.convergence.is_converged() || self.convergence.evaluate(&self.self_id, &self.members())
    }

    /// A number that changes whenever the table does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// This node's id.
    pub fn self_id(&self) -> &str {
        &self.self_id
    }

    /// The configured replication factor (N): the one source of it for the
    /// node; a ring with fewer members has fewer replicas per key.
    pub fn replication_factor(&self) -> usize {
        self.rf
    }

    /// Virtual nodes per member.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The ring used to choose the replicas that answer reads.
    pub fn read_ring(&self) -> Arc<Ring> {
        match self.table.read() {
            Ok(t) => t.read_ring.clone(),
            Err(p) => p.into_inner().read_ring.clone(),
        }
    }

    /// The ring once pending joins and leaves complete (normal and joining
    /// members). Writes go to the replicas of both rings, so joining nodes
    /// get new writes while they stream old ones, and the nodes taking over
    /// from a leaving node get them while it streams its data out.
    pub fn future_ring(&self) -> Arc<Ring> {
        match self.table.read() {
            Ok(t) => t.future_ring.clone(),
            Err(p) => p.into_inner().future_ring.clone(),
        }
    }

    /// The nodes a write of `key` goes to: its replicas in the read ring,
    /// then those in the future ring that are not already included; and,
    /// while a join or leave moves the key's range, the two replica sets
    /// its acks are counted in (see [`WriteTargets`]).
    pub fn write_targets(&self, key: &[u8]) -> WriteTargets {
        let (read, future) = match self.table.read() {
            Ok(t) => (t.read_ring.clone(), t.future_ring.clone()),
            Err(p) => {
                let t = p.into_inner();
                (t.read_ring.clone(), t.future_ring.clone())
            }
        };
        let mut nodes: Vec<String> = read
            .preference_list(key)
            .into_iter()
            .map(String::from)
            .collect();
        if Arc::ptr_eq(&read, &future) {
            // No ring change in progress (the usual case).
            return WriteTargets { nodes, sets: None };
        }
        let future = future.preference_list(key);
        if future.len() == nodes.len() && future.iter().all(|n| nodes.iter().any(|o| o == n)) {
            // The key's range is not moving: one replica set.
            return WriteTargets { nodes, sets: None };
        }
        let read = nodes.clone();
        for n in &future {
            if !nodes.iter().any(|o| o == n) {
                nodes.push(n.to_string());
            }
        }
        let future = future.into_iter().map(String::from).collect();
        WriteTargets {
            nodes,
            sets: Some(ReplicaSets { read, future }),
        }
    }

    /// Every row, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        match self.table.read() {
            Ok(t) => t.members.values().cloned().collect(),
            Err(p) => p.into_inner().members.values().cloned().collect(),
        }
    }

    /// One row.
    pub fn get(&self, id: &str) -> Option<Member> {
        match self.table.read() {
            Ok(t) => t.members.get(id).cloned(),
            Err(p) => p.into_inner().members.get(id).cloned(),
        }
    }

    /// The address of member `id`.
    pub fn address_of(&self, id: &str) -> Option<String> {
        self.get(id).map(|m| m.addr)
    }

    /// The id of the member at `addr`, if one is there.
    pub fn id_at(&self, addr: &str) -> Option<String> {
        let find = |t: &Table| {
            t.members
                .values()
                .find(|m| m.addr == addr)
                .map(|m| m.id.clone())
        };
        match self.table.read() {
            Ok(t) => find(&t),
            Err(p) => find(&p.into_inner()),
        }
    }

    /// Merges gossiped rows: a row replaces ours when its version is higher
    /// (or equal with a later lifecycle state, which makes merge commutative).
    /// Returns true when the table changed.
    pub fn merge(&self, rows: impl IntoIterator<Item = Member>) -> bool {
        let mut t = match self.table.write() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let mut changed = false;
        for row in rows {
            let replace = match t.members.get(&row.id) {
                // A full table takes no new member: gossip cannot grow it
                // (and every ring rebuild with it) without bound.
                None if t.members.len() >= MAX_MEMBERS => {
                    tracing::warn!(id = %row.id, "member table full ({MAX_MEMBERS}); new member ignored");
                    false
                }
                None => true,
                Some(cur) => {
                    (row.version, row.state, &row.addr) > (cur.version, cur.state, &cur.addr)
                }
            };
            if replace {
                t.members.insert(row.id.clone(), row);
                changed = true;
            }
        }
        if changed {
            let (r, f) = rings(&t.members, self.rf, self.vnodes);
            t.read_ring = r;
            t.future_ring = f;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }

    /// Sets a member's state (and address), bumping its version so the change
    /// wins everywhere it is gossiped. `version` is a clock reading.
    pub fn set(&self, id: &str, addr: &str, state: MemberState, version: u64) {
        let cur = self.get(id).map(|m| m.version).unwrap_or(0);
        self.merge([Member {
            id: id.to_string(),
            addr: addr.to_string(),
            state,
            version: version.max(cur + 1),
        }]);
    }
}

fn rings(members: &BTreeMap<String, Member>, rf: usize, vnodes: u32) -> (Arc<Ring>, Arc<Ring>) {
    let ids = |pick: fn(MemberState) -> bool| -> Vec<String> {
        members
            .values()
            .filter(|m| pick(m.state))
            .map(|m| m.id.clone())
            .collect()
    };
    let (read, future) = (
        ids(MemberState::in_read_ring),
        ids(MemberState::in_future_ring),
    );
    let read_ring = Arc::new(Ring::new(read.iter().cloned(), vnodes, rf));
    if read == future {
        // No member joining or leaving: one ring, shared (lookups that
        // need both see it is the same and look once).
        return (read_ring.clone(), read_ring);
    }
    (read_ring, Arc::new(Ring::new(future, vnodes, rf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, state: MemberState, version: u64) -> Member {
        Member {
            id: id.into(),
            addr: format!("{id}:1"),
            state,
            version,
        }
    }

    #[test]
    fn a_full_table_takes_no_new_member_but_still_takes_changes() {
        let x = Membership::new("a", vec![], 3, 1);
        let rows = (0..MAX_MEMBERS + 10).map(|i| m(&format!("n{i}"), MemberState::Normal, 1));
        x.merge(rows);
        assert_eq!(x.members().len(), MAX_MEMBERS);
        assert!(!x.merge([m("newcomer", MemberState::Normal, 1)]));
        assert!(x.get("newcomer").is_none());
        assert!(
            x.merge([m("n0", MemberState::Leaving, 2)]),
            "a known member still changes"
        );
        assert_eq!(x.get("n0").map(|r| r.state), Some(MemberState::Leaving));
    }

    #[test]
    fn merge_keeps_highest_version_in_any_order() {
        let rows = vec![
            m("a", MemberState::Normal, 1),
            m("a", MemberState::Leaving, 5),
            m("a", MemberState::Left, 7),
            m("b", MemberState::Normal, 1),
        ];
        let x = Membership::new("a", vec![], 3, 8);
        let y = Membership::new("a", vec![], 3, 8);
        x.merge(rows.clone());
        y.merge(rows.into_iter().rev());
        assert_eq!(x.members(), y.members());
        assert_eq!(x.get("a").map(|r| r.state), Some(MemberState::Left));
        assert_eq!(x.read_ring().nodes(), ["b".to_string()]);
    }

    #[test]
    fn joining_nodes_take_writes_not_reads() {
        let t = Membership::new(
            "a",
            vec![
                m("a", MemberState::Normal, 1),
                m("j", MemberState::Joining, 1),
            ],
            3,
            8,
        );
        assert!(t.future_ring().contains_node("j"));
        let mut sets = t
            .write_targets(b"any")
            .sets
            .expect("acks count in two sets");
        sets.future.sort();
        assert_eq!(
            (sets.read, sets.future),
            (vec!["a".into()], vec!["a".into(), "j".into()])
        );
        assert_eq!(t.write_targets(b"any").nodes.len(), 2, "a and j");
        assert!(!t.read_ring().contains_node("j"));
        t.set("j", "j:1", MemberState::Normal, 0);
        assert!(t.read_ring().contains_node("j"));
        // Settled: one ring serves reads and writes.
        assert!(Arc::ptr_eq(&t.read_ring(), &t.future_ring()));
        assert_eq!(t.write_targets(b"any").nodes.len(), 2);
        assert_eq!(t.write_targets(b"any").sets, None, "one set again");
        assert!(
            !t.merge([m("j", MemberState::Joining, 1)]),
            "stale row must not win"
        );
    }
}
