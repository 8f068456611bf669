//! Starting and stopping a node: `run(config, listener, shutdown)`.
//!
//! Tests bind `127.0.0.1:0` and pass the listener in; the binary binds the
//! configured address. Shutdown (SIGTERM/SIGINT in the binary) stops
//! accepting requests, lets in-flight ones finish, stops the background
//! loops and flushes storage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tinykv_proto::internal::peer_server::PeerServer;
use tinykv_proto::tinykv::admin_server::AdminServer;
use tinykv_proto::tinykv::tiny_kv_server::TinyKvServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use crate::config::{Config, StorageEngine, SyncMode};
use crate::detector::Detector;
use crate::error::NodeError;
use crate::hlc::Hlc;
use crate::membership::{Member, MemberState, Membership};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::peers::Peers;
use crate::service::{admin::AdminService, client::ClientService, peer::PeerService};
use crate::storage::{DiskEngine, Store, SyncPolicy};

/// The address this node tells others to use.
fn advertise(config: &Config, local: SocketAddr, id: &str) -> String {
    if let Some(a) = config.advertise.as_deref().filter(|a| !a.is_empty()) {
        return a.to_string();
    }
    if local.ip().is_unspecified() {
        // Listening on every interface: the host name is what peers can reach.
        return format!("{id}:{}", local.port());
    }
    local.to_string()
}

/// Builds the node's shared state.
pub fn build(
    config: Config,
    local: SocketAddr,
    shutdown: CancellationToken,
) -> Result<Arc<Node>, NodeError> {
    config.validate()?;
    let id = config.resolved_node_id()?;
    let specs = config.peer_specs()?;
    let addr = specs
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.addr.clone())
        .filter(|_| config.advertise.is_none())
        .unwrap_or_else(|| advertise(&config, local, &id));
    std::fs::create_dir_all(&config.data_dir)?;
    let kind = match config.storage_engine {
        StorageEngine::Auto => DiskEngine::detect(&config.data_dir).unwrap_or(DiskEngine::Fjall),
        StorageEngine::Fjall => DiskEngine::Fjall,
        StorageEngine::Redb => DiskEngine::Redb,
    };
    let engine = kind.open(&config.data_dir, &config.engine_tuning())?;
    tracing::info!(engine = ?kind, dir = %config.data_dir.display(), "storage opened");
    let policy = match config.sync {
        SyncMode::Always => SyncPolicy::Always,
        SyncMode::Periodic => SyncPolicy::Periodic(config.sync_period),
    };
    let store = Store::start(engine, policy);
    let mut members: Vec<Member> = specs
        .iter()
        .filter(|p| p.id != id)
        .map(|p| Member {
            id: p.id.clone(),
            addr: p.addr.clone(),
            state: MemberState::Normal,
            version: 1,
        })
        .collect();
    // A node that has been a full member before never re-joins.
    let was_member = config
        .data_dir
        .join(crate::lifecycle::MEMBER_MARKER)
        .exists();
    let joining = config.join && !was_member;
    members.push(Member {
        id: id.clone(),
        addr: addr.clone(),
        state: if joining {
            MemberState::Joining
        } else {
            MemberState::Normal
        },
        // A joining node's row must win over any stale row others have.
        version: if joining {
            crate::hlc::wall_micros()
        } else {
            1
        },
    });
    let membership = Membership::new(
        &id,
        members,
        config.replication_factor as usize,
        config.vnodes,
    );
    let metrics = Metrics::new().map_err(|e| NodeError::Config(format!("metrics: {e}")))?;
    Ok(Arc::new(Node {
        detector: Detector::new(config.phi_threshold, config.heartbeat_interval),
        peers: Peers::new(
            &id,
            config.cluster_name.as_deref(),
            config.peer_message_limit(),
        ),
        clock: Hlc::new(Duration::from_secs(60)),
        id,
        addr,
        store,
        membership,
        metrics,
        shutdown,
        stream_progress: Default::default(),
        dns_seen: Default::default(),
        foreign: Default::default(),
        #[cfg(feature = "fault-injection")]
        faults: crate::faults::Faults::default(),
        config,
    }))
}

/// Runs a node on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let local = listener.local_addr()?;
    let metrics_listener =
        match config.metrics_listen.as_str() {
            "" | "off" => None,
            addr => Some(TcpListener::bind(addr).await.map_err(|e| {
                NodeError::Transport(format!("binding metrics address {addr}: {e}"))
            })?),
        };
    let node = build(config, local, shutdown.clone())?;
    tracing::info!(id = %node.id, addr = %node.addr, listen = %local, sync = %node.sync_description(), "node starting");

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TinyKvServer<ClientService>>().await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let mut loops = crate::background::spawn_all(&node);
    loops.push(crate::health::watch_storage(&node, health.clone()));
    if node.membership.get(&node.id).map(|m| m.state) == Some(MemberState::Joining) {
        tokio::spawn(node.clone().join_cluster());
    } else {
        node.write_member_marker(MemberState::Normal);
    }
    let metrics_task = metrics_listener.map(|l| {
        let (node, token) = (node.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(l, node, token).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        })
    });

    let max = node.config.message_limit();
    let peer_max = node.config.peer_message_limit();
    let token = shutdown.clone();
    let health_on_stop = health.clone();
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(
            TinyKvServer::new(ClientService::new(node.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            AdminServer::new(AdminService::new(node.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(InterceptedService::new(
            PeerServer::new(PeerService::new(node.clone()))
                .max_decoding_message_size(peer_max)
                .max_encoding_message_size(peer_max),
            crate::cluster_name::Check::new(node.config.cluster_name.as_deref()),
        ))
        // The builder's `tcp_nodelay` applies only to listeners tonic binds
        // itself: set it on the accepted sockets here, or Nagle's algorithm
        // holds small responses back until the peer's delayed ACK (~40 ms).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                token.cancelled().await;
                health_on_stop
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
                tracing::info!("shutting down: draining in-flight requests");
            },
        )
        .await
        .map_err(|e| NodeError::Transport(e.to_string()));

    shutdown.cancel();
    for l in loops {
        let _ = l.await;
    }
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    node.store.close().await;
    tracing::info!(id = %node.id, "node stopped; storage flushed");
    result
}
