//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the node's
//! own decoders and checks that are crate-private, forwarded unchanged so
//! the targets exercise exactly what the node runs. Not a stable API.

use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::internal::MemberInfo;

use crate::config::DefaultConsistency;
use crate::membership::Member;
use crate::storage::{StorageError, WriteOp};
use crate::version::Record;

/// `storage::codec::data_key`: the stored key of a user key.
pub fn data_key(key: &[u8]) -> Vec<u8> {
    crate::storage::codec::data_key(key)
}

/// `storage::codec::user_key`: the user key inside a stored key.
pub fn user_key(data_key: &[u8]) -> &[u8] {
    crate::storage::codec::user_key(data_key)
}

/// `storage::codec::hint_key`.
pub fn hint_key(target: &str, id: u64) -> Result<Vec<u8>, StorageError> {
    crate::storage::codec::hint_key(target, id)
}

/// `storage::codec::hint_id`.
pub fn hint_id(hint_key: &[u8]) -> Result<u64, StorageError> {
    crate::storage::codec::hint_id(hint_key)
}

/// `storage::codec::encode_hint`.
pub fn encode_hint(key: &[u8], record: &Record, stored_at_us: u64) -> Vec<u8> {
    crate::storage::codec::encode_hint(key, record, stored_at_us)
}

/// `storage::codec::decode_hint`.
pub fn decode_hint(v: &[u8]) -> Option<(Bytes, Record, u64)> {
    crate::storage::codec::decode_hint(v)
}

/// `storage::check_ops`: the key and hint-target limits every write
/// batch is held to before it reaches an engine.
pub fn check_ops(ops: &[WriteOp]) -> Result<(), StorageError> {
    crate::storage::check_ops(ops)
}

/// `service::check_key`: the client and admin services' key check.
pub fn check_key(key: &[u8]) -> Result<(), tonic::Status> {
    crate::service::check_key(key)
}

/// `service::replicas_needed`: replicas a client request asks for.
pub fn replicas_needed(
    default: DefaultConsistency,
    n: usize,
    explicit: i32,
    level: i32,
) -> Result<(usize, &'static str), tonic::Status> {
    crate::service::replicas_needed(default, n, explicit, "field", level)
}

/// `service::parse_grpc_timeout`: a `grpc-timeout` header value.
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    crate::service::parse_grpc_timeout(v)
}

/// `gossip::well_formed`: the rows of a heartbeat a node considers
/// (before the clock check on their versions).
pub fn well_formed_rows(rows: &[MemberInfo]) -> Vec<Member> {
    crate::gossip::well_formed(rows).collect()
}
