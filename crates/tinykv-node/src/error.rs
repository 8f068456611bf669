//! The node library's error type.

use crate::storage::StorageError;

/// Errors from starting or running a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A flag or environment variable is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Binding or serving failed.
    #[error("transport: {0}")]
    Transport(String),
    /// Local I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a call to one replica (this node's store or a peer) failed. The
/// coordinator decides from the kind, not from text, whether to try the
/// next replica; the text is what a client sees in a quorum error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// No connection to the peer (refused, reset, no route, or cut off by
    /// fault injection); the detail says which, when known.
    #[error("unreachable{}", detail(.0))]
    Unreachable(String),
    /// The call did not finish by its deadline.
    #[error("deadline exceeded")]
    Deadline,
    /// The peer answered with an error status.
    #[error("{code:?}: {message}")]
    Refused {
        /// The peer's gRPC status code.
        code: tonic::Code,
        /// The peer's message.
        message: String,
    },
    /// The node is not in this node's member table.
    #[error("unknown member {0}")]
    UnknownMember(String),
    /// The local store failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The node (or its connection to the peer) is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The peer's answer did not match the request.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The node keeping hints has reached its hint limit.
    #[error("hint limit reached")]
    HintsFull,
}

fn detail(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" ({d})")
    }
}

impl ReplicaError {
    /// The failure a peer call's status stands for.
    pub fn from_status(status: &tonic::Status) -> ReplicaError {
        match status.code() {
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => ReplicaError::Deadline,
            tonic::Code::Unavailable => {
                let m = status.message();
                if m.is_empty() || m.contains("transport") || m.contains("connect") {
                    ReplicaError::Unreachable(String::new())
                } else {
                    ReplicaError::Refused {
                        code: status.code(),
                        message: m.to_string(),
                    }
                }
            }
            code => ReplicaError::Refused {
                code,
                message: status.message().to_string(),
            },
        }
    }
}

impl From<StorageError> for ReplicaError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Closed => ReplicaError::ShuttingDown,
            e @ StorageError::TooLong { .. } => ReplicaError::Refused {
                code: tonic::Code::InvalidArgument,
                message: e.to_string(),
            },
            other => ReplicaError::Storage(other.to_string()),
        }
    }
}
