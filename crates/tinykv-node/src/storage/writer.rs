//! The write path: every write of the node goes through one [`Store`].
//!
//! With [`SyncPolicy::Periodic`] (the default) a write is applied on the
//! caller's thread: the engine's batch is a journal append handed to the OS,
//! a few microseconds, cheaper than waking another thread and being woken
//! back (that hand-off cost more CPU than the write itself). It is visible at
//! once and survives a crash of the process; a dedicated OS thread makes it
//! durable (fsync) at most one window after the first unsynced write, on
//! [`Store::flush`], and on close. A machine crash can therefore lose up to
//! one window of acknowledged writes on this node, like Cassandra's
//! `commitlog_sync: periodic`. With fjall the fsync runs beside the writes
//! (it only syncs journal bytes already handed to the OS); with an engine
//! whose flush excludes writes (the trait's cautious default), and whenever
//! the engine is throttling writes, writes queue for the thread instead, so
//! an async worker never blocks on a disk.
//!
//! With [`SyncPolicy::Always`] every write is queued to that thread, which
//! turns whatever is queued into a single engine batch and one fsync: under
//! load many requests share one transaction (group commit); when idle a
//! request is committed alone, immediately.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::pending::Pending;
use super::{Engine, StorageError, WriteOp};
use crate::version::Record;

/// Most ops committed in one engine batch; bounds the latency a large queue
/// adds to the first request in it. A single larger request is not split.
pub const MAX_BATCH_OPS: usize = 1024;

/// Requests that may wait in the queue; senders wait (async) beyond that,
/// which is the backpressure when the disk is slower than the clients.
const QUEUE_CAPACITY: usize = 4096;

/// When writes become durable (the `--sync` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync before acknowledging; concurrent writers share the fsync.
    Always,
    /// Acknowledge once committed to the OS; fsync at most once per window.
    Periodic(Duration),
}

impl Default for SyncPolicy {
    /// `Periodic(10ms)`: at most 10 ms of acknowledged writes at risk on a
    /// machine crash, for roughly an order of magnitude more write throughput.
    fn default() -> Self {
        SyncPolicy::Periodic(Duration::from_millis(10))
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::Always => f.write_str("always"),
            SyncPolicy::Periodic(d) => write!(f, "periodic({}ms)", d.as_millis()),
        }
    }
}

impl FromStr for SyncPolicy {
    type Err = String;

    /// Parses `always`, `periodic` (the default window) or `periodic(<n>ms)`,
    /// so the `Display` form round-trips through a CLI flag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "always" {
            return Ok(SyncPolicy::Always);
        }
        if s == "periodic" {
            return Ok(SyncPolicy::default());
        }
        s.strip_prefix("periodic(")
            .and_then(|r| r.strip_suffix("ms)"))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map(|ms| SyncPolicy::Periodic(Duration::from_millis(ms)))
            .ok_or_else(|| {
                format!("invalid sync policy {s:?}: want always | periodic | periodic(<ms>ms)")
            })
    }
}

/// Where the writer thread sends a write's per-op results.
type WriteReply = oneshot::Sender<Result<Vec<bool>, StorageError>>;

enum Request {
    Write {
        ops: Vec<WriteOp>,
        reply: WriteReply,
    },
    /// A write was applied outside the thread and is not durable yet.
    Dirty,
    Flush {
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
}

/// Joins the writer thread when the last handle goes away. Declared after
/// the sender in [`Inner`], so the sender is dropped first and the thread
/// sees the channel close, flushes and exits before the join.
struct Joiner(Mutex<Option<JoinHandle<()>>>);

impl Joiner {
    fn join(&self) {
        let handle = self.0.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("storage writer thread panicked");
            }
        }
    }
}

impl Drop for Joiner {
    fn drop(&mut self) {
        self.join();
    }
}

/// Counters of the writer thread: how well group commit groups.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Engine batches committed.
    pub commits: AtomicU64,
    /// Write ops in those batches.
    pub committed_ops: AtomicU64,
    /// Flushes that made commits durable (fsyncs).
    pub flushes: AtomicU64,
}

/// What the handles and the writer thread share.
struct Shared {
    engine: Arc<dyn Engine>,
    stats: StoreStats,
    policy: SyncPolicy,
    /// Held by whoever is inside the engine's write path (`apply` or
    /// `flush`); the async path only try-locks it and queues when it is taken.
    apply_lock: Mutex<()>,
    /// Set by the first write applied outside the thread since the last
    /// flush; that write tells the thread to start the window.
    dirty: AtomicBool,
}

impl Shared {
    /// Applies one batch under the apply lock and counts it.
    fn apply(&self, ops: &[WriteOp], durable: bool) -> Result<Vec<bool>, StorageError> {
        let _held = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.apply_locked(ops, durable)
    }

    fn apply_locked(&self, ops: &[WriteOp], durable: bool) -> Result<Vec<bool>, StorageError> {
        let r = self.engine.apply(ops, durable);
        if r.is_ok() {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.stats
                .committed_ops
                .fetch_add(ops.len() as u64, Ordering::Relaxed);
        }
        r
    }
}

struct Inner {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    /// Single writes waiting to be combined ([`Store::write_one`]).
    pending: Mutex<Pending>,
    closed: AtomicBool,
    joiner: Joiner,
}

/// The node's single write path (cheap to clone: one `Arc`). Reads may go
/// straight to the engine; writes are queued to the writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Starts the writer thread for `engine`. Needs no tokio runtime: the
    /// thread runs its own tiny one for the queue and the flush timer.
    pub fn start(engine: Arc<dyn Engine>, policy: SyncPolicy) -> Store {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            engine,
            stats: StoreStats::default(),
            policy,
            apply_lock: Mutex::new(()),
            dirty: AtomicBool::new(false),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
            flush_due: None,
        };
        let handle = std::thread::Builder::new()
            .name("tinykv-writer".into())
            .spawn(move || writer_thread(writer, rx));
        let handle = match handle {
            Ok(h) => Some(h),
            Err(e) => {
                // Without a thread every write fails with `Closed` (rx dropped).
                tracing::error!(error = %e, "cannot spawn storage writer thread");
                None
            }
        };
        Store {
            inner: Arc::new(Inner {
                tx,
                shared,
                pending: Mutex::default(),
                closed: AtomicBool::new(false),
                joiner: Joiner(Mutex::new(handle)),
            }),
        }
    }

    /// Applies `ops` atomically (LWW per `Put`) and resolves once they are
    /// committed (with `Always`, once they are fsynced); see the module docs
    /// for where. For each op, whether it changed anything.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<bool>, StorageError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        super::check_ops(&ops)?;
        if let Some(r) = self.try_write_here(&ops) {
            return r;
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Write { ops, reply }).await?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// With `Periodic`, applies `ops` on this thread unless the writer
    /// thread is inside the engine or the engine is throttling writes.
    fn try_write_here(&self, ops: &[WriteOp]) -> Option<Result<Vec<bool>, StorageError>> {
        let shared = &self.inner.shared;
        if shared.policy == SyncPolicy::Always || self.inner.closed.load(Ordering::SeqCst) {
            return None;
        }
        let held = shared.apply_lock.try_lock().ok()?;
        if shared.engine.under_pressure() {
            return None;
        }
        let r = shared.apply_locked(ops, false);
        drop(held);
        if r.is_ok() && !shared.dirty.swap(true, Ordering::AcqRel) {
            // The first unsynced write since the last flush starts the
            // window. The queue only fills with writes, which also start it.
            let _ = self.inner.tx.try_send(Request::Dirty);
        }
        Some(r)
    }

    pub(super) fn pending(&self) -> &Mutex<Pending> {
        &self.inner.pending
    }

    /// The engine, for reads and scans that need no ordering with writes.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.inner.shared.engine
    }

    /// The stored version of `key`, read directly from the engine (sees
    /// every write whose `write` future has resolved).
    pub fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        if key.len() > super::MAX_KEY_BYTES {
            // Never stored; and the engine asserts on such a key.
            return Ok(None);
        }
        self.inner.shared.engine.get(key)
    }

    /// Makes every write acknowledged so far durable (e.g. before a planned
    /// shutdown or hand-off), whatever the policy.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Flush { reply }).await?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// The writer thread's counters.
    pub fn stats(&self) -> &StoreStats {
        &self.inner.shared.stats
    }

    /// Number of requests waiting for the writer thread (a load gauge).
    pub fn queued(&self) -> usize {
        self.inner.tx.max_capacity() - self.inner.tx.capacity()
    }

    /// Commits what is queued, flushes, and stops the thread; later writes
    /// fail with [`StorageError::Closed`]. The final flush's error is
    /// returned: acknowledged writes may not be durable then, and a planned
    /// shutdown must say so. Idempotent: a later call (the thread is gone,
    /// the first call flushed) returns `Ok`.
    pub async fn close(&self) -> Result<(), StorageError> {
        let first = !self.inner.closed.swap(true, Ordering::SeqCst);
        let (reply, rx) = oneshot::channel();
        let result = match self.inner.tx.send(Request::Close { reply }).await {
            // The thread answers once it has committed and flushed; no
            // answer means it died (panicked) before flushing.
            Ok(()) => rx.await.unwrap_or(Err(StorageError::Closed)),
            // The thread is gone before the first close: it never started
            // or it panicked, and nothing flushed what it left.
            Err(_) if first => Err(StorageError::Closed),
            // An earlier close flushed and stopped it.
            Err(_) => Ok(()),
        };
        // The thread has answered its last request and is returning.
        self.inner.joiner.join();
        result
    }

    async fn send(&self, req: Request) -> Result<(), StorageError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StorageError::Closed);
        }
        self.inner
            .tx
            .send(req)
            .await
            .map_err(|_| StorageError::Closed)
    }
}

/// A copy of `e` for every request of a failed batch (the error type is not
/// `Clone` because it is shared with the rest of the node).
pub(super) fn dup(e: &StorageError) -> StorageError {
    match e {
        StorageError::Engine(s) => StorageError::Engine(s.clone()),
        StorageError::Corrupt { key, reason } => StorageError::Corrupt {
            key: key.clone(),
            reason: reason.clone(),
        },
        StorageError::Closed => StorageError::Closed,
        StorageError::TooLong { what, len, max } => StorageError::TooLong {
            what,
            len: *len,
            max: *max,
        },
        StorageError::RedbData { dir } => StorageError::RedbData { dir: dir.clone() },
    }
}

/// The writer thread's state between batches.
struct Writer {
    shared: Arc<Shared>,
    /// When the oldest non-durable commit must be flushed (Periodic only).
    flush_due: Option<Instant>,
}

impl Writer {
    fn window_started(&mut self) {
        if let SyncPolicy::Periodic(window) = self.shared.policy {
            self.flush_due
                .get_or_insert_with(|| Instant::now() + window);
        }
    }

    fn commit(&mut self, writes: Vec<(Vec<WriteOp>, WriteReply)>) {
        if writes.is_empty() {
            return;
        }
        let durable = self.shared.policy == SyncPolicy::Always;
        let total = writes.iter().map(|(ops, _)| ops.len()).sum();
        let mut all = Vec::with_capacity(total);
        let mut replies = Vec::with_capacity(writes.len());
        for (ops, reply) in writes {
            replies.push((ops.len(), reply));
            all.extend(ops);
        }
        match self.shared.apply(&all, durable) {
            Ok(results) => {
                self.window_started();
                let mut results = results.into_iter();
                for (n, reply) in replies {
                    // A requester that gave up is not an error.
                    let _ = reply.send(Ok(results.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, ops = total, "storage batch failed");
                for (_, reply) in replies {
                    let _ = reply.send(Err(dup(&e)));
                }
            }
        }
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if self.flush_due.is_none() && !self.shared.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        // An engine whose flush is only an fsync of what writers already
        // handed to the OS lets them go on meanwhile (no stall every window).
        let lock = &self.shared.apply_lock;
        let _held = self
            .shared
            .engine
            .flush_excludes_writes()
            .then(|| lock.lock().unwrap_or_else(|p| p.into_inner()));
        // Cleared before the flush: a write after this point starts a new
        // window; one before it is covered by this flush.
        self.shared.dirty.store(false, Ordering::Release);
        let r = self.shared.engine.flush();
        match &r {
            Ok(()) => {
                self.flush_due = None;
                self.shared.stats.flushes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.shared.dirty.store(true, Ordering::Release);
                tracing::error!(error = %e, "storage flush failed");
            }
        }
        r
    }
}

fn writer_thread(mut w: Writer, mut rx: mpsc::Receiver<Request>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the storage writer runtime");
            return;
        }
    };
    let mut closing: Vec<oneshot::Sender<Result<(), StorageError>>> = Vec::new();
    loop {
        if w.flush_due.is_some_and(|due| Instant::now() >= due) {
            let _ = w.flush();
        }
        let first = match w.flush_due {
            Some(due) => {
                let deadline = tokio::time::Instant::from_std(due);
                // The timer must be created inside the runtime, hence the async block.
                match rt.block_on(async { tokio::time::timeout_at(deadline, rx.recv()).await }) {
                    Ok(r) => r,
                    Err(_elapsed) => continue, // flushed at the top of the loop
                }
            }
            None => rt.block_on(rx.recv()),
        };
        let Some(first) = first else {
            break; // closed and drained, or every handle dropped
        };
        let mut writes = Vec::new();
        let mut flushes = Vec::new();
        let mut ops = 0;
        let mut next = Some(first);
        while let Some(req) = next.take() {
            match req {
                Request::Write { ops: o, reply } => {
                    ops += o.len();
                    writes.push((o, reply));
                }
                Request::Dirty => w.window_started(),
                Request::Flush { reply } => flushes.push(reply),
                Request::Close { reply } => {
                    // Refuse new requests; the ones already queued are still
                    // received (and committed) before `recv` returns `None`.
                    rx.close();
                    closing.push(reply);
                }
            }
            if ops < MAX_BATCH_OPS {
                next = rx.try_recv().ok();
            }
        }
        w.commit(writes);
        if !flushes.is_empty() {
            let r = w.flush();
            for reply in flushes {
                let _ = reply.send(r.as_ref().map(|_| ()).map_err(dup));
            }
        }
    }
    let r = w.flush();
    for reply in closing {
        let _ = reply.send(r.as_ref().map(|_| ()).map_err(dup));
    }
}
