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

use crate::client::Conn;
use tinykv_proto::ordered::{StreamCall, StreamLink};
use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::operation::Op;
use tinykv_proto::tinykv::operation_result::Result as OpResult;
use tinykv_proto::tinykv::tiny_kv_client::TinyKvClient;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::ClientError;

/// Most operations in one batch call.
pub(crate) const MAX_BATCH: usize = 256;
/// Largest message accepted: values may be up to the server's limit.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Most bytes of operations in one batch; a larger operation goes alone. A
/// node accepts messages of one value of its limit plus 1 MiB, so values
/// that are valid alone must not pass that limit together; 64 KiB under
/// 1 MiB leaves room for the message's framing (a few bytes an operation)
/// even with a tiny value limit.
pub(crate) const MAX_BATCH_BYTES: usize = (1 << 20) - (64 << 10);

/// A queued operation and where its result goes.
struct Item {
    op: Op,
    deadline: Instant,
    reply: oneshot::Sender<Result<OpResult, ClientError>>,
}

/// The queue of one endpoint; its sender task is started on first use, on
/// the runtime of the caller, and again if that runtime has gone away.
pub(crate) struct Batcher {
    channel: Conn,
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
    channel: Conn,
    unsupported: Arc<AtomicBool>,
    unreachable_at: Arc<Mutex<Option<Instant>>>,
}

impl Batcher {
    /// A batcher sending on `channel`.
    pub(crate) fn new(channel: Conn) -> Self {
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
    let mut carry = None;
    loop {
        let Some(mut batch) = next_batch(&mut rx, &mut carry).await else {
            return;
        };
        let now = Instant::now();
        batch.retain(|i| i.deadline > now && !i.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        send_one(&shared, &mut link, batch).await;
    }
}

/// The next batch: the item carried over from the last one (or the next
/// to arrive), then whatever is queued, up to [`MAX_BATCH`] operations and
/// [`MAX_BATCH_BYTES`]; the item that would pass the byte limit is carried
/// over to the next batch. `None` once the queue is closed and empty.
async fn next_batch(
    rx: &mut mpsc::UnboundedReceiver<Item>,
    carry: &mut Option<Item>,
) -> Option<Vec<Item>> {
    let first = match carry.take() {
        Some(item) => item,
        None => rx.recv().await?,
    };
    let mut bytes = first.op.encoded_len();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        let Ok(item) = rx.try_recv() else {
            break;
        };
        let size = item.op.encoded_len();
        if bytes + size > MAX_BATCH_BYTES {
            *carry = Some(item);
            break;
        }
        bytes += size;
        batch.push(item);
    }
    Some(batch)
}

/// The sender's stream to its node (unary `Batch` calls for a node
/// without it).
type Link = StreamLink<pb::BatchRequest, pb::BatchResponse>;

/// One batch over `link`: the stream if the node has it, else a unary call.
async fn call_batch(
    channel: &Conn,
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
    let answer = call_batch(channel, link, req, latest).await.map_err(|s| {
        if crate::error::connection_lost(&s) {
            // The node died or the connection broke: unreachable, whatever
            // code the transport gave it.
            tonic::Status::unavailable(format!("node unreachable: {}", s.message()))
        } else {
            s
        }
    });
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
            let alone = ops.len() == 1;
            for ((op, (reply, deadline)), r) in ops.into_iter().zip(replies).zip(results) {
                if !alone && left_out(&op, &r) {
                    // The node cut its answer to stay under its message
                    // limit: a read asked alone fits.
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(single(channel, op, deadline).await);
                    });
                    continue;
                }
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

/// A read that a node left out of a batch answer because the values
/// before it filled the answer (RESOURCE_EXHAUSTED; reads are idempotent,
/// so it is asked again alone).
fn left_out(op: &Op, r: &pb::OperationResult) -> bool {
    matches!(
        (op, &r.result),
        (Op::Get(_), Some(OpResult::Error(e))) if e.code == tonic::Code::ResourceExhausted as i32
    )
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
pub(crate) fn kv(channel: Conn) -> TinyKvClient<Conn> {
    TinyKvClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// Runs `op` as its own RPC (`Put`, `Get` or `Delete`).
pub(crate) async fn single(
    channel: Conn,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(val_bytes: usize) -> (Item, oneshot::Receiver<Result<OpResult, ClientError>>) {
        let (reply, rx) = oneshot::channel();
        let op = Op::Put(pb::PutRequest {
            key: "k".into(),
            val: vec![0u8; val_bytes].into(),
            ..Default::default()
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        (
            Item {
                op,
                deadline,
                reply,
            },
            rx,
        )
    }

    fn sizes(batch: &[Item]) -> Vec<usize> {
        batch
            .iter()
            .map(|i| match &i.op {
                Op::Put(p) => p.val.len(),
                _ => 0,
            })
            .collect()
    }

    #[tokio::test]
    async fn batches_are_cut_by_bytes_and_large_operations_go_alone() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut keep = Vec::new();
        let big = 3 * MAX_BATCH_BYTES;
        let half = MAX_BATCH_BYTES / 2;
        for size in [100, 200, big, half, half, 10, big, big] {
            let (i, r) = item(size);
            keep.push(r);
            tx.send(i).expect("queue open");
        }
        drop(tx);
        let mut carry = None;
        let mut got = Vec::new();
        while let Some(batch) = next_batch(&mut rx, &mut carry).await {
            let bytes: usize = batch.iter().map(|i| i.op.encoded_len()).sum();
            assert!(
                batch.len() == 1 || bytes <= MAX_BATCH_BYTES,
                "a batch of {} operations has {bytes} bytes",
                batch.len()
            );
            got.push(sizes(&batch));
        }
        // Order is kept; an item that would pass the limit starts the next
        // batch; an item over the limit on its own is sent alone.
        assert_eq!(
            got,
            vec![
                vec![100, 200],
                vec![big],
                vec![half],
                vec![half, 10],
                vec![big],
                vec![big]
            ]
        );
    }

    #[test]
    fn only_a_read_answered_resource_exhausted_is_left_out() {
        let exhausted = pb::OperationResult {
            result: Some(OpResult::Error(pb::OperationError {
                code: tonic::Code::ResourceExhausted as i32,
                message: "left out".into(),
            })),
        };
        let unavailable = pb::OperationResult {
            result: Some(OpResult::Error(pb::OperationError {
                code: tonic::Code::Unavailable as i32,
                message: "quorum".into(),
            })),
        };
        let get = Op::Get(pb::GetRequest::default());
        let put = Op::Put(pb::PutRequest::default());
        assert!(left_out(&get, &exhausted));
        assert!(!left_out(&put, &exhausted));
        assert!(!left_out(&get, &unavailable));
    }
}
