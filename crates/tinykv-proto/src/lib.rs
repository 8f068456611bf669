//! Generated protocol types for TinyKV.
//!
//! `tinykv` is the client-facing service (wire-compatible with the original
//! C++ TinyKV) plus the admin service; `internal` is node-to-node traffic.

#![allow(clippy::all, missing_docs)]

/// Client-facing `tinykv.TinyKV` and `tinykv.Admin` services.
pub mod tinykv {
    tonic::include_proto!("tinykv");
}

/// Node-to-node `tinykv.internal.Peer` service.
pub mod internal {
    tonic::include_proto!("tinykv.internal");
}
