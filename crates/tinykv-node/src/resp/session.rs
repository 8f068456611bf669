//! What one RESP connection remembers between its commands.

use bytes::Bytes;
use tinykv_proto::tinykv::Consistency;

use crate::guard::ClientCheck;
use crate::server::incoming::ConnInfo;

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
    /// authenticated when `check` asks for nothing, or asks for a client
    /// certificate and the connection showed one (verified against the CA
    /// in the TLS handshake); otherwise `AUTH` must come first.
    pub fn new(id: u64, check: Option<&ClientCheck>, conn: &ConnInfo) -> Session {
        let authed = match check {
            None => true,
            Some(c) => {
                c.wants_certificate() && conn.cert_names.as_ref().is_some_and(|n| !n.is_empty())
            }
        };
        Session {
            id,
            name: None,
            proto: 2,
            authed,
            consistency: Consistency::Default,
        }
    }
}
