//! Why a RESP connection ended.

/// What ends a RESP connection (anything else is answered and the
/// connection goes on).
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    /// The bytes are not a RESP request, or break a limit: answered with
    /// `-ERR Protocol error: ...` and the connection is closed, as Redis does.
    #[error("Protocol error: {0}")]
    Protocol(String),
    /// The socket failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing arrived within the idle or read deadline.
    #[error("connection idle past its deadline")]
    Idle,
}
