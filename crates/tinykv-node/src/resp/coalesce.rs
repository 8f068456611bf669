//! Gathering the batches of many connections into one coordinator batch.
//!
//! A connection's pipelined commands already travel as one batch. Most
//! Redis clients do not pipeline, though: fifty connections each waiting
//! for one `GET` would cost fifty coordinator passes, fifty replica calls
//! per replica and fifty sets of wake-ups. The gatherer takes whatever
//! batches the connections handed in while it waited for its turn on the
//! runtime and runs them as one, so under load the cost of a pass is
//! shared, and when idle a batch goes out alone at once (one scheduler
//! turn later). Each batch still gets exactly its own answers, in order.
//!
//! The queue holds at most one batch per connection (a connection waits
//! for its answers before it sends more), so it is bounded by the
//! connection limit.

use tinykv_proto::tinykv as pb;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::service::client::{ClientService, MAX_BATCH_OPS};

use pb::operation_result::Result as Outcome;

/// One connection's batch and where its answers go.
struct Job {
    ops: Vec<pb::Operation>,
    /// Key and value bytes of its operations.
    bytes: usize,
    reply: oneshot::Sender<Vec<Outcome>>,
}

/// Key and value bytes of `ops`: what a replica call carries for them.
fn bytes_of(ops: &[pb::Operation]) -> usize {
    use pb::operation::Op;
    ops.iter()
        .map(|o| match &o.op {
            Some(Op::Put(p)) => p.key.len() + p.val.len(),
            Some(Op::Get(g)) => g.key.len(),
            Some(Op::Delete(d)) => d.key.len(),
            None => 0,
        })
        .sum()
}

/// The connections' way into the gatherer.
pub(crate) struct Coalescer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Coalescer {
    /// Starts the gatherer: it runs until every `Coalescer` handle is gone.
    /// A merged batch carries at most `max_bytes` of keys and values (more
    /// only when one connection's batch alone does), so the replica calls
    /// it makes stay within what a peer accepts: merging never turns
    /// writes that pass alone into one that is refused.
    pub fn start(client: ClientService, max_bytes: usize) -> Coalescer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(gather(client, rx, max_bytes).in_current_span());
        Coalescer { tx }
    }

    /// Runs `ops` (with other connections' batches when there are any)
    /// and returns their results, in order.
    pub async fn run(&self, ops: Vec<pb::Operation>) -> Vec<Outcome> {
        let len = ops.len();
        let bytes = bytes_of(&ops);
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Job { ops, bytes, reply }).is_err() {
            return vec![gone(); len];
        }
        answer.await.unwrap_or_else(|_| vec![gone(); len])
    }
}

/// The result of an operation whose batch could not run.
fn gone() -> Outcome {
    Outcome::Error(pb::OperationError {
        code: tonic::Code::Unavailable as i32,
        message: "node is shutting down".into(),
    })
}

/// Takes the batches handed in, merges those waiting at the same time (up
/// to a batch's limits) and runs each merged batch in its own task.
async fn gather(client: ClientService, mut rx: mpsc::UnboundedReceiver<Job>, max_bytes: usize) {
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        // Lets the other connections woken by the same readiness hand in
        // their batches before this one goes.
        tokio::task::yield_now().await;
        let (jobs, next) = take_batch(first, &mut rx, MAX_BATCH_OPS, max_bytes);
        held = next;
        tokio::spawn(run_merged(client.clone(), jobs).in_current_span());
    }
}

/// `first` and the jobs queued behind it, up to `max_ops` operations and
/// `max_bytes` of keys and values (`first` alone may exceed them); the job
/// that would have gone over is returned to start the next batch.
fn take_batch(
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    max_ops: usize,
    max_bytes: usize,
) -> (Vec<Job>, Option<Job>) {
    let (mut ops, mut bytes) = (first.ops.len(), first.bytes);
    let mut jobs = vec![first];
    while ops < max_ops && bytes < max_bytes {
        let Ok(job) = rx.try_recv() else { break };
        if ops + job.ops.len() > max_ops || bytes + job.bytes > max_bytes {
            return (jobs, Some(job));
        }
        ops += job.ops.len();
        bytes += job.bytes;
        jobs.push(job);
    }
    (jobs, None)
}

/// Runs `jobs` as one batch and hands each its results as soon as all of
/// its own operations have theirs (a connection does not wait for another
/// connection's slower command).
async fn run_merged(client: ClientService, jobs: Vec<Job>) {
    if jobs.len() == 1 {
        if let Some(job) = jobs.into_iter().next() {
            let results = client.run_ops(job.ops, None).await;
            let _ = job.reply.send(results);
        }
        return;
    }
    let total = jobs.iter().map(|j| j.ops.len()).sum();
    let mut ops = Vec::with_capacity(total);
    // For each operation of the merged batch: its job and its place there.
    let mut owner = Vec::with_capacity(total);
    let mut shares = Vec::with_capacity(jobs.len());
    for (j, job) in jobs.into_iter().enumerate() {
        owner.extend((0..job.ops.len()).map(|k| (j, k)));
        shares.push(Share::new(job.ops.len(), job.reply));
        ops.extend(job.ops);
    }
    client
        .run_ops_each(ops, None, |i, result| {
            if let Some(&(j, k)) = owner.get(i) {
                shares[j].fill(k, result);
            }
        })
        .await;
}

/// One job's results as they come in.
struct Share {
    results: Vec<Option<Outcome>>,
    missing: usize,
    reply: Option<oneshot::Sender<Vec<Outcome>>>,
}

impl Share {
    fn new(len: usize, reply: oneshot::Sender<Vec<Outcome>>) -> Share {
        let mut results = Vec::new();
        results.resize_with(len, || None);
        Share {
            results,
            missing: len,
            reply: Some(reply),
        }
    }

    /// Takes operation `k`'s result; sends the job's results once whole.
    fn fill(&mut self, k: usize, result: Outcome) {
        let Some(slot) = self.results.get_mut(k) else {
            return;
        };
        if slot.replace(result).is_none() {
            self.missing -= 1;
        }
        if self.missing == 0 {
            if let Some(reply) = self.reply.take() {
                let results = std::mem::take(&mut self.results);
                let _ = reply.send(
                    results
                        .into_iter()
                        .map(|r| r.unwrap_or_else(gone))
                        .collect(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(bytes: usize) -> pb::Operation {
        pb::Operation {
            op: Some(pb::operation::Op::Put(pb::PutRequest {
                key: "k".into(),
                val: vec![0u8; bytes.saturating_sub(1)].into(),
                ..Default::default()
            })),
        }
    }

    fn job(ops: Vec<pb::Operation>) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            bytes: bytes_of(&ops),
            ops,
            reply,
        }
    }

    /// How the queued jobs (sizes in bytes of one put each) split into batches.
    fn batches(sizes: &[usize], max_ops: usize, max_bytes: usize) -> Vec<usize> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for &b in sizes {
            let _ = tx.send(job(vec![put(b)]));
        }
        let mut out = Vec::new();
        let mut held = None;
        while let Some(first) = held.take().or_else(|| rx.try_recv().ok()) {
            let (jobs, next) = take_batch(first, &mut rx, max_ops, max_bytes);
            out.push(jobs.len());
            held = next;
        }
        out
    }

    #[test]
    fn merged_writes_stay_under_the_byte_limit() {
        // Three writes near the limit each go alone: merged they would make
        // a replica call a peer refuses.
        assert_eq!(batches(&[600, 600, 600], 100, 1000), vec![1, 1, 1]);
        assert_eq!(batches(&[400, 400, 400, 100], 100, 1000), vec![2, 2]);
        // One job over the limit still runs (alone).
        assert_eq!(batches(&[5000, 10], 100, 1000), vec![1, 1]);
    }

    #[test]
    fn merged_batches_stay_under_the_operation_limit() {
        assert_eq!(batches(&[1; 7], 3, 1 << 20), vec![3, 3, 1]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _ = tx.send(job(vec![put(1), put(1)]));
        let (jobs, next) = take_batch(job(vec![put(1), put(1)]), &mut rx, 3, 1 << 20);
        assert_eq!((jobs.len(), next.map(|j| j.ops.len())), (1, Some(2)));
    }
}
