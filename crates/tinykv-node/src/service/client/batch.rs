//! `Batch` and `BatchStream`: a batch's operations run together, its
//! writes coordinated as one group and its reads as another.

use std::sync::Mutex;
use std::time::Duration;

use prost::Message;
use tinykv_proto::tinykv as pb;
use tokio::time::Instant;
use tonic::Status;

use super::{ClientService, Meta, MAX_BATCH_OPS};
use crate::coordinator::{ReadRequest, RequestError, WriteOutcome, WriteRequest};
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
        if ops.len() > MAX_BATCH_OPS {
            return Err(Status::invalid_argument(format!(
                "batch has {} operations; the limit is {MAX_BATCH_OPS}",
                ops.len()
            )));
        }
        let mut results: Vec<pb::OperationResult> = self
            .run_ops(ops, header)
            .await
            .into_iter()
            .map(|r| pb::OperationResult { result: Some(r) })
            .collect();
        fit_answer(&mut results, self.parts.rules.message_limit);
        Ok(pb::BatchResponse { results })
    }

    /// Runs operations as a batch does (checks, writes coordinated
    /// together and reads together, both at once) and gives each its
    /// result, in order, without the batch's answer-size cut.
    pub(crate) async fn run_ops(
        &self,
        ops: Vec<pb::Operation>,
        header: Option<Duration>,
    ) -> Vec<pb::operation_result::Result> {
        let mut results = Vec::new();
        results.resize_with(ops.len(), || None);
        self.run_ops_each(ops, header, |i, r| results[i] = Some(r))
            .await;
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| error_result(&Status::internal("operation got no result")))
            })
            .collect()
    }

    /// Runs operations as [`ClientService::run_ops`] does, handing each
    /// one's result (with its index) to `deliver` as soon as it has one:
    /// the RESP door merges many connections' commands into one batch, and
    /// a command whose quorum formed is not held back by a slower one.
    /// Every operation gets exactly one result.
    pub(crate) async fn run_ops_each(
        &self,
        ops: Vec<pb::Operation>,
        header: Option<Duration>,
        deliver: impl FnMut(usize, pb::operation_result::Result) + Send,
    ) {
        use pb::operation_result::Result as R;
        let Sorted {
            results,
            writes,
            reqs,
            gets,
            get_reqs,
        } = self.sort(ops, header);
        // The writes and the reads run at once in this task and both hand
        // results out: a lock nobody waits on.
        let deliver = Mutex::new(deliver);
        let hand = |i: usize, r: R| (deliver.lock().unwrap_or_else(|p| p.into_inner()))(i, r);
        for (i, r) in results.into_iter().enumerate() {
            if let Some(r) = r {
                hand(i, r);
            }
        }
        let coordinate = async {
            if reqs.is_empty() {
                return;
            }
            let coordinator = &self.parts.coordinator;
            coordinator
                .coordinate_writes_each(reqs, |j, outcome| {
                    let (i, meta) = &writes[j];
                    hand(*i, self.write_result(meta, outcome));
                })
                .await;
        };
        let read = async {
            if get_reqs.is_empty() {
                return;
            }
            let coordinator = &self.parts.coordinator;
            coordinator
                .coordinate_reads_each(get_reqs, |j, read| {
                    let (i, meta) = &gets[j];
                    let answer = self.finish_get(meta, read);
                    hand(*i, answer.map(R::Get).unwrap_or_else(|s| error_result(&s)));
                })
                .await;
        };
        tokio::join!(coordinate, read);
    }

    /// A coordinated write's result as a batch gives it.
    fn write_result(
        &self,
        meta: &Meta,
        outcome: Result<WriteOutcome, RequestError>,
    ) -> pb::operation_result::Result {
        use pb::operation_result::Result as R;
        match self.finish_write(meta, outcome) {
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
        }
    }
}

/// A batch's operations checked and sorted by kind, in order: the answers
/// known already (bad operations), and the writes and reads to coordinate
/// with the index and facts of the operation each came from.
struct Sorted {
    results: Vec<Option<pb::operation_result::Result>>,
    writes: Vec<(usize, Meta)>,
    reqs: Vec<WriteRequest>,
    gets: Vec<(usize, Meta)>,
    get_reqs: Vec<ReadRequest>,
}

impl ClientService {
    /// Checks each operation of a batch and sorts it into writes and reads.
    fn sort(&self, ops: Vec<pb::Operation>, header: Option<Duration>) -> Sorted {
        use pb::operation::Op;
        // One `now` for the batch: its writes with the same timeout share a
        // deadline, and so a call per replica.
        let now = Instant::now();
        let rules = &self.parts.rules;
        let mut out = Sorted {
            results: vec![None; ops.len()],
            writes: Vec::new(),
            reqs: Vec::new(),
            gets: Vec::new(),
            get_reqs: Vec::new(),
        };
        for (i, op) in ops.into_iter().enumerate() {
            let prepared = match op.op {
                Some(Op::Put(r)) => {
                    let d = deadline_at(rules, header, r.timeout_ms, now);
                    self.prepare_put(r, d)
                }
                Some(Op::Delete(r)) => {
                    let d = deadline_at(rules, header, r.timeout_ms, now);
                    self.prepare_delete(r, d)
                }
                Some(Op::Get(r)) => {
                    let d = deadline_at(rules, header, r.timeout_ms, now);
                    match self.prepare_get(r, d) {
                        Ok((meta, req)) => {
                            out.gets.push((i, meta));
                            out.get_reqs.push(req);
                        }
                        Err(s) => out.results[i] = Some(error_result(&s)),
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
                    out.writes.push((i, meta));
                    out.reqs.push(req);
                }
                Err(s) => out.results[i] = Some(error_result(&s)),
            }
        }
        out
    }
}

/// A batch operation's failure as its result.
pub(super) fn error_result(s: &Status) -> pb::operation_result::Result {
    pb::operation_result::Result::Error(pb::OperationError {
        code: s.code() as i32,
        message: s.message().to_string(),
    })
}

/// A result's bytes in the batch answer: its field tag, length and body.
fn answer_len(r: &pb::OperationResult) -> usize {
    let len = r.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

/// The result of a read left out of a batch answer.
fn left_out() -> pb::OperationResult {
    pb::OperationResult {
        result: Some(error_result(&Status::resource_exhausted(
            "read left out of the batch answer to keep it under the message limit; send it alone",
        ))),
    }
}

/// Keeps a batch answer within `limit` bytes (the largest message this
/// node sends): values each under the value limit can pass it together.
/// Reads are kept in order while they fit beside every other result; a
/// read after that is answered RESOURCE_EXHAUSTED instead, which the client
/// library asks again alone (reads are idempotent, and a lone read fits).
/// The first read is always kept, so a batch of one is never cut.
fn fit_answer(results: &mut [pb::OperationResult], limit: usize) {
    use pb::operation_result::Result as R;
    let is_read = |r: &pb::OperationResult| matches!(r.result, Some(R::Get(_)));
    let total: usize = results.iter().map(answer_len).sum();
    if total <= limit {
        return;
    }
    let reads = results.iter().filter(|r| is_read(r)).count();
    let others: usize = results.iter().filter(|r| !is_read(r)).map(answer_len).sum();
    let mut room = limit
        .saturating_sub(others)
        .saturating_sub(reads * answer_len(&left_out()));
    let mut first = true;
    for r in results.iter_mut().filter(|r| is_read(r)) {
        let len = answer_len(r);
        if first || len <= room {
            room = room.saturating_sub(len);
        } else {
            *r = left_out();
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::operation_result::Result as R;

    fn read(bytes: usize) -> pb::OperationResult {
        pb::OperationResult {
            result: Some(R::Get(pb::GetResponse {
                val: vec![1u8; bytes].into(),
                operation_success: true,
                ..Default::default()
            })),
        }
    }

    fn write() -> pb::OperationResult {
        pb::OperationResult {
            result: Some(R::Put(pb::PutResponse {
                operation_success: true,
                timestamp: i64::MAX,
                acks: 3,
            })),
        }
    }

    fn kinds(results: &[pb::OperationResult]) -> String {
        results
            .iter()
            .map(|r| match &r.result {
                Some(R::Get(g)) => format!("r{}", g.val.len()),
                Some(R::Put(_)) => "w".into(),
                Some(R::Error(e)) if e.code == tonic::Code::ResourceExhausted as i32 => {
                    "cut".into()
                }
                _ => "?".into(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn an_answer_under_the_limit_is_unchanged() {
        let mut results = vec![read(100), write(), read(200)];
        let before = results.clone();
        fit_answer(&mut results, 1000);
        assert_eq!(results, before);
    }

    #[test]
    fn reads_past_the_limit_are_left_out_and_every_write_result_stays() {
        let mut results = vec![read(400), write(), read(400), read(100), write(), read(400)];
        fit_answer(&mut results, 1000);
        assert_eq!(kinds(&results), "r400 w cut r100 w cut");
        let total: usize = results.iter().map(answer_len).sum();
        assert!(total <= 1000, "answer is {total} bytes");
    }

    #[test]
    fn the_first_read_is_kept_even_alone_over_the_limit() {
        let mut results = vec![read(2000), read(10)];
        fit_answer(&mut results, 1000);
        assert_eq!(kinds(&results), "r2000 cut");
    }
}
