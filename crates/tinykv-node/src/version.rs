//! Versions of a key and the Last-Writer-Wins rule that orders them.
//!
//! A version is identified by its hybrid-logical-clock timestamp and the id of
//! the node that coordinated the write. Two versions are compared by
//! `(timestamp, writer)`, then (for the rare equal pair, e.g. a client that
//! supplies its own timestamp) tombstone before value, then the value bytes.
//! The order is total, so every replica that sees the same set of versions
//! keeps the same one, whatever the order they arrived in.

use std::cmp::Ordering;

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
}

impl Record {
    /// A live value.
    pub fn value(value: Bytes, timestamp: u64, writer: impl Into<String>) -> Self {
        Record {
            value,
            timestamp,
            writer: writer.into(),
            tombstone: false,
        }
    }

    /// A deletion marker.
    pub fn tombstone(timestamp: u64, writer: impl Into<String>) -> Self {
        Record {
            value: Bytes::new(),
            timestamp,
            writer: writer.into(),
            tombstone: true,
        }
    }

    /// The LWW order: `Greater` means `self` wins over `other`.
    pub fn lww_cmp(&self, other: &Record) -> Ordering {
        self.timestamp
            .cmp(&other.timestamp)
            .then_with(|| self.writer.cmp(&other.writer))
            .then_with(|| self.tombstone.cmp(&other.tombstone))
            .then_with(|| self.value.cmp(&other.value))
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
    }
}
