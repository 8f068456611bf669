//! Connections to other nodes: one lazily connected HTTP/2 channel per
//! address, reused by every request (no connection per call), and per-peer
//! coalescing of replica reads and writes.
//!
//! Under load many requests need the same peer at once; sending each as its
//! own RPC makes per-RPC overhead (HTTP/2 framing, syscalls, wake-ups) the
//! bottleneck. Each peer has a queue for reads and one for writes: a sender
//! task takes whatever is queued and sends it as one batch RPC, with up to
//! [`MAX_IN_FLIGHT`] batches in flight. When idle a request goes out alone
//! at once, so coalescing adds no latency; under load batches grow by
//! themselves. Every request keeps its own deadline.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::internal as pb;
use tinykv_proto::internal::peer_client::PeerClient;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::version::Record;

/// Batch RPCs in flight per peer and direction.
const MAX_IN_FLIGHT: usize = 4;
/// Most requests in one batch.
const MAX_BATCH: usize = 512;

struct WriteItem {
    key: Bytes,
    record: Record,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), String>>,
}

struct ReadItem {
    key: Bytes,
    deadline: Instant,
    reply: oneshot::Sender<Result<Option<Record>, String>>,
}

#[derive(Clone)]
struct Peer {
    client: PeerClient<Channel>,
    writes: mpsc::UnboundedSender<WriteItem>,
    reads: mpsc::UnboundedSender<ReadItem>,
}

/// The pool of peer channels and their batching queues.
pub struct Peers {
    self_id: String,
    channels: RwLock<HashMap<String, Peer>>,
    max_message: usize,
}

impl Peers {
    /// A pool whose clients accept messages up to `max_message` bytes;
    /// batches are sent as from `self_id`.
    pub fn new(self_id: &str, max_message: usize) -> Self {
        Peers {
            self_id: self_id.to_string(),
            channels: RwLock::new(HashMap::new()),
            max_message,
        }
    }

    fn peer(&self, addr: &str) -> Result<Peer, String> {
        if let Ok(map) = self.channels.read() {
            if let Some(p) = map.get(addr) {
                return Ok(p.clone());
            }
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("invalid peer address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let client = PeerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message);
        let mut map = self
            .channels
            .write()
            .map_err(|_| "peer table poisoned".to_string())?;
        if let Some(p) = map.get(addr) {
            return Ok(p.clone());
        }
        let (wtx, wrx) = mpsc::unbounded_channel();
        let (rtx, rrx) = mpsc::unbounded_channel();
        tokio::spawn(send_writes(client.clone(), self.self_id.clone(), wrx));
        tokio::spawn(send_reads(client.clone(), rrx));
        let peer = Peer {
            client,
            writes: wtx,
            reads: rtx,
        };
        map.insert(addr.to_string(), peer.clone());
        Ok(peer)
    }

    /// The client for `addr` (`host:port`), created on first use.
    pub fn client(&self, addr: &str) -> Result<PeerClient<Channel>, String> {
        self.peer(addr).map(|p| p.client)
    }

    /// Applies a version on the replica at `addr` (coalesced with others).
    pub async fn write(
        &self,
        addr: &str,
        key: Bytes,
        record: Record,
        deadline: Instant,
    ) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.peer(addr)?
            .writes
            .send(WriteItem {
                key,
                record,
                deadline,
                reply,
            })
            .map_err(|_| "peer sender stopped".to_string())?;
        rx.await.map_err(|_| "peer sender stopped".to_string())?
    }

    /// Reads the replica at `addr` (coalesced with others).
    pub async fn read(
        &self,
        addr: &str,
        key: Bytes,
        deadline: Instant,
    ) -> Result<Option<Record>, String> {
        let (reply, rx) = oneshot::channel();
        self.peer(addr)?
            .reads
            .send(ReadItem {
                key,
                deadline,
                reply,
            })
            .map_err(|_| "peer sender stopped".to_string())?;
        rx.await.map_err(|_| "peer sender stopped".to_string())?
    }
}

/// Takes the first queued item and whatever else is queued behind it.
async fn next_batch<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The batch's RPC deadline: the latest of its items' (each item is also
/// bounded by its own deadline where it waits).
fn batch_timeout(deadlines: impl Iterator<Item = Instant>) -> Duration {
    deadlines
        .max()
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or_default()
        .max(Duration::from_millis(1))
}

/// A queued request that may have been given up on.
trait Pending {
    /// Still worth sending: its deadline has not passed and someone waits.
    fn live(&self, now: Instant) -> bool;
}

impl Pending for WriteItem {
    fn live(&self, now: Instant) -> bool {
        self.deadline > now && !self.reply.is_closed()
    }
}

impl Pending for ReadItem {
    fn live(&self, now: Instant) -> bool {
        self.deadline > now && !self.reply.is_closed()
    }
}

/// The sender loop shared by reads and writes: take what is queued, drop
/// what nobody waits for any more, and send it with `send`, with at most
/// [`MAX_IN_FLIGHT`] batches in flight.
async fn run_batches<T, F, Fut>(mut rx: mpsc::UnboundedReceiver<T>, send: F)
where
    T: Pending,
    F: Fn(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(mut batch) = next_batch(&mut rx).await else {
            return;
        };
        let now = Instant::now();
        batch.retain(|i| i.live(now));
        if batch.is_empty() {
            continue;
        }
        let sending = send(batch);
        tokio::spawn(async move {
            sending.await;
            drop(permit);
        });
    }
}

async fn send_writes(
    client: PeerClient<Channel>,
    from: String,
    rx: mpsc::UnboundedReceiver<WriteItem>,
) {
    run_batches(rx, move |batch: Vec<WriteItem>| {
        let mut client = client.clone();
        let from = from.clone();
        async move {
            let mut req = tonic::Request::new(pb::ReplicaWriteBatch {
                records: batch
                    .iter()
                    .map(|i| pb::KeyedRecord {
                        key: i.key.clone(),
                        record: Some(i.record.clone().into()),
                    })
                    .collect(),
                from,
            });
            req.set_timeout(batch_timeout(batch.iter().map(|i| i.deadline)));
            let res = client
                .write_batch(req)
                .await
                .map(|_| ())
                .map_err(|s| describe(&s));
            for item in batch {
                let _ = item.reply.send(res.clone());
            }
        }
    })
    .await
}

async fn send_reads(client: PeerClient<Channel>, rx: mpsc::UnboundedReceiver<ReadItem>) {
    run_batches(rx, move |batch: Vec<ReadItem>| {
        let mut client = client.clone();
        async move {
            let mut req = tonic::Request::new(pb::ReplicaReadBatch {
                keys: batch.iter().map(|i| i.key.clone()).collect(),
            });
            req.set_timeout(batch_timeout(batch.iter().map(|i| i.deadline)));
            let results = match client.read_batch(req).await {
                Ok(resp) => {
                    let results = resp.into_inner().results;
                    if results.len() == batch.len() {
                        Ok(results)
                    } else {
                        Err("malformed batch answer".to_string())
                    }
                }
                Err(s) => Err(describe(&s)),
            };
            match results {
                Ok(results) => {
                    for (item, r) in batch.into_iter().zip(results) {
                        let _ = item.reply.send(Ok(r.record.map(Record::from)));
                    }
                }
                Err(e) => {
                    for item in batch {
                        let _ = item.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    })
    .await
}

/// A short reason for a failed peer call, for quorum error messages.
pub fn describe(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => "deadline exceeded".into(),
        tonic::Code::Unavailable => {
            let m = status.message();
            if m.is_empty() || m.contains("transport") || m.contains("connect") {
                "unreachable".into()
            } else {
                format!("unavailable ({m})")
            }
        }
        code => format!("{code:?}: {}", status.message()),
    }
}
