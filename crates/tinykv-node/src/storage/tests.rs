//! Contract tests: every engine must pass the same functions (see
//! `engine_contract!`), plus `Store` tests; durability of the disk
//! engines is in `disk_tests`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

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
fn check_scan(e: &dyn Engine, keys: &[String], start: u64, end: u64, page: usize) {
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
    loop {
        let batch = e.scan(start, end, after.as_deref(), page).unwrap();
        assert!(batch.len() <= page);
        let Some((last, _)) = batch.last() else { break };
        after = Some(last.clone());
        got.extend(
            batch
                .iter()
                .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap()),
        );
        assert!(got.len() <= keys.len(), "pagination does not terminate");
    }
    assert_eq!(got, expected, "scan ({start}, {end}] page {page}");
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
            check_scan(e, &keys, s, t, page);
        }
    }
    // The values come back with the keys.
    let all = e.scan(0, 0, None, 1000).unwrap();
    assert_eq!(all.len(), 300);
    assert!(all.iter().all(|(k, r)| r.value == *k));
    assert!(e.scan(0, 0, None, 0).unwrap().is_empty());
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

macro_rules! engine_contract {
    ($modname:ident, $make:expr) => {
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
            fn hints() {
                run(super::hints_contract)
            }
            #[test]
            fn batch_sees_its_own_writes() {
                run(super::batch_sees_its_own_writes)
            }
        }
    };
}

engine_contract!(memory_engine, || ((), MemoryEngine::new()));
engine_contract!(redb_engine, || {
    let dir = tempfile::tempdir().unwrap();
    let engine = RedbEngine::open(dir.path()).unwrap();
    (dir, engine)
});
engine_contract!(fjall_engine, || {
    let dir = tempfile::tempdir().unwrap();
    let engine = FjallEngine::open(dir.path()).unwrap();
    (dir, engine)
});

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

/// Wraps an engine, counts `apply` calls and can hold the first one until
/// released, so a test can queue requests behind it deterministically.
struct Gated {
    inner: RedbEngine,
    applies: AtomicUsize,
    /// (first apply entered, released)
    gate: Mutex<(bool, bool)>,
    cv: Condvar,
    /// Signalled on every `flush`.
    flushed: tokio::sync::Notify,
}

impl Gated {
    fn new(dir: &std::path::Path, hold_first_apply: bool) -> Arc<Self> {
        Arc::new(Gated {
            inner: RedbEngine::open(dir).unwrap(),
            applies: AtomicUsize::new(usize::from(!hold_first_apply)),
            gate: Mutex::new((false, false)),
            cv: Condvar::new(),
            flushed: tokio::sync::Notify::new(),
        })
    }
}

impl Engine for Gated {
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        self.inner.get(key)
    }
    fn apply(&self, ops: &[WriteOp], durable: bool) -> Result<Vec<bool>, StorageError> {
        if self.applies.fetch_add(1, Ordering::SeqCst) == 0 {
            let mut g = self.gate.lock().unwrap();
            g.0 = true;
            self.cv.notify_all();
            while !g.1 {
                g = self.cv.wait(g).unwrap();
            }
        }
        self.inner.apply(ops, durable)
    }
    fn flush(&self) -> Result<(), StorageError> {
        self.flushed.notify_one();
        self.inner.flush()
    }
    fn scan(
        &self,
        s: u64,
        e: u64,
        a: Option<&[u8]>,
        l: usize,
    ) -> Result<Vec<(Bytes, Record)>, StorageError> {
        self.inner.scan(s, e, a, l)
    }
    fn key_count(&self) -> Result<u64, StorageError> {
        self.inner.key_count()
    }
    fn hints(&self, t: &str, l: usize) -> Result<Vec<Hint>, StorageError> {
        self.inner.hints(t, l)
    }
    fn hint_stats(&self) -> Result<HintStats, StorageError> {
        self.inner.hint_stats()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_group_commits_queued_writers() {
    let dir = tempfile::tempdir().unwrap();
    let gated = Gated::new(dir.path(), true);
    let store = Store::start(gated.clone(), SyncPolicy::Always);
    let first = tokio::spawn({
        let s = store.clone();
        async move { s.write(vec![put("first", val("0", 1, "n1"))]).await }
    });
    // Wait (blocking, off the runtime) until the writer thread is inside apply.
    let g2 = gated.clone();
    tokio::task::spawn_blocking(move || {
        let mut g = g2.gate.lock().unwrap();
        while !g.0 {
            g = g2.cv.wait(g).unwrap();
        }
    })
    .await
    .unwrap();
    const N: usize = 50;
    let mut tasks = Vec::new();
    for i in 0..N {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let k = format!("k{i}");
            s.write(vec![put(&k, val(&k, 1, "n1"))]).await
        }));
    }
    while store.queued() < N {
        tokio::task::yield_now().await;
    }
    {
        let mut g = gated.gate.lock().unwrap();
        g.1 = true;
        gated.cv.notify_all();
    }
    assert_eq!(first.await.unwrap().unwrap(), vec![true]);
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), vec![true]);
    }
    assert_eq!(
        gated.applies.load(Ordering::SeqCst),
        2,
        "50 queued writers, one batch"
    );
    assert_eq!(store.engine().key_count().unwrap(), N as u64 + 1);
    for i in 0..N {
        assert!(store.get(format!("k{i}").as_bytes()).unwrap().is_some());
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_many_concurrent_writers_then_reopen() {
    for policy in [SyncPolicy::Always, SyncPolicy::default()] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::start(Arc::new(RedbEngine::open(dir.path()).unwrap()), policy);
        let mut tasks = Vec::new();
        for w in 0..16 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    let k = format!("w{w}-{i}");
                    let r = s.write(vec![put(&k, val(&k, 1, "n1"))]).await?;
                    assert_eq!(r, vec![true]);
                    // Acknowledged means readable.
                    assert!(s.get(k.as_bytes())?.is_some());
                }
                Ok::<_, StorageError>(())
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(store.engine().key_count().unwrap(), 320);
        store.close().await;
        drop(store);
        let e = RedbEngine::open(dir.path()).unwrap();
        assert_eq!(e.key_count().unwrap(), 320, "{policy}");
        assert!(e.get(b"w15-19").unwrap().is_some());
    }
}

#[tokio::test]
async fn store_write_after_close_is_closed() {
    let store = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::default());
    let other = store.clone();
    assert_eq!(
        store
            .write(vec![put("a", val("1", 1, "n1"))])
            .await
            .unwrap(),
        vec![true]
    );
    store.flush().await.unwrap();
    store.close().await;
    store.close().await; // idempotent
    assert!(matches!(
        other.write(vec![put("b", val("1", 1, "n1"))]).await,
        Err(StorageError::Closed)
    ));
    assert!(matches!(other.flush().await, Err(StorageError::Closed)));
    assert_eq!(other.get(b"a").unwrap(), Some(val("1", 1, "n1")));
}

#[test]
fn dropping_every_store_handle_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(RedbEngine::open(dir.path()).unwrap());
    let store = Store::start(
        engine.clone(),
        SyncPolicy::Periodic(std::time::Duration::from_secs(3600)),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(store.write(vec![put("a", val("1", 1, "n1"))]))
        .unwrap();
    drop(store);
    // The thread held the other reference; dropping the store joined it.
    let engine = Arc::try_unwrap(engine).expect("writer thread still holds the engine");
    drop(engine);
    let e = RedbEngine::open(dir.path()).unwrap();
    assert!(e.get(b"a").unwrap().is_some());
}

#[tokio::test]
async fn periodic_policy_flushes_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let gated = Gated::new(dir.path(), false);
    let store = Store::start(
        gated.clone(),
        SyncPolicy::Periodic(std::time::Duration::from_millis(20)),
    );
    store
        .write(vec![put("a", val("1", 1, "n1"))])
        .await
        .unwrap();
    // No flush request, no close: only the window timer can flush.
    tokio::time::timeout(std::time::Duration::from_secs(10), gated.flushed.notified())
        .await
        .expect("the periodic window elapsed without a flush");
    store.close().await;
}
