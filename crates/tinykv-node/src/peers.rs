//! Connections to other nodes: one lazily connected HTTP/2 channel per
//! address, reused by every request (no connection per call), and per-peer
//! coalescing of replica reads and writes.
//!
//! Under load many requests need the same peer at once; sending each as its
//! own RPC makes per-RPC overhead (HTTP/2 framing, syscalls, wake-ups) the
//! bottleneck. Each peer has one queue for replica reads and writes alike: a
//! sender task takes whatever is queued and sends it as one message on a
//! long-lived `ExchangeStream`, one message in flight (one queue, not one
//! per direction, and a stream, not a call per batch: measured, in
//! docs/benchmarks.md). When idle a request goes out alone at once, so
//! coalescing adds no latency; under load batches grow by themselves. Every
//! request keeps its own deadline. A peer without the stream (an older
//! version, mid rolling upgrade) gets `WriteBatch` and `ReadBatch` calls.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::internal as pb;
use tinykv_proto::internal::peer_client::PeerClient;
use tinykv_proto::ordered::{StreamCall, StreamLink};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use tinykv_auth::{Signed, Signer};

use crate::cluster_name::Stamp;
use crate::dialer::Dialer;
use crate::error::ReplicaError;
use crate::version::{keyed, Record};

/// Most requests in one batch.
const MAX_BATCH: usize = 512;

/// Versions to apply on the peer, answered together (one request's, or
/// every version a client batch sends this peer).
struct WriteItem {
    entries: Vec<(Bytes, Record)>,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), ReplicaError>>,
}

/// Keys to read on the peer, answered together, in order.
struct ReadItem {
    keys: Vec<Bytes>,
    deadline: Instant,
    reply: oneshot::Sender<Result<Vec<Option<Record>>, ReplicaError>>,
}

/// A client of another node's peer service: every call carries this node's
/// cluster name.
pub type PeerConn = PeerClient<InterceptedService<Timed<Signed<Channel>>, Stamp>>;

/// The sender's stream to its peer (unary batch calls for a peer without it).
type Link = StreamLink<pb::ReplicaExchange, pb::ReplicaExchangeResult>;

/// A queued replica request.
enum Item {
    Write(WriteItem),
    Read(ReadItem),
}

#[derive(Clone)]
struct Peer {
    client: PeerConn,
    queue: mpsc::UnboundedSender<Item>,
    /// The dialer's generation it was made with: an older one reconnects.
    generation: u64,
}

/// The pool of peer channels and their batching queues.
pub struct Peers {
    self_id: String,
    channels: RwLock<HashMap<String, Peer>>,
    max_message: usize,
    stamp: Stamp,
    /// Signs every call with the cluster secret, when there is one.
    signer: Option<Signer>,
    /// Plaintext or TLS.
    dialer: Arc<Dialer>,
    /// Times every call, when metrics are on.
    timer: Option<CallTimer>,
}

impl Peers {
    /// A pool whose clients accept messages up to `max_message` bytes;
    /// batches are sent as from `self_id` of cluster `cluster` (none: calls
    /// carry no cluster name).
    pub fn new(self_id: &str, cluster: Option<&str>, max_message: usize) -> Self {
        Peers {
            self_id: self_id.to_string(),
            channels: RwLock::new(HashMap::new()),
            max_message,
            stamp: Stamp::new(cluster),
            signer: None,
            dialer: Dialer::new(None),
            timer: None,
        }
    }

    /// The same pool, timing every call with `timer`
    /// (`tinykv_peer_call_duration_seconds`).
    pub fn with_timer(mut self, timer: CallTimer) -> Self {
        self.timer = Some(timer);
        self
    }

    /// The same pool, dialling with `dialer` (TLS when it says so).
    pub fn with_dialer(mut self, dialer: Arc<Dialer>) -> Self {
        self.dialer = dialer;
        self
    }

    /// The same pool, signing every call with `signer` (the cluster
    /// secret and this node's id).
    pub fn with_signer(mut self, signer: Option<Signer>) -> Self {
        self.signer = signer;
        self
    }

    fn peer(&self, addr: &str) -> Result<Peer, ReplicaError> {
        let generation = self.dialer.generation();
        if let Ok(map) = self.channels.read() {
            if let Some(p) = map.get(addr).filter(|p| p.generation == generation) {
                return Ok(p.clone());
            }
        }
        let endpoint = self
            .dialer
            .endpoint(addr)
            .map_err(|e| ReplicaError::Unreachable(format!("peer {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let signed = Signed::new(endpoint.connect_lazy(), self.signer.clone());
        let channel = Timed::new(signed, addr, self.timer.clone());
        let client = PeerClient::with_interceptor(channel, self.stamp.clone())
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message);
        let mut map = self
            .channels
            .write()
            .map_err(|_| ReplicaError::ShuttingDown)?;
        if let Some(p) = map.get(addr).filter(|p| p.generation == generation) {
            return Ok(p.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = Sender {
            client: client.clone(),
            from: self.self_id.clone(),
            timing: self.timer.clone().map(|t| (t, addr.to_string())),
        };
        tokio::spawn(send_exchanges(sender, rx, self.max_message));
        let peer = Peer {
            client,
            queue: tx,
            generation,
        };
        map.insert(addr.to_string(), peer.clone());
        Ok(peer)
    }

    /// The client for `addr` (`host:port`), created on first use.
    pub fn client(&self, addr: &str) -> Result<PeerConn, ReplicaError> {
        self.peer(addr).map(|p| p.client)
    }

    /// Applies a version on the replica at `addr` (coalesced with others).
    pub async fn write(
        &self,
        addr: &str,
        key: Bytes,
        record: Record,
        deadline: Instant,
    ) -> Result<(), ReplicaError> {
        self.write_all(addr, vec![(key, record)], deadline).await
    }

    /// Applies versions on the replica at `addr`, coalesced with others; one
    /// answer for all of them.
    pub async fn write_all(
        &self,
        addr: &str,
        entries: Vec<(Bytes, Record)>,
        deadline: Instant,
    ) -> Result<(), ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.peer(addr)?
            .queue
            .send(Item::Write(WriteItem {
                entries,
                deadline,
                reply,
            }))
            .map_err(|_| ReplicaError::ShuttingDown)?;
        rx.await.map_err(|_| unanswered(deadline))?
    }

    /// Reads the replica at `addr` (coalesced with others).
    pub async fn read(
        &self,
        addr: &str,
        key: Bytes,
        deadline: Instant,
    ) -> Result<Option<Record>, ReplicaError> {
        let mut got = self.read_all(addr, vec![key], deadline).await?;
        got.pop()
            .ok_or_else(|| ReplicaError::Malformed("no answer to the read".into()))
    }

    /// Reads `keys` on the replica at `addr`, coalesced with others; one
    /// answer for all of them, in order.
    pub async fn read_all(
        &self,
        addr: &str,
        keys: Vec<Bytes>,
        deadline: Instant,
    ) -> Result<Vec<Option<Record>>, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.peer(addr)?
            .queue
            .send(Item::Read(ReadItem {
                keys,
                deadline,
                reply,
            }))
            .map_err(|_| ReplicaError::ShuttingDown)?;
        rx.await.map_err(|_| unanswered(deadline))?
    }
}

/// Why a queued item got no answer: the sender drops an item whose
/// deadline passed while it waited (a deadline, not a shutdown); otherwise
/// the queue itself went away.
fn unanswered(deadline: Instant) -> ReplicaError {
    if Instant::now() >= deadline {
        ReplicaError::Deadline
    } else {
        ReplicaError::ShuttingDown
    }
}

/// Takes the first queued item (or the one carried over) and whatever else
/// is queued behind it, up to [`MAX_BATCH`] items and about `max_bytes` of
/// keys and values: an item that would go over is carried to the next batch,
/// so coalesced large values never make a message the peer must refuse.
async fn next_batch(
    rx: &mut mpsc::UnboundedReceiver<Item>,
    carry: &mut Option<Item>,
    max_bytes: usize,
) -> Option<Vec<Item>> {
    let first = match carry.take() {
        Some(item) => item,
        None => rx.recv().await?,
    };
    let mut bytes = first.size();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(item) if bytes + item.size() > max_bytes => {
                *carry = Some(item);
                break;
            }
            Ok(item) => {
                bytes += item.size();
                batch.push(item);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

impl Item {
    /// Still worth sending: its deadline has not passed and someone waits.
    fn live(&self, now: Instant) -> bool {
        match self {
            Item::Write(w) => w.deadline > now && !w.reply.is_closed(),
            Item::Read(r) => r.deadline > now && !r.reply.is_closed(),
        }
    }

    /// Encoded size, roughly: keys, values and a per-entry allowance.
    fn size(&self) -> usize {
        match self {
            Item::Write(w) => w
                .entries
                .iter()
                .map(|(k, r)| k.len() + r.value.len() + r.writer.len() + 32)
                .sum(),
            Item::Read(r) => r.keys.iter().map(|k| k.len() + 8).sum(),
        }
    }

    fn deadline(&self) -> Instant {
        match self {
            Item::Write(w) => w.deadline,
            Item::Read(r) => r.deadline,
        }
    }
}

/// The sender loop: take what is queued, drop what nobody waits for any
/// more, and send the rest as one message on the peer's exchange stream,
/// one at a time (the queue fills meanwhile, so batches grow with load).
async fn send_exchanges(sender: Sender, mut rx: mpsc::UnboundedReceiver<Item>, max_message: usize) {
    let mut link = Link::Unopened;
    let mut carry = None;
    loop {
        let Some(mut batch) = next_batch(&mut rx, &mut carry, max_message / 2).await else {
            return;
        };
        let now = Instant::now();
        batch.retain(|i| i.live(now));
        if batch.is_empty() {
            continue;
        }
        exchange(&sender, &mut link, batch).await;
    }
}

/// What a peer's sender task sends with.
struct Sender {
    client: PeerConn,
    /// This node's id.
    from: String,
    /// The call timer and the peer's address, when metrics are on.
    timing: Option<(CallTimer, String)>,
}

/// Sends one batch of writes and reads and hands each its result.
async fn exchange(sender: &Sender, link: &mut Link, batch: Vec<Item>) {
    let (client, from) = (&sender.client, sender.from.as_str());
    let deadline = batch
        .iter()
        .map(Item::deadline)
        .max()
        .unwrap_or_else(Instant::now);
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for item in batch {
        match item {
            Item::Write(w) => writes.push(w),
            Item::Read(r) => reads.push(r),
        }
    }
    let message = || pb::ReplicaExchange {
        writes: writes
            .iter()
            .flat_map(|i| &i.entries)
            .map(|(k, r)| keyed(k, r))
            .collect(),
        reads: reads.iter().flat_map(|i| i.keys.iter().cloned()).collect(),
        from: from.to_string(),
        may_omit: true,
    };
    let reads_len: usize = reads.iter().map(|r| r.keys.len()).sum();
    let open = |rx| {
        let mut c = client.clone();
        async move { c.exchange_stream(rx).await }
    };
    // A stream that died while idle is replaced before the call when the
    // death is already known (`StreamLink` checks); one whose connection
    // dies unnoticed (its peer's network cut and restored) fails only when
    // used. Replica writes and reads are idempotent, so a failure on a
    // stream opened before this call gets one retry on a fresh stream; a
    // stream opened by this call that fails is a real failure.
    let reused = matches!(link, Link::Open { .. });
    let started = std::time::Instant::now();
    let mut call = link.call(message(), deadline, open).await;
    if reused && Instant::now() < deadline {
        if let StreamCall::Failed(s) = &call {
            if s.code() != tonic::Code::DeadlineExceeded {
                tracing::debug!(error = %s, "peer stream failed on reuse; retrying on a new one");
                call = link.call(message(), deadline, open).await;
            }
        }
    }
    // A peer without the stream gets unary calls, which the channel times.
    if let Some((timer, addr)) = &sender.timing {
        if !matches!(call, StreamCall::Unsupported(_)) {
            timer.observe(addr, timing::EXCHANGE_CALL, started.elapsed());
        }
    }
    let answer = match call {
        StreamCall::Answer(r) if r.reads.len() == reads_len => Ok(r.reads),
        StreamCall::Answer(_) => Err(ReplicaError::Malformed(
            "exchange answer of the wrong length".into(),
        )),
        StreamCall::Failed(s) => Err(ReplicaError::from_status(&s)),
        StreamCall::Unsupported(msg) => unary::legacy_exchange(client, msg, deadline).await,
    };
    match answer {
        Ok(results) => {
            for w in writes {
                let _ = w.reply.send(Ok(()));
            }
            let mut results = results.into_iter();
            for r in reads {
                let mine: Vec<_> = results.by_ref().take(r.keys.len()).collect();
                if mine.iter().any(|res| res.omitted) {
                    // Off the sender loop: the next batch need not wait.
                    tokio::spawn(unary::read_omitted(client.clone(), r, mine));
                    continue;
                }
                let mine = mine
                    .into_iter()
                    .map(|res| res.record.map(Record::from))
                    .collect();
                let _ = r.reply.send(Ok(mine));
            }
        }
        Err(e) => {
            for w in writes {
                let _ = w.reply.send(Err(e.clone()));
            }
            for r in reads {
                let _ = r.reply.send(Err(e.clone()));
            }
        }
    }
}

pub mod timing;
mod unary;

pub use timing::CallTimer;
use timing::Timed;

#[cfg(test)]
mod tests;
