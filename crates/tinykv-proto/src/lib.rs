//! Generated protocol types for TinyKV.
//!
//! `tinykv` is the client-facing service (wire-compatible with the original
//! C++ TinyKV) plus the admin service; `internal` is node-to-node traffic.
//! `ordered` is the client side of their long-lived request streams.

pub mod ordered;

/// Client-facing `tinykv.TinyKV` and `tinykv.Admin` services.
#[allow(clippy::all, missing_docs)]
pub mod tinykv {
    tonic::include_proto!("tinykv");
}

/// Node-to-node `tinykv.internal.Peer` service.
#[allow(clippy::all, missing_docs)]
pub mod internal {
    tonic::include_proto!("tinykv.internal");
}
