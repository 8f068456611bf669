//! Coalescing concurrent calls into batches, one queue per endpoint, sent
//! over one long-lived `BatchStream` per endpoint.
//!
//! A gRPC call costs tens of microseconds of CPU at each end (HTTP/2
//! framing, syscalls, wake-ups) whatever it carries. When many tasks share a
//! [`Client`](crate::Client), their operations wait in the endpoint's queue
//! while a batch is in flight and go out together as the next one, so the
//! per-call cost is shared; on a stream a batch costs one message each way,
//! not a call. An idle client sends an operation alone at once: coalescing
//! adds no latency. Every operation keeps its own deadline and its own
//! result. A server without `BatchStream` gets unary `Batch` calls; one
//! without `Batch` either (the original C++ TinyKV) one call per operation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinykv_proto::ordered::{StreamCall, StreamLink};
use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::operation::Op;
use tinykv_proto::tinykv::operation_result::Result as OpResult;
use tinykv_proto::tinykv::tiny_kv_client::TinyKvClient;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::ClientError;

/// Most operations in one batch call.
pub(crate) const MAX_BATCH: usize = 256;
/// Largest message accepted: values may be up to the server's limit.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A queued operation and where its result goes.
struct Item {
    op: Op,
    deadline: Instant,
    reply: oneshot::Sender<Result<OpResult, ClientError>>,
}

/// The queue of one endpoint; its sender task is started on first use, on
/// the runtime of the caller, and again if that runtime has gone away.
pub(crate) struct Batcher {
    channel: Channel,
    queue: Mutex<Option<mpsc::UnboundedSender<Item>>>,
    /// Set once the server answered `Batch` with UNIMPLEMENTED.
    unsupported: Arc<AtomicBool>,
    /// When a batch call last failed as a whole (the node unreachable or
    /// stalled); cleared by the next call that gets through.
    unreachable_at: Arc<Mutex<Option<Instant>>>,
}

/// What the sender tasks of one endpoint share with its [`Batcher`].
#[derive(Clone)]
struct Shared {
    channel: Channel,
    unsupported: Arc<AtomicBool>,
    unreachable_at: Arc<Mutex<Option<Instant>>>,
}

impl Batcher {
    /// A batcher sending on `channel`.
    pub(crate) fn new(channel: Channel) -> Self {
        Batcher {
            channel,
            queue: Mutex::new(None),
            unsupported: Arc::new(AtomicBool::new(false)),
            unreachable_at: Arc::new(Mutex::new(None)),
        }
    }

    /// True when a batch call to this endpoint failed as a whole (could
    /// not reach the node) within the last `window`.
    pub(crate) fn recently_unreachable(&self, window: Duration) -> bool {
        match self.unreachable_at.lock() {
            Ok(at) => at.is_some_and(|t| t.elapsed() < window),
            Err(_) => false,
        }
    }

    fn shared(&self) -> Shared {
        Shared {
            channel: self.channel.clone(),
            unsupported: Arc::clone(&self.unsupported),
            unreachable_at: Arc::clone(&self.unreachable_at),
        }
    }

    /// Runs `op` in a batch (or alone, against a server without batches)
    /// and waits for its result until `deadline`.
    pub(crate) async fn call(&self, op: Op, deadline: Instant) -> Result<OpResult, ClientError> {
        if self.unsupported.load(Ordering::Relaxed) {
            return single(self.channel.clone(), op, deadline).await;
        }
        let (reply, rx) = oneshot::channel();
        self.enqueue(Item {
            op,
            deadline,
            reply,
        })?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Unavailable(
                "client batch sender stopped".into(),
            )),
            Err(_) => Err(ClientError::DeadlineExceeded(
                "no answer before the client deadline".into(),
            )),
        }
    }

    fn enqueue(&self, item: Item) -> Result<(), ClientError> {
        let mut queue = self
            .queue
            .lock()
            .map_err(|_| ClientError::Unavailable("client batch queue poisoned".into()))?;
        let item = match queue.as_ref() {
            Some(tx) => match tx.send(item) {
                Ok(()) => return Ok(()),
                // The sender task's runtime is gone: start a new one below.
                Err(mpsc::error::SendError(item)) => item,
            },
            None => item,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(self.shared(), rx));
        tx.send(item)
            .map_err(|_| ClientError::Unavailable("client batch sender stopped".into()))?;
        *queue = Some(tx);
        Ok(())
    }
}

/// The sender loop: take what is queued, drop what nobody waits for, and
/// send it as one batch, one batch in flight (the queue fills meanwhile).
async fn send_batches(shared: Shared, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut link = Link::Unopened;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        batch.retain(|i| i.deadline > now && !i.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        send_one(&shared, &mut link, batch).await;
    }
}

/// The sender's stream to its node (unary `Batch` calls for a node
/// without it).
type Link = StreamLink<pb::BatchRequest, pb::BatchResponse>;

/// One batch over `link`: the stream if the node has it, else a unary call.
async fn call_batch(
    channel: &Channel,
    link: &mut Link,
    req: pb::BatchRequest,
    deadline: Instant,
) -> Result<pb::BatchResponse, tonic::Status> {
    let open = |rx| {
        let mut c = kv(channel.clone());
        async move { c.batch_stream(rx).await }
    };
    match link.call(req, deadline, open).await {
        StreamCall::Answer(r) => Ok(r),
        StreamCall::Failed(s) => Err(s),
        StreamCall::Unsupported(req) => {
            let mut req = tonic::Request::new(req);
            req.set_timeout(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
            kv(channel.clone())
                .batch(req)
                .await
                .map(tonic::Response::into_inner)
        }
    }
}

/// Sends one batch and hands each operation its result.
async fn send_one(shared: &Shared, link: &mut Link, batch: Vec<Item>) {
    let channel = &shared.channel;
    let now = Instant::now();
    let latest = batch.iter().map(|i| i.deadline).max().unwrap_or(now);
    let (ops, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|i| {
            let remaining = i.deadline.saturating_duration_since(now);
            (with_timeout(i.op, remaining), (i.reply, i.deadline))
        })
        .unzip();
    let req = pb::BatchRequest {
        ops: ops
            .iter()
            .cloned()
            .map(|op| pb::Operation { op: Some(op) })
            .collect(),
        sender_id: String::new(),
    };
    let answer = call_batch(channel, link, req, latest).await;
    if let Ok(mut at) = shared.unreachable_at.lock() {
        *at = match &answer {
            // No answer at all (node down, unreachable, or stalled past
            // every operation's deadline); per-operation failures such as
            // a missed quorum come back inside a successful answer.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) =>
            {
                Some(Instant::now())
            }
            _ => None,
        };
    }
    match answer {
        Ok(resp) => {
            let results = resp.results;
            if results.len() != replies.len() {
                let e = format!(
                    "server answered {} results for {} operations",
                    results.len(),
                    replies.len()
                );
                for (reply, _) in replies {
                    let _ = reply.send(Err(ClientError::Rpc {
                        code: tonic::Code::Internal,
                        message: e.clone(),
                    }));
                }
                return;
            }
            for ((reply, _), r) in replies.into_iter().zip(results) {
                let _ = reply.send(from_result(r));
            }
        }
        Err(s) if s.code() == tonic::Code::Unimplemented => {
            // An older server: remember, and send these one by one.
            shared.unsupported.store(true, Ordering::Relaxed);
            for (op, (reply, deadline)) in ops.into_iter().zip(replies) {
                let channel = channel.clone();
                tokio::spawn(async move {
                    let _ = reply.send(single(channel, op, deadline).await);
                });
            }
        }
        Err(s) => {
            for (reply, _) in replies {
                let _ = reply.send(Err(ClientError::from(s.clone())));
            }
        }
    }
}

/// One operation's result from the server's answer.
fn from_result(r: pb::OperationResult) -> Result<OpResult, ClientError> {
    match r.result {
        Some(OpResult::Error(e)) => Err(ClientError::from(tonic::Status::new(
            tonic::Code::from(e.code),
            e.message,
        ))),
        Some(ok) => Ok(ok),
        None => Err(ClientError::Rpc {
            code: tonic::Code::Internal,
            message: "server answered an empty batch result".into(),
        }),
    }
}

/// `op` with its `timeout_ms` set to what is left of its deadline, so the
/// server gives up on it when the caller does.
fn with_timeout(op: Op, remaining: Duration) -> Op {
    let ms = u32::try_from(remaining.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    match op {
        Op::Put(mut r) => {
            r.timeout_ms = ms;
            Op::Put(r)
        }
        Op::Get(mut r) => {
            r.timeout_ms = ms;
            Op::Get(r)
        }
        Op::Delete(mut r) => {
            r.timeout_ms = ms;
            Op::Delete(r)
        }
    }
}

/// The client stub on `channel`, with the message limits of the client.
pub(crate) fn kv(channel: Channel) -> TinyKvClient<Channel> {
    TinyKvClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// Runs `op` as its own RPC (`Put`, `Get` or `Delete`).
pub(crate) async fn single(
    channel: Channel,
    op: Op,
    deadline: Instant,
) -> Result<OpResult, ClientError> {
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let mut client = kv(channel);
    fn req<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        r
    }
    Ok(match op {
        Op::Put(r) => OpResult::Put(client.put(req(r, timeout)).await?.into_inner()),
        Op::Get(r) => OpResult::Get(client.get(req(r, timeout)).await?.into_inner()),
        Op::Delete(r) => OpResult::Delete(client.delete(req(r, timeout)).await?.into_inner()),
    })
}
