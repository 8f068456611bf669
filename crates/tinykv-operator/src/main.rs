//! The TinyKV operator process: leader election, the controller, and a small
//! HTTP server with `/metrics` and `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::{routing::get, Router};
use clap::Parser;
use tokio::sync::watch;
use tracing::{info, warn};

use tinykv_operator::leader::Leadership;
use tinykv_operator::metrics::Metrics;
use tinykv_operator::node_admin::GrpcNodeAdmin;
use tinykv_operator::reconciler::{self, Context};
use tinykv_operator::scope::WatchScope;

#[derive(Parser, Debug)]
#[command(
    name = "tinykv-operator",
    about = "Kubernetes operator for TinyKV clusters"
)]
struct Args {
    /// Address of the /metrics and /healthz server.
    #[arg(
        long,
        env = "TINYKV_OPERATOR_HTTP_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    http_listen: SocketAddr,
    /// Log as JSON lines.
    #[arg(long, env = "TINYKV_OPERATOR_LOG_JSON")]
    log_json: bool,
    /// Namespaces to watch, comma-separated; the operator's RBAC must
    /// cover each. Empty: its own namespace (`POD_NAMESPACE`) only, or
    /// every namespace with `--all-namespaces`.
    #[arg(long, env = "WATCH_NAMESPACES", default_value = "")]
    watch_namespaces: String,
    /// The operator's RBAC is cluster-wide (a ClusterRole): an empty
    /// `--watch-namespaces` then means every namespace.
    #[arg(long, env = "TINYKV_OPERATOR_ALL_NAMESPACES")]
    all_namespaces: bool,
    /// Disable Lease-based leader election (only for a single replica).
    #[arg(long, env = "TINYKV_OPERATOR_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "TINYKV_OPERATOR_LEASE_NAME",
        default_value = "tinykv-operator-leader"
    )]
    lease_name: String,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tinykv-system")]
    lease_namespace: String,
    /// Identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, env = "TINYKV_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// Deadline of each node admin RPC, in seconds.
    #[arg(
        long,
        env = "TINYKV_OPERATOR_NODE_TIMEOUT_SECONDS",
        default_value_t = 5
    )]
    node_timeout_seconds: u64,
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal(tx: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                futures::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("interrupt received"),
        _ = term => info!("SIGTERM received"),
    }
    let _ = tx.send(true);
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn serve_http(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    info!(%addr, "serving /metrics and /healthz");
    axum::serve(listener, app)
        .with_graceful_shutdown(wait_for(stop))
        .await
        .context("http server")
}

/// This replica's name: `POD_NAME` (the downward API), else the host name.
fn identity(args: &Args) -> Option<String> {
    args.identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
}

/// Competes for the Lease unless `--no-leader-election`.
async fn leadership(args: &Args, client: &kube::Client) -> anyhow::Result<Option<Leadership>> {
    if args.no_leader_election {
        return Ok(None);
    }
    let identity = identity(args).unwrap_or_else(|| "tinykv-operator".to_string());
    let leadership = Leadership::start(
        client.clone(),
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        Duration::from_secs(args.lease_seconds.max(3)),
    )
    .await
    .context("starting leader election")?;
    Ok(Some(leadership))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    // Refused before anything starts: a watch outside the RBAC would only
    // fail with 403 on every retry.
    let scope = WatchScope::resolve(
        &args.watch_namespaces,
        args.all_namespaces,
        Some(&args.lease_namespace),
    )
    .context("which namespaces to watch")?;
    // One TLS crypto provider for the process, whatever features other
    // workspace crates enable on rustls.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        warn!("a TLS crypto provider was already installed");
    }
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(shutdown_signal(stop_tx.clone()));
    let http = tokio::spawn(serve_http(
        args.http_listen,
        metrics.clone(),
        stop_rx.clone(),
    ));

    let client = kube::Client::try_default()
        .await
        .context("creating the Kubernetes client")?;

    let mut leadership = leadership(&args, &client).await?;
    if let Some(lease) = &mut leadership {
        info!(lease = %args.lease_name, "waiting for leadership");
        if !lease.acquire(&stop_rx).await.context("leader election")? {
            info!("stopped before becoming leader");
            return Ok(());
        }
        metrics.set_leader(true);
        info!("became leader");
        // Renewed in the background; losing the Lease stops the process.
        lease.stop_on_loss(stop_rx.clone(), stop_tx.clone());
    }

    let node_admin = Arc::new(GrpcNodeAdmin::new(Duration::from_secs(
        args.node_timeout_seconds.max(1),
    )));
    let ctx = Arc::new(
        Context::new(client, node_admin, metrics.clone()).with_reporting_instance(identity(&args)),
    );
    info!(namespaces = %scope, "starting controller");
    reconciler::run(ctx, scope, wait_for(stop_rx.clone())).await;
    info!("controller stopped");

    if let Some(lease) = leadership {
        metrics.set_leader(false);
        lease.release().await;
    }
    let _ = stop_tx.send(true);
    match http.await {
        Ok(res) => res?,
        Err(e) => warn!(error = %e, "http task failed"),
    }
    Ok(())
}
