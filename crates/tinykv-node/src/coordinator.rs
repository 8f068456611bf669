//! Coordinating client requests: any node sends a request to all N replicas
//! of the key in parallel and answers once W (or R) of them have.
//!
//! Writes (in `writes.rs`) use a sloppy quorum: a replica that fails (or is
//! known down) is replaced by the next healthy node clockwise, which stores
//! the version as a hint for the owner and, unless the request is strict,
//! counts toward W. Every failed replica write also leaves a hint on the
//! coordinator, so the owner gets the version once it is back. Reads (in
//! `reads.rs`) ask all N replicas (or, with `--read-fanout needed`, R of
//! them, this node first, and the next one when one fails or is slow), merge
//! the answers by LWW, and repair stale or missing replicas among those that
//! answered, in the background. A client batch's reads, and its writes,
//! make one call per replica for all of them ([`crate::quorum::Quorums`]).

use crate::node::Node;
use crate::quorum::{Answers, QuorumError};
use crate::version::Record;

mod reads;
mod writes;
pub use reads::ReadRequest;
pub use writes::WriteRequest;

/// Why a coordinated request failed.
#[derive(Debug, thiserror::Error)]
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

impl Node {
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
