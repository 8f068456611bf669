//! Prometheus metrics and the `/metrics` HTTP endpoint.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every metric a node exports.
pub struct Metrics {
    registry: Registry,
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
    /// Peer and admin calls refused before they acted, by service and
    /// reason (no credentials, bad ones, not from loopback).
    pub auth_refused: IntCounterVec,
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

fn counter(reg: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("tinykv".into()), None)?;
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
            storage_flushes: counter(
                &registry,
                "storage_flushes_total",
                "Flushes making storage commits durable",
            )?,
            registry,
        })
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
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
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
                    metrics.observe_store(store.stats());
                    metrics.render()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
