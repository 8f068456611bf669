//! `tinykv.Admin`: local reads, key owners, repair, decommission, removenode.

use std::sync::Arc;

use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::check_key;
use crate::node::Node;

/// The admin service.
pub struct AdminService {
    node: Arc<Node>,
}

impl AdminService {
    /// A service administering `node`.
    pub fn new(node: Arc<Node>) -> Self {
        AdminService { node }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn local_get(
        &self,
        req: Request<pb::LocalGetRequest>,
    ) -> Result<Response<pb::LocalGetResponse>, Status> {
        let key = req.into_inner().key;
        check_key(&key)?;
        let rec = self
            .node
            .store
            .get(&key)
            .map_err(|e| Status::internal(format!("storage: {e}")))?;
        Ok(Response::new(match rec {
            None => pb::LocalGetResponse::default(),
            Some(r) => pb::LocalGetResponse {
                present: true,
                tombstone: r.tombstone,
                val: r.value,
                timestamp: r.timestamp as i64,
                writer: r.writer,
            },
        }))
    }

    async fn key_owners(
        &self,
        req: Request<pb::KeyOwnersRequest>,
    ) -> Result<Response<pb::KeyOwnersResponse>, Status> {
        let key = req.into_inner().key;
        check_key(&key)?;
        let ring = self.node.membership.read_ring();
        let ids: Vec<String> = ring
            .preference_list(&key)
            .into_iter()
            .map(String::from)
            .collect();
        let addresses = ids
            .iter()
            .map(|id| self.node.membership.address_of(id).unwrap_or_default())
            .collect();
        Ok(Response::new(pb::KeyOwnersResponse {
            node_ids: ids,
            addresses,
        }))
    }

    async fn repair(
        &self,
        _req: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::RepairResponse>, Status> {
        let report = self
            .node
            .anti_entropy_round()
            .await
            .map_err(Status::internal)?;
        Ok(Response::new(report))
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::DecommissionResponse>, Status> {
        let id = req.into_inner().node_id;
        self.node.decommission(&id).await.map(Response::new)
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let id = req.into_inner().node_id;
        self.node.remove_node(&id).await.map(Response::new)
    }
}
