//! A running node: its subsystems, each owning its state behind a small
//! API, wired together once by [`crate::server::build`]. This struct only
//! holds them so the server can start the services and loops and stop
//! them in order; no subsystem reaches through it into another.

use std::sync::Arc;

use crate::antientropy::AntiEntropy;
use crate::cleanup::Cleanup;
use crate::clock::Clock;
use crate::coordinator::Coordinator;
use crate::dialer::Dialer;
use crate::directory::Directory;
use crate::gossip::Gossip;
use crate::hints::Hints;
use crate::lifecycle::Lifecycle;
use crate::member_file::MemberFile;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::status::NodeStatus;
use crate::storage::Store;

/// The subsystems of one node.
pub struct Node {
    /// This node's id.
    pub id: String,
    /// This node's advertised address.
    pub addr: String,
    /// Local storage: the replica this node holds.
    pub store: Store,
    /// Stamps versions and observes remote timestamps.
    pub clock: Arc<Clock>,
    /// The member table and rings.
    pub membership: Arc<Membership>,
    /// The member table's copy in the data directory.
    pub member_file: Arc<MemberFile>,
    /// Members' addresses and connections.
    pub directory: Directory,
    /// Coordinates client reads and writes (the put and get paths).
    pub coordinator: Arc<Coordinator>,
    /// Heartbeats and membership gossip.
    pub gossip: Arc<Gossip>,
    /// Hinted handoff: keeping and replaying hints.
    pub hints: Arc<Hints>,
    /// Repair rounds.
    pub antientropy: Arc<AntiEntropy>,
    /// Removing copies of ranges this node no longer replicates.
    pub cleanup: Arc<Cleanup>,
    /// Join, decommission and removenode.
    pub lifecycle: Arc<Lifecycle>,
    /// Status reports.
    pub status: Arc<NodeStatus>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// How it dials other nodes (its TLS client settings, re-read on SIGHUP).
    pub dialer: Arc<Dialer>,
}
