//! Starting and stopping a node: `run(config, listener, shutdown)`.
//!
//! Tests bind `127.0.0.1:0` and pass the listener in; the binary binds the
//! configured address. Shutdown (SIGTERM/SIGINT in the binary) stops
//! accepting requests, lets in-flight ones finish, stops the background
//! loops and flushes storage.

use std::time::Duration;

use tinykv_proto::internal::peer_server::PeerServer;
use tinykv_proto::tinykv::admin_server::AdminServer;
use tinykv_proto::tinykv::tiny_kv_server::TinyKvServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

mod build;
pub mod incoming;
mod scrape;
mod security;

pub use build::build;
use build::sync_description;
use incoming::incoming;
use security::Security;

use crate::background::every;
use crate::config::Config;
use crate::error::NodeError;
use crate::node::Node;
use crate::service::admin::AdminService;
use crate::service::backup::BackupParts;
use crate::service::client::{ClientParts, ClientService};
use crate::service::peer::{PeerParts, PeerService};
use crate::service::Rules;

/// Starts every background loop of a node.
fn spawn_loops(node: &Node, config: &Config, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
    let hb = config.heartbeat_interval;
    let gossip = node.gossip.clone();
    let lifecycle = node.lifecycle.clone();
    let hints = node.hints.clone();
    let mut loops = vec![
        every(shutdown, "heartbeat", hb, move || {
            let (gossip, lifecycle) = (gossip.clone(), lifecycle.clone());
            async move {
                gossip.round().await;
                lifecycle.note_own_state();
            }
        }),
        every(
            shutdown,
            "hints",
            Duration::from_millis(500).max(hb),
            move || {
                let hints = hints.clone();
                async move { hints.replay_round().await }
            },
        ),
    ];
    let member_file = node.member_file.clone();
    loops.push(every(shutdown, "member-file", hb, move || {
        let member_file = member_file.clone();
        async move { member_file.save_if_changed().await }
    }));
    let cleanup = node.cleanup.clone();
    loops.push(every(
        shutdown,
        "cleanup",
        Duration::from_millis(500).max(hb),
        move || {
            let cleanup = cleanup.clone();
            async move { cleanup.tick().await }
        },
    ));
    let ae = config.anti_entropy_interval;
    if !ae.is_zero() {
        let antientropy = node.antientropy.clone();
        loops.push(every(shutdown, "anti-entropy", ae, move || {
            let antientropy = antientropy.clone();
            async move {
                if let Err(e) = antientropy.round().await {
                    tracing::warn!(error = %e, "anti-entropy round failed");
                }
            }
        }));
    }
    loops
}

/// The gRPC services of `node`.
fn services(
    node: &Node,
    config: &Config,
    shutdown: &CancellationToken,
) -> (ClientService, AdminService, PeerService) {
    let rules = Rules {
        request_timeout: config.request_timeout,
        default_consistency: config.default_consistency,
        max_value_bytes: config.max_value_bytes,
        message_limit: config.message_limit(),
    };
    let client = ClientService::new(ClientParts {
        id: node.id.clone(),
        coordinator: node.coordinator.clone(),
        clock: node.clock.clone(),
        membership: node.membership.clone(),
        store: node.store.clone(),
        status: node.status.clone(),
        metrics: node.metrics.clone(),
        rules,
        shutdown: shutdown.clone(),
    });
    let admin = AdminService::new(
        node.store.clone(),
        node.membership.clone(),
        node.antientropy.clone(),
        node.cleanup.clone(),
        node.lifecycle.clone(),
        BackupParts {
            store: node.store.clone(),
            coordinator: node.coordinator.clone(),
            clock: node.clock.clone(),
            rules,
        },
    );
    let peer = PeerService::new(PeerParts {
        store: node.store.clone(),
        clock: node.clock.clone(),
        gossip: node.gossip.clone(),
        hints: node.hints.clone(),
        directory: node.directory.clone(),
        message_limit: config.message_limit(),
        shutdown: shutdown.clone(),
    });
    (client, admin, peer)
}

/// Runs a node on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let local = listener.local_addr()?;
    let keys = build::load_keyring(&config)?;
    // A node that has run before may have absorbed timestamps up to twice
    // --max-clock-offset ahead of its wall clock (peers' bound): waiting
    // that long before serving means it never stamps below them after a
    // restart.
    let restarted = std::fs::read_dir(&config.data_dir).is_ok_and(|mut d| d.next().is_some());
    let metrics_listener =
        match config.metrics_listen.as_str() {
            "" | "off" => None,
            addr => Some(TcpListener::bind(addr).await.map_err(|e| {
                NodeError::Transport(format!("binding metrics address {addr}: {e}"))
            })?),
        };
    let redis_listener = match config.redis_listen.as_str() {
        "" | "off" => None,
        addr => Some(TcpListener::bind(addr).await.map_err(|e| {
            NodeError::Transport(format!("binding --redis-listen address {addr}: {e}"))
        })?),
    };
    let node = build(&config, local, keys.as_ref(), shutdown.clone())?;
    let security = Security::new(&config, local, keys.as_ref(), &node.metrics)?;
    tracing::info!(id = %node.id, addr = %node.addr, listen = %local, sync = %sync_description(&config), guard = %security.describe(&config), "node starting");
    if restarted {
        let wait = config.max_clock_offset.saturating_mul(2);
        tracing::info!(
            ?wait,
            "restarted: waiting out twice --max-clock-offset before serving"
        );
        tokio::time::sleep(wait).await;
    }

    let health = HealthReporter::new();
    health.set_serving::<TinyKvServer<ClientService>>().await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let mut loops = spawn_loops(&node, &config, &shutdown);
    loops.push(security.spawn_reload(node.dialer.clone(), shutdown.clone()));
    loops.push(crate::health::watch_storage(
        node.store.clone(),
        health.clone(),
        &shutdown,
    ));
    node.lifecycle.start().await;
    if let Some(addr) = metrics_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        // The port actually bound (`--metrics-listen host:0` picks one).
        tracing::info!(addr = %addr, "metrics endpoint listening");
    }
    let metrics_task = metrics_listener.map(|l| {
        let (metrics, store, token) = (node.metrics.clone(), node.store.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(l, metrics, store, token).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        })
    });

    let (client, admin, peer) = services(&node, &config, &shutdown);
    let resp_task = redis_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(addr = %addr, "RESP (Redis protocol) listening");
        }
        let parts = crate::resp::RespParts {
            client: client.clone(),
            check: security.client.clone(),
            max_connections: config.redis_max_connections,
            idle_timeout: config.redis_idle_timeout,
            tls: security.tls.clone(),
        };
        tokio::spawn(crate::resp::run(l, parts, shutdown.clone()))
    });
    let services = (client, admin, peer);
    let result = serve_grpc(
        services, &node, &config, listener, health, &security, &shutdown,
    )
    .await;

    shutdown.cancel();
    for l in loops {
        let _ = l.await;
    }
    node.member_file.save_if_changed().await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    if let Some(t) = resp_task {
        let _ = t.await;
    }
    // A failed final flush means acknowledged writes may not be durable:
    // the shutdown reports it (non-zero exit) instead of claiming success.
    let closed = node.store.close().await;
    match &closed {
        Ok(()) => tracing::info!(id = %node.id, "node stopped; storage flushed"),
        Err(e) => {
            tracing::error!(id = %node.id, error = %e, "node stopped; the final storage flush failed")
        }
    }
    result.and(closed.map_err(NodeError::from))
}

/// gRPC server reflection for every service (both protocol versions: tools
/// such as grpcurl ask for either), so the node can be explored without
/// the .proto files.
fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    NodeError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tinykv_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let err = |e: tonic_reflection::server::Error| NodeError::Transport(format!("reflection: {e}"));
    Ok((
        builder().build_v1().map_err(err)?,
        builder().build_v1alpha().map_err(err)?,
    ))
}

/// Serves the client, admin, peer and health services on `listener` until
/// `shutdown` is cancelled; in-flight requests finish first.
async fn serve_grpc(
    (client, admin, peer): (ClientService, AdminService, PeerService),
    node: &Node,
    config: &Config,
    listener: TcpListener,
    health: HealthReporter,
    security: &Security,
    shutdown: &CancellationToken,
) -> Result<(), NodeError> {
    let guard = &security.guard;
    let max = config.message_limit();
    let peer_max = config.peer_message_limit();
    let health_service = HealthServer::new(HealthService::from_health_reporter(health.clone()));
    let token = shutdown.clone();
    let health_on_stop = health.clone();
    let client = TinyKvServer::new(client)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    // Scrapes of /metrics on this port, unless metrics are off; HTTP/1.1
    // is accepted for them (gRPC stays HTTP/2).
    let scrape = (config.metrics_listen != "off")
        .then(|| scrape::Scrape::new(node.metrics.clone(), node.store.clone()));
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(scrape::ScrapeLayer(scrape))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let router = match &security.client {
        Some(check) => router.add_service(check.wrap(client)),
        None => router.add_service(client),
    };
    router
        .add_service(
            guard.wrap(
                AdminServer::new(admin)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            ),
        )
        .add_service(
            guard.wrap(InterceptedService::new(
                PeerServer::new(peer)
                    .max_decoding_message_size(peer_max)
                    .max_encoding_message_size(peer_max),
                crate::cluster_name::Check::new(config.cluster_name.as_deref()),
            )),
        )
        .serve_with_incoming_shutdown(
            incoming(listener, security.tls.clone(), shutdown.clone()),
            async move {
                token.cancelled().await;
                health_on_stop
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
                tracing::info!("shutting down: draining in-flight requests");
            },
        )
        .await
        .map_err(|e| NodeError::Transport(e.to_string()))
}
