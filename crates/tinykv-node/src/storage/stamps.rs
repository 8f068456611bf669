//! The LWW stamps of recently written keys, so most writes skip the read
//! before the write.
//!
//! Every put must be compared with the stored version of its key (Last
//! Writer Wins), and with an LSM tree that comparison is a point lookup:
//! a skip-list search of the memtable and, on a miss, of sealed memtables
//! and tables. Under a write-heavy load that lookup was the largest single
//! cost of a node (about a sixth of its CPU, docs/benchmarks.md). This
//! index keeps, for the keys written last, the stored version's
//! `(timestamp, writer)`: no value, a few dozen bytes per key. A
//! put whose `(timestamp, writer)` differs from the stamp is decided from
//! it; an equal pair (the same version again, from read repair or a hint)
//! and a key not in the index fall back to the stored record.
//!
//! The index is exact for the keys it holds: it is only changed by the
//! engine's write path, under the engine's write lock, after the batch it
//! describes committed. It is bounded by two generations: inserts go to the
//! young one; when that is full the old one is dropped and the young one
//! becomes old, so a key written within the last `capacity / 2` distinct
//! keys is always found and memory stays under `capacity` entries.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::version::Record;

type Map = HashMap<Box<[u8]>, Stamp, foldhash::fast::RandomState>;

/// Writer ids are interned: a cluster has few nodes, and a stamp then
/// needs no string of its own.
const MAX_WRITERS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    timestamp: u64,
    /// Index into [`Stamps::writers`].
    writer: u32,
}

/// A bounded index of the stored version's stamp per recently written key
/// (see the module docs).
#[derive(Debug)]
pub(crate) struct Stamps {
    young: Map,
    old: Map,
    /// Entries per generation.
    generation: usize,
    writers: Vec<String>,
}

impl Stamps {
    /// An empty index holding at most `capacity` keys (0: disabled).
    pub fn new(capacity: usize) -> Self {
        Stamps {
            young: Map::default(),
            old: Map::default(),
            generation: capacity / 2,
            writers: Vec::new(),
        }
    }

    fn get(&self, dk: &[u8]) -> Option<&Stamp> {
        self.young.get(dk).or_else(|| self.old.get(dk))
    }

    /// How `record` orders against the stored version of data key `dk`
    /// (`Greater`: `record` wins), when the stamp alone decides it: the key
    /// is indexed and its `(timestamp, writer)` differs from `record`'s.
    /// `None`: ask the stored record.
    pub fn order(&self, dk: &[u8], record: &Record) -> Option<Ordering> {
        let stamp = self.get(dk)?;
        let writer = self.writers.get(stamp.writer as usize)?;
        match record
            .timestamp
            .cmp(&stamp.timestamp)
            .then_with(|| record.writer.as_str().cmp(writer))
        {
            Ordering::Equal => None,
            decided => Some(decided),
        }
    }

    /// Records that the stored version of `dk` is now `record` (`None`: the
    /// key was removed).
    pub fn set(&mut self, dk: &[u8], record: Option<&Record>) {
        if self.generation == 0 {
            return;
        }
        let Some(record) = record else {
            self.young.remove(dk);
            self.old.remove(dk);
            return;
        };
        let Some(writer) = self.writer_index(&record.writer) else {
            // Too many distinct writers: leave the key to the lookup.
            self.young.remove(dk);
            self.old.remove(dk);
            return;
        };
        let stamp = Stamp {
            timestamp: record.timestamp,
            writer,
        };
        if let Some(s) = self.young.get_mut(dk) {
            *s = stamp;
            return;
        }
        // A stale entry in the old generation must not outlive this one.
        self.old.remove(dk);
        if self.young.len() >= self.generation {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(dk.into(), stamp);
    }

    fn writer_index(&mut self, writer: &str) -> Option<u32> {
        if let Some(i) = self.writers.iter().position(|w| w == writer) {
            return u32::try_from(i).ok();
        }
        if self.writers.len() >= MAX_WRITERS {
            return None;
        }
        self.writers.push(writer.to_string());
        u32::try_from(self.writers.len() - 1).ok()
    }

    /// Whether the stored version of `dk` is known to exist (indexed).
    #[cfg(test)]
    pub fn contains(&self, dk: &[u8]) -> bool {
        self.get(dk).is_some()
    }

    /// Keys indexed now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn v(ts: u64, writer: &str) -> Record {
        Record::value(Bytes::from_static(b"v"), ts, writer)
    }

    #[test]
    fn decides_by_timestamp_then_writer_and_defers_equal_pairs() {
        let mut s = Stamps::new(10);
        assert_eq!(s.order(b"k", &v(5, "n1")), None, "unknown key");
        s.set(b"k", Some(&v(5, "n2")));
        assert_eq!(s.order(b"k", &v(6, "n1")), Some(Ordering::Greater));
        assert_eq!(s.order(b"k", &v(4, "n9")), Some(Ordering::Less));
        assert_eq!(s.order(b"k", &v(5, "n3")), Some(Ordering::Greater));
        assert_eq!(s.order(b"k", &v(5, "n1")), Some(Ordering::Less));
        // The same (timestamp, writer): tombstone and value decide, which
        // the stamp does not hold.
        assert_eq!(s.order(b"k", &Record::tombstone(5, "n2")), None);
        assert_eq!(s.order(b"k", &v(5, "n2")), None);
    }

    #[test]
    fn removal_and_overwrite_are_exact() {
        let mut s = Stamps::new(10);
        s.set(b"k", Some(&v(5, "n1")));
        s.set(b"k", Some(&Record::tombstone(7, "n1")));
        assert_eq!(s.order(b"k", &v(6, "n1")), Some(Ordering::Less));
        s.set(b"k", None);
        assert!(!s.contains(b"k"));
        assert_eq!(s.order(b"k", &v(1, "n1")), None);
    }

    #[test]
    fn bounded_by_two_generations_and_a_recent_key_is_kept() {
        let mut s = Stamps::new(4);
        for i in 0..100u64 {
            s.set(&i.to_be_bytes(), Some(&v(i + 1, "n1")));
            assert!(s.len() <= 4, "{} entries", s.len());
            // The key just written and the one before it are always there.
            assert!(s.contains(&i.to_be_bytes()));
            if i > 0 {
                assert!(s.contains(&(i - 1).to_be_bytes()));
            }
        }
        assert!(!s.contains(&0u64.to_be_bytes()), "the oldest keys left");
    }

    #[test]
    fn an_updated_old_entry_moves_without_a_stale_copy() {
        let mut s = Stamps::new(4);
        s.set(b"a", Some(&v(1, "n1")));
        s.set(b"b", Some(&v(1, "n1")));
        s.set(b"c", Some(&v(1, "n1"))); // "a" and "b" are now old
        s.set(b"a", Some(&v(9, "n1"))); // young again, its old copy gone
        s.set(b"d", Some(&v(1, "n1"))); // "c" and the new "a" are now old
        s.set(b"e", Some(&v(1, "n1")));
        assert_eq!(s.order(b"a", &v(5, "n1")), Some(Ordering::Less));
    }

    #[test]
    fn disabled_index_knows_nothing() {
        let mut s = Stamps::new(0);
        s.set(b"k", Some(&v(5, "n1")));
        assert_eq!(s.order(b"k", &v(6, "n1")), None);
    }

    #[test]
    fn too_many_writers_fall_back_to_the_lookup() {
        let mut s = Stamps::new(10_000);
        for i in 0..MAX_WRITERS {
            s.set(format!("k{i}").as_bytes(), Some(&v(1, &format!("w{i}"))));
        }
        s.set(b"k0", Some(&v(2, "one-too-many")));
        assert_eq!(s.order(b"k0", &v(3, "n1")), None);
    }
}
