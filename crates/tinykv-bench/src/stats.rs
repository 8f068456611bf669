//! Measurements: latency histograms per operation, error counts by kind,
//! and the final report as text or JSON ([`report`]).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tinykv_client::ClientError;

use crate::workload::OpKind;

mod report;
pub use report::{micros, OpReport, PhaseReport, Report, RunInfo};

/// The largest latency the histograms track exactly (60 s, in µs); slower
/// operations are recorded as this value.
pub const MAX_TRACKED_MICROS: u64 = 60_000_000;

/// Why an operation failed, as the report groups errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not enough replicas answered, or the node was unreachable.
    Unavailable,
    /// The call's deadline passed.
    Deadline,
    /// The request was rejected as malformed.
    Invalid,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The kind of a client error.
    pub fn of(err: &ClientError) -> ErrorKind {
        match err {
            ClientError::Unavailable(_) => ErrorKind::Unavailable,
            ClientError::DeadlineExceeded(_) => ErrorKind::Deadline,
            ClientError::InvalidArgument(_) => ErrorKind::Invalid,
            _ => ErrorKind::Other,
        }
    }
}

/// Error counts by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// [`ErrorKind::Unavailable`] errors.
    pub unavailable: u64,
    /// [`ErrorKind::Deadline`] errors.
    pub deadline: u64,
    /// [`ErrorKind::Invalid`] errors.
    pub invalid: u64,
    /// [`ErrorKind::Other`] errors.
    pub other: u64,
}

impl ErrorCounts {
    /// Counts one error.
    pub fn add(&mut self, kind: ErrorKind) {
        let slot = match kind {
            ErrorKind::Unavailable => &mut self.unavailable,
            ErrorKind::Deadline => &mut self.deadline,
            ErrorKind::Invalid => &mut self.invalid,
            ErrorKind::Other => &mut self.other,
        };
        *slot += 1;
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.unavailable + self.deadline + self.invalid + self.other
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &ErrorCounts) {
        self.unavailable += other.unavailable;
        self.deadline += other.deadline;
        self.invalid += other.invalid;
        self.other += other.other;
    }
}

/// A histogram of latencies in microseconds, 1 µs to 60 s, 3 digits.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants known to be valid.
    Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3)
        .expect("constant histogram bounds are valid")
}

/// Records `latency` in `hist`, clamped to the tracked range.
pub fn record_latency(hist: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(micros.clamp(1, MAX_TRACKED_MICROS));
}

/// Adds `other` to `into`, value by value if the bounds differ.
pub fn add_histogram(into: &mut Histogram<u64>, other: &Histogram<u64>) {
    if into.add(other).is_err() {
        for v in other.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Everything recorded for one operation kind.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// Latencies of successful operations from when they were sent, in
    /// microseconds.
    hist: Histogram<u64>,
    /// Open loop only: latencies from each operation's intended start, so
    /// time spent waiting behind slow operations counts (coordinated
    /// omission corrected). Created on first use.
    corrected: Option<Histogram<u64>>,
    /// Failed operations by kind.
    pub errors: ErrorCounts,
    /// Successful reads (and read-modify-writes) that found no value.
    pub not_found: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats::new()
    }
}

impl OpStats {
    /// Empty statistics.
    pub fn new() -> OpStats {
        OpStats {
            hist: new_histogram(),
            corrected: None,
            errors: ErrorCounts::default(),
            not_found: 0,
        }
    }

    /// Records a successful operation that took `latency`.
    pub fn record_ok(&mut self, latency: Duration) {
        record_latency(&mut self.hist, latency);
    }

    /// Records the latency of a successful operation measured from its
    /// intended start (open loop), next to [`OpStats::record_ok`]'s.
    pub fn record_corrected(&mut self, latency: Duration) {
        record_latency(self.corrected.get_or_insert_with(new_histogram), latency);
    }

    /// Records a failed operation.
    pub fn record_error(&mut self, kind: ErrorKind) {
        self.errors.add(kind);
    }

    /// Successful operations.
    pub fn ok(&self) -> u64 {
        self.hist.len()
    }

    /// Successful plus failed operations.
    pub fn attempted(&self) -> u64 {
        self.ok() + self.errors.total()
    }

    /// The latencies from when operations were sent.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// The latencies from intended starts, if any were recorded.
    pub fn corrected_histogram(&self) -> Option<&Histogram<u64>> {
        self.corrected.as_ref()
    }

    /// Adds another worker's statistics.
    pub fn merge(&mut self, other: &OpStats) {
        add_histogram(&mut self.hist, &other.hist);
        if let Some(c) = &other.corrected {
            add_histogram(self.corrected.get_or_insert_with(new_histogram), c);
        }
        self.errors.merge(&other.errors);
        self.not_found += other.not_found;
    }

    /// The latency summary.
    pub fn latency(&self) -> Latency {
        Latency::of(&self.hist)
    }

    /// The coordinated-omission-corrected latency summary (open loop only).
    pub fn corrected_latency(&self) -> Option<Latency> {
        self.corrected.as_ref().map(Latency::of)
    }
}

/// Statistics for every operation kind of one worker or one run.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// Reads.
    pub read: OpStats,
    /// Writes (updates and inserts).
    pub write: OpStats,
    /// Read-modify-writes (YCSB F), each timed as one operation.
    pub rmw: OpStats,
}

impl Recorder {
    /// The statistics for `kind`.
    pub fn op(&mut self, kind: OpKind) -> &mut OpStats {
        match kind {
            OpKind::Read => &mut self.read,
            OpKind::Write => &mut self.write,
            OpKind::ReadModifyWrite => &mut self.rmw,
        }
    }

    /// Every kind with its statistics, in report order.
    pub fn kinds(&self) -> [(OpKind, &OpStats); 3] {
        [
            (OpKind::Read, &self.read),
            (OpKind::Write, &self.write),
            (OpKind::ReadModifyWrite, &self.rmw),
        ]
    }

    /// Adds another recorder's statistics.
    pub fn merge(&mut self, other: &Recorder) {
        self.read.merge(&other.read);
        self.write.merge(&other.write);
        self.rmw.merge(&other.rmw);
    }

    /// Every kind's statistics in one (the plot's percentile curve).
    pub fn all(&self) -> OpStats {
        let mut all = OpStats::new();
        for (_, s) in self.kinds() {
            all.merge(s);
        }
        all
    }
}

/// Latency percentiles in microseconds (0 when nothing was recorded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// Minimum.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

impl Latency {
    /// The summary of `hist` (zeros when it is empty).
    pub fn of(hist: &Histogram<u64>) -> Latency {
        if hist.is_empty() {
            return Latency::default();
        }
        let q = |q: f64| hist.value_at_quantile(q);
        Latency {
            mean: hist.mean(),
            min: hist.min(),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: hist.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_on_known_data() {
        let mut s = OpStats::new();
        // 1..=1000 ms, one each: p50 = 500 ms, p90 = 900 ms, ...
        for ms in 1..=1000u64 {
            s.record_ok(Duration::from_millis(ms));
        }
        let l = s.latency();
        let close = |got: u64, want: u64| {
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err < 0.002, "got {got}, want {want}");
        };
        close(l.p50, 500_000);
        close(l.p90, 900_000);
        close(l.p99, 990_000);
        close(l.p999, 999_000);
        close(l.max, 1_000_000);
        close(l.min, 1_000);
        assert_eq!(s.ok(), 1000);
        assert!((l.mean - 500_500.0).abs() / 500_500.0 < 0.002);
    }

    #[test]
    fn sub_microsecond_and_huge_latencies_are_clamped() {
        let mut s = OpStats::new();
        s.record_ok(Duration::from_nanos(10));
        s.record_ok(Duration::from_secs(3600));
        let l = s.latency();
        assert_eq!(l.min, 1);
        assert!(
            l.max >= MAX_TRACKED_MICROS && l.max < MAX_TRACKED_MICROS + MAX_TRACKED_MICROS / 500
        );
        assert_eq!(OpStats::new().latency(), Latency::default());
    }

    #[test]
    fn corrected_latencies_are_kept_apart_and_merged() {
        let mut a = OpStats::new();
        assert_eq!(a.corrected_latency(), None);
        a.record_ok(Duration::from_millis(1));
        a.record_corrected(Duration::from_millis(5));
        let mut b = OpStats::new();
        b.record_ok(Duration::from_millis(1));
        let mut total = OpStats::new();
        total.merge(&b);
        assert_eq!(total.corrected_latency(), None, "closed loop stays None");
        total.merge(&a);
        assert_eq!(total.ok(), 2);
        let c = total.corrected_latency().unwrap_or_default();
        assert_eq!(total.corrected_histogram().map(|h| h.len()), Some(1));
        assert!(c.p50 >= 4_990 && c.p50 <= 5_010, "{c:?}");
        assert!(total.latency().max < 1_010);
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let errs = [
            ClientError::Unavailable("x".into()),
            ClientError::Unavailable("y".into()),
            ClientError::DeadlineExceeded("z".into()),
            ClientError::InvalidArgument("k".into()),
            ClientError::Rpc {
                code: tonic::Code::Internal,
                message: "boom".into(),
            },
            ClientError::NoEndpoints,
        ];
        let mut s = OpStats::new();
        for e in &errs {
            s.record_error(ErrorKind::of(e));
        }
        assert_eq!(
            s.errors,
            ErrorCounts {
                unavailable: 2,
                deadline: 1,
                invalid: 1,
                other: 2
            }
        );
        assert_eq!(s.errors.total(), 6);
        assert_eq!(s.ok(), 0);
        assert_eq!(s.attempted(), 6);
    }
}
