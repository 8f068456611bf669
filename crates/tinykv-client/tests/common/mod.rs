//! An in-memory server speaking only the original single-operation RPCs
//! (the original C++ TinyKV): no `BatchStream`, no `Batch`.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tinykv_client::proto::tiny_kv_server::{TinyKv, TinyKvServer};
use tinykv_client::proto::{self as pb};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

type Map = HashMap<Vec<u8>, Vec<u8>>;

/// An in-memory server speaking only the original single-operation RPCs.
#[derive(Default, Clone)]
pub struct OldServer {
    data: Arc<Mutex<Map>>,
    pub batch_calls: Arc<AtomicUsize>,
    pub stream_calls: Arc<AtomicUsize>,
    pub single_calls: Arc<AtomicUsize>,
}

impl OldServer {
    fn map(&self) -> Result<std::sync::MutexGuard<'_, Map>, Status> {
        self.data.lock().map_err(|_| Status::internal("poisoned"))
    }
}

#[tonic::async_trait]
impl TinyKv for OldServer {
    async fn ping(
        &self,
        _: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {
            is_ready: true,
            node_id: "old".into(),
        }))
    }

    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.single_calls.fetch_add(1, Ordering::Relaxed);
        let r = r.into_inner();
        self.map()?.insert(r.key.to_vec(), r.val.to_vec());
        Ok(Response::new(pb::PutResponse {
            operation_success: true,
            timestamp: 1,
            acks: 1,
        }))
    }

    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.single_calls.fetch_add(1, Ordering::Relaxed);
        let r = r.into_inner();
        let found = self.map()?.get(&r.key[..]).cloned();
        Ok(Response::new(match found {
            Some(v) => pb::GetResponse {
                val: v.into(),
                operation_success: true,
                status: pb::ReadStatus::Found as i32,
                ..Default::default()
            },
            None => pb::GetResponse {
                status: pb::ReadStatus::NotFound as i32,
                ..Default::default()
            },
        }))
    }

    async fn delete(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.single_calls.fetch_add(1, Ordering::Relaxed);
        self.map()?.remove(&r.into_inner().key[..]);
        Ok(Response::new(pb::DeleteResponse {
            operation_success: true,
            timestamp: 2,
            acks: 1,
        }))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Err(Status::unimplemented("no Status in the old protocol"))
    }

    async fn expire(
        &self,
        _r: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        Err(Status::unimplemented("unknown method Expire"))
    }

    async fn topology(
        &self,
        _: Request<pb::TopologyRequest>,
    ) -> Result<Response<pb::TopologyResponse>, Status> {
        Err(Status::unimplemented("unknown method Topology"))
    }

    type BatchStreamStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::BatchResponse, Status>>;

    async fn batch_stream(
        &self,
        _: Request<tonic::Streaming<pb::BatchRequest>>,
    ) -> Result<Response<Self::BatchStreamStream>, Status> {
        self.stream_calls.fetch_add(1, Ordering::Relaxed);
        Err(Status::unimplemented("unknown method BatchStream"))
    }

    async fn batch(
        &self,
        _: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        self.batch_calls.fetch_add(1, Ordering::Relaxed);
        Err(Status::unimplemented("unknown method Batch"))
    }
}

/// Serves a new [`OldServer`] on `listener` until the token is cancelled.
pub fn serve(
    listener: tokio::net::TcpListener,
) -> (
    OldServer,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let server = OldServer::default();
    let stop = CancellationToken::new();
    let serving = tokio::spawn({
        let (server, stop) = (server.clone(), stop.clone());
        async move {
            tonic::transport::Server::builder()
                .add_service(TinyKvServer::new(server))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop.cancelled())
                .await
        }
    });
    (server, stop, serving)
}
