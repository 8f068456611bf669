//! A node started without `--join` on an empty data directory: a member
//! of a new cluster (its peers are new too, or list it only in their
//! `--peers`), or a member whose disk was lost or replaced (a peer knows it
//! as `normal` or `leaving` with data). The second comes back as `joining`
//! and streams its ranges before it answers reads or counts toward R or W,
//! and says why in its log and status (see `identity.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Lifecycle;
use crate::detector::Health;
use crate::identity::{verdict, Claim, Verdict, CONFIGURED_VERSION};
use crate::membership::MemberState;

/// How often `identify` looks at what the heartbeat loop has heard.
const POLL: Duration = Duration::from_millis(50);

impl Lifecycle {
    /// Whether any other member answered a heartbeat.
    pub(super) fn heard_a_peer(&self) -> bool {
        self.parts
            .membership
            .members()
            .iter()
            .any(|m| m.id != self.id && self.parts.detector.get(&m.id).health == Health::Up)
    }

    /// Before the node serves: waits (up to `identify_wait`) for a peer to
    /// answer, then decides whether this empty data directory is a new
    /// member's or a lost one's. With no answer by then the node serves as
    /// a new member and decides on the first answer (every heartbeat).
    pub(super) async fn identify(self: &Arc<Self>) {
        let deadline = tokio::time::Instant::now() + self.parts.identify_wait;
        while !self.settle_identity() {
            if tokio::time::Instant::now() >= deadline {
                tracing::info!(id = %self.id, waited = ?self.parts.identify_wait, "empty data directory and no peer answered yet: serving as a new member; the first peer that answers tells whether the cluster knew this node with data");
                return;
            }
            tokio::select! {
                _ = self.parts.shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        // Tell the peers at once (a re-joining node leaves their read ring).
        self.parts.gossip.round().await;
    }

    /// Decides once, when it can, what a node on an empty data directory
    /// is; true when it is decided (now or before).
    pub(super) fn settle_identity(self: &Arc<Self>) -> bool {
        if self.identified.load(Ordering::Acquire) {
            return true;
        }
        let alone = self.parts.gossip.peers_dns().is_none()
            && self
                .parts
                .membership
                .members()
                .iter()
                .all(|m| m.id == self.id);
        let decided = verdict(
            self.parts.gossip.claims().claim(),
            self.heard_a_peer(),
            alone,
        );
        if decided == Verdict::Wait || self.identified.swap(true, Ordering::AcqRel) {
            return decided != Verdict::Wait;
        }
        match decided {
            Verdict::LostData(claim) => self.rejoin(&claim),
            _ => {
                self.write_member_marker(MemberState::Normal);
                self.parts.gossip.announce(MemberState::Normal);
                tracing::info!(id = %self.id, "first start of this data directory and no peer knows this node with data: a new member (normal)");
            }
        }
        true
    }

    /// A node whose data is lost: back to `joining`, then the join path.
    fn rejoin(self: &Arc<Self>, claim: &Claim) {
        let reason = lost_data_reason(&self.id, claim);
        tracing::warn!(id = %self.id, "{reason}");
        self.update(|p| {
            p.operation = "joining".into();
            p.reason = Some(reason);
        });
        self.parts.gossip.announce(MemberState::Joining);
        self.spawn_join();
    }

    /// Gives this node's own row a version it announced, once, so that the
    /// cluster can tell it has been a member with data if its disk is lost
    /// (members of earlier versions, and of a new cluster, hold rows at
    /// the configured version).
    pub(super) fn stamp_own_row(&self) {
        let own = self.parts.membership.get(&self.id);
        if own.is_some_and(|m| m.state == MemberState::Normal && m.version <= CONFIGURED_VERSION) {
            self.parts.gossip.announce(MemberState::Normal);
        }
    }
}

/// What the log and status say of a node that lost its data.
pub(super) fn lost_data_reason(id: &str, claim: &Claim) -> String {
    format!(
        "lost its data: its data directory holds no finished membership (empty, replaced, or a join cut short) but {} knows {id} as a {} member (row version {}); re-joining: streaming its ranges before serving reads",
        claim.from, claim.state, claim.version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_the_peer_and_the_state() {
        let claim = Claim {
            from: "node1".into(),
            state: MemberState::Leaving,
            version: 42,
        };
        let r = lost_data_reason("node3", &claim);
        assert!(r.starts_with("lost its data"), "{r}");
        assert!(r.contains("node1 knows node3 as a leaving member"), "{r}");
        assert!(r.contains("row version 42"), "{r}");
    }
}
