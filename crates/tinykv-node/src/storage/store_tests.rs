//! Tests of the [`Store`] write path: group commit, writes applied on the
//! caller's thread and their fallback to the writer thread, flushing, close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;

use super::hooked::{Hooked, Hooks};
use super::tests::{put, val};
use super::*;

/// Counts `apply` calls and can hold the first one until released, so a
/// test can queue requests behind it deterministically.
struct Gate {
    applies: AtomicUsize,
    /// (first apply entered, released)
    gate: Mutex<(bool, bool)>,
    cv: Condvar,
    /// Signalled on every `flush`.
    flushed: tokio::sync::Notify,
}

/// A fjall engine behind a [`Gate`].
type Gated = Hooked<FjallEngine, Gate>;

impl Gated {
    fn new(dir: &std::path::Path, hold_first_apply: bool) -> Arc<Self> {
        Arc::new(Hooked {
            inner: FjallEngine::open(dir).unwrap(),
            hooks: Gate {
                applies: AtomicUsize::new(usize::from(!hold_first_apply)),
                gate: Mutex::new((false, false)),
                cv: Condvar::new(),
                flushed: tokio::sync::Notify::new(),
            },
        })
    }
}

impl Hooks for Gate {
    fn before_apply(&self) {
        if self.applies.fetch_add(1, Ordering::SeqCst) == 0 {
            let mut g = self.gate.lock().unwrap();
            g.0 = true;
            self.cv.notify_all();
            while !g.1 {
                g = self.cv.wait(g).unwrap();
            }
        }
    }
    fn before_flush(&self) -> Result<(), StorageError> {
        self.flushed.notify_one();
        Ok(())
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
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_many_concurrent_writers_then_reopen() {
    for policy in [SyncPolicy::Always, SyncPolicy::default()] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::start(Arc::new(FjallEngine::open(dir.path()).unwrap()), policy);
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
        store.close().await.unwrap();
        drop(store);
        let e = FjallEngine::open(dir.path()).unwrap();
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
    store.close().await.unwrap();
    store.close().await.unwrap(); // idempotent
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
    let engine = Arc::new(FjallEngine::open(dir.path()).unwrap());
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
    let e = FjallEngine::open(dir.path()).unwrap();
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
    store.close().await.unwrap();
}

/// With `Periodic`, a write that finds the engine busy (here: another write
/// stuck inside `apply`) queues for the writer thread instead of blocking
/// its async worker, and both complete once the engine is free.
#[tokio::test]
async fn periodic_write_queues_while_the_engine_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let gated = Gated::new(dir.path(), true);
    let store = Store::start(gated.clone(), SyncPolicy::default());
    let first = std::thread::spawn({
        let s = store.clone();
        move || futures::executor::block_on(s.write(vec![put("first", val("1", 1, "n1"))]))
    });
    {
        let mut g = gated.gate.lock().unwrap();
        while !g.0 {
            g = gated.cv.wait(g).unwrap();
        }
    }
    // On this single-threaded runtime, a write that waited for the engine
    // here would never return from `poll`; it must be pending in the queue.
    let mut second = Box::pin(store.write(vec![put("second", val("2", 1, "n1"))]));
    assert!(futures::poll!(&mut second).is_pending());
    {
        let mut g = gated.gate.lock().unwrap();
        g.1 = true;
        gated.cv.notify_all();
    }
    assert_eq!(first.join().unwrap().unwrap(), vec![true]);
    assert_eq!(second.await.unwrap(), vec![true]);
    assert_eq!(store.engine().key_count().unwrap(), 2);
    store.close().await.unwrap();
}

/// The longest key the store admits is one fjall really stores (its limit
/// is an assert, so a wrong constant panics here); one byte more, or a
/// hint for an overlong node id, is refused before the engine sees it, and
/// nothing of such a batch is applied.
#[tokio::test]
async fn keys_and_hint_targets_beyond_the_engine_limit_are_refused_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(
        Arc::new(FjallEngine::open(dir.path()).unwrap()),
        SyncPolicy::default(),
    );
    let longest = Bytes::from(vec![b'k'; MAX_KEY_BYTES]);
    let v = val("1", 1, "n1");
    let op = |key: &Bytes| WriteOp::Put {
        key: key.clone(),
        record: v.clone(),
    };
    assert_eq!(store.write(vec![op(&longest)]).await.unwrap(), vec![true]);
    assert_eq!(store.get(&longest).unwrap(), Some(v.clone()));

    let over = Bytes::from(vec![b'k'; MAX_KEY_BYTES + 1]);
    let refused = store.write(vec![put("first", v.clone()), op(&over)]).await;
    assert!(
        matches!(refused, Err(StorageError::TooLong { what: "key", len, .. }) if len == MAX_KEY_BYTES + 1),
        "{refused:?}"
    );
    assert_eq!(
        store.get(b"first").unwrap(),
        None,
        "nothing of the batch applied"
    );
    assert_eq!(store.get(&over).unwrap(), None);
    let hint = WriteOp::Hint {
        target: "n".repeat(MAX_HINT_TARGET_BYTES + 1),
        key: Bytes::from_static(b"k"),
        record: v.clone(),
        stored_at_us: 1,
    };
    assert!(matches!(
        store.write(vec![hint]).await,
        Err(StorageError::TooLong {
            what: "hint target",
            ..
        })
    ));
    store.close().await.unwrap();
}
