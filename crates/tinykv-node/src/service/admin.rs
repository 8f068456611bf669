//! `tinykv.Admin`: local reads, key owners, repair, cleanup, decommission,
//! removenode.

use std::sync::Arc;

use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::backup::BackupParts;
use super::check_key;
use crate::antientropy::{AntiEntropy, RepairError, RepairReport};
use crate::cleanup::{Cleanup, CleanupProgress};
use crate::lifecycle::{LeaveProgress, Lifecycle, LifecycleError, Removal};
use crate::membership::Membership;
use crate::storage::Store;

/// The admin service.
pub struct AdminService {
    store: Store,
    membership: Arc<Membership>,
    antientropy: Arc<AntiEntropy>,
    cleanup: Arc<Cleanup>,
    lifecycle: Arc<Lifecycle>,
    backup: BackupParts,
}

impl AdminService {
    /// A service reading `store`, placing keys with `membership`, and
    /// running repair and cleanup rounds and lifecycle operations, and
    /// backup's range reads and restore's writes with `backup`.
    pub fn new(
        store: Store,
        membership: Arc<Membership>,
        antientropy: Arc<AntiEntropy>,
        cleanup: Arc<Cleanup>,
        lifecycle: Arc<Lifecycle>,
        backup: BackupParts,
    ) -> Self {
        AdminService {
            store,
            membership,
            antientropy,
            cleanup,
            lifecycle,
            backup,
        }
    }
}

fn repair_status(e: RepairError) -> Status {
    match e {
        RepairError::Busy => Status::aborted(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// The gRPC status of a failed lifecycle operation.
fn lifecycle_status(e: LifecycleError) -> Status {
    let msg = e.to_string();
    match e {
        // The node it was forwarded to refused: the caller must see why.
        LifecycleError::Forward {
            code: code @ (tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument),
            ..
        } => Status::new(code, msg),
        LifecycleError::UnknownNode(_) => Status::not_found(msg),
        LifecycleError::BadAddress(_) | LifecycleError::RemoveSelf => Status::invalid_argument(msg),
        LifecycleError::LastNode
        | LifecycleError::WrongState(_)
        | LifecycleError::StillAlive(_)
        | LifecycleError::CleanupPending(_) => Status::failed_precondition(msg),
        LifecycleError::Forward { .. }
        | LifecycleError::Peer { .. }
        | LifecycleError::TooFewSources { .. } => Status::unavailable(msg),
        LifecycleError::Storage(_) | LifecycleError::Repair(_) => Status::internal(msg),
    }
}

impl From<RepairReport> for pb::RepairResponse {
    fn from(r: RepairReport) -> Self {
        pb::RepairResponse {
            peers_compared: r.peers_compared,
            ranges_compared: r.ranges_compared,
            ranges_differing: r.ranges_differing,
            keys_sent: r.keys_sent,
            keys_received: r.keys_received,
            bytes_moved: r.bytes_moved,
            tombstones_purged: r.tombstones_purged,
        }
    }
}

/// The answer to `Cleanup`: where cleanup stands, and the round asked for.
fn cleanup_response(p: CleanupProgress, round: u64) -> pb::CleanupResponse {
    let last = p.last.unwrap_or_default();
    pb::CleanupResponse {
        pending: p.pending,
        running: p.running,
        progress: p.fraction,
        round,
        rounds_finished: p.rounds_finished,
        keys_removed: last.keys_removed,
        complete: last.complete,
        message: last.message,
    }
}

impl From<LeaveProgress> for pb::DecommissionResponse {
    fn from(p: LeaveProgress) -> Self {
        pb::DecommissionResponse {
            state: p.state,
            keys_streamed: p.keys_streamed,
            progress: p.progress,
            message: p.message,
        }
    }
}

impl From<Removal> for pb::RemoveNodeResponse {
    fn from(r: Removal) -> Self {
        pb::RemoveNodeResponse {
            message: r.message,
            keys_rereplicated: r.keys_rereplicated,
        }
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
                expires_at_us: r.expires_at,
            },
        }))
    }

    async fn key_owners(
        &self,
        req: Request<pb::KeyOwnersRequest>,
    ) -> Result<Response<pb::KeyOwnersResponse>, Status> {
        let key = req.into_inner().key;
        check_key(&key)?;
        let ring = self.membership.read_ring();
        let ids: Vec<String> = ring
            .preference_list(&key)
            .into_iter()
            .map(String::from)
            .collect();
        let addresses = ids
            .iter()
            .map(|id| self.membership.address_of(id).unwrap_or_default())
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
        let report = self.antientropy.round_now().await.map_err(repair_status)?;
        Ok(Response::new(report.into()))
    }

    async fn cleanup(
        &self,
        req: Request<pb::CleanupRequest>,
    ) -> Result<Response<pb::CleanupResponse>, Status> {
        let round = if req.into_inner().report_only {
            0
        } else {
            self.cleanup.request()
        };
        Ok(Response::new(cleanup_response(
            self.cleanup.progress(),
            round,
        )))
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::DecommissionResponse>, Status> {
        let id = req.into_inner().node_id;
        self.lifecycle
            .decommission(&id)
            .await
            .map(|p| Response::new(p.into()))
            .map_err(lifecycle_status)
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let id = req.into_inner().node_id;
        self.lifecycle
            .remove_node(&id)
            .await
            .map(|r| Response::new(r.into()))
            .map_err(lifecycle_status)
    }

    async fn scan_range(
        &self,
        req: Request<pb::ScanRangeRequest>,
    ) -> Result<Response<pb::ScanRangeResponse>, Status> {
        self.backup
            .scan_range(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn write_versions(
        &self,
        req: Request<pb::WriteVersionsRequest>,
    ) -> Result<Response<pb::WriteVersionsResponse>, Status> {
        self.backup.write_versions(req).await.map(Response::new)
    }
}
