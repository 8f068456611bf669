//! Hash digests of token ranges for anti-entropy.
//!
//! A range `(start, end]` is split into equal-width leaves; a leaf's hash
//! combines the hashes of every version in it with wrapping addition, which
//! does not depend on scan order, so two replicas holding the same versions
//! get the same leaves. Replicas compare leaves and exchange only the
//! versions of leaves that differ (a two-level hash tree: the leaves and,
//! implicitly, their sum as the root).

use xxhash_rust::xxh3::Xxh3;

use crate::ring::key_token;
use crate::storage::{Engine, StorageError};
use crate::version::Record;

/// Records scanned per page while hashing.
const PAGE: usize = 4096;

/// One leaf of a range digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leaf {
    /// Combined hash of the versions in the leaf.
    pub hash: u64,
    /// Number of versions in the leaf.
    pub count: u64,
}

/// The hash of one stored version.
pub fn version_hash(key: &[u8], r: &Record) -> u64 {
    let mut h = Xxh3::new();
    h.update(&(key.len() as u64).to_be_bytes());
    h.update(key);
    h.update(&r.timestamp.to_be_bytes());
    h.update(r.writer.as_bytes());
    h.update(&[u8::from(r.tombstone)]);
    h.update(&r.value);
    h.digest()
}

/// Width of the range `(start, end]` (the whole ring when start == end).
fn width(start: u64, end: u64) -> u128 {
    if start == end {
        1u128 << 64
    } else {
        u128::from(end.wrapping_sub(start))
    }
}

/// Bounds `(lo, hi]` of leaf `i` of `leaves` over `(start, end]`.
pub fn leaf_bounds(start: u64, end: u64, leaves: u32, i: u32) -> (u64, u64) {
    let w = width(start, end);
    let n = u128::from(leaves.max(1));
    let lo = start.wrapping_add((w * u128::from(i) / n) as u64);
    let hi = if i + 1 >= leaves.max(1) {
        end
    } else {
        start.wrapping_add((w * u128::from(i + 1) / n) as u64)
    };
    (lo, hi)
}

/// Which leaf a token of `(start, end]` falls in (binary search on the
/// leaves' upper bounds, exact in integer arithmetic).
fn leaf_of(start: u64, end: u64, leaves: u32, token: u64) -> usize {
    let w = width(start, end);
    let n = u128::from(leaves.max(1));
    // 1-based position of the token in the range; `start` itself only
    // belongs to a whole-ring range, where it is the last position.
    let pos = match u128::from(token.wrapping_sub(start)) {
        0 => w,
        p => p,
    };
    let (mut lo, mut hi) = (0u128, n - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if w * (mid + 1) / n >= pos {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo as usize
}

/// Digest of `(start, end]` in `leaves` leaves.
pub fn digest_range(
    engine: &dyn Engine,
    start: u64,
    end: u64,
    leaves: u32,
) -> Result<Vec<Leaf>, StorageError> {
    let mut out = vec![Leaf::default(); leaves.max(1) as usize];
    let mut after: Option<bytes::Bytes> = None;
    loop {
        let page = engine.scan(start, end, after.as_deref(), PAGE)?;
        let done = page.len() < PAGE;
        for (key, rec) in &page {
            let leaf = &mut out[leaf_of(start, end, leaves, key_token(key))];
            leaf.hash = leaf.hash.wrapping_add(version_hash(key, rec));
            leaf.count += 1;
        }
        match page.last() {
            Some((k, _)) if !done => after = Some(k.clone()),
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::range_contains;

    #[test]
    fn leaves_partition_the_range() {
        for (start, end) in [(10u64, 1_000_000u64), (u64::MAX - 1000, 5000), (7, 7)] {
            let leaves = 16;
            for t in [
                start.wrapping_add(1),
                end,
                start.wrapping_add(12345),
                end.wrapping_sub(1),
            ] {
                if !range_contains(start, end, t) {
                    continue;
                }
                let i = leaf_of(start, end, leaves, t);
                let (lo, hi) = leaf_bounds(start, end, leaves, i as u32);
                assert!(
                    range_contains(lo, hi, t),
                    "token {t} not in leaf {i} ({lo}, {hi}]"
                );
            }
        }
    }
}
