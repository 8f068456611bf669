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
