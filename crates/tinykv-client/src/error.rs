//! Client errors.

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address could not be parsed into an endpoint.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        addr: String,
        /// Why it is invalid.
        reason: String,
    },
    /// No endpoint was given.
    #[error("no endpoints given")]
    NoEndpoints,
    /// The server rejected the request as malformed (gRPC INVALID_ARGUMENT).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Not enough replicas answered (gRPC UNAVAILABLE), or the node is unreachable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The deadline passed before an answer came.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// Any other gRPC failure.
    #[error("{code:?}: {message}")]
    Rpc {
        /// gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        let message = s.message().to_string();
        match s.code() {
            tonic::Code::InvalidArgument => ClientError::InvalidArgument(message),
            tonic::Code::Unavailable => ClientError::Unavailable(if message.is_empty() {
                "node unreachable".into()
            } else {
                message
            }),
            tonic::Code::DeadlineExceeded => ClientError::DeadlineExceeded(message),
            code => ClientError::Rpc { code, message },
        }
    }
}

/// True when `status` says a call never got a node's answer because the
/// connection failed or broke (refused, reset, closed mid-stream), as
/// opposed to a node's own error: a status tonic makes on the client side
/// from a transport failure carries that failure as its source (a stream
/// cut by a dying node comes back as `Unknown`, "h2 protocol error").
pub(crate) fn connection_lost(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    ) && status.source().is_some()
}
