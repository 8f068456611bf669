//! The per-peer queue: how it cuts batches, and a peer of an older
//! version, which has no `ExchangeStream` (replica reads and writes must
//! still work).

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
    /// Values longer than this are left out of `ReadBatch` answers that
    /// allow it (marked `omitted`), as a node does past its message limit.
    omit_over: Option<usize>,
    /// Unary `Read` calls answered.
    single_reads: Arc<AtomicUsize>,
    /// Hints stored through unary `Write` calls: (owner, key).
    hints: Arc<Mutex<Vec<(String, Bytes)>>>,
}

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not in this version"))
}

#[tonic::async_trait]
impl Peer for OldPeer {
    async fn write(
        &self,
        req: Request<pb::ReplicaWrite>,
    ) -> Result<Response<pb::ReplicaWriteAck>, Status> {
        let w = req.into_inner();
        if w.hint_for.is_empty() {
            return unimplemented();
        }
        let mut hints = self
            .hints
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        hints.push((w.hint_for, w.key));
        Ok(Response::new(pb::ReplicaWriteAck { applied: 1 }))
    }

    async fn write_hints(
        &self,
        _: Request<pb::ReplicaHintBatch>,
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
        req: Request<pb::ReplicaRead>,
    ) -> Result<Response<pb::ReplicaReadResult>, Status> {
        let data = self.data.lock().map_err(|_| Status::internal("poisoned"))?;
        self.single_reads.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(pb::ReplicaReadResult {
            record: data.get(&req.into_inner().key).cloned(),
            omitted: false,
        }))
    }

    async fn read_batch(
        &self,
        req: Request<pb::ReplicaReadBatch>,
    ) -> Result<Response<pb::ReplicaReadBatchResult>, Status> {
        let data = self.data.lock().map_err(|_| Status::internal("poisoned"))?;
        let req = req.into_inner();
        let results = req
            .keys
            .iter()
            .map(|k| {
                let record = data.get(k).cloned();
                let big = record
                    .as_ref()
                    .is_some_and(|r| self.omit_over.is_some_and(|n| r.value.len() > n));
                if big && req.may_omit {
                    pb::ReplicaReadResult {
                        record: None,
                        omitted: true,
                    }
                } else {
                    pb::ReplicaReadResult {
                        record,
                        omitted: false,
                    }
                }
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

/// Serves `peer` on a port of 127.0.0.1 until `stop`.
async fn serve(
    peer: OldPeer,
    stop: CancellationToken,
) -> (
    String,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(PeerServer::new(peer))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop.cancelled())
            .await
    });
    (addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_peer_gets_unary_batches() {
    let old = OldPeer::default();
    let stop = CancellationToken::new();
    let (addr, server) = serve(old.clone(), stop.clone()).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_left_out_of_a_batch_answer_are_asked_alone() {
    let old = OldPeer {
        omit_over: Some(1000),
        ..OldPeer::default()
    };
    let stop = CancellationToken::new();
    let (addr, server) = serve(old.clone(), stop.clone()).await;
    let peers = Peers::new("me", None, 1 << 20);
    let deadline = || Instant::now() + Duration::from_secs(5);
    let entries: Vec<(Bytes, Record)> = [("big1", 5000), ("small", 10), ("big2", 2000)]
        .into_iter()
        .map(|(k, n)| (Bytes::from(k), Record::value(vec![b'x'; n].into(), 7, "me")))
        .collect();
    peers
        .write_all(&addr, entries, deadline())
        .await
        .expect("write");
    let keys = ["big1", "small", "missing", "big2"]
        .map(Bytes::from)
        .to_vec();
    let got = peers.read_all(&addr, keys, deadline()).await.expect("read");
    let lens: Vec<Option<usize>> = got
        .iter()
        .map(|r| r.as_ref().map(|r| r.value.len()))
        .collect();
    assert_eq!(lens, vec![Some(5000), Some(10), None, Some(2000)]);
    // The two left out, asked alone; the others came in the batch.
    assert_eq!(old.single_reads.load(Ordering::Relaxed), 2);

    stop.cancel();
    server.await.expect("server task").expect("server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_peer_gets_a_batch_of_hints_as_one_write_each() {
    let old = OldPeer::default();
    let stop = CancellationToken::new();
    let (addr, server) = serve(old.clone(), stop.clone()).await;
    let peers = Peers::new("me", None, 1 << 20);
    let deadline = Instant::now() + Duration::from_secs(5);
    let versions: Vec<(Bytes, Record)> = (0..3)
        .map(|i| {
            let key = Bytes::from(format!("h{i}"));
            (key, Record::value(Bytes::from("v"), 10 + i, "me"))
        })
        .collect();
    peers
        .write_hints(&addr, "node9", versions, deadline)
        .await
        .expect("hints through unary Write");
    let mut got = old.hints.lock().expect("lock").clone();
    got.sort();
    let want: Vec<(String, Bytes)> = (0..3)
        .map(|i| ("node9".to_string(), Bytes::from(format!("h{i}"))))
        .collect();
    assert_eq!(got, want);

    stop.cancel();
    server.await.expect("server task").expect("server");
}

/// A write item of `n` versions with 100-byte values.
fn write_item(
    n: usize,
) -> (
    super::Item,
    tokio::sync::oneshot::Receiver<Result<(), crate::error::ReplicaError>>,
) {
    let (reply, rx) = tokio::sync::oneshot::channel();
    let entries = (0..n)
        .map(|i| {
            let key = Bytes::from(format!("k{i:03}"));
            (
                key,
                Record::value(Bytes::from(vec![b'v'; 100]), 1, String::from("n1")),
            )
        })
        .collect();
    let item = super::Item::Write(super::WriteItem {
        entries,
        deadline: Instant::now() + Duration::from_secs(5),
        reply,
    });
    (item, rx)
}

#[tokio::test]
async fn a_batch_stops_before_the_byte_limit_and_carries_the_rest() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut replies = Vec::new();
    for n in [1, 2, 1, 1] {
        let (item, r) = write_item(n);
        assert!(tx.send(item).is_ok());
        replies.push(r);
    }
    let one = write_item(1).0.size();
    let mut carry = None;
    // Room for three versions: the first two items, then the 2-version item
    // would pass the limit only if it came third.
    let first = super::next_batch(&mut rx, &mut carry, 3 * one)
        .await
        .expect("a batch");
    assert_eq!(first.len(), 2, "1 + 2 versions fit");
    assert!(carry.is_some(), "the third item waits");
    let second = super::next_batch(&mut rx, &mut carry, 3 * one)
        .await
        .expect("a batch");
    assert_eq!(second.len(), 2, "the carried item first, then the last");
    assert!(carry.is_none());
    // An item larger than the limit still goes, alone.
    let (big, _r) = write_item(10);
    assert!(tx.send(big).is_ok());
    let alone = super::next_batch(&mut rx, &mut carry, one)
        .await
        .expect("a batch");
    assert_eq!(alone.len(), 1);
    drop(replies);
}

/// An item whose deadline passes in the queue is dropped unsent; its
/// caller is told the deadline passed (it was told "shutting down", which
/// the random-message test showed in quorum errors of a node that was not).
#[tokio::test]
async fn an_item_dropped_at_its_deadline_fails_as_a_deadline() {
    let peers = Peers::new("me", None, 1 << 20);
    let past = Instant::now();
    let rec = Record::value(Bytes::from_static(b"v"), 1, "me");
    let addr = "127.0.0.1:1";
    let write = peers.write(addr, Bytes::from_static(b"k"), rec, past).await;
    assert_eq!(write, Err(crate::error::ReplicaError::Deadline));
    let read = peers.read(addr, Bytes::from_static(b"k"), past).await;
    assert!(
        matches!(read, Err(crate::error::ReplicaError::Deadline)),
        "{read:?}"
    );
}
