//! What each [`SyncPolicy`] promises, checked on the write path itself with
//! an engine that records every `apply` (and whether it was durable) and
//! every `flush`: a node process cannot show it, since SIGKILL keeps the
//! page cache and a restarted node can get its keys back from a peer.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::hooked::{Hooked, Hooks};
use super::tests::{put, val};
use super::*;

/// What [`Counting`] records: flushes, the applies that were durable and
/// the keys they wrote; it can be told to fail every flush.
#[derive(Default)]
struct Counts {
    flushes: AtomicUsize,
    durable_applies: AtomicUsize,
    plain_applies: AtomicUsize,
    /// Keys written by an `apply(durable = true)` that returned.
    durable_keys: Mutex<HashSet<Bytes>>,
    fail_flush: bool,
}

/// A memory engine that counts flushes, records the keys each `apply`
/// made durable, and can be told to fail every flush.
type Counting = Hooked<MemoryEngine, Counts>;

impl Counts {
    fn durable(&self, key: &str) -> bool {
        let keys = self.durable_keys.lock().unwrap();
        keys.contains(key.as_bytes())
    }
}

impl Hooks for Counts {
    fn after_apply(&self, ops: &[WriteOp], durable: bool) {
        if durable {
            self.durable_applies.fetch_add(1, Ordering::SeqCst);
            let mut keys = self.durable_keys.lock().unwrap();
            keys.extend(ops.iter().filter_map(|op| match op {
                WriteOp::Put { key, .. } => Some(key.clone()),
                _ => None,
            }));
        } else {
            self.plain_applies.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn before_flush(&self) -> Result<(), StorageError> {
        if self.fail_flush {
            return Err(StorageError::Engine("injected fsync failure".into()));
        }
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A window no test outlives: only `flush` and `close` can flush.
const LONG: SyncPolicy = SyncPolicy::Periodic(Duration::from_secs(3600));

/// Periodic writes are not flushed while the window runs, and `close`
/// flushes them exactly once: without the flush on close a graceful
/// shutdown would leave the last window's writes to the OS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_writes_are_flushed_once_at_close_and_not_before() {
    let engine = Arc::new(Counting::default());
    let store = Store::start(engine.clone(), LONG);
    for i in 0..50 {
        let k = format!("k{i}");
        assert_eq!(
            store.write(vec![put(&k, val("v", 1, "n1"))]).await.unwrap(),
            vec![true]
        );
    }
    let singles = (50..100).map(|i| store.write_one(put(&format!("k{i}"), val("v", 1, "n1"))));
    for r in futures::future::join_all(singles).await {
        assert!(r.unwrap());
    }
    assert_eq!(engine.key_count().unwrap(), 100);
    assert_eq!(engine.durable_applies.load(Ordering::SeqCst), 0);
    assert_eq!(
        engine.flushes.load(Ordering::SeqCst),
        0,
        "flushed before close"
    );
    store.close().await.expect("close");
    assert_eq!(
        engine.flushes.load(Ordering::SeqCst),
        1,
        "one flush at close"
    );
    store.close().await.expect("a second close");
    assert_eq!(
        engine.flushes.load(Ordering::SeqCst),
        1,
        "nothing left to flush"
    );
}

/// A final flush that fails is the error of `close` (the node's shutdown
/// returns it), not a line in the log after which the node exits 0.
#[tokio::test]
async fn a_failed_final_flush_is_the_error_of_close() {
    let engine = Arc::new(Hooked {
        inner: MemoryEngine::default(),
        hooks: Counts {
            fail_flush: true,
            ..Counts::default()
        },
    });
    let store = Store::start(engine.clone(), LONG);
    store
        .write(vec![put("a", val("v", 1, "n1"))])
        .await
        .unwrap();
    let r = store.close().await;
    assert!(
        matches!(&r, Err(StorageError::Engine(m)) if m.contains("injected")),
        "{r:?}"
    );
    // Nothing failed to flush: closing is fine.
    let quiet = Store::start(Arc::new(Counting::default()), LONG);
    quiet.close().await.expect("close with nothing written");
}

/// `Always`: each write is in a durable engine commit before it is
/// acknowledged. Sequential writes are committed alone (one durable commit
/// each); concurrent ones may share one, never skip it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_commits_each_acknowledged_write_durably_before_its_ack() {
    let engine = Arc::new(Counting::default());
    let store = Store::start(engine.clone(), SyncPolicy::Always);
    for i in 0..20 {
        let k = format!("seq{i}");
        store.write(vec![put(&k, val("v", 1, "n1"))]).await.unwrap();
        assert!(
            engine.durable(&k),
            "{k} acknowledged before a durable commit"
        );
        assert_eq!(engine.durable_applies.load(Ordering::SeqCst), i + 1);
    }
    assert!(store
        .write_one(put("single", val("v", 1, "n1")))
        .await
        .unwrap());
    assert!(
        engine.durable("single"),
        "write_one acknowledged before a durable commit"
    );
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (s, e) = (store.clone(), engine.clone());
        tasks.push(tokio::spawn(async move {
            let k = format!("con{i}");
            s.write(vec![put(&k, val("v", 1, "n1"))]).await.unwrap();
            assert!(e.durable(&k), "{k} acknowledged before a durable commit");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        engine.plain_applies.load(Ordering::SeqCst),
        0,
        "a non-durable commit"
    );
    store.close().await.expect("close");
}
