//! The pure parts of cleanup: which ranges this node holds copies of but
//! no longer replicates, whether a ring change took ranges away from it,
//! and how long to pause between pages so a round stays within its rate.

use std::time::{Duration, Instant};

use super::RoundReport;
use crate::ring::{Ring, TokenRange};

/// The ranges of `ring` that `id` does not replicate: any version this node
/// holds there is a leftover from a time it did (a node joined and took
/// the range over). Empty when `id` is not in the ring at all: a node that
/// left or was removed owns nothing and cleans nothing.
pub(crate) fn unowned(ring: &Ring, id: &str) -> Vec<TokenRange> {
    if !ring.contains_node(id) {
        return Vec::new();
    }
    ring.ranges()
        .into_iter()
        .filter(|r| !r.replicas.iter().any(|n| n == id))
        .collect()
}

/// Whether going from ring `old` to ring `new` took from `id` any token it
/// replicated: then it holds copies nobody updates any more, and cleanup is
/// pending. A node that is not in `new` (it left) loses nothing that
/// matters here: it serves nothing and streams only what it owned.
pub(crate) fn lost_ranges(old: &Ring, new: &Ring, id: &str) -> bool {
    if !new.contains_node(id) || !old.contains_node(id) {
        return false;
    }
    let had: Vec<(u64, u64)> = old
        .ranges_of(id)
        .iter()
        .flat_map(|r| pieces(r.start, r.end))
        .collect();
    let gone: Vec<(u64, u64)> = unowned(new, id)
        .iter()
        .flat_map(|r| pieces(r.start, r.end))
        .collect();
    gone.iter()
        .any(|g| had.iter().any(|h| g.0.max(h.0) <= g.1.min(h.1)))
}

/// Longest margin [`pushable`] keeps below the grace period, for the push
/// itself and the nodes' clock offsets.
const PUSH_MARGIN: Duration = Duration::from_secs(60);

/// Whether a leftover version written at `timestamp` (microseconds) may
/// still be pushed to the replicas at `now_us`. A delete newer than it
/// might have reached the replicas and had its tombstone purged after
/// `grace`; pushing the old version then would bring the key back. So
/// only versions younger than the grace (less a margin: half of it, at
/// most a minute) are pushed; older ones are dropped without a push: the
/// replicas have them already, since anti-entropy ran among the replicas
/// (this node one of them) at least once per grace period while this node
/// still owned the range (the same rule hints follow with --max-hint-age).
pub(crate) fn pushable(timestamp: u64, now_us: u64, grace: Duration) -> bool {
    let margin = (grace / 2).min(PUSH_MARGIN);
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    timestamp.saturating_add(micros(grace)) > now_us.saturating_add(micros(margin))
}

/// `(start, end]` as at most two inclusive, non-wrapping intervals.
fn pieces(start: u64, end: u64) -> Vec<(u64, u64)> {
    if start < end {
        return vec![(start + 1, end)];
    }
    // Wraps past u64::MAX (start == end is the whole ring).
    let mut out = vec![(0, end)];
    if start < u64::MAX {
        out.push((start + 1, u64::MAX));
    }
    out
}

/// Paces a round to at most `per_second` pages: after each page, how long
/// to pause so the pages so far took at least `pages / per_second`. A
/// round of a large node therefore takes longer, but never takes more than
/// its share of the disk and the peers from foreground requests.
#[derive(Debug)]
pub(crate) struct Pacer {
    per_second: u32,
    started: Instant,
    pages: u64,
}

impl Pacer {
    /// A pacer starting `now`; 0 pages per second means no limit.
    pub(crate) fn new(per_second: u32, now: Instant) -> Self {
        Pacer {
            per_second,
            started: now,
            pages: 0,
        }
    }

    /// Counts a page done at `now` and returns the pause before the next.
    pub(crate) fn after_page(&mut self, now: Instant) -> Duration {
        self.pages += 1;
        if self.per_second == 0 {
            return Duration::ZERO;
        }
        let due = Duration::from_secs_f64(self.pages as f64 / f64::from(self.per_second));
        (self.started + due).saturating_duration_since(now)
    }
}

/// Reasons shown in a round's message, at most (the rest are counted).
const REASONS_SHOWN: usize = 3;

/// A round's message: what it removed, or the first reasons it is
/// incomplete (and how many more).
pub(super) fn summary(report: &RoundReport, reasons: &[String]) -> String {
    let done = format!(
        "{} keys removed from {} ranges",
        report.keys_removed, report.ranges_cleaned
    );
    if reasons.is_empty() {
        return done;
    }
    let mut shown = reasons[..reasons.len().min(REASONS_SHOWN)].join("; ");
    if reasons.len() > REASONS_SHOWN {
        shown.push_str(&format!("; and {} more", reasons.len() - REASONS_SHOWN));
    }
    format!("incomplete ({done}): {shown}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::key_token;

    fn ring(nodes: &[&str]) -> Ring {
        Ring::new(nodes.iter().copied(), 64, 3)
    }

    #[test]
    fn unowned_ranges_are_exactly_the_keys_a_node_does_not_replicate() {
        let r = ring(&["a", "b", "c", "d"]);
        let gone = unowned(&r, "a");
        assert!(!gone.is_empty());
        for k in 0..3000u32 {
            let key = format!("k{k}");
            let t = key_token(key.as_bytes());
            let replica = r.preference_list(key.as_bytes()).contains(&"a");
            let in_unowned = gone.iter().any(|g| g.contains(t));
            assert_eq!(replica, !in_unowned, "{key}");
        }
        assert!(
            unowned(&ring(&["a", "b", "c"]), "a").is_empty(),
            "rf 3 of 3"
        );
        assert!(unowned(&r, "zz").is_empty(), "not a member: nothing");
    }

    #[test]
    fn a_join_takes_ranges_away_and_a_leave_or_removal_does_not() {
        let three = ring(&["a", "b", "c"]);
        let four = ring(&["a", "b", "c", "d"]);
        assert!(lost_ranges(&three, &four, "a"), "d took some of a's ranges");
        assert!(!lost_ranges(&four, &three, "a"), "d left: a only gains");
        assert!(
            !lost_ranges(&three, &four, "d"),
            "the joiner was not in old"
        );
        assert!(!lost_ranges(&four, &three, "d"), "the leaver is not in new");
        assert!(!lost_ranges(&four, &four.clone(), "a"));
        let five = ring(&["a", "b", "c", "d", "e"]);
        assert!(lost_ranges(&four, &five, "d"));
    }

    #[test]
    fn pieces_cover_wrapping_ranges() {
        assert_eq!(pieces(1, 5), vec![(2, 5)]);
        assert_eq!(pieces(5, 1), vec![(0, 1), (6, u64::MAX)]);
        assert_eq!(pieces(u64::MAX, 3), vec![(0, 3)]);
        assert_eq!(pieces(7, 7), vec![(0, 7), (8, u64::MAX)]);
    }

    #[test]
    fn only_versions_younger_than_the_grace_less_a_margin_are_pushed() {
        let s = 1_000_000u64;
        let now = 1_000_000 * s;
        let day = Duration::from_secs(86_400);
        assert!(pushable(now - 5 * s, now, day));
        assert!(pushable(now - 86_400 * s + 61 * s, now, day));
        assert!(
            !pushable(now - 86_400 * s + 59 * s, now, day),
            "in the margin"
        );
        assert!(!pushable(now - 2 * 86_400 * s, now, day));
        let one = Duration::from_secs(1);
        assert!(pushable(now - s / 4, now, one));
        assert!(
            !pushable(now - s * 3 / 4, now, one),
            "margin: half the grace"
        );
        assert!(pushable(u64::MAX, now, Duration::MAX));
    }

    #[test]
    fn the_pacer_keeps_a_round_within_its_pages_per_second() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10, t0);
        // A fast page waits out the rest of its tenth of a second.
        assert_eq!(p.after_page(t0), Duration::from_millis(100));
        // A slow page already took its time: no pause.
        assert_eq!(
            p.after_page(t0 + Duration::from_millis(500)),
            Duration::ZERO
        );
        // The budget is over the whole round, not per page: 3 pages are due
        // by 300 ms, and it is 550 ms.
        assert_eq!(
            p.after_page(t0 + Duration::from_millis(550)),
            Duration::ZERO
        );
        let mut unlimited = Pacer::new(0, t0);
        assert_eq!(unlimited.after_page(t0), Duration::ZERO);
    }
}
