//! The measured run as a time series (`--interval`): workers record into
//! the current interval, a ticker closes it every interval, summarises it
//! and hands it to sinks (terminal lines, the HDR interval log).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::stats::{micros, new_histogram, record_latency};

/// One interval of the run, as reported in the JSON and plotted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntervalPoint {
    /// Start of the interval, seconds after measuring began.
    pub start_secs: f64,
    /// Length of the interval, seconds (the last one may be short).
    pub secs: f64,
    /// Operations that completed successfully in it.
    pub ops: u64,
    /// Operations that failed in it.
    pub errors: u64,
    /// `ops` per second.
    pub ops_per_sec: f64,
    /// Median latency from sending, µs.
    pub p50_us: u64,
    /// 99th percentile latency from sending, µs.
    pub p99_us: u64,
    /// Open loop only: median latency from the intended start, µs.
    pub corrected_p50_us: Option<u64>,
    /// Open loop only: 99th percentile from the intended start, µs.
    pub corrected_p99_us: Option<u64>,
}

/// What one interval recorded, every operation kind together.
#[derive(Clone, Debug)]
pub struct IntervalHists {
    /// Latencies from sending, µs.
    pub uncorrected: Histogram<u64>,
    /// Latencies from the intended start, µs (open loop only).
    pub corrected: Option<Histogram<u64>>,
    /// Failed operations.
    pub errors: u64,
}

impl IntervalHists {
    fn new() -> IntervalHists {
        IntervalHists {
            uncorrected: new_histogram(),
            corrected: None,
            errors: 0,
        }
    }

    /// The summary of these histograms over `start..start + len`.
    pub fn point(&self, start: Duration, len: Duration) -> IntervalPoint {
        let q = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        let ops = self.uncorrected.len();
        let secs = len.as_secs_f64();
        IntervalPoint {
            start_secs: start.as_secs_f64(),
            secs,
            ops,
            errors: self.errors,
            ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            p50_us: q(&self.uncorrected, 0.5),
            p99_us: q(&self.uncorrected, 0.99),
            corrected_p50_us: self.corrected.as_ref().map(|h| q(h, 0.5)),
            corrected_p99_us: self.corrected.as_ref().map(|h| q(h, 0.99)),
        }
    }
}

/// The current interval, shared by the workers. One short lock per
/// operation: uncontended at benchmark rates, and it keeps one pair of
/// histograms per interval instead of one per worker.
#[derive(Debug)]
pub struct IntervalRecorder {
    current: Mutex<IntervalHists>,
}

impl Default for IntervalRecorder {
    fn default() -> Self {
        IntervalRecorder {
            current: Mutex::new(IntervalHists::new()),
        }
    }
}

impl IntervalRecorder {
    /// Records one operation: its latency from sending (`None`: it
    /// failed) and, in open loop, from its intended start.
    pub fn record(&self, latency: Option<Duration>, corrected: Option<Duration>) {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match latency {
            None => cur.errors += 1,
            Some(l) => {
                record_latency(&mut cur.uncorrected, l);
                if let Some(c) = corrected {
                    record_latency(cur.corrected.get_or_insert_with(new_histogram), c);
                }
            }
        }
    }

    /// Closes the current interval and starts the next.
    pub fn take(&self) -> IntervalHists {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *cur, IntervalHists::new())
    }
}

/// Receives every closed interval.
pub trait IntervalSink: Send {
    /// Called once per interval, in order.
    fn interval(&mut self, point: &IntervalPoint, hists: &IntervalHists);
}

/// The time-series line on stderr (next to the progress messages, so
/// `--json -` keeps stdout to the JSON).
#[derive(Debug, Default)]
pub struct TerminalLines;

impl IntervalSink for TerminalLines {
    fn interval(&mut self, p: &IntervalPoint, _: &IntervalHists) {
        eprintln!("{}", interval_line(p));
    }
}

/// One interval as a terminal line.
pub fn interval_line(p: &IntervalPoint) -> String {
    let mut line = format!(
        "tinykv-bench: [{:>6.1}s] {:>8.0} ops/s  p50 {:>8}  p99 {:>8}",
        p.start_secs + p.secs,
        p.ops_per_sec,
        micros(p.p50_us),
        micros(p.p99_us)
    );
    if let (Some(c50), Some(c99)) = (p.corrected_p50_us, p.corrected_p99_us) {
        line += &format!("  corrected p50 {:>8}  p99 {:>8}", micros(c50), micros(c99));
    }
    if p.errors > 0 {
        line += &format!("  {} errors", p.errors);
    }
    line
}

/// The running ticker; [`Ticker::finish`] closes the last, partial
/// interval and returns the series.
pub struct Ticker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<IntervalPoint>>,
}

impl Ticker {
    /// Closes an interval of `recorder` every `every` from `start` on,
    /// handing each to `sinks`.
    pub fn spawn(
        recorder: Arc<IntervalRecorder>,
        start: Instant,
        every: Duration,
        mut sinks: Vec<Box<dyn IntervalSink>>,
    ) -> Ticker {
        let (stop, mut stopped) = oneshot::channel();
        let every = every.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut points = Vec::new();
            let mut close = |from: Instant, to: Instant, last: bool| {
                let hists = recorder.take();
                if last && hists.uncorrected.is_empty() && hists.errors == 0 {
                    return;
                }
                let point = hists.point(from - start, to.saturating_duration_since(from));
                for sink in &mut sinks {
                    sink.interval(&point, &hists);
                }
                points.push(point);
            };
            let mut from = start;
            let mut next = start + every;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {
                        // The actual close time, so a late tick makes a
                        // longer interval rather than a wrong rate.
                        let now = Instant::now().max(next);
                        close(from, now, false);
                        from = now;
                        while next <= now {
                            next += every;
                        }
                    }
                    _ = &mut stopped => break,
                }
            }
            close(from, Instant::now(), true);
            points
        });
        Ticker { stop, task }
    }

    /// Stops ticking after the last operation and returns every interval.
    pub async fn finish(self) -> Vec<IntervalPoint> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
