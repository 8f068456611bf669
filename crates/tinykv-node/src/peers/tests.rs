//! The per-peer queue against a peer of an older version, which has no
//! `ExchangeStream`: replica reads and writes must still work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::internal as pb;
use tinykv_proto::internal::peer_server::{Peer, PeerServer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::Peers;
use crate::version::Record;

/// An in-memory peer that speaks only the unary batch calls.
#[derive(Clone, Default)]
struct OldPeer {
    data: Arc<Mutex<HashMap<Bytes, pb::Record>>>,
    stream_calls: Arc<AtomicUsize>,
}

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not in this version"))
}

#[tonic::async_trait]
impl Peer for OldPeer {
    async fn write(
        &self,
        _: Request<pb::ReplicaWrite>,
    ) -> Result<Response<pb::ReplicaWriteAck>, Status> {
        unimplemented()
    }

    async fn write_batch(
        &self,
        req: Request<pb::ReplicaWriteBatch>,
    ) -> Result<Response<pb::ReplicaWriteAck>, Status> {
        let mut data = self.data.lock().map_err(|_| Status::internal("poisoned"))?;
        let records = req.into_inner().records;
        let applied = records.len() as u32;
        for kr in records {
            if let Some(r) = kr.record {
                data.insert(kr.key, r);
            }
        }
        Ok(Response::new(pb::ReplicaWriteAck { applied }))
    }

    async fn read(
        &self,
        _: Request<pb::ReplicaRead>,
    ) -> Result<Response<pb::ReplicaReadResult>, Status> {
        unimplemented()
    }

    async fn read_batch(
        &self,
        req: Request<pb::ReplicaReadBatch>,
    ) -> Result<Response<pb::ReplicaReadBatchResult>, Status> {
        let data = self.data.lock().map_err(|_| Status::internal("poisoned"))?;
        let results = req
            .into_inner()
            .keys
            .iter()
            .map(|k| pb::ReplicaReadResult {
                record: data.get(k).cloned(),
            })
            .collect();
        Ok(Response::new(pb::ReplicaReadBatchResult { results }))
    }

    type ExchangeStreamStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::ReplicaExchangeResult, Status>>;

    async fn exchange_stream(
        &self,
        _: Request<tonic::Streaming<pb::ReplicaExchange>>,
    ) -> Result<Response<Self::ExchangeStreamStream>, Status> {
        self.stream_calls.fetch_add(1, Ordering::Relaxed);
        unimplemented()
    }

    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        unimplemented()
    }

    async fn range_digest(
        &self,
        _: Request<pb::RangeDigestRequest>,
    ) -> Result<Response<pb::RangeDigestResponse>, Status> {
        unimplemented()
    }

    async fn fetch_range(
        &self,
        _: Request<pb::FetchRangeRequest>,
    ) -> Result<Response<pb::FetchRangeResponse>, Status> {
        unimplemented()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_peer_gets_unary_batches() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let old = OldPeer::default();
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let (old, stop) = (old.clone(), stop.clone());
        async move {
            tonic::transport::Server::builder()
                .add_service(PeerServer::new(old))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop.cancelled())
                .await
        }
    });

    let peers = Arc::new(Peers::new("me", None, 1 << 20));
    let deadline = || Instant::now() + Duration::from_secs(5);
    let writes: Vec<_> = (0..50u64)
        .map(|i| {
            let (peers, addr) = (peers.clone(), addr.clone());
            tokio::spawn(async move {
                let key = Bytes::from(format!("k{i}"));
                let rec = Record::value(Bytes::from(format!("v{i}")), 100 + i, "me");
                peers.write(&addr, key, rec, deadline()).await
            })
        })
        .collect();
    for w in writes {
        w.await.expect("task").expect("write through WriteBatch");
    }
    for i in 0..50u64 {
        let got = peers
            .read(&addr, Bytes::from(format!("k{i}")), deadline())
            .await
            .expect("read through ReadBatch");
        assert_eq!(got.map(|r| r.value), Some(Bytes::from(format!("v{i}"))));
    }
    let missing = peers
        .read(&addr, Bytes::from_static(b"nope"), deadline())
        .await
        .expect("read of a missing key");
    assert!(missing.is_none());
    // The stream was tried once and not again.
    assert_eq!(old.stream_calls.load(Ordering::Relaxed), 1);

    stop.cancel();
    server.await.expect("server task").expect("server");
}
