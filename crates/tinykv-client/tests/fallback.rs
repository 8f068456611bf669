//! A coalescing client against a server that has neither `BatchStream` nor
//! `Batch` (the original C++ TinyKV): every call must still work, one RPC
//! each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tinykv_client::proto::tiny_kv_server::{TinyKv, TinyKvServer};
use tinykv_client::proto::{self as pb};
use tinykv_client::{Client, ClientOptions, Consistency};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

type Map = HashMap<Vec<u8>, Vec<u8>>;

/// An in-memory server speaking only the original single-operation RPCs.
#[derive(Default, Clone)]
struct OldServer {
    data: Arc<Mutex<Map>>,
    batch_calls: Arc<AtomicUsize>,
    stream_calls: Arc<AtomicUsize>,
    single_calls: Arc<AtomicUsize>,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_single_rpcs() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
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

    let client = Client::connect_many([addr.as_str()], ClientOptions::default()).expect("client");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .put(format!("k{i}"), format!("v{i}"), Consistency::Quorum)
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("put through the fallback");
    }
    for i in 0..40 {
        let got = client
            .get(format!("k{i}"), Consistency::Quorum)
            .await
            .expect("get");
        assert_eq!(
            got.map(|v| v.val.to_vec()),
            Some(format!("v{i}").into_bytes())
        );
    }
    client
        .delete("k0", Consistency::Quorum)
        .await
        .expect("delete");
    assert_eq!(
        client.get("k0", Consistency::Quorum).await.expect("get"),
        None
    );

    // The client asked for a batch stream, then a batch, and, told
    // UNIMPLEMENTED each time, stopped asking.
    assert_eq!(server.stream_calls.load(Ordering::Relaxed), 1);
    let batches = server.batch_calls.load(Ordering::Relaxed);
    assert!(batches >= 1, "the client tried a batch first");
    assert!(
        batches <= 2,
        "at most the first calls in flight tried a batch"
    );
    assert_eq!(server.single_calls.load(Ordering::Relaxed), 40 + 40 + 2);

    stop.cancel();
    serving.await.expect("server task").expect("server");
}
