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
    reply: oneshot::Sender<Vec<Outcome>>,
}

/// The connections' way into the gatherer.
pub(crate) struct Coalescer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Coalescer {
    /// Starts the gatherer: it runs until every `Coalescer` handle is gone.
    pub fn start(client: ClientService) -> Coalescer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(gather(client, rx).in_current_span());
        Coalescer { tx }
    }

    /// Runs `ops` (with other connections' batches when there are any)
    /// and returns their results, in order.
    pub async fn run(&self, ops: Vec<pb::Operation>) -> Vec<Outcome> {
        let len = ops.len();
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Job { ops, reply }).is_err() {
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
/// to a batch's limit) and runs each merged batch in its own task.
async fn gather(client: ClientService, mut rx: mpsc::UnboundedReceiver<Job>) {
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
        let mut total = first.ops.len();
        let mut jobs = vec![first];
        while total < MAX_BATCH_OPS {
            let Ok(job) = rx.try_recv() else { break };
            if total + job.ops.len() > MAX_BATCH_OPS {
                held = Some(job);
                break;
            }
            total += job.ops.len();
            jobs.push(job);
        }
        tokio::spawn(run_merged(client.clone(), jobs).in_current_span());
    }
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
