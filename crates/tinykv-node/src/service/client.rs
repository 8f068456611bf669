//! `tinykv.TinyKV`: the client-facing service, wire-compatible with the
//! original C++ TinyKV (Ping, Put, Get) plus Delete and Status.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::tiny_kv_server::TinyKv;
use tonic::{Request, Response, Status};

use super::{
    check_key, deadline, deadline_within, header_timeout, replicas_needed, serve_in_order,
};
use crate::node::Node;
use crate::version::Record;

/// Most operations accepted in one `Batch` call.
pub const MAX_BATCH_OPS: usize = 1024;

/// The client service.
#[derive(Clone)]
pub struct ClientService {
    node: Arc<Node>,
}

impl ClientService {
    /// A service coordinating requests on `node`.
    pub fn new(node: Arc<Node>) -> Self {
        ClientService { node }
    }

    fn record<T>(&self, op: &str, level: &str, started: StdInstant, result: &Result<T, Status>) {
        let m = &self.node.metrics;
        m.requests.with_label_values(&[op, level]).inc();
        m.latency
            .with_label_values(&[op, level])
            .observe(started.elapsed().as_secs_f64());
        if let Err(s) = result {
            m.request_errors
                .with_label_values(&[op, &format!("{:?}", s.code())])
                .inc();
        }
    }

    /// The version timestamp for a write: the client's if it gave one.
    fn timestamp(&self, given: i64) -> Result<u64, Status> {
        match given {
            0 => Ok(self.node.clock.now()),
            t if t < 0 => Err(Status::invalid_argument(format!(
                "timestamp must not be negative (got {t})"
            ))),
            t => {
                let t = t as u64;
                self.node.observe(t, "client");
                Ok(t)
            }
        }
    }

    /// A write of a value, as `Put` and a batch's put operation run it.
    async fn put_op(
        &self,
        r: pb::PutRequest,
        deadline: Instant,
    ) -> Result<pb::PutResponse, Status> {
        let started = StdInstant::now();
        let (w, level) = replicas_needed(
            &self.node,
            r.replication_factor,
            "replication_factor",
            r.consistency,
        )?;
        let result = async {
            check_key(&r.key)?;
            let max = self.node.config.max_value_bytes;
            if r.val.len() > max {
                return Err(Status::invalid_argument(format!(
                    "value is {} bytes; the limit is {max} bytes",
                    r.val.len()
                )));
            }
            let ts = self.timestamp(r.timestamp)?;
            let record = Record::value(r.val, ts, self.node.id.clone());
            let out = self
                .node
                .coordinate_write(r.key, record, w, r.strict_quorum, deadline)
                .await?;
            Ok(pb::PutResponse {
                operation_success: true,
                timestamp: ts as i64,
                acks: out.acks as u32,
            })
        }
        .await;
        self.record("put", level, started, &result);
        result
    }

    /// A quorum read, as `Get` and a batch's get operation run it.
    async fn get_op(
        &self,
        r: pb::GetRequest,
        deadline: Instant,
    ) -> Result<pb::GetResponse, Status> {
        let started = StdInstant::now();
        let (n, level) = replicas_needed(&self.node, r.quorum_size, "quorum_size", r.consistency)?;
        let result = async {
            check_key(&r.key)?;
            let out = self.node.coordinate_read(r.key, n, deadline).await?;
            let answered = out.answered as u32;
            Ok(match out.winner {
                Some(v) if !v.tombstone => pb::GetResponse {
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
            })
        }
        .await;
        self.record("get", level, started, &result);
        result
    }

    /// A tombstone write, as `Delete` and a batch's delete operation run it.
    async fn delete_op(
        &self,
        r: pb::DeleteRequest,
        deadline: Instant,
    ) -> Result<pb::DeleteResponse, Status> {
        let started = StdInstant::now();
        let (w, level) = replicas_needed(&self.node, r.w, "w", r.consistency)?;
        let result = async {
            check_key(&r.key)?;
            let ts = self.node.clock.now();
            let record = Record::tombstone(ts, self.node.id.clone());
            let out = self
                .node
                .coordinate_write(r.key, record, w, r.strict_quorum, deadline)
                .await?;
            Ok(pb::DeleteResponse {
                operation_success: true,
                timestamp: ts as i64,
                acks: out.acks as u32,
            })
        }
        .await;
        self.record("delete", level, started, &result);
        result
    }

    /// Runs a batch's operations concurrently on this task; each coordinates
    /// its own replicas, which the peer queues coalesce per node.
    async fn run_batch(
        &self,
        ops: Vec<pb::Operation>,
        header: Option<Duration>,
    ) -> Result<pb::BatchResponse, Status> {
        if ops.len() > MAX_BATCH_OPS {
            return Err(Status::invalid_argument(format!(
                "batch has {} operations; the limit is {MAX_BATCH_OPS}",
                ops.len()
            )));
        }
        let results =
            futures::future::join_all(ops.into_iter().map(|op| self.batch_op(op, header))).await;
        Ok(pb::BatchResponse { results })
    }

    /// One operation of a batch; its failure is its own result.
    async fn batch_op(&self, op: pb::Operation, header: Option<Duration>) -> pb::OperationResult {
        use pb::operation::Op;
        use pb::operation_result::Result as R;
        let result = match op.op {
            Some(Op::Put(r)) => {
                let d = deadline_within(&self.node, header, r.timeout_ms);
                self.put_op(r, d).await.map(R::Put)
            }
            Some(Op::Get(r)) => {
                let d = deadline_within(&self.node, header, r.timeout_ms);
                self.get_op(r, d).await.map(R::Get)
            }
            Some(Op::Delete(r)) => {
                let d = deadline_within(&self.node, header, r.timeout_ms);
                self.delete_op(r, d).await.map(R::Delete)
            }
            None => Err(Status::invalid_argument(
                "batch operation has no put, get or delete",
            )),
        };
        pb::OperationResult {
            result: Some(result.unwrap_or_else(|s| {
                R::Error(pb::OperationError {
                    code: s.code() as i32,
                    message: s.message().to_string(),
                })
            })),
        }
    }
}

#[tonic::async_trait]
impl TinyKv for ClientService {
    async fn ping(
        &self,
        _req: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {
            is_ready: !self.node.shutdown.is_cancelled()
                && self.node.store.engine().failure().is_none(),
            node_id: self.node.id.clone(),
        }))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let deadline = deadline(&self.node, &req, req.get_ref().timeout_ms);
        self.put_op(req.into_inner(), deadline)
            .await
            .map(Response::new)
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let deadline = deadline(&self.node, &req, req.get_ref().timeout_ms);
        self.get_op(req.into_inner(), deadline)
            .await
            .map(Response::new)
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let deadline = deadline(&self.node, &req, req.get_ref().timeout_ms);
        self.delete_op(req.into_inner(), deadline)
            .await
            .map(Response::new)
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let header = header_timeout(&req);
        self.run_batch(req.into_inner().ops, header)
            .await
            .map(Response::new)
    }

    type BatchStreamStream = ReceiverStream<Result<pb::BatchResponse, Status>>;

    async fn batch_stream(
        &self,
        req: Request<tonic::Streaming<pb::BatchRequest>>,
    ) -> Result<Response<Self::BatchStreamStream>, Status> {
        let svc = self.clone();
        let shutdown = self.node.shutdown.clone();
        Ok(Response::new(serve_in_order(
            req.into_inner(),
            shutdown,
            move |b: pb::BatchRequest| {
                let svc = svc.clone();
                async move { svc.run_batch(b.ops, None).await }
            },
        )))
    }

    async fn topology(
        &self,
        _req: Request<pb::TopologyRequest>,
    ) -> Result<Response<pb::TopologyResponse>, Status> {
        let ring = self.node.membership.read_ring();
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
            node_id: self.node.id.clone(),
            node_ids,
            ranges,
            key_hash: crate::ring::KEY_HASH.into(),
        }))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.node.status_report()))
    }
}
