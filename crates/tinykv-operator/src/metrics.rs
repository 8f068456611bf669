//! Operator metrics in the Prometheus text format.
//!
//! A handful of counters and one histogram do not need a metrics framework:
//! atomics and a mutex-protected map, rendered by [`Metrics::render`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the reconcile duration histogram buckets.
const BUCKETS: [f64; 9] = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0];

/// Process-wide operator metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    bucket_counts: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    node_calls_failed: AtomicU64,
    is_leader: AtomicBool,
}

/// Observes one reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics.observe_duration(self.start.elapsed());
    }
}

impl Metrics {
    /// Count a reconcile and time it until the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Record one duration in the histogram.
    pub fn observe_duration(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.bucket_counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// Count a failed reconcile by error kind.
    pub fn reconcile_failed(&self, kind: &'static str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(kind).or_default() += 1;
    }

    /// Count a node admin call that failed (it does not fail the reconcile).
    pub fn node_call_failed(&self) {
        self.node_calls_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Set whether this replica holds the leader lease.
    pub fn set_leader(&self, leader: bool) {
        self.is_leader.store(leader, Ordering::Relaxed);
    }

    /// Reconciles counted so far.
    pub fn reconcile_count(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// Failures of kind `kind` so far.
    pub fn failure_count(&self, kind: &str) -> u64 {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.get(kind).copied().unwrap_or(0)
    }

    /// Everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tinykv_operator_reconciles_total Reconcile passes started."
        );
        let _ = writeln!(out, "# TYPE tinykv_operator_reconciles_total counter");
        let _ = writeln!(
            out,
            "tinykv_operator_reconciles_total {}",
            self.reconcile_count()
        );
        let _ = writeln!(out, "# HELP tinykv_operator_reconcile_failures_total Reconcile passes that failed, by error kind.");
        let _ = writeln!(
            out,
            "# TYPE tinykv_operator_reconcile_failures_total counter"
        );
        {
            let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            for (kind, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "tinykv_operator_reconcile_failures_total{{error=\"{kind}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tinykv_operator_reconcile_duration_seconds Duration of reconcile passes."
        );
        let _ = writeln!(
            out,
            "# TYPE tinykv_operator_reconcile_duration_seconds histogram"
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.bucket_counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tinykv_operator_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "tinykv_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "tinykv_operator_reconcile_duration_seconds_sum {sum}");
        let _ = writeln!(
            out,
            "tinykv_operator_reconcile_duration_seconds_count {count}"
        );
        let _ = writeln!(
            out,
            "# HELP tinykv_operator_node_call_failures_total Node admin RPCs that failed."
        );
        let _ = writeln!(
            out,
            "# TYPE tinykv_operator_node_call_failures_total counter"
        );
        let _ = writeln!(
            out,
            "tinykv_operator_node_call_failures_total {}",
            self.node_calls_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tinykv_operator_leader Whether this replica holds the leader lease."
        );
        let _ = writeln!(out, "# TYPE tinykv_operator_leader gauge");
        let _ = writeln!(
            out,
            "tinykv_operator_leader {}",
            u8::from(self.is_leader.load(Ordering::Relaxed))
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_failures_and_histogram() {
        let m = Metrics::default();
        {
            let _t = m.reconcile_started();
        }
        m.observe_duration(Duration::from_millis(300));
        m.reconcile_failed("kube");
        m.reconcile_failed("kube");
        m.set_leader(true);
        let text = m.render();
        assert!(text.contains("tinykv_operator_reconciles_total 1\n"));
        assert!(text.contains("tinykv_operator_reconcile_failures_total{error=\"kube\"} 2\n"));
        assert!(text.contains("tinykv_operator_reconcile_duration_seconds_count 2\n"));
        assert!(
            text.contains("tinykv_operator_reconcile_duration_seconds_bucket{le=\"0.25\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("tinykv_operator_reconcile_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("tinykv_operator_leader 1\n"));
        assert_eq!(m.failure_count("kube"), 2);
    }
}
