//! Generated protocol types for TinyKV.
//!
//! `tinykv` is the client-facing service (wire-compatible with the original
//! C++ TinyKV) plus the admin service; `internal` is node-to-node traffic.
//! `ordered` is the client side of their long-lived request streams.

pub mod ordered;

/// The encoded `FileDescriptorSet` of `tinykv.proto` and `internal.proto`,
/// which a node serves through gRPC server reflection (so `grpcurl` works
/// without the .proto files).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tinykv_descriptor.bin"));

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
