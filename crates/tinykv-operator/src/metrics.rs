//! Operator metrics, through the `prometheus` crate (as the node's are):
//! one [`Registry`] per process holding the reconcile counters and
//! histogram, node-call failures, leadership, and the process collector
//! (CPU, RSS, open file descriptors: `process_*`).

use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Upper bounds (seconds) of the reconcile duration histogram buckets.
const BUCKETS: [f64; 9] = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0];

/// Process-wide operator metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounter,
    failures: IntCounterVec,
    duration: Histogram,
    node_calls_failed: IntCounter,
    is_leader: IntGauge,
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

/// Registers `metric` in `registry`. The names are fixed and unique, so
/// only a programming error makes this fail, which the unit test catches.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        tracing::error!(error = %e, "metric not registered");
    }
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        // Names and help texts are constants; the constructors fail only on
        // an invalid name, which `renders_counts_failures_and_histogram` covers.
        let reconciles = IntCounter::new(
            "tinykv_operator_reconciles_total",
            "Reconcile passes started.",
        )
        .expect("valid metric name");
        let failures = IntCounterVec::new(
            Opts::new(
                "tinykv_operator_reconcile_failures_total",
                "Reconcile passes that failed, by error kind.",
            ),
            &["error"],
        )
        .expect("valid metric name");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "tinykv_operator_reconcile_duration_seconds",
                "Duration of reconcile passes.",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("valid metric name");
        let node_calls_failed = IntCounter::new(
            "tinykv_operator_node_call_failures_total",
            "Node admin RPCs that failed.",
        )
        .expect("valid metric name");
        let is_leader = IntGauge::new(
            "tinykv_operator_leader",
            "Whether this replica holds the leader lease.",
        )
        .expect("valid metric name");
        #[cfg(target_os = "linux")]
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::error!(error = %e, "process metrics not registered");
        }
        Self {
            reconciles: registered(&registry, reconciles),
            failures: registered(&registry, failures),
            duration: registered(&registry, duration),
            node_calls_failed: registered(&registry, node_calls_failed),
            is_leader: registered(&registry, is_leader),
            registry,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("reconciles", &self.reconcile_count())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Count a reconcile and time it until the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Record one duration in the histogram.
    pub fn observe_duration(&self, d: Duration) {
        self.duration.observe(d.as_secs_f64());
    }

    /// Count a failed reconcile by error kind.
    pub fn reconcile_failed(&self, kind: &'static str) {
        self.failures.with_label_values(&[kind]).inc();
    }

    /// Count a node admin call that failed (it does not fail the reconcile).
    pub fn node_call_failed(&self) {
        self.node_calls_failed.inc();
    }

    /// Set whether this replica holds the leader lease.
    pub fn set_leader(&self, leader: bool) {
        self.is_leader.set(i64::from(leader));
    }

    /// Reconciles counted so far.
    pub fn reconcile_count(&self) -> u64 {
        self.reconciles.get()
    }

    /// Failures of kind `kind` so far.
    pub fn failure_count(&self, kind: &str) -> u64 {
        self.failures.with_label_values(&[kind]).get()
    }

    /// Everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
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
        m.node_call_failed();
        m.set_leader(true);
        let text = m.render();
        assert!(
            text.contains("tinykv_operator_reconciles_total 1\n"),
            "{text}"
        );
        assert!(text.contains("tinykv_operator_reconcile_failures_total{error=\"kube\"} 2\n"));
        assert!(text.contains("tinykv_operator_reconcile_duration_seconds_count 2\n"));
        assert!(
            text.contains("tinykv_operator_reconcile_duration_seconds_bucket{le=\"0.25\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("tinykv_operator_reconcile_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("tinykv_operator_node_call_failures_total 1\n"));
        assert!(text.contains("tinykv_operator_leader 1\n"));
        assert!(text.contains("# TYPE tinykv_operator_reconcile_duration_seconds histogram"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert_eq!(m.failure_count("kube"), 2);
        assert_eq!(m.failure_count("tls"), 0);
    }
}
