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
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use crate::antientropy::AntiEntropy;
use crate::background::every;
use crate::clock::Clock;
use crate::config::{Config, StorageEngine, SyncMode};
use crate::coordinator::{self, Coordinator};
use crate::detector::Detector;
use crate::directory::Directory;
use crate::error::NodeError;
use crate::faults::Faults;
use crate::gossip::{Gossip, Identity};
use crate::hints::{HintLimits, Hints};
use crate::lifecycle::{Lifecycle, LifecycleParts};
use crate::membership::{Member, MemberState, Membership};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::peers::Peers;
use crate::placement::Placement;
use crate::replicas::NodeReplicas;
use crate::service::admin::AdminService;
use crate::service::client::{ClientParts, ClientService};
use crate::service::peer::{PeerParts, PeerService};
use crate::service::Rules;
use crate::status::{Facts, NodeStatus};
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

/// Opens the storage engine `config` names (or finds) in its data directory.
fn open_store(config: &Config) -> Result<Store, NodeError> {
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
    Ok(Store::start(engine, policy))
}

/// The member table at start: the `--peers` list, with this node's own
/// row (joining, with a version that wins over stale rows, when it is new
/// and asked to join).
fn initial_members(config: &Config, id: &str, addr: &str) -> Result<Membership, NodeError> {
    let specs = config.peer_specs()?;
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
        id: id.to_string(),
        addr: addr.to_string(),
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
    Ok(Membership::new(
        id,
        members,
        config.replication_factor as usize,
        config.vnodes,
    ))
}

/// The durability policy as status shows it.
fn sync_description(config: &Config) -> String {
    match config.sync {
        SyncMode::Always => "always".into(),
        SyncMode::Periodic => format!("periodic({}ms)", config.sync_period.as_millis()),
    }
}

/// Builds a node's subsystems and wires them together: the one place that
/// reads the configuration for them.
pub fn build(
    config: &Config,
    local: SocketAddr,
    shutdown: CancellationToken,
) -> Result<Node, NodeError> {
    config.validate()?;
    let id = config.resolved_node_id()?;
    let addr = config
        .peer_specs()?
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.addr.clone())
        .filter(|_| config.advertise.is_none())
        .unwrap_or_else(|| advertise(config, local, &id));
    let store = open_store(config)?;
    let membership = Arc::new(initial_members(config, &id, &addr)?);
    let metrics = Arc::new(Metrics::new().map_err(|e| NodeError::Config(format!("metrics: {e}")))?);
    let clock = Arc::new(Clock::new(metrics.clock_skew_refused.clone()));
    let detector = Arc::new(Detector::new(
        config.phi_threshold,
        config.heartbeat_interval,
    ));
    let peers = Arc::new(Peers::new(
        &id,
        config.cluster_name.as_deref(),
        config.peer_message_limit(),
    ));
    let directory = Directory::new(membership.clone(), peers, Arc::new(Faults::default()));
    let transfer = crate::transfer::Transfer::new(&id, directory.clone(), config.message_limit());
    let hints = Arc::new(Hints::new(
        store.clone(),
        HintLimits {
            max_hints: config.max_hints,
            max_age: config.max_hint_age,
        },
        membership.clone(),
        detector.clone(),
        transfer.clone(),
        metrics.clone(),
    ));
    let replicas = NodeReplicas::new(
        &id,
        store.clone(),
        hints.clone(),
        directory.clone(),
        clock.clone(),
    );
    let coordinator = Arc::new(Coordinator::new(
        Arc::new(Placement::new(&id, membership.clone(), detector.clone())),
        Arc::new(replicas),
        coordinator::Settings {
            hinted_handoff: config.hinted_handoff,
            sloppy_quorum: config.sloppy_quorum,
            read_fanout: config.read_fanout,
            speculative_retry: config.read_speculative_retry,
            repair_timeout: config.request_timeout,
        },
        metrics.clone(),
    ));
    let gossip = Arc::new(Gossip::new(
        Identity {
            id: id.clone(),
            addr: addr.clone(),
            peers_dns: config.peers_dns.clone(),
            interval: config.heartbeat_interval,
        },
        clock.clone(),
        membership.clone(),
        detector.clone(),
        directory.clone(),
        metrics.clone(),
    ));
    let antientropy = Arc::new(AntiEntropy::new(
        &id,
        store.clone(),
        membership.clone(),
        transfer.clone(),
        metrics.clone(),
        config.tombstone_grace,
    ));
    let lifecycle = Arc::new(Lifecycle::new(
        &id,
        LifecycleParts {
            data_dir: config.data_dir.clone(),
            store: store.clone(),
            clock: clock.clone(),
            membership: membership.clone(),
            detector: detector.clone(),
            gossip: gossip.clone(),
            transfer,
            antientropy: antientropy.clone(),
            metrics: metrics.clone(),
            shutdown,
        },
    ));
    let status = Arc::new(NodeStatus::new(
        Facts {
            id: id.clone(),
            vnodes: config.vnodes,
            sync: sync_description(config),
            cluster_name: config.cluster_name.clone().unwrap_or_default(),
        },
        membership.clone(),
        detector,
        store.clone(),
        lifecycle.clone(),
    ));
    Ok(Node {
        id,
        addr,
        store,
        clock,
        membership,
        directory,
        coordinator,
        gossip,
        hints,
        antientropy,
        lifecycle,
        status,
        metrics,
    })
}

/// Starts every background loop of a node.
fn spawn_loops(node: &Node, config: &Config, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
    let hb = config.heartbeat_interval;
    let gossip = node.gossip.clone();
    let hints = node.hints.clone();
    let mut loops = vec![
        every(shutdown, "heartbeat", hb, move || {
            let gossip = gossip.clone();
            async move { gossip.round().await }
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
    let client = ClientService::new(ClientParts {
        id: node.id.clone(),
        coordinator: node.coordinator.clone(),
        clock: node.clock.clone(),
        membership: node.membership.clone(),
        store: node.store.clone(),
        status: node.status.clone(),
        metrics: node.metrics.clone(),
        rules: Rules {
            request_timeout: config.request_timeout,
            default_consistency: config.default_consistency,
            max_value_bytes: config.max_value_bytes,
            message_limit: config.message_limit(),
        },
        shutdown: shutdown.clone(),
    });
    let admin = AdminService::new(
        node.store.clone(),
        node.membership.clone(),
        node.antientropy.clone(),
        node.lifecycle.clone(),
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
    let metrics_listener =
        match config.metrics_listen.as_str() {
            "" | "off" => None,
            addr => Some(TcpListener::bind(addr).await.map_err(|e| {
                NodeError::Transport(format!("binding metrics address {addr}: {e}"))
            })?),
        };
    let node = build(&config, local, shutdown.clone())?;
    tracing::info!(id = %node.id, addr = %node.addr, listen = %local, sync = %sync_description(&config), "node starting");

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TinyKvServer<ClientService>>().await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let mut loops = spawn_loops(&node, &config, &shutdown);
    loops.push(crate::health::watch_storage(
        node.store.clone(),
        health.clone(),
        &shutdown,
    ));
    node.lifecycle.start();
    let metrics_task = metrics_listener.map(|l| {
        let (metrics, store, token) = (node.metrics.clone(), node.store.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(l, metrics, store, token).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        })
    });

    let max = config.message_limit();
    let peer_max = config.peer_message_limit();
    let (client, admin, peer) = services(&node, &config, &shutdown);
    let token = shutdown.clone();
    let health_on_stop = health.clone();
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(
            TinyKvServer::new(client)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            AdminServer::new(admin)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(InterceptedService::new(
            PeerServer::new(peer)
                .max_decoding_message_size(peer_max)
                .max_encoding_message_size(peer_max),
            crate::cluster_name::Check::new(config.cluster_name.as_deref()),
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
