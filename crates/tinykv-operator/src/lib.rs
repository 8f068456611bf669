//! TinyKV's Kubernetes operator.
//!
//! * [`crd`]: the `TinyKVCluster` custom resource.
//! * [`builders`]: pure functions that turn a `TinyKVCluster` into the
//!   StatefulSet, Services, PodDisruptionBudget, cluster-secret Secret and
//!   TLS certificates it needs.
//! * [`node_admin`]: how the operator talks to the nodes (gRPC; unit tests
//!   use a scripted mock from the test-only `fixtures` module).
//! * [`plan`]: the pure scaling and upgrade state machine.
//! * [`reconciler`]: the controller that applies all of it.
//! * [`scope`]: which namespaces the controller watches.
//! * [`metrics`], [`leader`]: operator process plumbing.

pub mod builders;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod node_admin;
pub mod plan;
pub mod reconciler;
pub mod scope;
pub mod status;

#[cfg(test)]
mod fixtures;

pub use crd::{TinyKVCluster, TinyKVClusterSpec, TinyKVClusterStatus};

/// Errors of the operator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// The object lacks a field the operator needs (namespace, uid, ...).
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    /// A node admin RPC failed.
    #[error("node admin error: {0}")]
    Node(#[from] node_admin::NodeError),
    /// Serialising an object failed.
    #[error("serialization error: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The spec cannot be turned into objects.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The cluster's secret is missing or unusable.
    #[error("cluster secret: {0}")]
    ClusterSecret(String),
    /// The cluster's TLS certificates cannot be made or read.
    #[error("TLS: {0}")]
    Tls(String),
    /// Leader election through the Lease failed.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The leader election's background task ended before this replica
    /// became leader.
    #[error("leader election ended before this replica became leader")]
    LeaseEnded,
    /// The API server refused an object the operator built (invalid,
    /// forbidden): the same object will be refused again until the spec
    /// or the operator's permissions change.
    #[error("{object} refused by the API server: {message}")]
    ApplyRejected {
        /// Kind and name of the object, e.g. `StatefulSet demo`.
        object: String,
        /// The API server's message.
        message: String,
    },
}

impl Error {
    /// Short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingObjectKey(_) => "missing_key",
            Error::Node(_) => "node",
            Error::Serialization(_) => "serialization",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::ClusterSecret(_) => "cluster_secret",
            Error::Tls(_) => "tls",
            Error::ApplyRejected { .. } => "apply_rejected",
            Error::Lease(_) | Error::LeaseEnded => "lease",
        }
    }
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
