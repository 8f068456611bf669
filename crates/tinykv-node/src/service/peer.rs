//! `tinykv.internal.Peer`: replica reads and writes, hints, heartbeats and
//! the range exchange used by anti-entropy and streaming.

use std::sync::Arc;

use tinykv_proto::internal as pb;
use tinykv_proto::internal::peer_server::Peer;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::serve_in_order;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::ReplicaError;
use crate::gossip::Gossip;
use crate::guard::Caller;
use crate::hints::Hints;
use crate::storage::{page_bytes, ScanLimit, StorageError, Store, WriteOp};
use crate::version::Record;

/// Most records one `FetchRange` page returns.
const MAX_PAGE: usize = 2048;

/// What the peer service uses of the node.
pub struct PeerParts {
    /// This node's storage: the replica.
    pub store: Store,
    /// Observes the timestamps peers send.
    pub clock: Arc<Clock>,
    /// Answers heartbeats.
    pub gossip: Arc<Gossip>,
    /// Keeps hints peers send.
    pub hints: Arc<Hints>,
    /// Knows which peers fault injection cuts off.
    pub directory: Directory,
    /// Largest client message (half a peer message): answers stay within.
    pub message_limit: usize,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
}

/// The peer service.
#[derive(Clone)]
pub struct PeerService {
    parts: Arc<PeerParts>,
}

impl PeerService {
    /// A service answering peers with `parts`.
    pub fn new(parts: PeerParts) -> Self {
        PeerService {
            parts: Arc::new(parts),
        }
    }

    /// A version `from` sent for `key`, checked (a record, a key), its
    /// timestamp observed by this node's clock.
    fn version(
        &self,
        key: &[u8],
        record: Option<pb::Record>,
        from: &str,
    ) -> Result<Record, Status> {
        let record: Record = record
            .ok_or_else(|| Status::invalid_argument("record missing"))?
            .into();
        if key.is_empty() {
            return Err(Status::invalid_argument("key must not be empty"));
        }
        self.parts
            .clock
            .admit(record.timestamp, from)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(record)
    }

    /// Applies `records` sent by `from` in one storage batch; returns how
    /// many were newer than the replica's versions.
    async fn apply(&self, records: Vec<pb::KeyedRecord>, from: &str) -> Result<u32, Status> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut ops = Vec::with_capacity(records.len());
        for kr in records {
            let record = self.version(&kr.key, kr.record, from)?;
            ops.push(WriteOp::Put {
                key: kr.key,
                record,
            });
        }
        let applied = self.parts.store.write(ops).await.map_err(storage_status)?;
        Ok(applied.iter().filter(|a| **a).count() as u32)
    }

    /// This replica's version of each key, in order. With `may_omit`, the
    /// answer stays within the client message limit (half a peer message):
    /// once the versions so far fill it, a further version is left out and
    /// marked `omitted`, for the sender to ask alone; the first is always
    /// kept. Without it (an older sender) every version is sent.
    fn read_all(
        &self,
        keys: Vec<bytes::Bytes>,
        may_omit: bool,
    ) -> Result<Vec<pb::ReplicaReadResult>, Status> {
        let mut room = if may_omit {
            self.parts.message_limit
        } else {
            usize::MAX
        };
        let mut first = true;
        keys.iter()
            .map(|key| {
                let rec = self.parts.store.get(key).map_err(storage_status)?;
                let size = rec.as_ref().map_or(0, |r| page_bytes(key, r));
                if !first && size > room {
                    return Ok(pb::ReplicaReadResult {
                        record: None,
                        omitted: true,
                    });
                }
                first = false;
                room = room.saturating_sub(size);
                Ok(pb::ReplicaReadResult {
                    record: rec.map(Into::into),
                    omitted: false,
                })
            })
            .collect()
    }

    /// One `Exchange`: reads first (they need no commit, and see the
    /// replica as it was when the message arrived, like reads sent just
    /// before the writes), then the writes in one storage batch.
    async fn handle_exchange(
        &self,
        x: pb::ReplicaExchange,
    ) -> Result<pb::ReplicaExchangeResult, Status> {
        self.refuse_if_partitioned(&x.from)?;
        let reads = self.read_all(x.reads, x.may_omit)?;
        let applied = self.apply(x.writes, &x.from).await?;
        Ok(pb::ReplicaExchangeResult { reads, applied })
    }

    fn refuse_if_partitioned(&self, from: &str) -> Result<(), Status> {
        if self.parts.directory.cut_off(from) {
            return Err(Status::unavailable("unreachable (fault injected)"));
        }
        Ok(())
    }
}

fn storage_status(e: StorageError) -> Status {
    match e {
        // The sender's input, not this node's storage, is at fault.
        StorageError::TooLong { .. } => Status::invalid_argument(e.to_string()),
        other => Status::internal(format!("storage: {other}")),
    }
}

/// A failure to keep hints, as the sender sees it.
fn hint_status(e: ReplicaError) -> Status {
    match e {
        ReplicaError::HintsFull => Status::resource_exhausted(e.to_string()),
        ReplicaError::Refused { code, message } => Status::new(code, message),
        other => Status::internal(format!("storage: {other}")),
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn write(
        &self,
        req: Request<pb::ReplicaWrite>,
    ) -> Result<Response<pb::ReplicaWriteAck>, Status> {
        let w = req.into_inner();
        self.refuse_if_partitioned(&w.from)?;
        let record = self.version(&w.key, w.record, &w.from)?;
        if !w.hint_for.is_empty() && !crate::membership::valid_id(&w.hint_for) {
            return Err(Status::invalid_argument(
                "hint_for must be a node id: 1 to 253 letters, digits and -_.:",
            ));
        }
        let applied = if w.hint_for.is_empty() {
            // Combined with the other local writes started together into
            // one engine batch.
            self.parts
                .store
                .write_one(WriteOp::Put { key: w.key, record })
                .await
                .map_err(storage_status)?
        } else {
            self.parts
                .hints
                .keep(&w.hint_for, vec![(w.key, record)])
                .await
                .map_err(hint_status)?;
            true
        };
        Ok(Response::new(pb::ReplicaWriteAck {
            applied: u32::from(applied),
        }))
    }

    async fn write_hints(
        &self,
        req: Request<pb::ReplicaHintBatch>,
    ) -> Result<Response<pb::ReplicaWriteAck>, Status> {
        let b = req.into_inner();
        self.refuse_if_partitioned(&b.from)?;
        if !crate::membership::valid_id(&b.hint_for) {
            return Err(Status::invalid_argument(
                "hint_for must name the owner: a node id of 1 to 253 letters, digits and -_.:",
            ));
        }
        let mut versions = Vec::with_capacity(b.records.len());
        for kr in b.records {
            let record = self.version(&kr.key, kr.record, &b.from)?;
            versions.push((kr.key, record));
        }
        let n = versions.len() as u32;
        self.parts
            .hints
            .keep(&b.hint_for, versions)
            .await
            .map_err(hint_status)?;
        Ok(Response::new(pb::ReplicaWriteAck { applied: n }))
    }

    async fn write_batch(
        &self,
        req: Request<pb::ReplicaWriteBatch>,
    ) -> Result<Response<pb::ReplicaWriteAck>, Status> {
        let b = req.into_inner();
        self.refuse_if_partitioned(&b.from)?;
        let applied = self.apply(b.records, &b.from).await?;
        Ok(Response::new(pb::ReplicaWriteAck { applied }))
    }

    type ExchangeStreamStream = ReceiverStream<Result<pb::ReplicaExchangeResult, Status>>;

    async fn exchange_stream(
        &self,
        req: Request<tonic::Streaming<pb::ReplicaExchange>>,
    ) -> Result<Response<Self::ExchangeStreamStream>, Status> {
        let svc = self.clone();
        let shutdown = self.parts.shutdown.clone();
        Ok(Response::new(serve_in_order(
            req.into_inner(),
            shutdown,
            move |x| {
                let svc = svc.clone();
                async move { svc.handle_exchange(x).await }
            },
        )))
    }

    async fn read(
        &self,
        req: Request<pb::ReplicaRead>,
    ) -> Result<Response<pb::ReplicaReadResult>, Status> {
        let r = req.into_inner();
        let rec = self.parts.store.get(&r.key).map_err(storage_status)?;
        Ok(Response::new(pb::ReplicaReadResult {
            record: rec.map(Into::into),
            omitted: false,
        }))
    }

    async fn read_batch(
        &self,
        req: Request<pb::ReplicaReadBatch>,
    ) -> Result<Response<pb::ReplicaReadBatchResult>, Status> {
        let r = req.into_inner();
        let results = self.read_all(r.keys, r.may_omit)?;
        Ok(Response::new(pb::ReplicaReadBatchResult { results }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let caller = req.extensions().get::<Caller>().cloned();
        let hb = req.into_inner();
        // A node's credentials speak for that node only.
        if let Some(Caller(caller)) = caller.filter(|c| !hb.from.is_empty() && c.0 != hb.from) {
            return Err(Status::permission_denied(format!(
                "credentials of {caller:?} cannot send {:?}'s heartbeat",
                hb.from
            )));
        }
        self.refuse_if_partitioned(&hb.from)?;
        self.parts
            .gossip
            .receive(hb)
            .map(Response::new)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    async fn range_digest(
        &self,
        req: Request<pb::RangeDigestRequest>,
    ) -> Result<Response<pb::RangeDigestResponse>, Status> {
        let r = req.into_inner();
        let spans: Vec<(u64, u64)> = r.spans.iter().map(|s| (s.start, s.end)).collect();
        let purge_before = r.purge_before;
        crate::merkle::check_spans(&spans).map_err(Status::invalid_argument)?;
        let engine = self.parts.store.engine().clone();
        let digest = tokio::task::spawn_blocking(move || {
            crate::merkle::digest_spans(engine.as_ref(), &spans, purge_before)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(storage_status)?;
        Ok(Response::new(pb::RangeDigestResponse {
            leaf_hashes: digest
                .iter()
                .map(|l| l.hash.to_be_bytes().to_vec().into())
                .collect(),
            leaf_counts: digest.iter().map(|l| l.count).collect(),
        }))
    }

    async fn fetch_range(
        &self,
        req: Request<pb::FetchRangeRequest>,
    ) -> Result<Response<pb::FetchRangeResponse>, Status> {
        let r = req.into_inner();
        // A page is cut by bytes too (the version that reaches the budget
        // is its last), so a range of large values streams page by page
        // within the peer message limit (twice this budget); the caller
        // resumes after the last key it got.
        let limit = ScanLimit {
            count: (r.limit as usize).clamp(1, MAX_PAGE),
            bytes: self.parts.message_limit,
        };
        let engine = self.parts.store.engine().clone();
        let after = if r.after_key.is_empty() {
            None
        } else {
            Some(r.after_key)
        };
        let page = tokio::task::spawn_blocking(move || {
            engine.scan(r.start, r.end, after.as_deref(), limit)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(storage_status)?;
        let more = limit.filled_by(&page);
        let records = page
            .into_iter()
            .map(|(key, rec)| pb::KeyedRecord {
                key,
                record: Some(rec.into()),
            })
            .collect();
        Ok(Response::new(pb::FetchRangeResponse { records, more }))
    }
}
