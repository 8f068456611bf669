//! The consistent-hash ring: pure, synchronous and deterministic.
//!
//! Every node id gets `vnodes` tokens, each the XXH3-64 hash of
//! `"{node_id}#{i}"`; a key's token is the XXH3-64 hash of its bytes. XXH3 is
//! a fixed, documented algorithm, so tokens are the same on every platform
//! and every version (the golden test below pins that). A key belongs to the
//! first vnode clockwise at or after its token; its preference list is the
//! first `rf` distinct nodes met walking clockwise from there. Every node that
//! knows the same member list computes the same ring.

use std::collections::{BTreeMap, HashSet};

use xxhash_rust::xxh3::xxh3_64;

/// The name of [`key_token`]'s hash, as clients are told it.
pub const KEY_HASH: &str = "xxh3_64";

/// The token of a key: where it sits on the ring.
pub fn key_token(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The token of a node's `i`-th virtual node.
pub fn vnode_token(node_id: &str, i: u32) -> u64 {
    xxh3_64(format!("{node_id}#{i}").as_bytes())
}

/// A token range `(start, end]` on the ring, wrapping past `u64::MAX` when
/// `start >= end`, with the nodes that replicate it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRange {
    /// Exclusive lower bound.
    pub start: u64,
    /// Inclusive upper bound.
    pub end: u64,
    /// Replica nodes in preference order (primary first).
    pub replicas: Vec<String>,
}

impl TokenRange {
    /// True when `token` falls in `(start, end]`, honouring wrap-around.
    pub fn contains(&self, token: u64) -> bool {
        range_contains(self.start, self.end, token)
    }
}

/// True when `token` is in `(start, end]`; `start >= end` wraps around
/// (and `start == end` is the whole ring).
pub fn range_contains(start: u64, end: u64, token: u64) -> bool {
    if start < end {
        token > start && token <= end
    } else {
        token > start || token <= end
    }
}

/// An immutable ring built from a member list.
#[derive(Clone, Debug)]
pub struct Ring {
    /// Sorted (token, node index) pairs.
    tokens: Vec<(u64, usize)>,
    /// Node ids, sorted and unique.
    nodes: Vec<String>,
    rf: usize,
    vnodes: u32,
}

impl Ring {
    /// Builds the ring for `nodes` (any order, duplicates ignored) with
    /// `vnodes` tokens per node and replication factor `rf`.
    pub fn new<I, S>(nodes: I, vnodes: u32, rf: usize) -> Ring
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        nodes.sort();
        nodes.dedup();
        let vnodes = vnodes.max(1);
        let mut tokens = Vec::with_capacity(nodes.len() * vnodes as usize);
        for (idx, id) in nodes.iter().enumerate() {
            for i in 0..vnodes {
                tokens.push((vnode_token(id, i), idx));
            }
        }
        tokens.sort_unstable();
        Ring {
            tokens,
            nodes,
            rf: rf.max(1),
            vnodes,
        }
    }

    /// Member ids, sorted.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// True when `id` is a member of this ring.
    pub fn contains_node(&self, id: &str) -> bool {
        self.nodes.binary_search_by(|n| n.as_str().cmp(id)).is_ok()
    }

    /// Configured replication factor (may exceed the member count).
    pub fn replication_factor(&self) -> usize {
        self.rf
    }

    /// Effective number of replicas per key: `min(rf, members)`.
    pub fn replicas_per_key(&self) -> usize {
        self.rf.min(self.nodes.len())
    }

    /// Virtual nodes per member.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Index in `tokens` of the first vnode at or after `token`, wrapping.
    fn successor(&self, token: u64) -> usize {
        let i = self.tokens.partition_point(|(t, _)| *t < token);
        if i == self.tokens.len() {
            0
        } else {
            i
        }
    }

    /// Every member, distinct, in clockwise order starting at `token`'s owner.
    /// The first `replicas_per_key()` are the preference list; the rest are
    /// the fallbacks a sloppy quorum uses.
    pub fn walk(&self, token: u64) -> Vec<&str> {
        self.walk_n(token, self.nodes.len())
    }

    /// The first `limit` distinct members clockwise from `token`'s owner
    /// (stops there: a preference list needs N of them, not the whole ring).
    fn walk_n(&self, token: u64, limit: usize) -> Vec<&str> {
        let limit = limit.min(self.nodes.len());
        let mut out = Vec::with_capacity(limit);
        if self.tokens.is_empty() || limit == 0 {
            return out;
        }
        let mut seen = vec![false; self.nodes.len()];
        let start = self.successor(token);
        for step in 0..self.tokens.len() {
            let (_, idx) = self.tokens[(start + step) % self.tokens.len()];
            if !seen[idx] {
                seen[idx] = true;
                out.push(self.nodes[idx].as_str());
                if out.len() == limit {
                    break;
                }
            }
        }
        out
    }

    /// The replicas of `key`, primary first.
    pub fn preference_list(&self, key: &[u8]) -> Vec<&str> {
        self.walk_n(key_token(key), self.replicas_per_key())
    }

    /// The replicas of the range that ends at vnode `i`.
    fn replicas_from(&self, i: usize) -> Vec<String> {
        let n = self.replicas_per_key();
        let mut out: Vec<String> = Vec::with_capacity(n);
        let mut seen = HashSet::new();
        for step in 0..self.tokens.len() {
            let (_, idx) = self.tokens[(i + step) % self.tokens.len()];
            if seen.insert(idx) {
                out.push(self.nodes[idx].clone());
                if out.len() == n {
                    break;
                }
            }
        }
        out
    }

    /// Every vnode range with its replica set, adjacent ranges with identical
    /// replica sets merged. Together they cover the whole ring exactly once.
    pub fn ranges(&self) -> Vec<TokenRange> {
        let len = self.tokens.len();
        if len == 0 {
            return Vec::new();
        }
        let mut out: Vec<TokenRange> = Vec::new();
        for i in 0..len {
            let start = self.tokens[(i + len - 1) % len].0;
            let end = self.tokens[i].0;
            if len > 1 && start == end {
                continue; // duplicate token: empty range
            }
            let replicas = self.replicas_from(i);
            match out.last_mut() {
                Some(last) if last.replicas == replicas && last.end == start => last.end = end,
                _ => out.push(TokenRange {
                    start,
                    end,
                    replicas,
                }),
            }
        }
        // The first range may continue the last one around the wrap point.
        if out.len() > 1 {
            let first_replicas = out[0].replicas.clone();
            let first_end = out[0].end;
            if let Some(last) = out.last() {
                if last.replicas == first_replicas && last.end == out[0].start {
                    let start = last.start;
                    out.pop();
                    out[0] = TokenRange {
                        start,
                        end: first_end,
                        replicas: first_replicas,
                    };
                }
            }
        }
        out
    }

    /// The ranges that `node` replicates.
    pub fn ranges_of(&self, node: &str) -> Vec<TokenRange> {
        self.ranges()
            .into_iter()
            .filter(|r| r.replicas.iter().any(|n| n == node))
            .collect()
    }

    /// Fraction of the ring each node owns as primary, and as any replica.
    pub fn ownership(&self) -> BTreeMap<String, (f64, f64)> {
        let mut out: BTreeMap<String, (f64, f64)> =
            self.nodes.iter().map(|n| (n.clone(), (0.0, 0.0))).collect();
        const FULL: f64 = u64::MAX as f64 + 1.0;
        for r in self.ranges() {
            let width = if self.tokens.len() == 1 || r.start == r.end {
                FULL
            } else {
                r.end.wrapping_sub(r.start) as f64
            };
            let share = width / FULL;
            for (i, n) in r.replicas.iter().enumerate() {
                if let Some(e) = out.get_mut(n) {
                    if i == 0 {
                        e.0 += share;
                    }
                    e.1 += share;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn five() -> Ring {
        Ring::new(
            (1..=5).map(|i| format!("node{i}")),
            crate::config::DEFAULT_VNODES,
            3,
        )
    }

    #[test]
    fn hash_is_pinned() {
        // Changing these breaks every existing cluster's data placement.
        assert_eq!(key_token(b""), 0x2d06800538d394c2);
        assert_eq!(key_token(b"tinykv"), xxh3_64(b"tinykv"));
        assert_eq!(vnode_token("node1", 0), xxh3_64(b"node1#0"));
    }

    #[test]
    fn preference_list_is_distinct_and_sized() {
        let ring = five();
        for k in 0..1000u32 {
            let pl = ring.preference_list(&k.to_be_bytes());
            assert_eq!(pl.len(), 3);
            let set: HashSet<_> = pl.iter().collect();
            assert_eq!(set.len(), 3);
            // The preference list is the start of the full walk.
            let walk = ring.walk(key_token(&k.to_be_bytes()));
            assert_eq!(walk.len(), 5);
            assert_eq!(pl[..], walk[..3]);
        }
        let small = Ring::new(["a", "b"], 16, 3);
        assert_eq!(small.preference_list(b"k").len(), 2);
        assert!(Ring::new(Vec::<String>::new(), 16, 3)
            .preference_list(b"k")
            .is_empty());
    }

    #[test]
    fn same_members_same_ring_in_any_order() {
        let a = Ring::new(["n3", "n1", "n2"], 64, 2);
        let b = Ring::new(["n1", "n2", "n3", "n2"], 64, 2);
        for k in 0..500u32 {
            assert_eq!(
                a.preference_list(&k.to_le_bytes()),
                b.preference_list(&k.to_le_bytes())
            );
        }
    }

    #[test]
    fn five_nodes_are_balanced_within_ten_percent() {
        for names in [
            (1..=5).map(|i| format!("node{i}")).collect::<Vec<_>>(),
            (1..=5).map(|i| format!("tinykv-node{i}")).collect(),
            (0..5).map(|i| format!("tinykv-{i}")).collect(),
        ] {
            let ring = Ring::new(names, crate::config::DEFAULT_VNODES, 3);
            for (node, (primary, _)) in ring.ownership() {
                let dev = (primary - 0.2).abs() / 0.2;
                assert!(
                    dev < 0.10,
                    "{node} owns {primary:.4} of the ring ({:.1}% off)",
                    dev * 100.0
                );
            }
        }
    }

    #[test]
    fn sampled_keys_are_balanced_too() {
        let ring = five();
        let mut counts = BTreeMap::new();
        let n = 200_000u32;
        for k in 0..n {
            *counts
                .entry(ring.preference_list(format!("key{k}").as_bytes())[0].to_string())
                .or_insert(0u32) += 1;
        }
        for (node, c) in counts {
            let share = c as f64 / n as f64;
            assert!((share - 0.2).abs() / 0.2 < 0.10, "{node}: {share}");
        }
    }

    #[test]
    fn adding_a_node_moves_about_one_in_n_plus_one_keys() {
        let before = five();
        let after = Ring::new(
            (1..=6).map(|i| format!("node{i}")),
            crate::config::DEFAULT_VNODES,
            3,
        );
        let n = 50_000u32;
        let moved = (0..n)
            .filter(|k| {
                let key = format!("key{k}");
                before.preference_list(key.as_bytes())[0]
                    != after.preference_list(key.as_bytes())[0]
            })
            .count();
        let frac = moved as f64 / n as f64;
        // Ideal is 1/6; allow sampling and vnode noise, but nothing like a reshuffle.
        assert!((0.12..0.21).contains(&frac), "moved {frac}");
        // Every moved key moved to the new node.
        for k in 0..n {
            let key = format!("key{k}");
            let (b, a) = (
                before.preference_list(key.as_bytes())[0],
                after.preference_list(key.as_bytes())[0],
            );
            assert!(a == b || a == "node6");
        }
    }

    #[test]
    fn ranges_cover_the_ring_once_and_match_preference_lists() {
        let ring = five();
        let ranges = ring.ranges();
        let total: f64 = ring.ownership().values().map(|(p, _)| p).sum();
        assert!((total - 1.0).abs() < 1e-9);
        for k in 0..2000u32 {
            let key = format!("k{k}");
            let t = key_token(key.as_bytes());
            let hits: Vec<_> = ranges.iter().filter(|r| r.contains(t)).collect();
            assert_eq!(hits.len(), 1, "token {t} in {} ranges", hits.len());
            let pl: Vec<String> = ring
                .preference_list(key.as_bytes())
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(hits[0].replicas, pl);
        }
        let mine = ring.ranges_of("node1");
        let share: f64 = ring.ownership()["node1"].1;
        assert!(!mine.is_empty() && share > 0.5 && share < 0.7);
    }

    #[test]
    fn single_node_owns_everything() {
        let ring = Ring::new(["solo"], 8, 3);
        assert_eq!(ring.preference_list(b"x"), vec!["solo"]);
        let own = ring.ownership();
        assert!((own["solo"].0 - 1.0).abs() < 1e-9);
        assert!(ring
            .ranges()
            .iter()
            .all(|r| r.replicas == vec!["solo".to_string()]));
    }

    #[test]
    fn range_contains_wraps() {
        assert!(range_contains(10, 20, 20));
        assert!(!range_contains(10, 20, 10));
        assert!(range_contains(20, 10, 5));
        assert!(range_contains(20, 10, u64::MAX));
        assert!(!range_contains(20, 10, 15));
        assert!(range_contains(7, 7, 123));
    }
}
