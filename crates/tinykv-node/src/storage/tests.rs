//! Contract tests: every engine must pass the same functions (see
//! `engine_contract!`). Durability of the disk engine is in `disk_tests`,
//! the write path above them in `store_tests`.

use bytes::Bytes;

use super::*;
use crate::ring::{key_token, range_contains};

pub(super) fn val(v: &str, ts: u64, w: &str) -> Record {
    Record::value(Bytes::copy_from_slice(v.as_bytes()), ts, w)
}

pub(super) fn put(key: &str, record: Record) -> WriteOp {
    WriteOp::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        record,
    }
}

pub(super) fn hint(target: &str, key: &str, record: Record, at: u64) -> WriteOp {
    WriteOp::Hint {
        target: target.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        record,
        stored_at_us: at,
    }
}

fn put_get(e: &dyn Engine) {
    assert_eq!(e.get(b"a").unwrap(), None);
    assert_eq!(
        e.apply(&[put("a", val("1", 10, "n1"))], false).unwrap(),
        vec![true]
    );
    assert_eq!(e.get(b"a").unwrap(), Some(val("1", 10, "n1")));
    assert_eq!(e.get(b"b").unwrap(), None);
    assert_eq!(e.key_count().unwrap(), 1);
}

fn lww_both_orders(e: &dyn Engine) {
    let (old, new) = (val("old", 10, "n2"), val("new", 11, "n1"));
    assert_eq!(
        e.apply(&[put("x", old.clone()), put("x", new.clone())], true)
            .unwrap(),
        vec![true, true]
    );
    assert_eq!(
        e.apply(&[put("y", new.clone()), put("y", old.clone())], true)
            .unwrap(),
        vec![true, false]
    );
    assert_eq!(e.get(b"x").unwrap(), Some(new.clone()));
    assert_eq!(e.get(b"y").unwrap(), Some(new));
    // Equal timestamps: the writer id breaks the tie, in any order.
    e.apply(&[put("z", val("b", 5, "n2"))], false).unwrap();
    assert_eq!(
        e.apply(&[put("z", val("a", 5, "n1"))], false).unwrap(),
        vec![false]
    );
    assert_eq!(e.get(b"z").unwrap(), Some(val("b", 5, "n2")));
    assert_eq!(e.key_count().unwrap(), 3);
}

fn idempotent_reput(e: &dyn Engine) {
    let r = val("v", 7, "n1");
    assert_eq!(e.apply(&[put("k", r.clone())], false).unwrap(), vec![true]);
    assert_eq!(e.apply(&[put("k", r.clone())], false).unwrap(), vec![false]);
    assert_eq!(e.get(b"k").unwrap(), Some(r));
    assert_eq!(e.key_count().unwrap(), 1);
}

fn tombstones(e: &dyn Engine) {
    e.apply(&[put("k", val("v", 7, "n1"))], false).unwrap();
    let t = Record::tombstone(8, "n1");
    assert_eq!(e.apply(&[put("k", t.clone())], false).unwrap(), vec![true]);
    assert_eq!(e.get(b"k").unwrap(), Some(t.clone()));
    // An older value arriving late does not resurrect the key.
    assert_eq!(
        e.apply(&[put("k", val("late", 6, "n9"))], false).unwrap(),
        vec![false]
    );
    assert_eq!(e.get(b"k").unwrap(), Some(t));
    assert_eq!(e.key_count().unwrap(), 1, "tombstones count as keys");
}

fn purge_only_if_equal(e: &dyn Engine) {
    let t = Record::tombstone(8, "n1");
    e.apply(&[put("k", t.clone())], false).unwrap();
    let purge = |r: Record| WriteOp::Purge {
        key: Bytes::from_static(b"k"),
        record: r,
    };
    assert_eq!(
        e.apply(&[purge(Record::tombstone(7, "n1"))], false)
            .unwrap(),
        vec![false]
    );
    assert_eq!(e.get(b"k").unwrap(), Some(t.clone()));
    assert_eq!(e.apply(&[purge(t.clone())], false).unwrap(), vec![true]);
    assert_eq!(e.get(b"k").unwrap(), None);
    assert_eq!(e.key_count().unwrap(), 0);
    assert_eq!(e.apply(&[purge(t)], false).unwrap(), vec![false]);
}

/// Pages through `(start, end]` with `after` and compares the result, in
/// order, with a brute-force filter over `key_token`.
fn check_scan(e: &dyn Engine, keys: &[String], start: u64, end: u64, page: ScanLimit) {
    let mut expected: Vec<(u64, String)> = keys
        .iter()
        .map(|k| (key_token(k.as_bytes()), k.clone()))
        .filter(|(t, _)| range_contains(start, end, *t))
        .collect();
    expected.sort();
    let wraps = start >= end;
    let expected: Vec<String> = if wraps {
        let (hi, lo): (Vec<_>, Vec<_>) = expected.into_iter().partition(|(t, _)| *t > start);
        hi.into_iter().chain(lo).map(|(_, k)| k).collect()
    } else {
        expected.into_iter().map(|(_, k)| k).collect()
    };
    let mut got = Vec::new();
    let mut after: Option<Bytes> = None;
    // Paged as callers do: the next page is asked only after a full one.
    loop {
        let batch = e.scan(start, end, after.as_deref(), page).unwrap();
        assert!(batch.len() <= page.count);
        // Only the last version may reach the byte budget.
        let before_last: usize = batch
            .iter()
            .rev()
            .skip(1)
            .map(|(k, r)| page_bytes(k, r))
            .sum();
        assert!(before_last < page.bytes, "page passed its budget early");
        got.extend(
            batch
                .iter()
                .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap()),
        );
        assert!(got.len() <= keys.len(), "pagination does not terminate");
        match batch.last() {
            Some((last, _)) if page.filled_by(&batch) => after = Some(last.clone()),
            _ => break,
        }
    }
    assert_eq!(got, expected, "scan ({start}, {end}] page {page:?}");
}

fn scan_ranges(e: &dyn Engine) {
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    let ops: Vec<WriteOp> = keys.iter().map(|k| put(k, val(k, 1, "n1"))).collect();
    e.apply(&ops, false).unwrap();
    let q = u64::MAX / 4;
    for (s, t) in [
        (0, u64::MAX),
        (q, 3 * q),
        (3 * q, q),        // wraps
        (q, q),            // whole ring
        (u64::MAX, 2 * q), // (MAX, 2q]: only the low part
        (2 * q, 0),        // wraps, ends at 0
        (5, 6),            // almost certainly empty
    ] {
        for page in [1, 7, 1000] {
            check_scan(e, &keys, s, t, ScanLimit::count(page));
        }
        // Cut by bytes: each version is ~30 bytes, so 1, 3 and 34 a page.
        for bytes in [1, 80, 1000] {
            check_scan(e, &keys, s, t, ScanLimit { count: 1000, bytes });
        }
    }
    // The values come back with the keys.
    let all = e.scan(0, 0, None, ScanLimit::count(1000)).unwrap();
    assert_eq!(all.len(), 300);
    assert!(all.iter().all(|(k, r)| r.value == *k));
    assert!(e.scan(0, 0, None, ScanLimit::count(0)).unwrap().is_empty());
}

/// A resume key longer than any stored key can be (only a malformed peer
/// `FetchRange` sends one) is refused: the disk engine asserted on it, and
/// the random-message test on a live node hit that panic.
fn scan_after_an_overlong_key(e: &dyn Engine) {
    e.apply(&[put("a", val("1", 1, "n1"))], false).unwrap();
    for len in [MAX_KEY_BYTES + 1, u16::MAX as usize + 1, 70_000] {
        let over = vec![b'k'; len];
        let refused = e.scan(0, 0, Some(&over), ScanLimit::count(10));
        assert!(
            matches!(refused, Err(StorageError::TooLong { what: "key", .. })),
            "{len}: {refused:?}"
        );
    }
    let longest = vec![b'k'; MAX_KEY_BYTES];
    assert!(e.scan(0, 0, Some(&longest), ScanLimit::count(10)).is_ok());
}

fn hints_contract(e: &dyn Engine) {
    assert_eq!(e.hint_stats().unwrap(), HintStats::default());
    let ops = vec![
        hint("n2", "a", val("1", 1, "n1"), 100),
        hint("n3", "b", val("2", 2, "n1"), 101),
        hint("n2", "c", Record::tombstone(3, "n1"), 102),
        hint("n2", "a", val("4", 4, "n1"), 103),
    ];
    assert_eq!(e.apply(&ops, false).unwrap(), vec![true; 4]);
    let n2 = e.hints("n2", 100).unwrap();
    assert_eq!(n2.len(), 3);
    assert!(n2.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(
        n2.iter()
            .map(|h| (h.key.as_ref(), h.stored_at_us))
            .collect::<Vec<_>>(),
        vec![(&b"a"[..], 100), (&b"c"[..], 102), (&b"a"[..], 103)]
    );
    assert_eq!(n2[1].record, Record::tombstone(3, "n1"));
    assert!(n2.iter().all(|h| h.target == "n2"));
    assert_eq!(e.hints("n2", 2).unwrap(), n2[..2].to_vec());
    assert_eq!(e.hints("n3", 100).unwrap().len(), 1);
    assert!(e.hints("n", 100).unwrap().is_empty(), "no prefix confusion");
    let stats = e.hint_stats().unwrap();
    assert_eq!(stats.count, 4);
    assert!(stats.bytes > 0);
    assert_eq!(stats.targets, vec!["n2".to_string(), "n3".to_string()]);
    // Hints never touch the data.
    assert_eq!(e.key_count().unwrap(), 0);

    let del = WriteOp::DeleteHints {
        target: "n2".into(),
        ids: vec![n2[0].id, n2[2].id],
    };
    assert_eq!(
        e.apply(std::slice::from_ref(&del), false).unwrap(),
        vec![true]
    );
    assert_eq!(e.apply(&[del], false).unwrap(), vec![false]);
    assert_eq!(e.hints("n2", 100).unwrap(), vec![n2[1].clone()]);
    let del = WriteOp::DeleteHints {
        target: "n3".into(),
        ids: e.hints("n3", 100).unwrap().iter().map(|h| h.id).collect(),
    };
    e.apply(&[del], false).unwrap();
    let stats = e.hint_stats().unwrap();
    assert_eq!((stats.count, stats.targets), (1, vec!["n2".to_string()]));
    // New ids keep increasing after deletions.
    e.apply(&[hint("n2", "d", val("5", 5, "n1"), 104)], false)
        .unwrap();
    let left = e.hints("n2", 100).unwrap();
    assert_eq!(left.len(), 2);
    assert!(left[1].id > n2[2].id);
    let del = WriteOp::DeleteHints {
        target: "n2".into(),
        ids: left.iter().map(|h| h.id).collect(),
    };
    e.apply(&[del], false).unwrap();
    assert_eq!(e.hint_stats().unwrap(), HintStats::default());
}

/// Later ops of a batch see the earlier ones, as if applied one by one.
fn batch_sees_its_own_writes(e: &dyn Engine) {
    let ops = [
        put("k", val("new", 20, "n1")),
        put("k", val("old", 10, "n1")),
        put("gone", val("x", 5, "n1")),
        WriteOp::Purge {
            key: Bytes::from_static(b"gone"),
            record: val("x", 5, "n1"),
        },
    ];
    assert_eq!(e.apply(&ops, false).unwrap(), vec![true, false, true, true]);
    assert_eq!(e.get(b"k").unwrap(), Some(val("new", 20, "n1")));
    assert_eq!(e.get(b"gone").unwrap(), None);
    assert_eq!(e.key_count().unwrap(), 1);
}

/// The same `(timestamp, writer)` in separate batches: the tie-break by
/// tombstone and value still applies (an engine that remembers only stamps
/// must look at the stored record), and a purged key is new again.
fn equal_stamps_across_batches(e: &dyn Engine) {
    let v = val("v", 5, "n1");
    let t = Record::tombstone(5, "n1");
    assert_eq!(e.apply(&[put("k", v.clone())], false).unwrap(), vec![true]);
    assert_eq!(e.apply(&[put("k", t.clone())], false).unwrap(), vec![true]);
    assert_eq!(e.apply(&[put("k", v)], false).unwrap(), vec![false]);
    assert_eq!(e.get(b"k").unwrap(), Some(t.clone()));
    let purge = WriteOp::Purge {
        key: Bytes::from_static(b"k"),
        record: t,
    };
    assert_eq!(e.apply(&[purge], false).unwrap(), vec![true]);
    assert_eq!(e.key_count().unwrap(), 0);
    let older = val("w", 3, "n2");
    assert_eq!(
        e.apply(&[put("k", older.clone())], false).unwrap(),
        vec![true]
    );
    assert_eq!(e.get(b"k").unwrap(), Some(older));
    assert_eq!(e.key_count().unwrap(), 1);
}

/// Random puts, tombstones and purges over a few keys, timestamps and
/// writers (so ties are frequent), in batches of 1-4: every answer and the
/// final state equal the memory engine's, the oracle.
fn random_ops_match_the_memory_engine(e: &dyn Engine) {
    use rand::{Rng, SeedableRng};
    let oracle = MemoryEngine::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let keys = ["a", "b", "c", "d", "e", "f"];
    let writers = ["n1", "n2", "n3"];
    for round in 0..600 {
        let mut ops = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            let key = keys[rng.random_range(0..keys.len())];
            let ts = rng.random_range(1..=4);
            let writer = writers[rng.random_range(0..writers.len())];
            // An expiring "x" ties with a plain one but for its expiry.
            let record = match rng.random_range(0..4) {
                0 => Record::tombstone(ts, writer),
                1 => val("x", ts, writer),
                2 => val("x", ts, writer).expiring(9),
                _ => val("y", ts, writer),
            };
            // Purges name the stored version half of the time.
            let purge_record = match oracle.get(key.as_bytes()).unwrap() {
                Some(stored) if rng.random_bool(0.5) => stored,
                _ => record.clone(),
            };
            ops.push(match rng.random_range(0..5) {
                0 => WriteOp::Purge {
                    key: Bytes::copy_from_slice(key.as_bytes()),
                    record: purge_record,
                },
                _ => put(key, record),
            });
        }
        let want = oracle.apply(&ops, false).unwrap();
        assert_eq!(
            e.apply(&ops, false).unwrap(),
            want,
            "round {round}: {ops:?}"
        );
        for key in keys {
            assert_eq!(
                e.get(key.as_bytes()).unwrap(),
                oracle.get(key.as_bytes()).unwrap(),
                "round {round}, key {key}"
            );
        }
        assert_eq!(e.key_count().unwrap(), oracle.key_count().unwrap());
    }
}

/// The batch rules restated naively, one op at a time over plain maps,
/// independently of the planner (`plan.rs`) that every engine, the memory
/// engine included, works its batches out with: LWW puts, purges only of
/// the exact stored version, hint ids from one counter, deletions of
/// present hints only.
#[derive(Default)]
struct Model {
    data: std::collections::BTreeMap<Bytes, Record>,
    /// `(target, id)` -> (key, version, stored at, encoded size)
    hints: std::collections::BTreeMap<(String, u64), (Bytes, Record, u64, u64)>,
    next_hint_id: u64,
    hint_bytes: u64,
}

impl Model {
    fn apply(&mut self, ops: &[WriteOp]) -> Vec<bool> {
        ops.iter()
            .map(|op| match op {
                WriteOp::Put { key, record } => {
                    let write = self.data.get(key).is_none_or(|old| record.supersedes(old));
                    if write {
                        self.data.insert(key.clone(), record.clone());
                    }
                    write
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
                    let id = self.next_hint_id;
                    self.next_hint_id += 1;
                    let size = codec::encode_hint(key, record, *stored_at_us).len() as u64;
                    self.hint_bytes += size;
                    let hint = (key.clone(), record.clone(), *stored_at_us, size);
                    self.hints.insert((target.clone(), id), hint);
                    true
                }
                WriteOp::DeleteHints { target, ids } => {
                    let mut any = false;
                    for id in ids {
                        if let Some((.., size)) = self.hints.remove(&(target.clone(), *id)) {
                            self.hint_bytes -= size;
                            any = true;
                        }
                    }
                    any
                }
            })
            .collect()
    }

    fn hints(&self, target: &str) -> Vec<Hint> {
        self.hints
            .range((target.to_string(), 0)..=(target.to_string(), u64::MAX))
            .map(|((t, id), (key, record, at, _))| Hint {
                id: *id,
                target: t.clone(),
                key: key.clone(),
                record: record.clone(),
                stored_at_us: *at,
            })
            .collect()
    }

    fn hint_stats(&self) -> HintStats {
        let mut targets: Vec<String> = self.hints.keys().map(|(t, _)| t.clone()).collect();
        targets.dedup();
        HintStats {
            count: self.hints.len() as u64,
            bytes: self.hint_bytes,
            targets,
        }
    }
}

/// Random batches of every kind of op (puts, tombstones, purges, hints and
/// hint deletions, the latter naming hints of earlier batches, of the same
/// batch, and ones that never existed): every answer, the data, the hints
/// and the counters equal [`Model`]'s.
fn random_ops_match_the_model(e: &dyn Engine) {
    use rand::{Rng, SeedableRng};
    let mut model = Model::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let keys = ["a", "b", "c", "d", "e", "f"];
    let writers = ["n1", "n2", "n3"];
    let targets = ["n2", "n3"];
    for round in 0..400 {
        let mut ops = Vec::new();
        let mut next_id = model.next_hint_id;
        for _ in 0..rng.random_range(1..=5) {
            let key = keys[rng.random_range(0..keys.len())];
            let ts = rng.random_range(1..=4);
            let writer = writers[rng.random_range(0..writers.len())];
            let target = targets[rng.random_range(0..targets.len())];
            // An expiring "x" ties with a plain one but for its expiry.
            let record = match rng.random_range(0..4) {
                0 => Record::tombstone(ts, writer),
                1 => val("x", ts, writer),
                2 => val("x", ts, writer).expiring(9),
                _ => val("y", ts, writer),
            };
            let purge_record = match model.data.get(key.as_bytes()) {
                Some(stored) if rng.random_bool(0.5) => stored.clone(),
                _ => record.clone(),
            };
            ops.push(match rng.random_range(0..8) {
                0 => WriteOp::Purge {
                    key: Bytes::copy_from_slice(key.as_bytes()),
                    record: purge_record,
                },
                1 => {
                    next_id += 1;
                    hint(target, key, record, rng.random_range(1..=1000))
                }
                2 => WriteOp::DeleteHints {
                    target: target.into(),
                    ids: (0..rng.random_range(1..=3))
                        .map(|_| rng.random_range(0..next_id + 2))
                        .collect(),
                },
                _ => put(key, record),
            });
        }
        let want = model.apply(&ops);
        assert_eq!(
            e.apply(&ops, false).unwrap(),
            want,
            "round {round}: {ops:?}"
        );
        let all = e.scan(0, 0, None, ScanLimit::count(100)).unwrap();
        let model_all: Vec<(Bytes, Record)> = {
            let mut v: Vec<_> = model
                .data
                .iter()
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect();
            v.sort_by_key(|(k, _)| (key_token(k), k.clone()));
            v
        };
        assert_eq!(all, model_all, "round {round}: data");
        assert_eq!(e.key_count().unwrap(), model.data.len() as u64);
        for t in targets {
            assert_eq!(e.hints(t, 1000).unwrap(), model.hints(t), "round {round}");
        }
        assert_eq!(e.hint_stats().unwrap(), model.hint_stats(), "round {round}");
    }
}

/// A batch that cannot be worked out (here a hint whose target id is too
/// long for a hint key) fails as a whole: none of its ops is applied.
fn a_failed_batch_applies_nothing(e: &dyn Engine) {
    let ops = [
        put("k", val("v", 5, "n1")),
        hint("n2", "k", val("v", 5, "n1"), 1),
        hint(&"n".repeat(70_000), "k", val("v", 5, "n1"), 1),
    ];
    assert!(e.apply(&ops, false).is_err());
    assert_eq!(e.get(b"k").unwrap(), None);
    assert_eq!(e.key_count().unwrap(), 0);
    assert_eq!(e.hint_stats().unwrap(), HintStats::default());
    assert_eq!(e.apply(&ops[..2], false).unwrap(), vec![true, true]);
    assert_eq!(e.key_count().unwrap(), 1);
    assert_eq!(e.hints("n2", 10).unwrap().len(), 1);
}

/// The contract tests for one engine, plus the tests named after `$make`
/// (those that compare it with another engine, which the memory engine
/// must not be compared with: it is the oracle).
macro_rules! engine_contract {
    ($modname:ident, $make:expr $(, $extra:ident)*) => {
        mod $modname {
            #[allow(unused_imports)]
            use super::*;

            fn run(f: fn(&dyn Engine)) {
                #[allow(clippy::redundant_closure_call)]
                let (_guard, engine) = ($make)();
                f(&engine);
            }

            #[test]
            fn put_get() {
                run(super::put_get)
            }
            #[test]
            fn lww_both_orders() {
                run(super::lww_both_orders)
            }
            #[test]
            fn idempotent_reput() {
                run(super::idempotent_reput)
            }
            #[test]
            fn tombstones() {
                run(super::tombstones)
            }
            #[test]
            fn purge_only_if_equal() {
                run(super::purge_only_if_equal)
            }
            #[test]
            fn scan_ranges() {
                run(super::scan_ranges)
            }
            #[test]
            fn scan_after_an_overlong_key() {
                run(super::scan_after_an_overlong_key)
            }
            #[test]
            fn hints() {
                run(super::hints_contract)
            }
            #[test]
            fn batch_sees_its_own_writes() {
                run(super::batch_sees_its_own_writes)
            }
            #[test]
            fn equal_stamps_across_batches() {
                run(super::equal_stamps_across_batches)
            }
            #[test]
            fn random_ops_match_the_model() {
                run(super::random_ops_match_the_model)
            }
            #[test]
            fn a_failed_batch_applies_nothing() {
                run(super::a_failed_batch_applies_nothing)
            }
            $(
                #[test]
                fn $extra() {
                    run(super::$extra)
                }
            )*
        }
    };
}

engine_contract!(memory_engine, || ((), MemoryEngine::new()));
/// A disk engine opened by `open` in a fresh temporary directory (kept
/// alive beside it).
fn on_disk<E>(
    open: impl FnOnce(&std::path::Path) -> Result<E, StorageError>,
) -> (tempfile::TempDir, E) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).unwrap();
    (dir, engine)
}

fn tuning(cache_bytes: Option<u64>, stamp_keys: usize) -> EngineTuning {
    EngineTuning {
        cache_bytes,
        stamp_keys,
    }
}

engine_contract!(
    fjall_engine,
    || on_disk(FjallEngine::open),
    random_ops_match_the_memory_engine
);
// The stamp index must never change an outcome: off, and so small that
// its generations turn over every few keys (stamps dropped mid-test).
engine_contract!(
    fjall_engine_without_stamps,
    || on_disk(|p| { FjallEngine::open_tuned(p, &tuning(Some(1 << 20), 0)) }),
    random_ops_match_the_memory_engine
);
engine_contract!(
    fjall_engine_with_tiny_stamps,
    || on_disk(|p| { FjallEngine::open_tuned(p, &tuning(None, 4)) }),
    random_ops_match_the_memory_engine
);

#[test]
fn sync_policy_display_and_parse() {
    assert_eq!(SyncPolicy::default().to_string(), "periodic(10ms)");
    assert_eq!(SyncPolicy::Always.to_string(), "always");
    for p in [
        SyncPolicy::Always,
        SyncPolicy::Periodic(std::time::Duration::from_millis(25)),
    ] {
        assert_eq!(p.to_string().parse::<SyncPolicy>(), Ok(p));
    }
    assert_eq!("periodic".parse::<SyncPolicy>(), Ok(SyncPolicy::default()));
    assert!("sometimes".parse::<SyncPolicy>().is_err());
}
