//! Coordinating client requests: any node sends a request to all N replicas
//! of the key in parallel and answers once W (or R) of them have.
//!
//! Writes (in `writes.rs`) use a sloppy quorum: a replica that fails (or is
//! known down) is replaced by the next healthy node clockwise, which stores
//! the version as a hint for the owner and, unless the request is strict,
//! counts toward W. Every failed replica write also leaves a hint on the
//! coordinator, so the owner gets the version once it is back. While a
//! join or leave moves a key's range, its write needs W acks among the
//! key's current replicas and W among its future ones (`pending.rs`). Reads (in
//! `reads.rs`) ask all N replicas (or, with `--read-fanout needed`, R of
//! them, this node first, and the next one when one fails or is slow), merge
//! the answers by LWW, and repair stale or missing replicas among those that
//! answered, in the background. A client batch's reads, and its writes,
//! make one call per replica for all of them ([`crate::quorum::Quorums`]).
//!
//! The coordinator talks to replicas only through [`Replicas`], and learns
//! where keys live only from [`Placement`]: its tests (`tests.rs`) run it
//! against a scripted replica set in memory.

use std::sync::Arc;
use std::time::Duration;

use crate::config::ReadFanout;
use crate::metrics::Metrics;
use crate::placement::Placement;
use crate::quorum::{Answers, QuorumError};
use crate::replicas::Replicas;
use crate::version::Record;

mod pending;
mod reads;
mod ttl;
mod writes;
pub use reads::ReadRequest;
pub use ttl::{with_new_expiry, ExpireOutcome, ExpireRequest};
pub use writes::WriteRequest;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

/// Why a coordinated request failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RequestError {
    /// Not enough replicas answered.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    /// The cluster has fewer live ring members than the request needs.
    #[error("{0}")]
    Unavailable(String),
}

/// How a write ended.
#[derive(Clone, Copy, Debug)]
pub struct WriteOutcome {
    /// Acknowledgements received before answering (hinted ones included
    /// unless strict).
    pub acks: usize,
}

/// How a read ended.
#[derive(Clone, Debug)]
pub struct ReadOutcome {
    /// The winning version (may be a tombstone), or none if no replica had one.
    pub winner: Option<Record>,
    /// Replica answers merged.
    pub answered: usize,
}

/// The coordinator's rules, fixed at start.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Keep hints for replicas that miss a write.
    pub hinted_handoff: bool,
    /// Let hinted fallbacks count toward W (unless a write is strict).
    pub sloppy_quorum: bool,
    /// Ask all N replicas of a read, or only the R needed.
    pub read_fanout: ReadFanout,
    /// When a read without its quorum asks one more replica.
    pub speculative_retry: Duration,
    /// Deadline of a read repair's writes.
    pub repair_timeout: Duration,
}

/// Coordinates client reads and writes over the replicas of their keys.
pub struct Coordinator {
    placement: Arc<Placement>,
    replicas: Arc<dyn Replicas>,
    settings: Settings,
    metrics: Arc<Metrics>,
}

impl Coordinator {
    /// A coordinator placing keys with `placement` and calling `replicas`.
    pub fn new(
        placement: Arc<Placement>,
        replicas: Arc<dyn Replicas>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Coordinator {
            placement,
            replicas,
            settings,
            metrics,
        }
    }

    /// The configured replication factor (N).
    pub fn replication_factor(&self) -> usize {
        self.placement.replication_factor()
    }

    /// Gives an unanswered request its outcome once it has its quorum
    /// (made by `answer`), or has too few answers with no call left to make
    /// them; true when it got one.
    fn settle<T, O>(
        &self,
        op: &'static str,
        answers: &Answers<T>,
        outcome: &mut Option<Result<O, RequestError>>,
        answer: impl FnOnce(&Answers<T>) -> O,
    ) -> bool {
        if answers.reached() {
            *outcome = Some(Ok(answer(answers)));
        } else if answers.running() == 0 {
            self.metrics.quorum_failures.with_label_values(&[op]).inc();
            *outcome = Some(Err(answers.error(op).into()));
        }
        outcome.is_some()
    }
}

/// The error of a request that ended without an answer.
fn unanswered(op: &str) -> RequestError {
    RequestError::Unavailable(format!("{op} ended without an answer"))
}

/// The outcomes of a batch as `coordinate_*_each` hands them out, kept in
/// request order for the callers that want them all at once.
struct InOrder<O>(Vec<Option<Result<O, RequestError>>>);

impl<O> InOrder<O> {
    fn new(n: usize) -> Self {
        let mut slots = Vec::new();
        slots.resize_with(n, || None);
        InOrder(slots)
    }

    fn put(&mut self, i: usize, outcome: Result<O, RequestError>) {
        if let Some(slot) = self.0.get_mut(i) {
            *slot = Some(outcome);
        }
    }

    /// Every outcome in order ("ended without an answer" for a gap).
    fn finish(self, op: &str) -> Vec<Result<O, RequestError>> {
        self.0
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(unanswered(op))))
            .collect()
    }
}
