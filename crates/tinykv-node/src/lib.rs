//! TinyKV node library: ring, clock, storage, replication and the gRPC services.
//!
//! The `tinykv-node` binary is a thin wrapper around [`server::run`].

pub mod antientropy;
pub mod background;
pub mod cleanup;
pub mod clock;
pub mod cluster_name;
pub mod config;
pub mod convergence;
pub mod coordinator;
pub mod detector;
pub mod dialer;
pub mod directory;
pub mod durable_file;
pub mod error;
pub mod faults;
#[doc(hidden)]
pub mod fuzzing;
pub mod gossip;
pub mod guard;
pub mod health;
pub mod hints;
pub mod hlc;
pub mod identity;
pub mod lifecycle;
pub mod member_file;
pub mod membership;
pub mod merkle;
pub mod metrics;
pub mod node;
mod pages;
pub mod peers;
pub mod placement;
pub mod quorum;
pub mod replicas;
pub mod resp;
pub mod ring;
pub mod server;
pub mod service;
pub mod status;
pub mod storage;
pub mod transfer;
pub mod version;
