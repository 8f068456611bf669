//! Status and admin calls. Calls about the cluster (status, a key's
//! owners, decommission, removenode) go to the first endpoint, or, when it
//! cannot be reached, to the next one in the order given; calls about one
//! node (its local copy of a key, its repair round, ping, health) go to the
//! first endpoint only, since another node's answer would be another
//! answer.

use std::future::Future;

use bytes::Bytes;
use tinykv_proto::tinykv as pb;

use super::{Client, Conn};
use crate::error::connection_lost;
use crate::ClientError;

impl Client {
    /// Runs `call` on the first endpoint that can be reached, in the order
    /// the endpoints were given; the first answer (or a node's own error)
    /// is the result.
    pub(super) async fn on_first_reachable<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = None;
        for endpoint in &self.inner.endpoints {
            match call(endpoint.channel.clone()).await {
                Ok(answer) => return Ok(answer.into_inner()),
                Err(s) if connection_lost(&s) => last = Some(s),
                Err(s) => return Err(s.into()),
            }
        }
        Err(last.map_or(ClientError::NoEndpoints, |s| {
            ClientError::Unavailable(format!("no endpoint reachable: {}", s.message()))
        }))
    }

    /// The cluster as the first reachable endpoint sees it.
    pub async fn status(&self) -> Result<pb::StatusResponse, ClientError> {
        self.on_first_reachable(|ch| {
            let (mut kv, req) = (self.kv(ch), self.request(pb::StatusRequest {}));
            async move { kv.status(req).await }
        })
        .await
    }

    /// The first endpoint's own replica of `key`, no quorum involved.
    pub async fn local_get(
        &self,
        key: impl Into<Bytes>,
    ) -> Result<pb::LocalGetResponse, ClientError> {
        let req = pb::LocalGetRequest { key: key.into() };
        Ok(self
            .admin()
            .local_get(self.request(req))
            .await?
            .into_inner())
    }

    /// The replicas of `key`, primary first, per the first reachable
    /// endpoint's ring.
    pub async fn key_owners(
        &self,
        key: impl Into<Bytes>,
    ) -> Result<pb::KeyOwnersResponse, ClientError> {
        let key: Bytes = key.into();
        self.on_first_reachable(|ch| {
            let mut admin = self.admin_on(ch);
            let req = self.request(pb::KeyOwnersRequest { key: key.clone() });
            async move { admin.key_owners(req).await }
        })
        .await
    }

    /// Runs one anti-entropy round on the first endpoint.
    pub async fn repair(&self) -> Result<pb::RepairResponse, ClientError> {
        Ok(self
            .admin()
            .repair(self.request(pb::RepairRequest {}))
            .await?
            .into_inner())
    }

    /// Starts (or reports on) decommissioning `node_id`, through the first
    /// reachable endpoint.
    pub async fn decommission(
        &self,
        node_id: &str,
    ) -> Result<pb::DecommissionResponse, ClientError> {
        self.on_first_reachable(|ch| {
            let mut admin = self.admin_on(ch);
            let req = self.request(pb::DecommissionRequest {
                node_id: node_id.to_string(),
            });
            async move { admin.decommission(req).await }
        })
        .await
    }

    /// Removes a dead node for good and re-replicates its ranges, through
    /// the first reachable endpoint.
    pub async fn remove_node(&self, node_id: &str) -> Result<pb::RemoveNodeResponse, ClientError> {
        self.on_first_reachable(|ch| {
            let mut admin = self.admin_on(ch);
            let req = self.request(pb::RemoveNodeRequest {
                node_id: node_id.to_string(),
            });
            async move { admin.remove_node(req).await }
        })
        .await
    }
}
