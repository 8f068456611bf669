//! The measured phase: the warm-up, then the run, in closed loop (each
//! worker sends when its last operation is done) or open loop (`--rate`:
//! operations are due on a fixed schedule and timed from when they were
//! due, so a stalled server cannot hide its stall by slowing the client
//! down: coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tinykv_client::ClientError;

use super::{join_all, record, PhaseResult, RunConfig, RunError, StopAt, Store};
use crate::progress::{Bound, Progress};
use crate::stats::Recorder;
use crate::timeline::{IntervalPoint, IntervalRecorder, IntervalSink, Ticker};
use crate::workload::{key_for, random_value, KeyChooser, OpKind, OpMix};

/// What the measured phase returns.
pub(super) struct Measured {
    pub(super) phase: PhaseResult,
    pub(super) warmup_ops: u64,
    pub(super) intervals: Vec<IntervalPoint>,
}

/// Open loop: slot `n` (counted from the start of the warm-up) is due at
/// `start + n / rate`. Workers take slots in order, so when every worker
/// is busy the next slot waits, and its wait shows in its latency.
#[derive(Debug)]
struct Schedule {
    rate: f64,
    /// Slots due before measuring starts (the warm-up's).
    warm_slots: u64,
}

/// A worker's permission to send one operation.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Whether its outcome is recorded (false during the warm-up).
    recorded: bool,
    /// Open loop: when it is due.
    due: Option<Instant>,
}

/// State shared by the workers of the measured phase.
#[derive(Debug)]
struct Shared {
    /// When the warm-up starts (slot 0 is due then).
    start: Instant,
    /// When recording starts (the end of the warm-up).
    measure_start: Instant,
    /// When the run ends, if bounded by time.
    end: Option<Instant>,
    /// The operation budget, if bounded by count.
    budget: Option<u64>,
    /// Budget claimed so far (closed loop), slots taken (open loop).
    claimed: AtomicU64,
    /// Open loop only.
    schedule: Option<Schedule>,
}

impl Shared {
    fn new(cfg: &RunConfig, start: Instant) -> Shared {
        let measure_start = start + cfg.warmup;
        let (end, budget) = match cfg.stop {
            StopAt::Ops(n) => (None, Some(n)),
            StopAt::Duration(d) => (Some(measure_start + d), None),
        };
        let schedule = cfg.rate.filter(|r| *r > 0.0).map(|rate| Schedule {
            rate,
            warm_slots: (cfg.warmup.as_secs_f64() * rate).ceil() as u64,
        });
        Shared {
            start,
            measure_start,
            end,
            budget,
            claimed: AtomicU64::new(0),
            schedule,
        }
    }

    /// The next operation's slot; `None` when the run is over.
    fn admit(&self) -> Option<Slot> {
        match &self.schedule {
            Some(s) => self.admit_scheduled(s),
            None => self.admit_now(),
        }
    }

    /// Closed loop: the operation starts now.
    fn admit_now(&self) -> Option<Slot> {
        let now = Instant::now();
        if now < self.measure_start {
            return Some(Slot {
                recorded: false,
                due: None,
            });
        }
        if self.end.is_some_and(|end| now >= end) {
            return None;
        }
        if let Some(budget) = self.budget {
            if self.claimed.fetch_add(1, Ordering::Relaxed) >= budget {
                return None;
            }
        }
        Some(Slot {
            recorded: true,
            due: None,
        })
    }

    /// Open loop: the next slot of the schedule, whenever it is due.
    fn admit_scheduled(&self, s: &Schedule) -> Option<Slot> {
        let n = self.claimed.fetch_add(1, Ordering::Relaxed);
        let due = self.start + Duration::from_secs_f64(n as f64 / s.rate);
        if self.budget.is_some_and(|b| n >= s.warm_slots + b) {
            return None;
        }
        if self.end.is_some_and(|end| due >= end) {
            return None;
        }
        Some(Slot {
            recorded: n >= s.warm_slots,
            due: Some(due),
        })
    }
}

/// One worker: one operation in flight at a time.
struct Worker<S> {
    store: S,
    shared: Arc<Shared>,
    chooser: Arc<KeyChooser>,
    mix: OpMix,
    prefix: String,
    rng: SmallRng,
    value: Bytes,
    /// Recorded operations completed, for the progress display.
    done: Arc<AtomicU64>,
    warmup_done: Arc<AtomicU64>,
    timeline: Option<Arc<IntervalRecorder>>,
    /// When this worker sent its last recorded operation.
    last_sent: Option<Instant>,
}

/// Sends one operation: `Ok(true)` when a read found nothing.
async fn execute<S: Store>(
    store: &S,
    kind: OpKind,
    key: Bytes,
    value: Bytes,
) -> Result<bool, ClientError> {
    match kind {
        OpKind::Read => store.get(key).await.map(|found| !found),
        OpKind::Write => store.put(key, value).await.map(|()| false),
        OpKind::ReadModifyWrite => {
            let found = store.get(key.clone()).await?;
            store.put(key, value).await?;
            Ok(!found)
        }
    }
}

impl<S: Store> Worker<S> {
    /// The worker's statistics and when it sent its last recorded
    /// operation.
    async fn run(mut self) -> (Recorder, Option<Instant>) {
        let mut stats = Recorder::default();
        while let Some(slot) = self.shared.admit() {
            if let Some(due) = slot.due {
                // The schedule, not synchronisation: open loop sends each
                // operation when it is due.
                tokio::time::sleep_until(due.into()).await;
            }
            self.one(slot, &mut stats).await;
        }
        (stats, self.last_sent)
    }

    async fn one(&mut self, slot: Slot, stats: &mut Recorder) {
        let kind = self.mix.next_op(&mut self.rng);
        let choice = self.chooser.choose(kind, &mut self.rng);
        let key = key_for(&self.prefix, choice.index);
        let sent = Instant::now();
        let res = execute(&self.store, kind, key, self.value.clone()).await;
        let finished = Instant::now();
        if res.is_ok() {
            self.chooser.acknowledge(choice);
        }
        if !slot.recorded {
            self.warmup_done.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.last_sent = Some(sent);
        let latency = finished - sent;
        // Never below `latency`: a slot is sent at or after it is due.
        let corrected = slot.due.map(|due| finished.saturating_duration_since(due));
        let op = stats.op(kind);
        record(op, latency, corrected, &res);
        if matches!(res, Ok(true)) {
            op.not_found += 1;
        }
        if let Some(timeline) = &self.timeline {
            timeline.record(res.is_ok().then_some(latency), corrected);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The warm-up followed by the measured run.
pub(super) async fn run<S: Store>(
    store: S,
    cfg: &RunConfig,
    progress: Progress,
    sinks: Vec<Box<dyn IntervalSink>>,
) -> Result<Measured, RunError> {
    let shared = Arc::new(Shared::new(cfg, Instant::now()));
    let measure_start = shared.measure_start;
    let chooser = Arc::new(KeyChooser::new(cfg.distribution, cfg.keyspace));
    let mix = OpMix::with_non_read(cfg.read_ratio, cfg.non_read);
    let timeline = cfg.interval.map(|_| Arc::new(IntervalRecorder::default()));
    let done = Arc::new(AtomicU64::new(0));
    let warmup_done = Arc::new(AtomicU64::new(0));
    let warm = (!cfg.warmup.is_zero())
        .then(|| progress.start("warm-up", Bound::Time(cfg.warmup), warmup_done.clone()));
    let handles: Vec<_> = (0..cfg.workers.max(1))
        .map(|w| {
            let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_add(w as u64));
            let value = random_value(&mut rng, cfg.value_size);
            let worker = Worker {
                store: store.clone(),
                shared: shared.clone(),
                chooser: chooser.clone(),
                mix,
                prefix: cfg.key_prefix.clone(),
                rng,
                value,
                done: done.clone(),
                warmup_done: warmup_done.clone(),
                timeline: timeline.clone(),
                last_sent: None,
            };
            tokio::spawn(worker.run())
        })
        .collect();
    let ticker = cfg
        .interval
        .zip(timeline)
        .map(|(every, rec)| Ticker::spawn(rec, measure_start, every, sinks));

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
    let intervals = match ticker {
        Some(t) => t.finish().await,
        None => Vec::new(),
    };
    let mut stats = Recorder::default();
    let mut last_sent = measure_start;
    for (r, sent) in results? {
        stats.merge(&r);
        last_sent = last_sent.max(sent.unwrap_or(measure_start));
    }
    Ok(Measured {
        phase: PhaseResult {
            stats,
            elapsed,
            send_span: last_sent - measure_start,
        },
        warmup_ops: warmup_done.load(Ordering::Relaxed),
        intervals,
    })
}
