//! Versions of a key and the Last-Writer-Wins rule that orders them.
//!
//! A version is identified by its hybrid-logical-clock timestamp and the id of
//! the node that coordinated the write. Two versions are compared by
//! `(timestamp, writer)`, then (for the rare equal pair, e.g. a client that
//! supplies its own timestamp) tombstone before value, then the value bytes.
//! The order is total, so every replica that sees the same set of versions
//! keeps the same one, whatever the order they arrived in.
//!
//! A value may carry an expiry (`expires_at`, absolute HLC microseconds,
//! part of the version): once the clock passes it the value reads as not
//! found, everywhere alike, and anti-entropy purges it after the grace like
//! a tombstone written at its expiry.

use std::cmp::Ordering;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tinykv_proto::internal as pb;

/// Versions of keys, as they travel together: (key, version) pairs.
pub type Versions = Vec<(Bytes, Record)>;

/// One version of a key: a value or a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The value; empty for tombstones.
    pub value: Bytes,
    /// Hybrid-logical-clock timestamp in microseconds since the Unix epoch.
    pub timestamp: u64,
    /// Node id of the coordinator that created this version (the tie-break).
    pub writer: String,
    /// True when this version deletes the key.
    pub tombstone: bool,
    /// When the value expires, HLC microseconds since the epoch; 0: never.
    pub expires_at: u64,
}

/// Longest time to live accepted, in milliseconds (about 317,000 years),
/// over gRPC and RESP alike: larger ones would overflow the version's
/// microsecond expiry and read as "never expires"; Redis refuses those too.
pub const MAX_TTL_MS: u64 = 10_000_000_000_000_000;

/// The expiry a write asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// The value never expires.
    #[default]
    Never,
    /// The value expires this long after its version's timestamp.
    After(Duration),
    /// The value expires at this HLC time (µs since the epoch).
    At(u64),
}

impl Expiry {
    /// The absolute expiry of a version stamped `timestamp` (0: never).
    /// An expiry that would overflow is the far future, never "never".
    pub fn resolve(self, timestamp: u64) -> u64 {
        match self {
            Expiry::Never => 0,
            Expiry::After(d) => {
                let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                timestamp.saturating_add(us).max(1)
            }
            Expiry::At(at) => at,
        }
    }
}

/// A key's time to live, as a read at some instant sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTtl {
    /// No live value: missing, deleted or expired.
    Missing,
    /// A live value without an expiry.
    Persistent,
    /// A live value that expires after this long.
    Remaining(Duration),
}

impl Record {
    /// A live value.
    pub fn value(value: Bytes, timestamp: u64, writer: impl Into<String>) -> Self {
        Record {
            value,
            timestamp,
            writer: writer.into(),
            tombstone: false,
            expires_at: 0,
        }
    }

    /// This version with expiry `expires_at` (HLC µs; 0: never).
    pub fn expiring(mut self, expires_at: u64) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// True when this version is a value that has expired by `now` (HLC µs).
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }

    /// True when this version is a value that is live at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        !self.tombstone && !self.expired(now)
    }

    /// The key's time to live at `now` if this version is the winner.
    pub fn ttl(&self, now: u64) -> KeyTtl {
        if !self.is_live(now) {
            KeyTtl::Missing
        } else if self.expires_at == 0 {
            KeyTtl::Persistent
        } else {
            KeyTtl::Remaining(Duration::from_micros(self.expires_at - now))
        }
    }

    /// When this version stops mattering to readers, for purging: a
    /// tombstone's timestamp, an expiring value's expiry (whichever comes
    /// first if both), `None` for a value that never expires.
    pub fn dead_since(&self) -> Option<u64> {
        match (self.tombstone, self.expires_at) {
            (true, 0) => Some(self.timestamp),
            (true, e) => Some(self.timestamp.min(e)),
            (false, 0) => None,
            (false, e) => Some(e),
        }
    }

    /// A deletion marker.
    pub fn tombstone(timestamp: u64, writer: impl Into<String>) -> Self {
        Record {
            value: Bytes::new(),
            timestamp,
            writer: writer.into(),
            tombstone: true,
            expires_at: 0,
        }
    }

    /// The LWW order: `Greater` means `self` wins over `other`.
    pub fn lww_cmp(&self, other: &Record) -> Ordering {
        self.timestamp
            .cmp(&other.timestamp)
            .then_with(|| self.writer.cmp(&other.writer))
            .then_with(|| self.tombstone.cmp(&other.tombstone))
            .then_with(|| self.value.cmp(&other.value))
            .then_with(|| self.expires_at.cmp(&other.expires_at))
    }

    /// True when `self` strictly wins over `other`.
    pub fn supersedes(&self, other: &Record) -> bool {
        self.lww_cmp(other) == Ordering::Greater
    }

    /// Size in bytes that this version takes on the wire, roughly.
    pub fn approx_size(&self) -> usize {
        self.value.len() + self.writer.len() + 16
    }

    /// Serialised form used by the storage engines (protobuf `Record`).
    pub fn encode(&self) -> Vec<u8> {
        pb::Record::from(self.clone()).encode_to_vec()
    }

    /// Parses the storage form.
    pub fn decode(buf: &[u8]) -> Result<Self, prost::DecodeError> {
        pb::Record::decode(buf).map(Record::from)
    }
}

/// Picks the LWW winner out of any number of optional versions.
pub fn merge<'a>(versions: impl IntoIterator<Item = &'a Record>) -> Option<&'a Record> {
    versions.into_iter().max_by(|a, b| a.lww_cmp(b))
}

impl From<pb::Record> for Record {
    fn from(r: pb::Record) -> Self {
        Record {
            value: r.value,
            timestamp: r.timestamp,
            writer: r.writer,
            tombstone: r.tombstone,
            expires_at: r.expires_at,
        }
    }
}

impl From<Record> for pb::Record {
    fn from(r: Record) -> Self {
        pb::Record {
            value: r.value,
            timestamp: r.timestamp,
            writer: r.writer,
            tombstone: r.tombstone,
            expires_at: r.expires_at,
        }
    }
}

/// A version and its key as sent to a peer.
pub fn keyed(key: &Bytes, record: &Record) -> pb::KeyedRecord {
    pb::KeyedRecord {
        key: key.clone(),
        record: Some(record.clone().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(val: &'static str, ts: u64, w: &str) -> Record {
        Record::value(Bytes::from_static(val.as_bytes()), ts, w)
    }

    #[test]
    fn newer_timestamp_wins() {
        assert!(v("b", 2, "a").supersedes(&v("a", 1, "z")));
        assert!(!v("a", 1, "z").supersedes(&v("b", 2, "a")));
    }

    #[test]
    fn equal_timestamp_breaks_tie_by_writer() {
        assert!(v("x", 5, "node2").supersedes(&v("y", 5, "node1")));
        assert!(!v("y", 5, "node1").supersedes(&v("x", 5, "node2")));
    }

    #[test]
    fn same_version_is_idempotent() {
        let a = v("x", 5, "n1");
        assert_eq!(a.lww_cmp(&a.clone()), Ordering::Equal);
        assert!(!a.supersedes(&a.clone()));
    }

    #[test]
    fn tombstone_wins_by_the_same_rule() {
        let t = Record::tombstone(6, "n1");
        assert!(t.supersedes(&v("x", 5, "n9")));
        assert!(!t.supersedes(&v("x", 7, "n0")));
        // Equal (timestamp, writer): the tombstone wins, deterministically.
        assert!(Record::tombstone(5, "n1").supersedes(&v("x", 5, "n1")));
    }

    #[test]
    fn merge_is_order_independent() {
        let all = [
            v("a", 1, "n1"),
            v("c", 3, "n1"),
            v("b", 3, "n0"),
            Record::tombstone(2, "n2"),
        ];
        let forward = merge(all.iter()).cloned();
        let backward = merge(all.iter().rev()).cloned();
        assert_eq!(forward, backward);
        assert_eq!(forward.map(|r| r.value), Some(Bytes::from_static(b"c")));
        assert_eq!(merge(std::iter::empty()), None);
    }

    #[test]
    fn encode_roundtrip() {
        let r = v("hello", 42, "node1");
        assert_eq!(Record::decode(&r.encode()).ok(), Some(r));
        let t = Record::tombstone(43, "node2");
        assert_eq!(Record::decode(&t.encode()).ok(), Some(t));
        let e = v("soon gone", 44, "node3").expiring(1_000_044);
        assert_eq!(Record::decode(&e.encode()).ok(), Some(e));
    }

    #[test]
    fn a_record_without_expiry_encodes_as_before_ttl_existed() {
        // Bytes of a Record written before `expires_at` existed (fields
        // 1-4 only): value "hello", timestamp 42, writer "node1".
        let old: &[u8] = b"\x0a\x05hello\x10\x2a\x1a\x05node1";
        let r = Record::decode(old).expect("old records decode");
        assert_eq!(r, v("hello", 42, "node1"));
        assert_eq!(r.expires_at, 0, "old records never expire");
        assert_eq!(r.encode(), old, "no expiry: the same bytes as before");
        let old_tomb: &[u8] = b"\x10\x2b\x1a\x05node2\x20\x01";
        assert_eq!(
            Record::decode(old_tomb).ok(),
            Some(Record::tombstone(43, "node2"))
        );
    }

    #[test]
    fn expiry_decides_liveness_and_ttl() {
        let e = v("x", 10, "n1").expiring(100);
        assert!(e.is_live(99) && !e.expired(99));
        assert!(!e.is_live(100) && e.expired(100));
        assert_eq!(e.ttl(40), KeyTtl::Remaining(Duration::from_micros(60)));
        assert_eq!(e.ttl(100), KeyTtl::Missing);
        assert_eq!(v("x", 10, "n1").ttl(u64::MAX), KeyTtl::Persistent);
        assert_eq!(Record::tombstone(10, "n1").ttl(0), KeyTtl::Missing);
        assert_eq!(e.dead_since(), Some(100));
        assert_eq!(v("x", 10, "n1").dead_since(), None);
        assert_eq!(Record::tombstone(10, "n1").dead_since(), Some(10));
    }

    #[test]
    fn an_expiry_resolves_against_the_version_timestamp() {
        assert_eq!(Expiry::Never.resolve(10), 0);
        assert_eq!(Expiry::After(Duration::from_millis(2)).resolve(10), 2_010);
        assert_eq!(Expiry::At(7).resolve(10), 7);
        assert_eq!(Expiry::After(Duration::MAX).resolve(10), u64::MAX);
    }

    #[test]
    fn a_later_version_without_ttl_wins_over_an_expiring_one() {
        let expiring = v("x", 10, "n1").expiring(20);
        let plain = v("y", 11, "n1");
        assert!(plain.supersedes(&expiring));
        assert!(plain.is_live(u64::MAX));
        // Equal everything but the expiry: still a total order.
        let a = v("x", 10, "n1").expiring(30);
        assert!(a.supersedes(&expiring) && !expiring.supersedes(&a));
    }
}
