//! The shared test-cluster helper: real `tinykv-node` processes on
//! ephemeral 127.0.0.1 ports, with start/kill/restart/pause and clients.

pub mod bench;
pub mod cluster;
pub mod metrics;
pub mod ports;
pub mod replicas;
pub mod wait;

/// A client generated from the legacy C++ TinyKV proto.
pub mod legacy {
    tonic::include_proto!("tinykv");
}

pub use cluster::{binary, wait_until, Cluster, ClusterOptions, QUIET_ARGS};
pub use replicas::LocalCopy;
