//! Why a join, leave or removal failed.

use crate::antientropy::RepairError;
use crate::error::ReplicaError;
use crate::storage::StorageError;

/// Why a lifecycle operation failed; the admin service maps each kind to
/// its gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No member has this id.
    #[error("unknown node {0}")]
    UnknownNode(String),
    /// A member's address is not a valid endpoint.
    #[error("invalid address {0}")]
    BadAddress(String),
    /// The node asked to leave is the last normal member.
    #[error("cannot decommission the last node of the cluster")]
    LastNode,
    /// The node is not in a state the operation applies to.
    #[error("{0}")]
    WrongState(String),
    /// A node cannot remove itself.
    #[error("a node cannot remove itself; use decommission")]
    RemoveSelf,
    /// The node to remove still answers heartbeats.
    #[error("{0} is still answering heartbeats; decommission it instead")]
    StillAlive(String),
    /// Forwarding the request to the node it names failed.
    #[error("forwarding decommission to {node}: {message}")]
    Forward {
        /// The node it was forwarded to.
        node: String,
        /// Its status code (a refusal there is a refusal here).
        code: tonic::Code,
        /// Its status message.
        message: String,
    },
    /// A streaming call to a peer failed.
    #[error("{node}: {error}")]
    Peer {
        /// The peer.
        node: String,
        /// Why its call failed.
        error: ReplicaError,
    },
    /// Too few of a range's replicas answered while joining.
    #[error("range ({}, {}]: too few sources answered ({errors})", range.0, range.1)]
    TooFewSources {
        /// The range.
        range: (u64, u64),
        /// Each failed source and why.
        errors: String,
    },
    /// A member may still hold copies of ranges it lost, or could not be
    /// asked: moving ranges now could bring old versions back.
    #[error("{0}")]
    CleanupPending(String),
    /// This node's storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The re-replication round failed.
    #[error(transparent)]
    Repair(RepairError),
}
