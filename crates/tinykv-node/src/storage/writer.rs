//! The group-commit writer: every write of the node goes through one
//! [`Store`], whose dedicated OS thread turns whatever is queued into a single
//! engine batch. Under load many requests share one transaction and, with
//! [`SyncPolicy::Always`], one fsync (group commit); when idle a request is
//! committed alone, immediately.
//!
//! With [`SyncPolicy::Periodic`] batches are committed non-durably (visible
//! at once, in the OS page cache, so a process crash loses nothing) and the
//! thread makes them durable at most one window after the first unsynced
//! commit, on [`Store::flush`], and on close. A machine crash can therefore
//! lose up to one window of acknowledged writes on this node, like
//! Cassandra's `commitlog_sync: periodic`.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

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
    Flush {
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
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

struct Inner {
    tx: mpsc::Sender<Request>,
    stats: Arc<StoreStats>,
    engine: Arc<dyn Engine>,
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
        let stats = Arc::new(StoreStats::default());
        let writer = Writer {
            engine: Arc::clone(&engine),
            policy,
            flush_due: None,
            stats: Arc::clone(&stats),
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
                stats,
                engine,
                closed: AtomicBool::new(false),
                joiner: Joiner(Mutex::new(handle)),
            }),
        }
    }

    /// Applies `ops` atomically (LWW per `Put`) in the next group commit and
    /// resolves once it is committed (with `Always`, once it is fsynced).
    /// For each op, whether it changed anything.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<bool>, StorageError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Write { ops, reply }).await?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// The engine, for reads and scans that need no ordering with writes.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.inner.engine
    }

    /// The stored version of `key`, read directly from the engine (sees
    /// every write whose `write` future has resolved).
    pub fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        self.inner.engine.get(key)
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
        &self.inner.stats
    }

    /// Number of requests waiting for the writer thread (a load gauge).
    pub fn queued(&self) -> usize {
        self.inner.tx.max_capacity() - self.inner.tx.capacity()
    }

    /// Commits what is queued, flushes, and stops the thread; later writes
    /// fail with [`StorageError::Closed`]. Idempotent.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let (reply, rx) = oneshot::channel();
        if self.inner.tx.send(Request::Close { reply }).await.is_ok() {
            // An error means the thread is already gone: nothing to wait for.
            let _ = rx.await;
        }
        // The thread has answered its last request and is returning.
        self.inner.joiner.join();
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
fn dup(e: &StorageError) -> StorageError {
    match e {
        StorageError::Engine(s) => StorageError::Engine(s.clone()),
        StorageError::Corrupt { key, reason } => StorageError::Corrupt {
            key: key.clone(),
            reason: reason.clone(),
        },
        StorageError::Closed => StorageError::Closed,
    }
}

/// The writer thread's state between batches.
struct Writer {
    engine: Arc<dyn Engine>,
    policy: SyncPolicy,
    /// When the oldest non-durable commit must be flushed (Periodic only).
    flush_due: Option<Instant>,
    stats: Arc<StoreStats>,
}

impl Writer {
    fn commit(&mut self, writes: Vec<(Vec<WriteOp>, WriteReply)>) {
        if writes.is_empty() {
            return;
        }
        let durable = self.policy == SyncPolicy::Always;
        let total = writes.iter().map(|(ops, _)| ops.len()).sum();
        let mut all = Vec::with_capacity(total);
        let mut replies = Vec::with_capacity(writes.len());
        for (ops, reply) in writes {
            replies.push((ops.len(), reply));
            all.extend(ops);
        }
        match self.engine.apply(&all, durable) {
            Ok(results) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .committed_ops
                    .fetch_add(total as u64, Ordering::Relaxed);
                if let SyncPolicy::Periodic(window) = self.policy {
                    self.flush_due
                        .get_or_insert_with(|| Instant::now() + window);
                }
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
        if self.flush_due.is_none() {
            return Ok(());
        }
        let r = self.engine.flush();
        match &r {
            Ok(()) => {
                self.flush_due = None;
                self.stats.flushes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "storage flush failed"),
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
    let mut closing: Vec<oneshot::Sender<()>> = Vec::new();
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
    let _ = w.flush();
    for reply in closing {
        let _ = reply.send(());
    }
}
