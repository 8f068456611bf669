//! The storage write path: fuzz-made write batches (puts, purges, hints,
//! hint deletions; keys of up to a few hundred bytes, now and then one
//! over the limit) checked as the store checks them and applied to the
//! in-memory engine, which works batches out with the planner the disk
//! engines share; after every batch the engine must agree with a plain
//! model (Last-Writer-Wins, exact-match purges, hint ids and counters).

#![no_main]

use std::collections::BTreeMap;

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tinykv_node::fuzzing as f;
use tinykv_node::ring::key_token;
use tinykv_node::storage::{
    Engine, MemoryEngine, ScanLimit, StorageError, WriteOp, MAX_HINT_TARGET_BYTES, MAX_KEY_BYTES,
};
use tinykv_node::version::Record;

#[derive(Arbitrary, Debug)]
enum KeySpec {
    /// One of a few short keys, so batches collide.
    Small(u8),
    /// Any bytes (a few hundred at most).
    Bytes(Vec<u8>),
    /// One byte over the limit, plus a little.
    Long(u8),
}

impl KeySpec {
    fn key(&self) -> Bytes {
        match self {
            KeySpec::Small(i) => Bytes::from(format!("k{}", i % 8)),
            KeySpec::Bytes(b) => Bytes::copy_from_slice(&b[..b.len().min(400)]),
            KeySpec::Long(x) => Bytes::from(vec![b'x'; MAX_KEY_BYTES + 1 + usize::from(*x)]),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Rec {
    value: Vec<u8>,
    timestamp: u8,
    writer: u8,
    tombstone: bool,
}

impl Rec {
    fn record(&self) -> Record {
        let writer = format!("n{}", self.writer % 3);
        let ts = u64::from(self.timestamp % 16);
        if self.tombstone {
            Record::tombstone(ts, writer)
        } else {
            Record::value(Bytes::copy_from_slice(&self.value), ts, writer)
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Target {
    Node(u8),
    Long(u8),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Node(i) => format!("node-{}", i % 3),
            Target::Long(x) => "t".repeat(MAX_HINT_TARGET_BYTES + 1 + usize::from(*x)),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Put(KeySpec, Rec),
    Purge(KeySpec, Rec),
    Hint(Target, KeySpec, Rec, u64),
    DeleteHints(Target, Vec<u8>),
}

impl Op {
    fn write_op(&self) -> WriteOp {
        match self {
            Op::Put(k, r) => WriteOp::Put {
                key: k.key(),
                record: r.record(),
            },
            Op::Purge(k, r) => WriteOp::Purge {
                key: k.key(),
                record: r.record(),
            },
            Op::Hint(t, k, r, at) => WriteOp::Hint {
                target: t.name(),
                key: k.key(),
                record: r.record(),
                stored_at_us: *at,
            },
            Op::DeleteHints(t, ids) => WriteOp::DeleteHints {
                target: t.name(),
                ids: ids.iter().map(|&i| u64::from(i % 16)).collect(),
            },
        }
    }
}

#[derive(Default, Clone)]
struct Model {
    data: BTreeMap<Bytes, Record>,
    /// id -> (target, key, record, stored_at)
    hints: BTreeMap<u64, (String, Bytes, Record, u64)>,
    next_id: u64,
}

impl Model {
    fn apply(&mut self, op: &WriteOp) -> bool {
        match op {
            WriteOp::Put { key, record } => {
                let wins = self.data.get(key).is_none_or(|old| record.supersedes(old));
                if wins {
                    self.data.insert(key.clone(), record.clone());
                }
                wins
            }
            WriteOp::Purge { key, record } => {
                let equal = self.data.get(key) == Some(record);
                if equal {
                    self.data.remove(key);
                }
                equal
            }
            WriteOp::Hint {
                target,
                key,
                record,
                stored_at_us,
            } => {
                self.hints.insert(
                    self.next_id,
                    (target.clone(), key.clone(), record.clone(), *stored_at_us),
                );
                self.next_id += 1;
                true
            }
            WriteOp::DeleteHints { target, ids } => {
                let mut removed = false;
                for id in ids {
                    if self.hints.get(id).is_some_and(|h| &h.0 == target) {
                        self.hints.remove(id);
                        removed = true;
                    }
                }
                removed
            }
        }
    }

    fn check(&self, e: &MemoryEngine) {
        for (k, r) in &self.data {
            assert_eq!(e.get(k).expect("get").as_ref(), Some(r), "key {k:?}");
        }
        assert_eq!(e.key_count().expect("count"), self.data.len() as u64);
        // The whole ring, in (token, key) order.
        let all = e
            .scan(0, 0, None, ScanLimit::count(usize::MAX))
            .expect("scan");
        let mut want: Vec<(Bytes, Record)> = self
            .data
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        want.sort_by(|a, b| (key_token(&a.0), &a.0).cmp(&(key_token(&b.0), &b.0)));
        assert_eq!(all, want);
        let stats = e.hint_stats().expect("stats");
        assert_eq!(stats.count, self.hints.len() as u64);
        let bytes: usize = self
            .hints
            .values()
            .map(|(_, k, r, at)| f::encode_hint(k, r, *at).len())
            .sum();
        assert_eq!(stats.bytes, bytes as u64);
        let mut targets: Vec<String> = self.hints.values().map(|h| h.0.clone()).collect();
        targets.sort();
        targets.dedup();
        assert_eq!(stats.targets, targets);
        for t in &targets {
            let got: Vec<(u64, Bytes, Record, u64)> = e
                .hints(t, usize::MAX)
                .expect("hints")
                .into_iter()
                .map(|h| (h.id, h.key, h.record, h.stored_at_us))
                .collect();
            let want: Vec<(u64, Bytes, Record, u64)> = self
                .hints
                .iter()
                .filter(|(_, h)| &h.0 == t)
                .map(|(id, h)| (*id, h.1.clone(), h.2.clone(), h.3))
                .collect();
            assert_eq!(got, want, "hints of {t}");
        }
    }
}

fuzz_target!(|batches: Vec<Vec<Op>>| {
    let engine = MemoryEngine::new();
    let mut model = Model::default();
    for batch in batches.iter().take(16) {
        let ops: Vec<WriteOp> = batch.iter().take(64).map(Op::write_op).collect();
        let too_long = batch.iter().take(64).any(|op| match op {
            Op::Put(KeySpec::Long(_), _) | Op::Purge(KeySpec::Long(_), _) => true,
            Op::Hint(t, k, _, _) => matches!(t, Target::Long(_)) || matches!(k, KeySpec::Long(_)),
            Op::DeleteHints(t, _) => matches!(t, Target::Long(_)),
            _ => false,
        });
        match f::check_ops(&ops) {
            Err(StorageError::TooLong { .. }) => {
                assert!(too_long, "refused a batch within the limits");
                // Refused as a whole: nothing of it is applied.
                model.check(&engine);
                continue;
            }
            Err(e) => panic!("check_ops: {e}"),
            Ok(()) => assert!(!too_long, "an overlong key or target passed"),
        }
        let got = engine.apply(&ops, false).expect("a checked batch applies");
        let want: Vec<bool> = ops.iter().map(|op| model.apply(op)).collect();
        assert_eq!(got, want);
        model.check(&engine);
    }
});
