//! TinyKV client library.
//!
//! A [`Client`] talks to one or more TinyKV nodes over gRPC; any node can
//! coordinate any request, so requests are spread round-robin over the
//! endpoints given. Every call carries a deadline. Concurrent calls are
//! coalesced into batch RPCs under load (see [`ClientOptions::coalesce`]).

pub mod backup;
mod batch;
mod client;
mod consistency;
mod error;
mod options;
mod routing;

pub use client::{Client, Expiry, KeyTtl, PutOutcome, Value};
pub use consistency::Consistency;
pub use error::ClientError;
pub use options::{ClientOptions, TOPOLOGY_REFRESH};
pub use routing::RoutingPolicy;
pub use tinykv_auth as auth;
pub use tinykv_proto::tinykv as proto;
