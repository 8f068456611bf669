//! Prometheus metrics and the `/metrics` HTTP endpoint.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod backlog;
pub use backlog::Backlog;

/// Every metric a node exports.
pub struct Metrics {
    registry: Registry,
    /// The standard `process_*` metrics (CPU, RSS, open files), without
    /// the `tinykv_` prefix, as every Prometheus exporter names them.
    process: Registry,
    /// The data directory, whose size `tinykv_storage_disk_bytes` reports.
    data_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// Keys in the local store (live values and tombstones).
    pub storage_keys: IntGauge,
    /// Bytes the data directory takes on disk.
    pub storage_disk_bytes: IntGauge,
    /// Client requests by operation and consistency.
    pub requests: IntCounterVec,
    /// Client request latency by operation and consistency.
    pub latency: HistogramVec,
    /// Client requests that failed, by operation and gRPC code.
    pub request_errors: IntCounterVec,
    /// Quorums not reached, by operation.
    pub quorum_failures: IntCounterVec,
    /// Hints stored on this node.
    pub hints_stored: IntCounter,
    /// Hints delivered to their owners.
    pub hints_replayed: IntCounter,
    /// Hints dropped (limit reached or too old).
    pub hints_dropped: IntCounter,
    /// Hints currently stored.
    pub hints_pending: IntGauge,
    /// Replicas repaired by reads.
    pub read_repairs: IntCounter,
    /// Keys moved by anti-entropy and streaming.
    pub repair_keys: IntCounter,
    /// Bytes moved by anti-entropy and streaming.
    pub repair_bytes: IntCounter,
    /// Copies of ranges this node no longer replicates, removed by cleanup
    /// after every replica acknowledged them.
    pub cleanup_keys_removed: IntCounter,
    /// 1 while this node lost ranges and may still hold copies of them.
    pub cleanup_pending: IntGauge,
    /// Members by health as this node sees them (1 = in that state).
    pub member_health: GaugeVec,
    /// Largest clock offset seen from a peer's heartbeat, in seconds.
    pub clock_skew: Gauge,
    /// Each peer's clock minus this node's, from its last heartbeat answer.
    pub peer_clock_offset: GaugeVec,
    /// Remote timestamps refused for being too far ahead.
    pub clock_skew_refused: IntCounter,
    /// Storage engine batches committed (one per write applied on the
    /// caller's thread, or one per group commit of the writer thread).
    pub storage_commits: IntCounter,
    /// Write ops in those batches: divided by commits, the group size.
    pub storage_committed_ops: IntCounter,
    /// Flushes that made commits durable (fsyncs of `--sync periodic`).
    pub storage_flushes: IntCounter,
    /// Stored records that failed to decode (read as missing or skipped,
    /// and quarantined) since the node started.
    pub corrupt_records: IntCounter,
    /// Peer and admin calls refused before they acted, by service and
    /// reason (no credentials, bad ones, not from loopback).
    pub auth_refused: IntCounterVec,
    /// Outgoing node-to-node calls by member and call (gRPC method).
    pub peer_call_duration: HistogramVec,
    /// Bytes this node still has to stream out while it leaves.
    pub stream_pending_bytes: IntGauge,
    /// Bytes of copies of lost ranges cleanup still has to remove.
    pub cleanup_pending_bytes: IntGauge,
}

fn counter_vec(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(reg: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Buckets of node-to-node call latency: a fraction of a millisecond on
/// one host to seconds for a page of a range transfer.
const PEER_CALL_BUCKETS: [f64; 12] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

fn peer_call_histogram(reg: &Registry) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(
        "peer_call_duration_seconds",
        "Outgoing node-to-node call latency by member and call",
    )
    .buckets(PEER_CALL_BUCKETS.to_vec());
    let h = HistogramVec::new(opts, &["member", "call"])?;
    reg.register(Box::new(h.clone()))?;
    Ok(h)
}

fn counter(reg: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("tinykv".into()), None)?;
        let process = Registry::new();
        process.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "The running build: always 1, its version as a label",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        let storage_keys = IntGauge::new(
            "storage_keys",
            "Keys in the local store (values and tombstones)",
        )?;
        registry.register(Box::new(storage_keys.clone()))?;
        let storage_disk_bytes = IntGauge::new(
            "storage_disk_bytes",
            "Bytes the data directory takes on disk",
        )?;
        registry.register(Box::new(storage_disk_bytes.clone()))?;
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Client requests"),
            &["op", "consistency"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let latency = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Client request latency").buckets(vec![
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0,
            ]),
            &["op", "consistency"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        let request_errors = IntCounterVec::new(
            Opts::new("request_errors_total", "Failed client requests"),
            &["op", "code"],
        )?;
        registry.register(Box::new(request_errors.clone()))?;
        let quorum_failures = IntCounterVec::new(
            Opts::new("quorum_failures_total", "Quorums not reached"),
            &["op"],
        )?;
        registry.register(Box::new(quorum_failures.clone()))?;
        let hints_pending = IntGauge::new("hints_pending", "Hints stored and not yet delivered")?;
        registry.register(Box::new(hints_pending.clone()))?;
        let cleanup_pending = IntGauge::new(
            "cleanup_pending",
            "1 while copies of ranges this node lost may remain",
        )?;
        registry.register(Box::new(cleanup_pending.clone()))?;
        let member_health = GaugeVec::new(
            Opts::new("member_health", "Members by health"),
            &["member", "health"],
        )?;
        registry.register(Box::new(member_health.clone()))?;
        let clock_skew = Gauge::new(
            "clock_skew_seconds",
            "Largest clock offset seen from a peer",
        )?;
        registry.register(Box::new(clock_skew.clone()))?;
        let peer_clock_offset = GaugeVec::new(
            Opts::new(
                "peer_clock_offset_seconds",
                "Each peer's clock minus this node's, from its last heartbeat answer",
            ),
            &["member"],
        )?;
        registry.register(Box::new(peer_clock_offset.clone()))?;
        Ok(Metrics {
            process,
            data_dir: std::sync::OnceLock::new(),
            storage_keys,
            storage_disk_bytes,
            requests,
            latency,
            request_errors,
            quorum_failures,
            hints_stored: counter(&registry, "hints_stored_total", "Hints stored")?,
            hints_replayed: counter(&registry, "hints_replayed_total", "Hints delivered")?,
            hints_dropped: counter(&registry, "hints_dropped_total", "Hints dropped")?,
            hints_pending,
            read_repairs: counter(
                &registry,
                "read_repairs_total",
                "Replicas repaired by reads",
            )?,
            repair_keys: counter(
                &registry,
                "repair_keys_total",
                "Keys moved by repair and streaming",
            )?,
            repair_bytes: counter(
                &registry,
                "repair_bytes_total",
                "Bytes moved by repair and streaming",
            )?,
            cleanup_keys_removed: counter(
                &registry,
                "cleanup_keys_removed_total",
                "Copies of ranges no longer replicated, removed by cleanup",
            )?,
            cleanup_pending,
            member_health,
            clock_skew,
            peer_clock_offset,
            clock_skew_refused: counter(
                &registry,
                "clock_skew_refused_total",
                "Timestamps refused as too far ahead",
            )?,
            storage_commits: counter(
                &registry,
                "storage_commits_total",
                "Storage engine batches committed",
            )?,
            storage_committed_ops: counter(
                &registry,
                "storage_committed_ops_total",
                "Write ops in committed storage batches",
            )?,
            auth_refused: counter_vec(
                &registry,
                "auth_refused_total",
                "Peer and admin calls refused before acting",
                &["service", "reason"],
            )?,
            peer_call_duration: peer_call_histogram(&registry)?,
            stream_pending_bytes: gauge(
                &registry,
                "stream_pending_bytes",
                "Bytes still to stream out while leaving",
            )?,
            cleanup_pending_bytes: gauge(
                &registry,
                "cleanup_pending_bytes",
                "Bytes of lost ranges' copies still to remove",
            )?,
            storage_flushes: counter(
                &registry,
                "storage_flushes_total",
                "Flushes making storage commits durable",
            )?,
            corrupt_records: counter(
                &registry,
                "corrupt_records_total",
                "Stored records that failed to decode and were skipped",
            )?,
            registry,
        })
    }

    /// Reports the size of `dir` as `tinykv_storage_disk_bytes`.
    pub fn set_data_dir(&self, dir: std::path::PathBuf) {
        let _ = self.data_dir.set(dir);
    }

    /// Brings the storage gauges and counters up to date with `store`.
    pub fn observe(&self, store: &crate::storage::Store) {
        self.observe_store(store.stats());
        let corrupt = store.engine().corrupt_records();
        self.corrupt_records
            .inc_by(corrupt.saturating_sub(self.corrupt_records.get()));
        if let Ok(keys) = store.engine().key_count() {
            self.storage_keys
                .set(i64::try_from(keys).unwrap_or(i64::MAX));
        }
        if let Some(dir) = self.data_dir.get() {
            self.storage_disk_bytes
                .set(i64::try_from(dir_bytes(dir, 8)).unwrap_or(i64::MAX));
        }
    }

    /// Brings the storage counters up to the writer thread's own.
    pub fn observe_store(&self, stats: &crate::storage::StoreStats) {
        let catch_up = |c: &IntCounter, now: u64| c.inc_by(now.saturating_sub(c.get()));
        catch_up(
            &self.storage_commits,
            stats.commits.load(std::sync::atomic::Ordering::Relaxed),
        );
        catch_up(
            &self.storage_committed_ops,
            stats
                .committed_ops
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        catch_up(
            &self.storage_flushes,
            stats.flushes.load(std::sync::atomic::Ordering::Relaxed),
        );
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            return format!("# encoding error: {e}\n");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Serves `GET /metrics` (and `/healthz`) on `listener` until `shutdown`;
/// the storage counters are brought up to `store`'s at each scrape.
pub async fn serve(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    store: crate::storage::Store,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (metrics, store) = (metrics.clone(), store.clone());
                async move {
                    metrics.observe(&store);
                    metrics.render()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The bytes of the files under `dir`, `depth` directories down at most
/// (the engines nest two or three levels); unreadable entries count 0.
fn dir_bytes(dir: &std::path::Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() && depth > 0 => dir_bytes(&e.path(), depth - 1),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family name in `text` (Prometheus exposition), from its TYPE line.
    fn families(text: &str) -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// docs/metrics.md and the registry list the same metrics: every
    /// exported family is documented, and every documented one exported.
    #[test]
    fn docs_metrics_md_lists_exactly_the_exported_metrics() {
        let m = Metrics::new().unwrap();
        // Labelled families appear once a label set is used: use one each.
        m.requests.with_label_values(&["put", "quorum"]).inc();
        m.latency
            .with_label_values(&["put", "quorum"])
            .observe(0.001);
        m.request_errors
            .with_label_values(&["put", "Unavailable"])
            .inc();
        m.quorum_failures.with_label_values(&["put"]).inc();
        m.member_health.with_label_values(&["n2", "up"]).set(1.0);
        m.peer_clock_offset.with_label_values(&["n2"]).set(0.0);
        m.auth_refused
            .with_label_values(&["tinykv.Admin", "missing"])
            .inc();
        m.peer_call_duration
            .with_label_values(&["n2", "Heartbeat"])
            .observe(0.001);
        let exported = families(&m.render());
        let doc = include_str!("../../../docs/metrics.md");
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect();
        let undocumented: Vec<_> = exported.difference(&documented).collect();
        let missing: Vec<_> = documented.difference(&exported).collect();
        assert!(
            undocumented.is_empty(),
            "exported, not in docs/metrics.md: {undocumented:?}"
        );
        assert!(
            missing.is_empty(),
            "in docs/metrics.md, not exported: {missing:?}"
        );
    }
}
