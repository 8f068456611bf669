//! Whether this node knows the cluster yet.
//!
//! A node that has just started may hold an incomplete member table: one
//! started with `--peers-dns` only knows itself until discovery answers,
//! and even a table loaded from the data directory may be stale. Decisions
//! that are wrong on an incomplete table wait until membership has
//! converged: every member the node knows has answered a heartbeat (sent
//! or received), or a bound (`--membership-convergence-timeout`) has
//! passed. Until then the node purges no tombstone (a replica it does not
//! know of may still miss the delete) and acknowledges no write with one
//! copy for a key it does not own (the copy might be on no owner at all).
//! Hints for members it does not know are kept whether or not it has
//! converged (see `hints.rs`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::membership::{Member, MemberState, MAX_MEMBERS};

/// What the node knew of the cluster when it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// How long to wait at most for the known members to answer.
    pub bound: Duration,
    /// Whether `--peers-dns` may bring members the table does not hold.
    pub discovery: bool,
    /// Whether the table at start names other members (from `--peers` or
    /// the member file): only then does it say which ranges this node owns.
    pub table_known: bool,
}

/// Why membership counts as converged.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reason {
    /// Every known member answered.
    AllAnswered(usize),
    /// No other member is known and none can be discovered: one node.
    Alone,
    /// The bound passed: `answered` of `known` members answered by then.
    BoundPassed {
        /// Members that answered.
        answered: usize,
        /// Members known.
        known: usize,
    },
}

/// Whether, and since when, this node's member table counts as the
/// cluster's.
pub struct Convergence {
    start: Option<(Start, Instant)>,
    converged: AtomicBool,
    /// Members that answered a heartbeat before convergence.
    heard: Mutex<HashSet<String>>,
}

impl Convergence {
    /// Converged from the start (a table given whole, as in unit tests).
    pub fn settled() -> Self {
        Convergence {
            start: None,
            converged: AtomicBool::new(true),
            heard: Mutex::new(HashSet::new()),
        }
    }

    /// Not converged until the members answer or `start.bound` passes.
    pub fn pending(start: Start) -> Self {
        Convergence {
            start: Some((start, Instant::now())),
            converged: AtomicBool::new(false),
            heard: Mutex::new(HashSet::new()),
        }
    }

    /// Whether membership has converged.
    pub fn is_converged(&self) -> bool {
        self.converged.load(Ordering::Acquire)
    }

    /// Notes that member `id` answered a heartbeat. Only ids in the table
    /// are passed, and at most a table's worth is kept.
    pub fn heard(&self, id: &str) {
        if self.is_converged() {
            return;
        }
        if let Ok(mut h) = self.heard.lock() {
            if h.len() < MAX_MEMBERS {
                h.insert(id.to_string());
            }
        }
    }

    /// Decides, from the current table, whether membership has converged
    /// now; logs the moment and why, once. `members` is the whole table.
    pub fn evaluate(&self, self_id: &str, members: &[Member]) -> bool {
        if self.is_converged() {
            return true;
        }
        let Some((start, since)) = self.start else {
            return true;
        };
        let known: Vec<&str> = members
            .iter()
            .filter(|m| {
                m.id != self_id && !matches!(m.state, MemberState::Left | MemberState::Removed)
            })
            .map(|m| m.id.as_str())
            .collect();
        let answered = match self.heard.lock() {
            Ok(h) => known.iter().filter(|id| h.contains(**id)).count(),
            Err(_) => 0,
        };
        let reason = if known.is_empty() && !start.discovery {
            Reason::Alone
        } else if !known.is_empty() && answered == known.len() {
            Reason::AllAnswered(answered)
        } else if since.elapsed() >= start.bound {
            Reason::BoundPassed {
                answered,
                known: known.len(),
            }
        } else {
            return false;
        };
        if self.converged.swap(true, Ordering::AcqRel) {
            // Another caller decided it (and logged it) meanwhile.
            return true;
        }
        if let Ok(mut h) = self.heard.lock() {
            *h = HashSet::new();
        }
        match reason {
            Reason::AllAnswered(n) => tracing::info!(
                members = n,
                "membership converged: every known member answered"
            ),
            Reason::Alone => tracing::info!(
                "membership converged: no other member is configured and none can be discovered (no --peers-dns)"
            ),
            Reason::BoundPassed { answered, known } => tracing::warn!(
                answered,
                known,
                bound = ?start.bound,
                "membership converged: --membership-convergence-timeout passed before every known member answered"
            ),
        }
        true
    }

    /// Whether this node may acknowledge a write with one copy (W = 1)
    /// when `targets` are the key's replicas in its table: always once
    /// converged; before, only when its table says it owns the key. A
    /// table that named no other member at start says nothing about
    /// ownership (alone on the ring, the node owns every key), so then
    /// no such write is taken. The error says why, for the client.
    pub fn may_ack_alone(&self, self_id: &str, targets: &[String]) -> Result<(), String> {
        if self.is_converged() {
            return Ok(());
        }
        let known = self.start.is_some_and(|(s, _)| s.table_known);
        if !known {
            return Err("this node does not know the cluster yet (its membership has not converged and it started without a member table): a write acknowledged by one copy is refused; retry shortly, or write at QUORUM".into());
        }
        if targets.iter().any(|t| t == self_id) {
            return Ok(());
        }
        Err(format!(
            "this node does not own this key's range and its membership has not converged yet: a write acknowledged by one copy is refused; retry shortly, write through a replica ({}), or write at QUORUM",
            targets.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> Member {
        Member {
            id: id.into(),
            addr: format!("{id}:1"),
            state: MemberState::Normal,
            version: 1,
        }
    }

    fn start(discovery: bool, table_known: bool) -> Start {
        Start {
            bound: Duration::from_secs(3600),
            discovery,
            table_known,
        }
    }

    #[test]
    fn converges_once_every_known_member_answered() {
        let c = Convergence::pending(start(false, true));
        let table = [row("a"), row("b"), row("c")];
        assert!(!c.evaluate("a", &table));
        c.heard("b");
        assert!(!c.evaluate("a", &table), "c has not answered");
        c.heard("c");
        assert!(c.evaluate("a", &table));
        assert!(c.is_converged());
    }

    #[test]
    fn a_lone_node_converges_at_once_unless_it_discovers_peers() {
        let table = [row("a")];
        assert!(Convergence::pending(start(false, false)).evaluate("a", &table));
        let dns = Convergence::pending(start(true, false));
        assert!(!dns.evaluate("a", &table), "DNS may still bring members");
    }

    #[test]
    fn the_bound_ends_the_wait() {
        let c = Convergence::pending(Start {
            bound: Duration::ZERO,
            discovery: true,
            table_known: true,
        });
        assert!(c.evaluate("a", &[row("a"), row("b")]));
    }

    #[test]
    fn one_copy_writes_wait_for_ownership_or_convergence() {
        let targets = vec!["b".to_string(), "c".to_string()];
        let mine = vec!["a".to_string(), "b".to_string()];
        let known = Convergence::pending(start(false, true));
        assert!(known.may_ack_alone("a", &mine).is_ok(), "owned");
        let err = known.may_ack_alone("a", &targets).unwrap_err();
        assert!(err.contains("does not own"), "{err}");
        let unknown = Convergence::pending(start(true, false));
        let err = unknown.may_ack_alone("a", &mine).unwrap_err();
        assert!(err.contains("does not know the cluster"), "{err}");
        unknown.heard("b");
        assert!(unknown.evaluate("a", &[row("a"), row("b")]));
        assert!(unknown.may_ack_alone("a", &targets).is_ok(), "converged");
    }
}
