//! TinyKV node library: ring, clock, storage, replication and the gRPC services.
//!
//! The `tinykv-node` binary is a thin wrapper around [`server::run`].

pub mod config;
pub mod ring;
pub mod storage;
pub mod version;
