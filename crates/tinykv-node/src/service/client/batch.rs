//! `Batch` and `BatchStream`: a batch's operations run together, its
//! writes coordinated as one group and its reads as another.

use std::time::Duration;

use tinykv_proto::tinykv as pb;
use tokio::time::Instant;
use tonic::Status;

use super::{ClientService, Meta, MAX_BATCH_OPS};
use crate::service::deadline_at;

impl ClientService {
    /// Runs a batch: its puts and deletes are coordinated together, and
    /// its gets together (one call per replica for each kind), both at
    /// once. Each operation's failure is its own result.
    pub(super) async fn run_batch(
        &self,
        ops: Vec<pb::Operation>,
        header: Option<Duration>,
    ) -> Result<pb::BatchResponse, Status> {
        use pb::operation::Op;
        use pb::operation_result::Result as R;
        if ops.len() > MAX_BATCH_OPS {
            return Err(Status::invalid_argument(format!(
                "batch has {} operations; the limit is {MAX_BATCH_OPS}",
                ops.len()
            )));
        }
        // One `now` for the batch: its writes with the same timeout share a
        // deadline, and so a call per replica.
        let now = Instant::now();
        let mut results: Vec<Option<R>> = vec![None; ops.len()];
        let mut writes: Vec<(usize, Meta)> = Vec::new();
        let mut reqs = Vec::new();
        let mut gets: Vec<(usize, Meta)> = Vec::new();
        let mut get_reqs = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            let prepared = match op.op {
                Some(Op::Put(r)) => {
                    let d = deadline_at(&self.node, header, r.timeout_ms, now);
                    self.prepare_put(r, d)
                }
                Some(Op::Delete(r)) => {
                    let d = deadline_at(&self.node, header, r.timeout_ms, now);
                    self.prepare_delete(r, d)
                }
                Some(Op::Get(r)) => {
                    let d = deadline_at(&self.node, header, r.timeout_ms, now);
                    match self.prepare_get(r, d) {
                        Ok((meta, req)) => {
                            gets.push((i, meta));
                            get_reqs.push(req);
                        }
                        Err(s) => results[i] = Some(error_result(&s)),
                    }
                    continue;
                }
                None => Err(Status::invalid_argument(
                    "batch operation has no put, get or delete",
                )),
            };
            match prepared {
                Ok(p) => {
                    let (meta, req) = p.split();
                    writes.push((i, meta));
                    reqs.push(req);
                }
                Err(s) => results[i] = Some(error_result(&s)),
            }
        }
        let coordinate = async {
            if reqs.is_empty() {
                Vec::new()
            } else {
                self.node.coordinate_writes(reqs).await
            }
        };
        let read = async {
            if get_reqs.is_empty() {
                Vec::new()
            } else {
                self.node.coordinate_reads(get_reqs).await
            }
        };
        let (outcomes, reads) = tokio::join!(coordinate, read);
        for ((i, meta), outcome) in writes.into_iter().zip(outcomes) {
            let answer = self.finish_write(&meta, outcome);
            results[i] = Some(match answer {
                Ok((timestamp, acks)) if meta.op == "put" => R::Put(pb::PutResponse {
                    operation_success: true,
                    timestamp,
                    acks,
                }),
                Ok((timestamp, acks)) => R::Delete(pb::DeleteResponse {
                    operation_success: true,
                    timestamp,
                    acks,
                }),
                Err(s) => error_result(&s),
            });
        }
        for ((i, meta), read) in gets.into_iter().zip(reads) {
            let answer = self.finish_get(&meta, read);
            results[i] = Some(answer.map(R::Get).unwrap_or_else(|s| error_result(&s)));
        }
        let results = results
            .into_iter()
            .map(|r| pb::OperationResult {
                result: Some(
                    r.unwrap_or_else(|| error_result(&Status::internal("operation got no result"))),
                ),
            })
            .collect();
        Ok(pb::BatchResponse { results })
    }
}

/// A batch operation's failure as its result.
pub(super) fn error_result(s: &Status) -> pb::operation_result::Result {
    pb::operation_result::Result::Error(pb::OperationError {
        code: s.code() as i32,
        message: s.message().to_string(),
    })
}
