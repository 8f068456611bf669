//! Finding a peer: its address from the member table and its connection
//! from the pool, unless fault injection cuts it off. Every outgoing call
//! to a member by id goes through here.

use std::sync::Arc;

use crate::error::ReplicaError;
use crate::faults::Faults;
use crate::membership::Membership;
use crate::peers::{PeerConn, Peers};

/// Members' addresses and connections.
#[derive(Clone)]
pub struct Directory {
    membership: Arc<Membership>,
    peers: Arc<Peers>,
    faults: Arc<Faults>,
}

impl Directory {
    /// A directory over the member table, the connection pool and the
    /// fault switches.
    pub fn new(membership: Arc<Membership>, peers: Arc<Peers>, faults: Arc<Faults>) -> Self {
        Directory {
            membership,
            peers,
            faults,
        }
    }

    /// The address of member `node`, unless it is unknown or cut off.
    pub fn address(&self, node: &str) -> Result<String, ReplicaError> {
        if self.faults.blocks(node) {
            return Err(ReplicaError::Unreachable("fault injected".into()));
        }
        self.membership
            .address_of(node)
            .ok_or_else(|| ReplicaError::UnknownMember(node.to_string()))
    }

    /// A peer-service client for member `node`.
    pub fn client(&self, node: &str) -> Result<PeerConn, ReplicaError> {
        self.peers.client(&self.address(node)?)
    }

    /// The connection pool.
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    /// True when traffic with `node` must be dropped (fault injection).
    pub fn cut_off(&self, node: &str) -> bool {
        self.faults.blocks(node)
    }
}
