//! A peer whose clock is off by more than --max-clock-offset is shown as
//! skewed in `status` (and its offset in a metric): a node heartbeats a
//! fake member whose answers say its clock is 5 s ahead.

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use tinykv_proto::internal as pb;
use tinykv_proto::internal::peer_server::{Peer, PeerServer};
use tinykv_tests::{wait_until, Cluster, ClusterOptions};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

/// How far ahead the fake member's clock runs.
const AHEAD: Duration = Duration::from_secs(5);

/// A member that answers heartbeats only, with its clock `AHEAD`.
struct AheadPeer;

type Results = Pin<Box<dyn Stream<Item = Result<pb::ReplicaExchangeResult, Status>> + Send>>;

fn no<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "a fake member answers heartbeats only",
    ))
}

#[tonic::async_trait]
impl Peer for AheadPeer {
    async fn write(
        &self,
        _: Request<pb::ReplicaWrite>,
    ) -> Result<Response<pb::ReplicaWriteAck>, Status> {
        no()
    }
    async fn write_batch(
        &self,
        _: Request<pb::ReplicaWriteBatch>,
    ) -> Result<Response<pb::ReplicaWriteAck>, Status> {
        no()
    }
    async fn write_hints(
        &self,
        _: Request<pb::ReplicaHintBatch>,
    ) -> Result<Response<pb::ReplicaWriteAck>, Status> {
        no()
    }
    async fn read(
        &self,
        _: Request<pb::ReplicaRead>,
    ) -> Result<Response<pb::ReplicaReadResult>, Status> {
        no()
    }
    async fn read_batch(
        &self,
        _: Request<pb::ReplicaReadBatch>,
    ) -> Result<Response<pb::ReplicaReadBatchResult>, Status> {
        no()
    }
    type ExchangeStreamStream = Results;
    async fn exchange_stream(
        &self,
        _: Request<Streaming<pb::ReplicaExchange>>,
    ) -> Result<Response<Results>, Status> {
        no()
    }
    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let now = SystemTime::now() + AHEAD;
        let now_us = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Ok(Response::new(pb::HeartbeatResponse {
            from: "node9".into(),
            now_us,
            members: Vec::new(),
        }))
    }
    async fn range_digest(
        &self,
        _: Request<pb::RangeDigestRequest>,
    ) -> Result<Response<pb::RangeDigestResponse>, Status> {
        no()
    }
    async fn fetch_range(
        &self,
        _: Request<pb::FetchRangeRequest>,
    ) -> Result<Response<pb::FetchRangeResponse>, Status> {
        no()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_whose_clock_is_off_is_shown_as_skewed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let fake = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PeerServer::new(AheadPeer))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut opts = ClusterOptions::default();
    opts.args
        .extend(["--peers".into(), format!("node9={fake}")]);
    let c = Cluster::start_with(1, opts).await;
    wait_until(
        "node1 to show node9 as skewed",
        Duration::from_secs(20),
        || {
            let client = c.client_for(0);
            async move {
                let status = client.status().await.ok();
                status.is_some_and(|s| {
                    s.members.iter().any(|m| {
                        m.node_id == "node9" && m.clock_skewed && m.clock_offset_ms > 4_000
                    })
                })
            }
        },
    )
    .await;
    let status = c.client_for(0).status().await.expect("status");
    let me = status
        .members
        .iter()
        .find(|m| m.node_id == "node1")
        .expect("node1");
    assert!(!me.clock_skewed && me.clock_offset_ms == 0, "{me:?}");
}
