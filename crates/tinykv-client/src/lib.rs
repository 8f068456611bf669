//! TinyKV client library.
//!
//! A [`Client`] talks to one or more TinyKV nodes over gRPC; any node can
//! coordinate any request, so requests are spread round-robin over the
//! endpoints given. Every call carries a deadline.

mod client;
mod consistency;
mod error;

pub use client::{Client, ClientOptions, PutOutcome, Value};
pub use consistency::Consistency;
pub use error::ClientError;
pub use tinykv_proto::tinykv as proto;
