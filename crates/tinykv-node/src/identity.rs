//! A node that lost its disk says so.
//!
//! A node's identity is its node id and the member marker in its data
//! directory (`lifecycle::MEMBER_MARKER`), written durably when it first
//! becomes a member with data. A node is a member "with data" in the
//! cluster's eyes once its row carries a version it announced itself: rows
//! made from a `--peers` list carry [`CONFIGURED_VERSION`], and every node
//! announces its own row (a clock reading, far above it) when it becomes a
//! member. So a node that starts with an empty data directory (no marker)
//! tells, from the first peer that answers, whether it is new (the peer
//! holds its row at [`CONFIGURED_VERSION`], or not at all) or has lost its
//! data (the peer holds it as `normal` or `leaving`, or `joining`: a join
//! cut short, at a version this process did not announce). The cluster needs no id of its own for this:
//! `--cluster-name` keeps clusters apart, and the row versions say which
//! members have existed.

use std::sync::Mutex;

use crate::membership::{Member, MemberState};

/// The version of a row made from the `--peers` list: below every version
/// a node announces, so a row above it was announced by that node.
pub const CONFIGURED_VERSION: u64 = 1;

/// Most own versions remembered (a process announces a handful).
const MAX_ANNOUNCED: usize = 64;

/// A peer's row saying this node has been a member with data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The peer that sent it.
    pub from: String,
    /// The state it gives this node.
    pub state: MemberState,
    /// Its version.
    pub version: u64,
}

/// What a node with an empty data directory decides about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No peer has answered yet: it cannot tell.
    Wait,
    /// No peer knows it as a member with data: a new member.
    New,
    /// A peer knows it as a member with data: its data is lost, so it
    /// re-joins (streams its ranges) before it serves reads.
    LostData(Claim),
}

/// Whether `row`, a peer's row for this node, says this node has been a
/// member with data (not just listed in a `--peers` flag): `normal` or
/// `leaving` at a version it announced, or `joining` (a join that a lost
/// disk, or a crash before the marker, cut short: it must finish).
pub fn says_member_with_data(row: &Member) -> bool {
    matches!(
        row.state,
        MemberState::Normal | MemberState::Leaving | MemberState::Joining
    ) && row.version > CONFIGURED_VERSION
}

/// The decision for a node with an empty data directory: `claim` is what
/// peers said of it, `heard` whether any peer answered, `alone` whether no
/// other member is configured or discoverable.
pub fn verdict(claim: Option<Claim>, heard: bool, alone: bool) -> Verdict {
    match claim {
        Some(c) => Verdict::LostData(c),
        None if heard || alone => Verdict::New,
        None => Verdict::Wait,
    }
}

#[derive(Default)]
struct Seen {
    announced: Vec<u64>,
    claim: Option<Claim>,
}

/// What peers' tables say of this node, kept by gossip as rows arrive
/// (before they are merged: a merged row no longer says who sent it).
#[derive(Default)]
pub struct Claims(Mutex<Seen>);

impl Claims {
    /// Notes that this process announced its own row at `version`, so the
    /// row coming back from peers is not taken for an older member's.
    pub fn announced(&self, version: u64) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.announced.len() >= MAX_ANNOUNCED {
            s.announced.remove(0);
        }
        s.announced.push(version);
    }

    /// Notes the row for node `me` among `rows`, sent by peer `from`.
    pub fn note(&self, me: &str, from: &str, rows: &[Member]) {
        let Some(row) = rows.iter().find(|r| r.id == me) else {
            return;
        };
        if !says_member_with_data(row) {
            return;
        }
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.announced.contains(&row.version) {
            return;
        }
        if s.claim.as_ref().is_none_or(|c| c.version < row.version) {
            s.claim = Some(Claim {
                from: from.to_string(),
                state: row.state,
                version: row.version,
            });
        }
    }

    /// The newest row a peer sent saying this node has been a member with
    /// data, that this process did not announce.
    pub fn claim(&self) -> Option<Claim> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .claim
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, state: MemberState, version: u64) -> Member {
        Member {
            id: id.into(),
            addr: "127.0.0.1:1".into(),
            state,
            version,
        }
    }

    #[test]
    fn only_an_announced_normal_or_leaving_row_says_member_with_data() {
        assert!(!says_member_with_data(&row(
            "a",
            MemberState::Normal,
            CONFIGURED_VERSION
        )));
        assert!(says_member_with_data(&row("a", MemberState::Normal, 5)));
        assert!(says_member_with_data(&row("a", MemberState::Leaving, 5)));
        assert!(says_member_with_data(&row("a", MemberState::Joining, 5)));
        for s in [MemberState::Left, MemberState::Removed] {
            assert!(!says_member_with_data(&row("a", s, 5)), "{s:?}");
        }
    }

    #[test]
    fn the_verdict_waits_only_while_nobody_answered() {
        let c = Claim {
            from: "b".into(),
            state: MemberState::Normal,
            version: 9,
        };
        assert_eq!(verdict(None, false, false), Verdict::Wait);
        assert_eq!(verdict(None, true, false), Verdict::New);
        assert_eq!(verdict(None, false, true), Verdict::New);
        assert_eq!(
            verdict(Some(c.clone()), true, false),
            Verdict::LostData(c.clone())
        );
        assert_eq!(verdict(Some(c.clone()), false, false), Verdict::LostData(c));
    }

    #[test]
    fn claims_keep_the_newest_foreign_row_for_this_node_only() {
        let claims = Claims::default();
        claims.note("me", "b", &[row("b", MemberState::Normal, 7)]);
        claims.note("me", "b", &[row("me", MemberState::Normal, 1)]);
        assert_eq!(claims.claim(), None, "configured rows and others' rows");
        claims.announced(50);
        claims.note("me", "b", &[row("me", MemberState::Normal, 50)]);
        assert_eq!(claims.claim(), None, "this process's own announcement");
        claims.note("me", "b", &[row("me", MemberState::Normal, 30)]);
        claims.note("me", "c", &[row("me", MemberState::Leaving, 40)]);
        claims.note("me", "b", &[row("me", MemberState::Normal, 20)]);
        assert_eq!(
            claims.claim(),
            Some(Claim {
                from: "c".into(),
                state: MemberState::Leaving,
                version: 40
            })
        );
    }
}
