//! `tinykv.TinyKV`: the client-facing service, wire-compatible with the
//! original C++ TinyKV (Ping, Put, Get) plus Delete and Status.

use std::sync::Arc;
use std::time::Instant as StdInstant;

use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::tiny_kv_server::TinyKv;
use tonic::{Request, Response, Status};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::request_span::{record_consistency, request_span};
use super::{check_key, deadline, header_timeout, replicas_needed, serve_in_order, Rules};
use crate::clock::Clock;
use crate::coordinator::{
    Coordinator, ReadOutcome, ReadRequest, RequestError, WriteOutcome, WriteRequest,
};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::status::NodeStatus;
use crate::storage::Store;
use crate::version::{Expiry, KeyTtl, Record};

/// Most operations accepted in one `Batch` call.
pub const MAX_BATCH_OPS: usize = 1024;

/// What the client service uses of the node.
pub struct ClientParts {
    /// This node's id (the writer of the versions it stamps).
    pub id: String,
    /// Coordinates every read and write.
    pub coordinator: Arc<Coordinator>,
    /// Stamps versions.
    pub clock: Arc<Clock>,
    /// The member table (for `Topology`).
    pub membership: Arc<Membership>,
    /// This node's storage (for `Ping`: is it failed?).
    pub store: Store,
    /// Answers `Status`.
    pub status: Arc<NodeStatus>,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// Limits and defaults.
    pub rules: Rules,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
}

/// The client service.
#[derive(Clone)]
pub struct ClientService {
    parts: Arc<ClientParts>,
}

impl ClientService {
    /// A service coordinating requests with `parts`.
    pub fn new(parts: ClientParts) -> Self {
        ClientService {
            parts: Arc::new(parts),
        }
    }

    /// The limits and defaults requests are judged by.
    pub(crate) fn rules(&self) -> Rules {
        self.parts.rules
    }

    /// What `Status` answers: members, ring, local keys, hints.
    pub(crate) fn status_report(&self) -> pb::StatusResponse {
        self.parts.status.report()
    }

    /// Whether the node serves: not shutting down, storage not failed.
    pub(crate) fn is_ready(&self) -> bool {
        !self.parts.shutdown.is_cancelled() && self.parts.store.engine().failure().is_none()
    }

    fn record<T>(&self, op: &str, level: &str, started: StdInstant, result: &Result<T, Status>) {
        let m = &self.parts.metrics;
        m.requests.with_label_values(&[op, level]).inc();
        m.latency
            .with_label_values(&[op, level])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(_) => tracing::debug!(op, level, elapsed = ?started.elapsed(), "request done"),
            Err(s) => {
                tracing::debug!(op, level, code = ?s.code(), error = s.message(), "request failed");
                m.request_errors
                    .with_label_values(&[op, &format!("{:?}", s.code())])
                    .inc();
            }
        }
    }

    /// The version timestamp for a write: the client's if it gave one.
    fn timestamp(&self, given: i64) -> Result<u64, Status> {
        match given {
            0 => Ok(self.parts.clock.now()),
            t if t < 0 => Err(Status::invalid_argument(format!(
                "timestamp must not be negative (got {t})"
            ))),
            t => {
                let t = t as u64;
                self.parts
                    .clock
                    .admit_client(t)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                Ok(t)
            }
        }
    }

    /// The replicas a request needs (see [`replicas_needed`]), of the
    /// coordinator's replication factor; recorded in the request's span.
    fn needed(
        &self,
        explicit: i32,
        field: &str,
        level: i32,
    ) -> Result<(usize, &'static str), Status> {
        let n = self.parts.coordinator.replication_factor();
        let (k, name) = replicas_needed(
            self.parts.rules.default_consistency,
            n,
            explicit,
            field,
            level,
        )?;
        record_consistency(name);
        Ok((k, name))
    }

    /// Checks a put and makes its version; a failed check is recorded.
    fn prepare_put(&self, r: pb::PutRequest, deadline: Instant) -> Result<Prepared, Status> {
        let started = StdInstant::now();
        let (w, level) = self.needed(r.replication_factor, "replication_factor", r.consistency)?;
        let checked = check_key(&r.key).and_then(|()| {
            let max = self.parts.rules.max_value_bytes;
            if r.val.len() > max {
                return Err(Status::invalid_argument(format!(
                    "value is {} bytes; the limit is {max} bytes",
                    r.val.len()
                )));
            }
            let expiry = expire::expiry(r.ttl_ms, r.expires_at_us, false)?;
            Ok((self.timestamp(r.timestamp)?, expiry))
        });
        let (ts, expiry) =
            checked.inspect_err(|s| self.record::<()>("put", level, started, &Err(s.clone())))?;
        let record = Record::value(r.val, ts, self.parts.id.clone());
        Ok(Prepared {
            op: "put",
            level,
            started,
            ts,
            req: WriteRequest {
                key: r.key,
                record: match expiry {
                    Expiry::Never => record,
                    e => record.expiring(e.resolve(ts)),
                },
                w,
                strict: r.strict_quorum,
                deadline,
            },
        })
    }

    /// Checks a delete and makes its tombstone; a failed check is recorded.
    fn prepare_delete(&self, r: pb::DeleteRequest, deadline: Instant) -> Result<Prepared, Status> {
        let started = StdInstant::now();
        let (w, level) = self.needed(r.w, "w", r.consistency)?;
        check_key(&r.key)
            .inspect_err(|s| self.record::<()>("delete", level, started, &Err(s.clone())))?;
        let ts = self.parts.clock.now();
        Ok(Prepared {
            op: "delete",
            level,
            started,
            ts,
            req: WriteRequest {
                key: r.key,
                record: Record::tombstone(ts, self.parts.id.clone()),
                w,
                strict: r.strict_quorum,
                deadline,
            },
        })
    }

    /// Records a coordinated write and makes its answer: `acks` and the
    /// version's timestamp, or the failure.
    fn finish_write(
        &self,
        meta: &Meta,
        outcome: Result<WriteOutcome, RequestError>,
    ) -> Result<(i64, u32), Status> {
        let result = outcome
            .map(|o| (meta.ts as i64, o.acks as u32))
            .map_err(Status::from);
        self.record(meta.op, meta.level, meta.started, &result);
        result
    }

    /// Coordinates one prepared write.
    async fn write_one(&self, p: Prepared) -> Result<(i64, u32), Status> {
        let (meta, req) = p.split();
        let out = self
            .parts
            .coordinator
            .coordinate_writes(vec![req])
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(RequestError::Unavailable(
                    "write was not coordinated".into(),
                ))
            });
        self.finish_write(&meta, out)
    }

    /// A write of a value, as `Put` runs it.
    async fn put_op(
        &self,
        r: pb::PutRequest,
        deadline: Instant,
    ) -> Result<pb::PutResponse, Status> {
        let (timestamp, acks) = self.write_one(self.prepare_put(r, deadline)?).await?;
        Ok(pb::PutResponse {
            operation_success: true,
            timestamp,
            acks,
        })
    }

    /// Checks a get; a failed check is recorded.
    fn prepare_get(
        &self,
        r: pb::GetRequest,
        deadline: Instant,
    ) -> Result<(Meta, ReadRequest), Status> {
        let started = StdInstant::now();
        let (n, level) = self.needed(r.quorum_size, "quorum_size", r.consistency)?;
        check_key(&r.key)
            .inspect_err(|s| self.record::<()>("get", level, started, &Err(s.clone())))?;
        let meta = Meta {
            op: "get",
            level,
            started,
            ts: 0,
        };
        Ok((
            meta,
            ReadRequest {
                key: r.key,
                r: n,
                deadline,
            },
        ))
    }

    /// Records a coordinated read and makes its answer.
    fn finish_get(
        &self,
        meta: &Meta,
        outcome: Result<ReadOutcome, RequestError>,
    ) -> Result<pb::GetResponse, Status> {
        let result = outcome.map_err(Status::from).map(|out| {
            let answered = out.answered as u32;
            // The clock is read (once) only for a value with an expiry.
            let now = match &out.winner {
                Some(v) if v.expires_at != 0 => self.parts.clock.peek(),
                _ => 0,
            };
            match out.winner {
                Some(v) if v.is_live(now) => pb::GetResponse {
                    ttl_remaining_us: match v.ttl(now) {
                        KeyTtl::Remaining(d) => u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
                        _ => 0,
                    },
                    expires_at_us: v.expires_at,
                    val: v.value,
                    timestamp: v.timestamp as i64,
                    operation_success: true,
                    status: pb::ReadStatus::Found as i32,
                    writer: v.writer,
                    replicas_answered: answered,
                },
                _ => pb::GetResponse {
                    operation_success: false,
                    status: pb::ReadStatus::NotFound as i32,
                    replicas_answered: answered,
                    ..Default::default()
                },
            }
        });
        self.record(meta.op, meta.level, meta.started, &result);
        result
    }

    /// A quorum read, as `Get` runs it.
    async fn get_op(
        &self,
        r: pb::GetRequest,
        deadline: Instant,
    ) -> Result<pb::GetResponse, Status> {
        let (meta, req) = self.prepare_get(r, deadline)?;
        let out = self
            .parts
            .coordinator
            .coordinate_reads(vec![req])
            .await
            .pop()
            .unwrap_or_else(|| Err(RequestError::Unavailable("read was not coordinated".into())));
        self.finish_get(&meta, out)
    }

    /// A tombstone write, as `Delete` runs it.
    async fn delete_op(
        &self,
        r: pb::DeleteRequest,
        deadline: Instant,
    ) -> Result<pb::DeleteResponse, Status> {
        let (timestamp, acks) = self.write_one(self.prepare_delete(r, deadline)?).await?;
        Ok(pb::DeleteResponse {
            operation_success: true,
            timestamp,
            acks,
        })
    }
}
/// What a write's answer and metrics need besides its outcome.
struct Meta {
    op: &'static str,
    level: &'static str,
    started: StdInstant,
    ts: u64,
}

/// A checked write, ready to coordinate.
struct Prepared {
    op: &'static str,
    level: &'static str,
    started: StdInstant,
    ts: u64,
    req: WriteRequest,
}

impl Prepared {
    fn split(self) -> (Meta, WriteRequest) {
        let meta = Meta {
            op: self.op,
            level: self.level,
            started: self.started,
            ts: self.ts,
        };
        (meta, self.req)
    }
}

mod batch;
mod expire;

#[tonic::async_trait]
impl TinyKv for ClientService {
    async fn ping(
        &self,
        _req: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {
            is_ready: self.is_ready(),
            node_id: self.parts.id.clone(),
        }))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let span = request_span("put", &req);
        let deadline = deadline(&self.parts.rules, &req, req.get_ref().timeout_ms);
        self.put_op(req.into_inner(), deadline)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let span = request_span("get", &req);
        let deadline = deadline(&self.parts.rules, &req, req.get_ref().timeout_ms);
        self.get_op(req.into_inner(), deadline)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let span = request_span("delete", &req);
        let deadline = deadline(&self.parts.rules, &req, req.get_ref().timeout_ms);
        self.delete_op(req.into_inner(), deadline)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let span = request_span("batch", &req);
        let header = header_timeout(&req);
        self.run_batch(req.into_inner().ops, header)
            .instrument(span)
            .await
            .map(Response::new)
    }

    type BatchStreamStream = ReceiverStream<Result<pb::BatchResponse, Status>>;

    async fn batch_stream(
        &self,
        req: Request<tonic::Streaming<pb::BatchRequest>>,
    ) -> Result<Response<Self::BatchStreamStream>, Status> {
        let svc = self.clone();
        let shutdown = self.parts.shutdown.clone();
        let stream = request_span("batch_stream", &req);
        Ok(Response::new(serve_in_order(
            req.into_inner(),
            shutdown,
            move |b: pb::BatchRequest| {
                let svc = svc.clone();
                let span = tracing::debug_span!(parent: &stream, "batch", ops = b.ops.len());
                async move { svc.run_batch(b.ops, None).instrument(span).await }
            },
        )))
    }

    async fn expire(
        &self,
        req: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        let span = request_span("expire", &req);
        let deadline = deadline(&self.parts.rules, &req, req.get_ref().timeout_ms);
        self.expire_op(req.into_inner(), deadline)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn topology(
        &self,
        _req: Request<pb::TopologyRequest>,
    ) -> Result<Response<pb::TopologyResponse>, Status> {
        let ring = self.parts.membership.read_ring();
        let node_ids = ring.nodes().to_vec();
        let index = |id: &str| node_ids.iter().position(|n| n == id).map(|i| i as u32);
        let mut ranges: Vec<pb::RangeReplicas> = ring
            .ranges()
            .into_iter()
            .map(|r| pb::RangeReplicas {
                end: r.end,
                replicas: r.replicas.iter().filter_map(|id| index(id)).collect(),
            })
            .collect();
        ranges.sort_by_key(|r| r.end);
        Ok(Response::new(pb::TopologyResponse {
            node_id: self.parts.id.clone(),
            node_ids,
            ranges,
            key_hash: crate::ring::KEY_HASH.into(),
        }))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.parts.status.report()))
    }
}
