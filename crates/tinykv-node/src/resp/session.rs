//! What one RESP connection remembers between its commands.

use bytes::Bytes;
use tinykv_proto::tinykv::Consistency;

/// One connection's state.
#[derive(Debug)]
pub struct Session {
    /// `CLIENT ID`: unique on this node while it runs.
    pub id: u64,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// The protocol version answers are written in: 2, or 3 after `HELLO 3`.
    pub proto: u8,
    /// Whether the connection may run commands (always, without client
    /// auth; after a good `AUTH` with it).
    pub authed: bool,
    /// The level of this connection's reads and writes (`TINYKV.CONSISTENCY`);
    /// `Default` is the node's `--default-consistency`.
    pub consistency: Consistency,
}

impl Session {
    /// A new connection's state: RESP2, the node's default level, and
    /// authenticated unless `auth_required`.
    pub fn new(id: u64, auth_required: bool) -> Session {
        Session {
            id,
            name: None,
            proto: 2,
            authed: !auth_required,
            consistency: Consistency::Default,
        }
    }
}
