//! Running a benchmark: workers on tokio sharing a stop condition, an
//! optional load phase, a warm-up whose operations are not recorded, and
//! the measured phase ([`measured`]) in closed or open loop.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tinykv_client::{Client, ClientError, Consistency};

use crate::progress::{Bound, Progress};
use crate::stats::{ErrorKind, OpStats, Recorder};
use crate::timeline::{IntervalPoint, IntervalSink};
use crate::workload::{key_for, random_value, Distribution, OpKind};

mod measured;

/// The key-value operations a benchmark issues. [`ClientStore`] is the real
/// one; tests substitute an in-memory store.
pub trait Store: Clone + Send + Sync + 'static {
    /// Reads `key`: `Ok(true)` if a value was found, `Ok(false)` if not.
    fn get(&self, key: Bytes) -> impl Future<Output = Result<bool, ClientError>> + Send;
    /// Writes `val` under `key`.
    fn put(&self, key: Bytes, val: Bytes) -> impl Future<Output = Result<(), ClientError>> + Send;
}

/// The real store: a [`Client`] with the consistency levels to use.
#[derive(Clone)]
pub struct ClientStore {
    /// The client (round-robin over its endpoints).
    pub client: Client,
    /// Consistency of reads.
    pub read: Consistency,
    /// Consistency of writes.
    pub write: Consistency,
}

impl Store for ClientStore {
    async fn get(&self, key: Bytes) -> Result<bool, ClientError> {
        Ok(self.client.get(key, self.read).await?.is_some())
    }

    async fn put(&self, key: Bytes, val: Bytes) -> Result<(), ClientError> {
        self.client.put(key, val, self.write).await.map(|_| ())
    }
}

/// What ends the measured run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopAt {
    /// After this many operations (successful or not).
    Ops(u64),
    /// After this much measured time.
    Duration(Duration),
}

/// How to run a benchmark.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Concurrent workers (at least 1 is used).
    pub workers: usize,
    /// What ends the measured run.
    pub stop: StopAt,
    /// Key-space size.
    pub keyspace: u64,
    /// Value size, bytes.
    pub value_size: usize,
    /// Fraction of reads.
    pub read_ratio: f64,
    /// What the other operations are: writes, or read-modify-writes
    /// (YCSB F).
    pub non_read: OpKind,
    /// Key distribution.
    pub distribution: Distribution,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Write every key once before measuring.
    pub load: bool,
    /// Unrecorded time before measuring.
    pub warmup: Duration,
    /// Seed for the workers' random generators.
    pub seed: u64,
    /// Open loop: operations per second across all workers, each sent at
    /// its scheduled time whether or not earlier ones have finished (as
    /// far as free workers allow). `None`: closed loop.
    pub rate: Option<f64>,
    /// Record a time series with intervals this long.
    pub interval: Option<Duration>,
}

/// The recorded statistics of one phase.
#[derive(Clone, Debug)]
pub struct PhaseResult {
    /// Operations by kind.
    pub stats: Recorder,
    /// Measured time.
    pub elapsed: Duration,
    /// From the start of measuring to when the last recorded operation
    /// was sent: the span the sending rate is over. Unlike `elapsed` it
    /// leaves out the wait for the last replies, so an open-loop run that
    /// kept its schedule shows its target rate even if its last
    /// operations were slow.
    pub send_span: Duration,
}

/// The results of a whole benchmark.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The load phase, if one ran.
    pub load: Option<PhaseResult>,
    /// The measured run.
    pub run: PhaseResult,
    /// Operations done during the warm-up (not recorded).
    pub warmup_ops: u64,
    /// The measured run's time series (empty without `interval`).
    pub intervals: Vec<IntervalPoint>,
}

/// Why a benchmark could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A worker task panicked or was cancelled.
    #[error("benchmark worker failed: {0}")]
    Worker(String),
}

/// Runs the load phase (if configured), the warm-up and the measured run.
pub async fn run<S: Store>(
    store: S,
    cfg: &RunConfig,
    progress: Progress,
) -> Result<RunResult, RunError> {
    run_with(store, cfg, progress, Vec::new()).await
}

/// [`run`], handing every interval of the time series (with
/// `cfg.interval`) to `sinks` as it closes.
pub async fn run_with<S: Store>(
    store: S,
    cfg: &RunConfig,
    progress: Progress,
    sinks: Vec<Box<dyn IntervalSink>>,
) -> Result<RunResult, RunError> {
    let load = if cfg.load {
        Some(load_phase(store.clone(), cfg, progress).await?)
    } else {
        None
    };
    let measured = measured::run(store, cfg, progress, sinks).await?;
    Ok(RunResult {
        load,
        run: measured.phase,
        warmup_ops: measured.warmup_ops,
        intervals: measured.intervals,
    })
}

/// Collects the workers' recorders, failing if any worker failed.
async fn join_all<T: Send + 'static>(
    handles: Vec<tokio::task::JoinHandle<T>>,
) -> Result<Vec<T>, RunError> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.map_err(|e| RunError::Worker(e.to_string()))?);
    }
    Ok(out)
}

/// Records the outcome of one operation: `corrected` is its latency from
/// the intended start (open loop).
fn record<T>(
    stats: &mut OpStats,
    latency: Duration,
    corrected: Option<Duration>,
    res: &Result<T, ClientError>,
) {
    match res {
        Ok(_) => {
            stats.record_ok(latency);
            if let Some(c) = corrected {
                stats.record_corrected(c);
            }
        }
        Err(e) => stats.record_error(ErrorKind::of(e)),
    }
}

/// Writes every key of the key space once, spread over the workers.
async fn load_phase<S: Store>(
    store: S,
    cfg: &RunConfig,
    progress: Progress,
) -> Result<PhaseResult, RunError> {
    let keyspace = cfg.keyspace.max(1);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let shown = progress.start("load", Bound::Ops(keyspace), done.clone());
    let started = Instant::now();
    let handles = (0..cfg.workers.max(1))
        .map(|w| {
            let (store, next, done) = (store.clone(), next.clone(), done.clone());
            let prefix = cfg.key_prefix.clone();
            let mut rng = SmallRng::seed_from_u64(cfg.seed ^ 0x10ad ^ w as u64);
            let value = random_value(&mut rng, cfg.value_size);
            tokio::spawn(async move {
                let mut stats = Recorder::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= keyspace {
                        break;
                    }
                    let t0 = Instant::now();
                    let res = store.put(key_for(&prefix, i), value.clone()).await;
                    record(&mut stats.write, t0.elapsed(), None, &res);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                stats
            })
        })
        .collect();
    let results = join_all(handles).await;
    let elapsed = started.elapsed();
    shown.finish();
    let mut stats = Recorder::default();
    for r in results? {
        stats.merge(&r);
    }
    Ok(PhaseResult {
        stats,
        elapsed,
        send_span: elapsed,
    })
}

#[cfg(test)]
mod tests;
