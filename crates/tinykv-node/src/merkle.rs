//! Hash digests of token ranges for anti-entropy.
//!
//! The leaves of the tree are the ring's ranges (vnode to vnode, a few
//! hundred per node); a leaf's hash combines the hashes of every version in
//! it with wrapping addition, which does not depend on scan order, so two
//! replicas holding the same versions get the same leaf. The root is the
//! sum of the leaves. Replicas compare all shared leaves in one request and
//! exchange the versions of only the leaves that differ.

use xxhash_rust::xxh3::Xxh3;

use crate::storage::{Engine, ScanLimit, StorageError};
use crate::version::Record;

/// Records scanned per page while hashing.
const PAGE: usize = 4096;

/// One leaf of a digest.
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
    // Only an expiry is hashed, so versions without one hash as they did
    // before TTL existed (digests still agree with older nodes).
    if r.expires_at != 0 {
        h.update(b"expires_at");
        h.update(&r.expires_at.to_be_bytes());
    }
    h.digest()
}

/// Whether `r` is dead since before `purge_before` (a wall-clock time in
/// microseconds): a tombstone written then, or a value that expired then.
/// One anti-entropy may purge, so a replica that still holds it and one
/// that purged it must look the same.
pub fn purgeable(r: &Record, purge_before: u64) -> bool {
    r.dead_since().is_some_and(|dead| dead < purge_before)
}

/// The digest of one span `(start, end]`, leaving out tombstones written
/// before `purge_before` (0: every version counts).
pub fn digest_span(
    engine: &dyn Engine,
    start: u64,
    end: u64,
    purge_before: u64,
) -> Result<Leaf, StorageError> {
    let mut leaf = Leaf::default();
    let mut after: Option<bytes::Bytes> = None;
    let limit = ScanLimit::count(PAGE);
    loop {
        let page = engine.scan(start, end, after.as_deref(), limit)?;
        for (key, rec) in page.iter().filter(|(_, r)| !purgeable(r, purge_before)) {
            leaf.hash = leaf.hash.wrapping_add(version_hash(key, rec));
            leaf.count += 1;
        }
        match page.last() {
            Some((k, _)) if limit.filled_by(&page) => after = Some(k.clone()),
            _ => return Ok(leaf),
        }
    }
}

/// Most spans one digest request may name.
pub const MAX_SPANS: usize = 1 << 16;

/// Checks the spans of a peer's digest request: at most [`MAX_SPANS`], and
/// together no wider than the ring, so one request costs at most one scan
/// of this node's data (not thousands of whole-ring scans).
pub fn check_spans(spans: &[(u64, u64)]) -> Result<(), String> {
    if spans.len() > MAX_SPANS {
        return Err(format!(
            "{} spans; at most {MAX_SPANS} per request",
            spans.len()
        ));
    }
    const RING: u128 = 1 << 64;
    let mut total: u128 = 0;
    for &(start, end) in spans {
        // `(start, end]`, wrapping past the top when start >= end (equal:
        // the whole ring).
        total += if start < end {
            u128::from(end - start)
        } else {
            RING - u128::from(start - end)
        };
        if total > RING {
            return Err("the spans together cover more than the ring".into());
        }
    }
    Ok(())
}

/// The digests of several spans, in order (see [`digest_span`]).
pub fn digest_spans(
    engine: &dyn Engine,
    spans: &[(u64, u64)],
    purge_before: u64,
) -> Result<Vec<Leaf>, StorageError> {
    spans
        .iter()
        .map(|&(s, e)| digest_span(engine, s, e, purge_before))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_wider_than_the_ring_or_too_many_are_refused() {
        let quarter = u64::MAX / 4;
        let leaves: Vec<(u64, u64)> = (0..4).map(|i| (i * quarter, (i + 1) * quarter)).collect();
        assert!(check_spans(&leaves).is_ok());
        assert!(check_spans(&[(5, 5)]).is_ok(), "one whole ring");
        assert!(check_spans(&[(10, 3)]).is_ok(), "a wrapping span");
        assert!(check_spans(&[(5, 5), (1, 2)]).is_err());
        assert!(check_spans(&[(0, u64::MAX); 3]).is_err());
        assert!(check_spans(&vec![(0, 1); MAX_SPANS]).is_ok());
        assert!(check_spans(&vec![(0, 1); MAX_SPANS + 1]).is_err());
    }
    use crate::ring::key_token;
    use crate::storage::{MemoryEngine, WriteOp};
    use bytes::Bytes;

    #[test]
    fn equal_contents_equal_digests_and_one_change_shows() {
        let a = MemoryEngine::default();
        let b = MemoryEngine::default();
        let ops: Vec<WriteOp> = (0..500u32)
            .map(|i| WriteOp::Put {
                key: Bytes::from(format!("k{i}")),
                record: Record::value(Bytes::from_static(b"v"), u64::from(i) + 1, "n1"),
            })
            .collect();
        a.apply(&ops, false)
            .map_err(|e| e.to_string())
            .unwrap_or_default();
        // The same versions in the opposite order.
        let rev: Vec<WriteOp> = ops.iter().rev().cloned().collect();
        b.apply(&rev, false)
            .map_err(|e| e.to_string())
            .unwrap_or_default();
        let spans = [(0u64, u64::MAX / 2), (u64::MAX / 2, 0)];
        let da = digest_spans(&a, &spans, 0).ok();
        assert_eq!(da, digest_spans(&b, &spans, 0).ok());
        assert_eq!(
            da.map(|d| d.iter().map(|l| l.count).sum::<u64>()),
            Some(500)
        );
        let key = Bytes::from_static(b"k7");
        let newer = Record::value(Bytes::from_static(b"x"), 1000, "n2");
        b.apply(
            &[WriteOp::Put {
                key: key.clone(),
                record: newer,
            }],
            false,
        )
        .map_err(|e| e.to_string())
        .unwrap_or_default();
        let (da, db) = (
            digest_spans(&a, &spans, 0).ok(),
            digest_spans(&b, &spans, 0).ok(),
        );
        let changed = usize::from(key_token(&key) > u64::MAX / 2);
        let (da, db) = (da.unwrap_or_default(), db.unwrap_or_default());
        assert_ne!(da[changed], db[changed]);
        assert_eq!(da[1 - changed], db[1 - changed]);
    }

    #[test]
    fn tombstones_before_the_cutoff_digest_as_if_purged() {
        let (with, without) = (MemoryEngine::new(), MemoryEngine::new());
        let put = |e: &MemoryEngine, key: &'static str, record: Record| {
            e.apply(
                &[WriteOp::Put {
                    key: Bytes::from_static(key.as_bytes()),
                    record,
                }],
                false,
            )
            .map_err(|e| e.to_string())
            .unwrap_or_default();
        };
        for e in [&with, &without] {
            put(e, "live", Record::value(Bytes::from_static(b"v"), 50, "n1"));
        }
        put(&with, "deleted", Record::tombstone(100, "n1"));
        let all = [(0u64, 0u64)];
        let digest = |e: &MemoryEngine, before| digest_spans(e, &all, before).ok();
        // Counted while in its grace period (cutoff at or before it)...
        assert_ne!(digest(&with, 0), digest(&without, 0));
        assert_ne!(digest(&with, 100), digest(&without, 100));
        // ...and left out after it, so purging it changes no digest.
        assert_eq!(digest(&with, 101), digest(&without, 101));
        // A live value is never left out, however old.
        assert_eq!(digest(&without, 101).map(|d| d[0].count), Some(1));
        assert!(purgeable(&Record::tombstone(100, "n1"), 101));
        assert!(!purgeable(&Record::value(Bytes::new(), 1, "n1"), 101));
    }

    #[test]
    fn expired_values_are_purgeable_from_their_expiry_not_their_timestamp() {
        let expiring = Record::value(Bytes::from_static(b"v"), 10, "n1").expiring(100);
        // Written long before the cutoff, but expired only at 100.
        assert!(!purgeable(&expiring, 50));
        assert!(!purgeable(&expiring, 100));
        assert!(purgeable(&expiring, 101));
    }

    #[test]
    fn the_expiry_is_part_of_the_version_hash() {
        let plain = Record::value(Bytes::from_static(b"v"), 10, "n1");
        let a = plain.clone().expiring(100);
        let b = plain.clone().expiring(200);
        let h = |r: &Record| version_hash(b"k", r);
        assert_ne!(h(&a), h(&b));
        assert_ne!(h(&a), h(&plain));
        assert_eq!(h(&plain.clone().expiring(0)), h(&plain));
    }
}
