//! How the operator talks to TinyKV nodes.
//!
//! [`NodeAdmin`] is the seam: [`GrpcNodeAdmin`] calls the real
//! `tinykv.TinyKV/Status` and `tinykv.Admin/Decommission` RPCs (every call
//! bounded by a deadline). Nodes accept an Admin call only with a proof of
//! the cluster secret, so every call takes the cluster's [`NodeCreds`]: its
//! [`Signer`] (made by the reconciler from the cluster's Secret), sent
//! through a [`Signed`] channel, and with `spec.tls` the CA to verify the
//! node against (plus a client certificate or token when the client plane,
//! where Status lives, demands one). Reconciler unit tests use a scripted mock instead
//! (`MockNodeAdmin` in the test-only `fixtures` module, so it is not compiled
//! into the operator binary). A test that runs real nodes on 127.0.0.1
//! passes a `GrpcNodeAdmin`, an address function mapping pod names to local
//! ports, and a node-id function when its nodes are not named after the pods
//! (see [`crate::reconciler::Context`] and `tests/real_nodes.rs`).

use std::time::Duration;

use futures::future::BoxFuture;
use tinykv_auth::tls::ClientTls;
use tinykv_auth::{Signed, Signer};
use tinykv_proto::tinykv::{
    admin_client::AdminClient, tiny_kv_client::TinyKvClient, DecommissionRequest, StatusRequest,
};
use tonic::transport::Channel;

/// Membership state of a node that has finished leaving the ring.
pub const STATE_LEFT: &str = "left";
/// Membership state of a node that owns its ranges.
pub const STATE_NORMAL: &str = "normal";
/// Membership state of a node that is streaming its ranges away.
pub const STATE_LEAVING: &str = "leaving";
/// Failure-detector verdict of a live member.
pub const HEALTH_UP: &str = "up";

/// Errors of a node admin call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    /// The address is not a valid endpoint.
    #[error("invalid node address {0}")]
    InvalidAddress(String),
    /// The credentials cannot be sent (a token that is no header value).
    #[error("unusable credentials: {0}")]
    Credentials(String),
    /// The node could not be reached.
    #[error("cannot connect to {addr}: {message}")]
    Unreachable {
        /// Address dialled.
        addr: String,
        /// Transport error.
        message: String,
    },
    /// The call did not finish before its deadline.
    #[error("call to {0} timed out")]
    Timeout(String),
    /// The node answered with a gRPC error.
    #[error("{addr} answered {code}: {message}")]
    Rpc {
        /// Address called.
        addr: String,
        /// gRPC status code name.
        code: String,
        /// Error message.
        message: String,
    },
}

/// A member as seen by the node that answered Status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeMember {
    /// Node id (pod name).
    pub node_id: String,
    /// Advertised address.
    pub address: String,
    /// `up`, `suspect` or `down`.
    pub health: String,
    /// `normal`, `joining`, `leaving` or `left`.
    pub state: String,
    /// Fraction of the key space this member holds a replica of.
    pub replica_ownership: f64,
}

/// Answer of the Status RPC.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeStatus {
    /// Id of the answering node.
    pub node_id: String,
    /// Replication factor the node runs with.
    pub replication_factor: u32,
    /// Node software version.
    pub version: String,
    /// Every member the node knows, itself included.
    pub members: Vec<NodeMember>,
    /// The answering node's own ring state (`normal`, `joining`, `leaving`,
    /// `left`); empty from nodes that predate the field.
    pub state: String,
    /// Streaming operation in progress on the answering node (`joining`,
    /// `leaving`) or empty.
    pub operation: String,
    /// Progress of that operation in 0..1.
    pub operation_progress: f64,
}

impl NodeStatus {
    /// The answering node's view of member `node_id`.
    pub fn member(&self, node_id: &str) -> Option<&NodeMember> {
        self.members.iter().find(|m| m.node_id == node_id)
    }

    /// Ring state of `node_id`: the answering node's own `state` when it is
    /// `node_id` (the direct signal of "has left" / "has finished joining"),
    /// otherwise its member list's row (the fallback, and for older nodes).
    pub fn state_of(&self, node_id: &str) -> Option<&str> {
        if self.node_id == node_id && !self.state.is_empty() {
            return Some(self.state.as_str());
        }
        self.member(node_id).map(|m| m.state.as_str())
    }
}

/// Answer of the Decommission RPC.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecommissionProgress {
    /// `leaving` or `left`.
    pub state: String,
    /// Keys streamed so far.
    pub keys_streamed: u64,
    /// Progress in 0..1.
    pub progress: f64,
    /// Free text from the node.
    pub message: String,
}

/// What the operator shows a cluster's nodes: the cluster secret's signer
/// (without it, a node that holds a secret refuses the Admin calls), and
/// with TLS the client settings (the CA, and a client certificate with
/// `clientAuth: cert`) and a client token (`clientAuth: token`).
#[derive(Clone, Debug, Default)]
pub struct NodeCreds {
    /// Signs every call with the cluster secret.
    pub signer: Option<Signer>,
    /// Dial `https` and verify the node against this CA.
    pub tls: Option<ClientTls>,
    /// Sent as `authorization: Bearer` (client plane, `clientAuth: token`).
    pub token: Option<String>,
}

impl NodeCreds {
    /// Calls signed with `signer`, plaintext, no token.
    pub fn signed(signer: Signer) -> Self {
        Self {
            signer: Some(signer),
            ..Self::default()
        }
    }
}

/// Node administration as the reconciler needs it; every call shows `creds`.
pub trait NodeAdmin: Send + Sync {
    /// Cluster view of the node at `addr`.
    fn status<'a>(
        &'a self,
        addr: &'a str,
        creds: &'a NodeCreds,
    ) -> BoxFuture<'a, Result<NodeStatus, NodeError>>;
    /// Ask the node at `addr` to decommission `node_id` (returns without waiting).
    fn decommission<'a>(
        &'a self,
        addr: &'a str,
        node_id: &'a str,
        creds: &'a NodeCreds,
    ) -> BoxFuture<'a, Result<DecommissionProgress, NodeError>>;
}

/// [`NodeAdmin`] over gRPC, one short-lived connection per call.
#[derive(Debug, Clone)]
pub struct GrpcNodeAdmin {
    timeout: Duration,
}

impl Default for GrpcNodeAdmin {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl GrpcNodeAdmin {
    /// Calls (connect included) fail after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// A channel to `addr` showing `creds`: `https` verified against the
    /// CA for the host dialled when `creds.tls` is set, else `http`.
    async fn channel(&self, addr: &str, creds: &NodeCreds) -> Result<Signed<Channel>, NodeError> {
        let endpoint = tinykv_auth::tls::endpoint(addr, creds.tls.as_ref())
            .map_err(|_| NodeError::InvalidAddress(addr.to_string()))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| NodeError::Unreachable {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        Signed::new(channel, creds.signer.clone())
            .with_token(creds.token.as_deref())
            .map_err(|e| NodeError::Credentials(e.to_string()))
    }

    async fn bounded<T>(
        &self,
        addr: &str,
        fut: impl std::future::Future<Output = Result<T, NodeError>>,
    ) -> Result<T, NodeError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| NodeError::Timeout(addr.to_string()))?
    }
}

fn rpc_error(addr: &str, status: tonic::Status) -> NodeError {
    NodeError::Rpc {
        addr: addr.to_string(),
        code: format!("{:?}", status.code()),
        message: status.message().to_string(),
    }
}

impl NodeAdmin for GrpcNodeAdmin {
    fn status<'a>(
        &'a self,
        addr: &'a str,
        creds: &'a NodeCreds,
    ) -> BoxFuture<'a, Result<NodeStatus, NodeError>> {
        Box::pin(self.bounded(addr, async move {
            let mut client = TinyKvClient::new(self.channel(addr, creds).await?);
            let mut req = tonic::Request::new(StatusRequest {});
            req.set_timeout(self.timeout);
            let resp = client
                .status(req)
                .await
                .map_err(|s| rpc_error(addr, s))?
                .into_inner();
            Ok(NodeStatus {
                node_id: resp.node_id,
                replication_factor: resp.replication_factor,
                version: resp.version,
                state: resp.state,
                operation: resp.operation,
                operation_progress: resp.operation_progress,
                members: resp
                    .members
                    .into_iter()
                    .map(|m| NodeMember {
                        node_id: m.node_id,
                        address: m.address,
                        health: m.health,
                        state: m.state,
                        replica_ownership: m.replica_ownership,
                    })
                    .collect(),
            })
        }))
    }

    fn decommission<'a>(
        &'a self,
        addr: &'a str,
        node_id: &'a str,
        creds: &'a NodeCreds,
    ) -> BoxFuture<'a, Result<DecommissionProgress, NodeError>> {
        Box::pin(self.bounded(addr, async move {
            let mut client = AdminClient::new(self.channel(addr, creds).await?);
            let mut req = tonic::Request::new(DecommissionRequest {
                node_id: node_id.to_string(),
            });
            req.set_timeout(self.timeout);
            let resp = client
                .decommission(req)
                .await
                .map_err(|s| rpc_error(addr, s))?
                .into_inner();
            Ok(DecommissionProgress {
                state: resp.state,
                keys_streamed: resp.keys_streamed,
                progress: resp.progress,
                message: resp.message,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grpc_admin_reports_unreachable_within_deadline() {
        // Bind a port, then close it: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let admin = GrpcNodeAdmin::new(Duration::from_millis(500));
        let err = admin
            .status(&addr, &NodeCreds::default())
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(err, NodeError::Unreachable { .. } | NodeError::Timeout(_)),
            "{err:?}"
        );
        let err = admin
            .decommission("not a uri \u{0}", "n", &NodeCreds::default())
            .await
            .expect_err("bad uri");
        assert!(matches!(err, NodeError::InvalidAddress(_)), "{err:?}");
    }
}
