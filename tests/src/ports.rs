//! Ports for test nodes, picked by the kernel and held until the process
//! ends, so nothing else can take one between the pick and the node's bind
//! or while its node is down.

use std::collections::BTreeSet;

/// A port free now and never handed out before in this process, and held
/// for the rest of the process's life. Tests of one binary run in
/// parallel, each with its own cluster, and a node that is killed and
/// restarted leaves its port free for a moment: without the record,
/// another test's new node could take it, and the two clusters (whose node
/// ids are the same `node1..`) would gossip into each other.
///
/// The port is held by a socket bound to it (`SO_REUSEADDR`, never
/// listening) between the moment it is picked and the moment a node binds
/// it, and while that node is down: the node binds it beside the holder
/// (Linux lets `SO_REUSEADDR` sockets share a port while none listens, and
/// the node's own listener sets the option too), while any other process
/// is kept off it: an explicit bind without the option fails, and the
/// kernel hands it out neither to a `bind(0)` nor as the local port of an
/// outgoing connection.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    static HELD: std::sync::Mutex<Vec<socket2::Socket>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        let holder = hold_a_port().unwrap_or_else(|e| panic!("no free port: {e}"));
        let port = holder
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .unwrap_or_else(|| panic!("no port bound"));
        if given.insert(port) {
            HELD.lock().unwrap_or_else(|p| p.into_inner()).push(holder);
            return port;
        }
    }
    panic!("no port left that this process has not used");
}

/// A TCP socket bound (not listening) to a port of the kernel's choosing
/// on 127.0.0.1, with `SO_REUSEADDR`.
fn hold_a_port() -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&addr.into())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::net::SocketAddr;

    /// Binds `port` the way an unrelated program would (no
    /// `SO_REUSEADDR`).
    fn plain_bind(port: u16) -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        socket.bind(&addr.into())?;
        Ok(socket)
    }

    #[test]
    fn a_given_port_is_held_for_its_node_only() {
        let port = free_port();
        let err = plain_bind(port).expect_err("another program took the port before the node");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        // The node binds it beside the holder and listens (std, like
        // tokio, sets SO_REUSEADDR).
        let node = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the node binds");
        // The node is killed: the port stays held for its restart.
        drop(node);
        let err =
            plain_bind(port).expect_err("another program took the port of a node that was down");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the node binds it again");
        assert_ne!(free_port(), port, "a port is given once");
    }
}
