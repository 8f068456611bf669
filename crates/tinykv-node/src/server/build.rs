//! Building a node: the one place that reads the configuration for its
//! subsystems and wires them together.

use std::net::SocketAddr;
use std::sync::Arc;

use tinykv_auth::tls::ClientTls;
use tinykv_auth::{Keyring, Secrets, Signer, Verifier};
use tokio_util::sync::CancellationToken;

use crate::antientropy::AntiEntropy;
use crate::cleanup::{Cleanup, CleanupParts};
use crate::clock::Clock;
use crate::config::{Config, SyncMode};
use crate::convergence::{Convergence, Start};
use crate::coordinator::{self, Coordinator};
use crate::detector::Detector;
use crate::dialer::Dialer;
use crate::directory::Directory;
use crate::error::NodeError;
use crate::faults::Faults;
use crate::gossip::{Gossip, Identity};
use crate::guard::Mode;
use crate::hints::{HintLimits, Hints};
use crate::lifecycle::{Lifecycle, LifecycleParts};
use crate::member_file::MemberFile;
use crate::membership::{Member, MemberState, Membership};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::peers::{CallTimer, Peers};
use crate::placement::Placement;
use crate::replicas::NodeReplicas;
use crate::status::{Facts, NodeStatus};
use crate::storage::{self, Store, SyncPolicy};
use crate::transfer::Transfer;

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

/// Opens the storage engine (fjall, whatever `--storage-engine` says: both
/// of its values name it) in the data directory; a directory written by
/// the removed redb engine is refused.
fn open_store(config: &Config) -> Result<Store, NodeError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let engine = storage::open_disk(&config.data_dir, &config.engine_tuning())?;
    tracing::info!(engine = "fjall", dir = %config.data_dir.display(), "storage opened");
    let policy = match config.sync {
        SyncMode::Always => SyncPolicy::Always,
        SyncMode::Periodic => SyncPolicy::Periodic(config.sync_period),
    };
    Ok(Store::start(engine, policy))
}

/// The member table at start: the `--peers` list, with this node's own
/// row (joining, with a version that wins over stale rows, when it is new
/// and asked to join), and the rows saved in the data directory; not
/// converged until the members it names answer (see `convergence.rs`).
fn initial_members(config: &Config, id: &str, addr: &str) -> Result<Membership, NodeError> {
    let specs = config.peer_specs()?;
    let mut members: Vec<Member> = specs
        .iter()
        .filter(|p| p.id != id)
        .map(|p| Member {
            id: p.id.clone(),
            addr: p.addr.clone(),
            state: MemberState::Normal,
            version: crate::identity::CONFIGURED_VERSION,
        })
        .collect();
    // A node that has been a full member before never re-joins; one that
    // left stays left; one that was removed holds stale data and refuses.
    let marker = crate::lifecycle::read_member_marker(&config.data_dir);
    if marker == Some(MemberState::Removed) {
        return Err(NodeError::Config(format!(
            "node {id} was removed from the cluster (removenode) and its data in {} is stale: wipe the data directory and start it with --join to add it again",
            config.data_dir.display()
        )));
    }
    let joining = config.join && marker.is_none();
    members.push(Member {
        id: id.to_string(),
        addr: addr.to_string(),
        state: if joining {
            MemberState::Joining
        } else if marker == Some(MemberState::Left) {
            MemberState::Left
        } else {
            MemberState::Normal
        },
        // A joining node's row must win over any stale row others have.
        version: if joining {
            crate::hlc::wall_micros()
        } else {
            crate::identity::CONFIGURED_VERSION
        },
    });
    let membership = Membership::new(
        id,
        members,
        config.replication_factor as usize,
        config.vnodes,
    );
    // The table saved by the last run, merged as gossip would be (the
    // highest version of each row wins), so a restarted node knows its
    // peers before its first heartbeat round.
    membership.merge(crate::member_file::load_or_log(&config.data_dir));
    let table_known = membership
        .members()
        .iter()
        .any(|m| m.id != id && m.state.in_write_ring());
    Ok(membership.with_convergence(Convergence::pending(Start {
        bound: config.convergence_bound(),
        discovery: config.peers_dns.is_some(),
        table_known,
    })))
}

/// The cluster secrets `--cluster-secret-file` names, if it names a file.
pub fn load_keyring(config: &Config) -> Result<Option<Keyring>, NodeError> {
    config
        .cluster_secret_file
        .as_deref()
        .map(|path| Secrets::load(path).map(Keyring::new))
        .transpose()
        .map_err(|e| NodeError::Config(e.to_string()))
}

/// How the peer and admin planes are guarded: by the cluster secret when
/// there is one, else loopback only unless `--insecure`. A node that
/// listens beyond loopback with neither is refused, so a cluster is never
/// open by accident.
pub fn guard_mode(
    config: &Config,
    local: SocketAddr,
    keys: Option<&Keyring>,
) -> Result<Mode, NodeError> {
    if let Some(keys) = keys {
        return Ok(Mode::Secret(Verifier::with_keyring(keys.clone())));
    }
    if config.tls_files().is_some() {
        return Ok(Mode::Certificate);
    }
    if config.insecure {
        return Ok(Mode::Open);
    }
    if local.ip().is_loopback() {
        return Ok(Mode::Loopback);
    }
    Err(NodeError::Config(format!(
        "listening on {local} with no cluster secret would let anyone who reaches this port call the node-to-node and admin services: create a secret with `tinykv_client secret > cluster.secret`, give every node (and the CLI) --cluster-secret-file cluster.secret (or TLS certificates: `tinykv_client certs`), or pass --insecure to accept that risk"
    )))
}

/// The durability policy as status shows it.
pub(super) fn sync_description(config: &Config) -> String {
    match config.sync {
        SyncMode::Always => "always".into(),
        SyncMode::Periodic => format!("periodic({}ms)", config.sync_period.as_millis()),
    }
}

/// What every subsystem is built from: the node's identity, its store and
/// the shared views, made once from the configuration.
struct Core {
    id: String,
    addr: String,
    store: Store,
    clock: Arc<Clock>,
    membership: Arc<Membership>,
    detector: Arc<Detector>,
    directory: Directory,
    transfer: Transfer,
    metrics: Arc<Metrics>,
    /// Signs this node's calls to others with the cluster secret, if any.
    signer: Option<Signer>,
    /// Dials other nodes (TLS when configured).
    dialer: Arc<Dialer>,
}

impl Core {
    fn new(config: &Config, local: SocketAddr, keys: Option<&Keyring>) -> Result<Core, NodeError> {
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
        let metrics =
            Arc::new(Metrics::new().map_err(|e| NodeError::Config(format!("metrics: {e}")))?);
        metrics.set_data_dir(config.data_dir.clone());
        let clock = Arc::new(Clock::new(
            config.max_clock_offset,
            metrics.clock_skew_refused.clone(),
        ));
        let detector = Arc::new(Detector::new(
            config.phi_threshold,
            config.heartbeat_interval,
        ));
        let signer = keys.map(|k| Signer::with_keyring(&id, k.clone()));
        let tls = match config.tls_files() {
            Some(files) => {
                Some(ClientTls::for_node(&files).map_err(|e| NodeError::Config(e.to_string()))?)
            }
            None => None,
        };
        // Addresses found through --peers-dns are IPs: their certificates
        // are checked against the name resolved.
        let ip_name = config
            .peers_dns
            .as_deref()
            .map(|n| match n.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => host.to_string(),
                _ => n.to_string(),
            });
        let dialer = Dialer::with_ip_name(tls, ip_name);
        let peers = Arc::new(
            Peers::new(
                &id,
                config.cluster_name.as_deref(),
                config.peer_message_limit(),
            )
            .with_signer(signer.clone())
            .with_dialer(dialer.clone())
            .with_timer(CallTimer::new(metrics.peer_call_duration.clone(), {
                let membership = membership.clone();
                Arc::new(move |addr: &str| membership.id_at(addr))
            })),
        );
        let directory = Directory::new(membership.clone(), peers, Arc::new(Faults::from_env()));
        let transfer = Transfer::new(&id, directory.clone(), config.message_limit());
        Ok(Core {
            id,
            addr,
            store,
            clock,
            membership,
            detector,
            directory,
            transfer,
            metrics,
            signer,
            dialer,
        })
    }

    fn hints(&self, config: &Config) -> Arc<Hints> {
        Arc::new(Hints::new(
            self.store.clone(),
            HintLimits {
                max_hints: config.max_hints,
                max_age: config.max_hint_age,
            },
            self.membership.clone(),
            self.detector.clone(),
            self.transfer.clone(),
            self.metrics.clone(),
        ))
    }

    /// The coordinator, with this node's store or a peer over gRPC as its
    /// replicas.
    fn coordinator(&self, config: &Config, hints: &Arc<Hints>) -> Arc<Coordinator> {
        let replicas = NodeReplicas::new(
            &self.id,
            self.store.clone(),
            hints.clone(),
            self.directory.clone(),
            self.clock.clone(),
        );
        Arc::new(Coordinator::new(
            Arc::new(Placement::new(
                &self.id,
                self.membership.clone(),
                self.detector.clone(),
            )),
            Arc::new(replicas),
            coordinator::Settings {
                hinted_handoff: config.hinted_handoff,
                sloppy_quorum: config.sloppy_quorum,
                read_fanout: config.read_fanout,
                speculative_retry: config.read_speculative_retry,
                repair_timeout: config.request_timeout,
            },
            self.metrics.clone(),
        ))
    }

    fn gossip(&self, config: &Config) -> Arc<Gossip> {
        Arc::new(Gossip::new(
            Identity {
                id: self.id.clone(),
                addr: self.addr.clone(),
                peers_dns: config.peers_dns.clone(),
                interval: config.heartbeat_interval,
            },
            self.clock.clone(),
            self.membership.clone(),
            self.detector.clone(),
            self.directory.clone(),
            self.metrics.clone(),
        ))
    }

    fn antientropy(&self, config: &Config) -> Arc<AntiEntropy> {
        Arc::new(AntiEntropy::new(
            &self.id,
            self.store.clone(),
            self.membership.clone(),
            self.transfer.clone(),
            self.metrics.clone(),
            config.tombstone_grace,
        ))
    }

    /// Cleanup of the ranges this node no longer replicates, settled for
    /// a few heartbeats after a ring change so every member knows it.
    fn cleanup(&self, config: &Config, shutdown: CancellationToken) -> Arc<Cleanup> {
        Arc::new(Cleanup::new(
            &self.id,
            CleanupParts {
                data_dir: config.data_dir.clone(),
                store: self.store.clone(),
                membership: self.membership.clone(),
                detector: self.detector.clone(),
                transfer: self.transfer.clone(),
                metrics: self.metrics.clone(),
                shutdown,
                tombstone_grace: config.tombstone_grace,
                pages_per_second: config.cleanup_pages_per_second,
                automatic: config.auto_cleanup,
                settle: config.heartbeat_interval.saturating_mul(5),
            },
        ))
    }

    fn lifecycle(
        &self,
        config: &Config,
        gossip: &Arc<Gossip>,
        antientropy: &Arc<AntiEntropy>,
        cleanup: &Arc<Cleanup>,
        shutdown: CancellationToken,
    ) -> Arc<Lifecycle> {
        Arc::new(Lifecycle::new(
            &self.id,
            LifecycleParts {
                data_dir: config.data_dir.clone(),
                store: self.store.clone(),
                clock: self.clock.clone(),
                membership: self.membership.clone(),
                detector: self.detector.clone(),
                gossip: gossip.clone(),
                transfer: self.transfer.clone(),
                antientropy: antientropy.clone(),
                cleanup: cleanup.clone(),
                metrics: self.metrics.clone(),
                shutdown,
                signer: self.signer.clone(),
                dialer: self.dialer.clone(),
                bootstrap: config.bootstrap,
                wait_bound: config.convergence_bound(),
                // Peers that are up answer the first heartbeat round; a
                // new cluster's nodes (none serving yet) wait this long.
                identify_wait: config
                    .heartbeat_interval
                    .saturating_mul(5)
                    .max(std::time::Duration::from_secs(1)),
            },
        ))
    }

    fn status(
        &self,
        config: &Config,
        lifecycle: &Arc<Lifecycle>,
        cleanup: &Arc<Cleanup>,
    ) -> Arc<NodeStatus> {
        Arc::new(NodeStatus::new(
            Facts {
                id: self.id.clone(),
                vnodes: config.vnodes,
                sync: sync_description(config),
                cluster_name: config.cluster_name.clone().unwrap_or_default(),
                max_clock_offset: config.max_clock_offset,
            },
            self.membership.clone(),
            self.detector.clone(),
            self.store.clone(),
            lifecycle.clone(),
            cleanup.clone(),
        ))
    }
}

/// Builds a node's subsystems and wires them together: the one place that
/// reads the configuration for them.
pub fn build(
    config: &Config,
    local: SocketAddr,
    keys: Option<&Keyring>,
    shutdown: CancellationToken,
) -> Result<Node, NodeError> {
    config.validate()?;
    let core = Core::new(config, local, keys)?;
    let hints = core.hints(config);
    let coordinator = core.coordinator(config, &hints);
    let gossip = core.gossip(config);
    let antientropy = core.antientropy(config);
    let cleanup = core.cleanup(config, shutdown.clone());
    let lifecycle = core.lifecycle(config, &gossip, &antientropy, &cleanup, shutdown);
    let status = core.status(config, &lifecycle, &cleanup);
    let member_file = Arc::new(MemberFile::new(&config.data_dir, core.membership.clone()));
    Ok(Node {
        member_file,
        id: core.id,
        addr: core.addr,
        store: core.store,
        clock: core.clock,
        membership: core.membership,
        directory: core.directory,
        coordinator,
        gossip,
        hints,
        antientropy,
        cleanup,
        lifecycle,
        status,
        metrics: core.metrics,
        dialer: core.dialer,
    })
}
