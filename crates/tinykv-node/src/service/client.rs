//! `tinykv.TinyKV`: the client-facing service, wire-compatible with the
//! original C++ TinyKV (Ping, Put, Get) plus Delete and Status.

use std::sync::Arc;
use std::time::Instant as StdInstant;

use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::tiny_kv_server::TinyKv;
use tonic::{Request, Response, Status};

use super::{check_key, deadline, replicas_needed};
use crate::node::Node;
use crate::version::Record;

/// The client service.
pub struct ClientService {
    node: Arc<Node>,
}

impl ClientService {
    /// A service coordinating requests on `node`.
    pub fn new(node: Arc<Node>) -> Self {
        ClientService { node }
    }

    fn record(&self, op: &str, level: &str, started: StdInstant, result: &Result<(), Status>) {
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
}

#[tonic::async_trait]
impl TinyKv for ClientService {
    async fn ping(
        &self,
        _req: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {
            is_ready: !self.node.shutdown.is_cancelled(),
            node_id: self.node.id.clone(),
        }))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let started = StdInstant::now();
        let deadline = deadline(&self.node, &req, req.get_ref().timeout_ms);
        let r = req.into_inner();
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
        self.record(
            "put",
            level,
            started,
            &result.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        result.map(Response::new)
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let started = StdInstant::now();
        let deadline = deadline(&self.node, &req, req.get_ref().timeout_ms);
        let r = req.into_inner();
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
        self.record(
            "get",
            level,
            started,
            &result.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        result.map(Response::new)
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let started = StdInstant::now();
        let deadline = deadline(&self.node, &req, req.get_ref().timeout_ms);
        let r = req.into_inner();
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
        self.record(
            "delete",
            level,
            started,
            &result.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        result.map(Response::new)
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.node.status_report()))
    }
}
