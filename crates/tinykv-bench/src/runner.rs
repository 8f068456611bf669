//! Running a benchmark: workers on tokio sharing a stop condition, an
//! optional load phase, a warm-up whose operations are not recorded.

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
use crate::workload::{key_for, random_value, Distribution, KeyChooser, OpKind, OpMix};

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
}

/// The recorded statistics of one phase.
#[derive(Clone, Debug)]
pub struct PhaseResult {
    /// Operations by kind.
    pub stats: Recorder,
    /// Measured time.
    pub elapsed: Duration,
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
    let load = if cfg.load {
        Some(load_phase(store.clone(), cfg, progress).await?)
    } else {
        None
    };
    let (run, warmup_ops) = measured_phase(store, cfg, progress).await?;
    Ok(RunResult {
        load,
        run,
        warmup_ops,
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

/// Records the outcome of one operation.
fn record<T>(stats: &mut OpStats, latency: Duration, res: &Result<T, ClientError>) {
    match res {
        Ok(_) => stats.record_ok(latency),
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
                    record(&mut stats.write, t0.elapsed(), &res);
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
    Ok(PhaseResult { stats, elapsed })
}

/// State shared by the workers of the measured phase.
struct Shared {
    /// When recording starts (the end of the warm-up).
    measure_start: Instant,
    /// When the run ends, if bounded by time.
    end: Option<Instant>,
    /// The operation budget, if bounded by count.
    budget: Option<u64>,
    /// Budget claimed so far.
    claimed: AtomicU64,
}

impl Shared {
    /// Whether the next operation, starting now, is recorded; `None` when
    /// the run is over.
    fn admit(&self) -> Option<bool> {
        let now = Instant::now();
        if now < self.measure_start {
            return Some(false);
        }
        if self.end.is_some_and(|end| now >= end) {
            return None;
        }
        if let Some(budget) = self.budget {
            if self.claimed.fetch_add(1, Ordering::Relaxed) >= budget {
                return None;
            }
        }
        Some(true)
    }
}

/// The warm-up followed by the measured run.
async fn measured_phase<S: Store>(
    store: S,
    cfg: &RunConfig,
    progress: Progress,
) -> Result<(PhaseResult, u64), RunError> {
    let chooser = Arc::new(KeyChooser::new(cfg.distribution, cfg.keyspace));
    let mix = OpMix::new(cfg.read_ratio);
    let start = Instant::now();
    let measure_start = start + cfg.warmup;
    let (end, budget) = match cfg.stop {
        StopAt::Ops(n) => (None, Some(n)),
        StopAt::Duration(d) => (Some(measure_start + d), None),
    };
    let shared = Arc::new(Shared {
        measure_start,
        end,
        budget,
        claimed: AtomicU64::new(0),
    });
    // Recorded operations completed, for the progress display.
    let done = Arc::new(AtomicU64::new(0));
    let warmup_done = Arc::new(AtomicU64::new(0));
    let warm = (!cfg.warmup.is_zero())
        .then(|| progress.start("warm-up", Bound::Time(cfg.warmup), warmup_done.clone()));
    let handles: Vec<_> = (0..cfg.workers.max(1))
        .map(|w| {
            let (store, shared, chooser) = (store.clone(), shared.clone(), chooser.clone());
            let (done, warmup_done) = (done.clone(), warmup_done.clone());
            let prefix = cfg.key_prefix.clone();
            let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_add(w as u64));
            let value = random_value(&mut rng, cfg.value_size);
            tokio::spawn(async move {
                let mut stats = Recorder::default();
                while let Some(recorded) = shared.admit() {
                    let kind = mix.next_op(&mut rng);
                    let key = key_for(&prefix, chooser.next_index(&mut rng));
                    let t0 = Instant::now();
                    // Ok(true) when a read found nothing.
                    let res = match kind {
                        OpKind::Read => store.get(key).await.map(|found| !found),
                        OpKind::Write => store.put(key, value.clone()).await.map(|()| false),
                    };
                    let latency = t0.elapsed();
                    if !recorded {
                        warmup_done.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let op = stats.op(kind);
                    record(op, latency, &res);
                    if matches!(res, Ok(true)) {
                        op.not_found += 1;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                stats
            })
        })
        .collect();

    if let Some(warm) = warm {
        // Not a synchronisation point: only the display waits here.
        tokio::time::sleep_until(measure_start.into()).await;
        warm.finish();
    }
    let bound = match cfg.stop {
        StopAt::Ops(n) => Bound::Ops(n),
        StopAt::Duration(d) => Bound::Time(d),
    };
    let shown = progress.start("run", bound, done);
    let results = join_all(handles).await;
    let elapsed = Instant::now().saturating_duration_since(measure_start);
    shown.finish();
    let mut stats = Recorder::default();
    for r in results? {
        stats.merge(&r);
    }
    let warmup_ops = warmup_done.load(Ordering::Relaxed);
    Ok((PhaseResult { stats, elapsed }, warmup_ops))
}

#[cfg(test)]
mod tests;
