//! The one quorum helper every read and write path uses.
//!
//! A [`Quorums`] waits for the quorums of several requests at once (a client
//! batch's reads, or its writes; a single request is a batch of one). A
//! replica call may answer many requests together: the coordinator makes
//! one call per replica for a whole batch, not one per request and replica
//! (dropping the per-request calls, each with a future, a channel and a
//! task, cut the nodes' CPU per operation by a third: docs/benchmarks.md). Each request counts the answers of the
//! calls it is in, toward its own required number. The calls are polled by
//! the task that waits, each bounded by its deadline; calls still running
//! when every request has its answer keep going once the caller hands the
//! [`Quorums`] to a task of its own: the remaining replicas of a write
//! still get it, the remaining answers of a read still feed read repair.

use std::fmt;
use std::future::Future;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

pub use crate::error::ReplicaError;

/// What one replica call returned: a value, or why it failed.
pub type CallResult<T> = Result<T, ReplicaError>;

/// Not enough replicas answered in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumError {
    /// "write" or "read".
    pub op: &'static str,
    /// Answers needed.
    pub required: usize,
    /// Answers received.
    pub got: usize,
    /// Where the answers were counted, when not simply among the key's
    /// replicas: a write during a join or leave needs W acks in each of the
    /// key's current and future replica sets, and this names the one short.
    pub scope: Option<String>,
    /// Per-node failure reasons, in the order they happened.
    pub failures: Vec<(String, ReplicaError)>,
}

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.op == "write" {
            "acks"
        } else {
            "replies"
        };
        write!(f, "{} quorum not reached", self.op)?;
        if let Some(scope) = &self.scope {
            write!(f, " {scope}")?;
        }
        write!(f, ": {} of {} {}", self.got, self.required, what)?;
        if !self.failures.is_empty() {
            let parts: Vec<String> = self
                .failures
                .iter()
                .map(|(n, e)| format!("{n}: {e}"))
                .collect();
            write!(f, " ({})", parts.join("; "))?;
        }
        Ok(())
    }
}

impl std::error::Error for QuorumError {}

/// One request's answers so far.
#[derive(Debug)]
pub struct Answers<T> {
    /// Successful answers needed.
    pub required: usize,
    /// Successful answers, by node.
    pub ok: Vec<(String, T)>,
    /// Failures, by node, in the order they happened.
    pub failed: Vec<(String, ReplicaError)>,
    /// Calls for this request still running.
    running: usize,
}

impl<T> Answers<T> {
    /// True once `required` calls succeeded.
    pub fn reached(&self) -> bool {
        self.ok.len() >= self.required
    }

    /// Calls for this request still running.
    pub fn running(&self) -> usize {
        self.running
    }

    /// The error describing a quorum that was not reached.
    pub fn error(&self, op: &'static str) -> QuorumError {
        QuorumError {
            op,
            required: self.required,
            got: self.ok.len(),
            scope: None,
            failures: self.failed.clone(),
        }
    }
}

/// A finished call: its node, the requests it answered, and the answers.
struct Finished<T> {
    node: String,
    requests: Vec<usize>,
    result: CallResult<Vec<T>>,
}

/// A finished call as the caller sees it.
#[derive(Debug)]
pub struct Event {
    /// The node (or label) the call went to.
    pub node: String,
    /// The requests it answered.
    pub requests: Vec<usize>,
    /// Why it failed, if it did.
    pub failure: Option<ReplicaError>,
}

/// The quorums of a batch of requests and the replica calls in flight.
pub struct Quorums<T> {
    /// Each request's answers, in request order.
    pub requests: Vec<Answers<T>>,
    calls: FuturesUnordered<BoxFuture<'static, Finished<T>>>,
}

impl<T: Send + 'static> Quorums<T> {
    /// Requests needing `required[i]` successful answers each.
    pub fn new(required: impl IntoIterator<Item = usize>) -> Self {
        Quorums {
            requests: required
                .into_iter()
                .map(|required| Answers {
                    required,
                    ok: Vec::new(),
                    failed: Vec::new(),
                    running: 0,
                })
                .collect(),
            calls: FuturesUnordered::new(),
        }
    }

    /// Adds a call to `node` that answers `requests`, one answer each and
    /// in order; it runs while the quorums are waited on (or drained) and
    /// fails with "deadline exceeded" at `deadline`.
    pub fn call<F>(&mut self, node: String, requests: Vec<usize>, deadline: Instant, call: F)
    where
        F: Future<Output = CallResult<Vec<T>>> + Send + 'static,
    {
        for &r in &requests {
            self.requests[r].running += 1;
        }
        self.calls.push(Box::pin(async move {
            let result =
                match tokio::time::timeout_at(deadline, call).await {
                    Err(_) => Err(ReplicaError::Deadline),
                    Ok(Ok(v)) if v.len() != requests.len() => Err(ReplicaError::Malformed(
                        format!("answered {} of {} requests", v.len(), requests.len()),
                    )),
                    Ok(r) => r,
                };
            Finished {
                node,
                requests,
                result,
            }
        }));
    }

    /// Calls still running.
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Waits for the next call to finish and records its answers (or its
    /// failure) with each request it answered; `None` when no call is left.
    pub async fn next(&mut self) -> Option<Event>
    where
        T: Clone,
    {
        let Finished {
            node,
            requests,
            result,
        } = self.calls.next().await?;
        let failure = match result {
            Ok(values) => {
                for (&r, v) in requests.iter().zip(values) {
                    let a = &mut self.requests[r];
                    a.running -= 1;
                    a.ok.push((node.clone(), v));
                }
                None
            }
            Err(e) => {
                for &r in &requests {
                    let a = &mut self.requests[r];
                    a.running -= 1;
                    a.failed.push((node.clone(), e.clone()));
                }
                Some(e)
            }
        };
        Some(Event {
            node,
            requests,
            failure,
        })
    }

    /// Waits for every call still in flight (each bounded by its deadline)
    /// and returns every request's answers.
    pub async fn finish(mut self) -> Vec<Answers<T>>
    where
        T: Clone,
    {
        while self.next().await.is_some() {}
        self.requests
    }
}

/// One replica's share of a batch: the requests it answers and what each
/// sends it (a version to write, a key to read), for one call.
pub struct Group<E> {
    /// The replica.
    pub node: String,
    /// The requests' deadline (requests with another get another call).
    pub deadline: Instant,
    /// The requests, in the order of `entries`.
    pub requests: Vec<usize>,
    /// What each request sends.
    pub entries: Vec<E>,
}

/// A batch's requests grouped by replica and deadline: one call per group.
pub struct Groups<E>(Vec<Group<E>>);

impl<E> Default for Groups<E> {
    fn default() -> Self {
        Groups(Vec::new())
    }
}

impl<E> Groups<E> {
    /// Adds `request`'s `entry` to `node`'s call with `deadline`.
    pub fn add(&mut self, node: &str, deadline: Instant, request: usize, entry: E) {
        let g = match self
            .0
            .iter()
            .position(|g| g.node == node && g.deadline == deadline)
        {
            Some(g) => g,
            None => {
                self.0.push(Group {
                    node: node.to_string(),
                    deadline,
                    requests: Vec::new(),
                    entries: Vec::new(),
                });
                self.0.len() - 1
            }
        };
        self.0[g].requests.push(request);
        self.0[g].entries.push(entry);
    }

    /// The groups, one call each.
    pub fn into_groups(self) -> Vec<Group<E>> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn one_call_answers_many_requests_and_late_calls_still_finish() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut q = Quorums::new([2, 2]);
        q.call("a".into(), vec![0, 1], soon(), async { Ok(vec![1, 2]) });
        q.call("b".into(), vec![0], soon(), async { Ok(vec![3]) });
        q.call("c".into(), vec![1], soon(), async move {
            let _ = rx.await;
            Ok(vec![4])
        });
        while !q.requests[0].reached() {
            q.next().await.expect("a call is left");
        }
        assert_eq!(q.requests[0].ok.len(), 2);
        assert_eq!(q.requests[1].ok, vec![("a".to_string(), 2)]);
        assert_eq!(q.requests[1].running(), 1);
        assert_eq!(q.in_flight(), 1);
        // Handed to a task, the late call runs on after the caller moved on.
        let rest = tokio::spawn(q.finish());
        let _ = tx.send(());
        let answers = rest.await.expect("finish");
        assert!(answers[1].reached());
        assert_eq!(answers[1].ok.len(), 2);
        assert!(answers.iter().all(|a| a.failed.is_empty()));
    }

    #[test]
    fn requests_are_grouped_by_replica_and_deadline() {
        let (d1, d2) = (soon(), soon() + Duration::from_secs(1));
        let mut g = Groups::default();
        g.add("a", d1, 0, "k0");
        g.add("b", d1, 0, "k0");
        g.add("a", d1, 1, "k1");
        g.add("a", d2, 2, "k2");
        let groups = g.into_groups();
        let shape: Vec<(&str, Vec<usize>, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.node.as_str(), g.requests.clone(), g.entries.clone()))
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a", vec![0, 1], vec!["k0", "k1"]),
                ("b", vec![0], vec!["k0"]),
                ("a", vec![2], vec!["k2"]),
            ]
        );
    }

    #[tokio::test]
    async fn reports_shortfall_with_reasons() {
        let mut q: Quorums<()> = Quorums::new([2]);
        let deadline = Instant::now() + Duration::from_millis(50);
        q.call("node1".into(), vec![0], deadline, async { Ok(vec![()]) });
        q.call("node2".into(), vec![0], deadline, async {
            Err(ReplicaError::Unreachable("connection refused".into()))
        });
        q.call(
            "node3".into(),
            vec![0],
            deadline,
            futures::future::pending(),
        );
        q.call("node4".into(), vec![0], deadline, async {
            Ok(vec![(), ()])
        });
        let mut failures = Vec::new();
        while let Some(ev) = q.next().await {
            failures.extend(ev.failure);
        }
        assert_eq!(failures.len(), 3, "{failures:?}");
        let a = &q.requests[0];
        assert!(!a.reached());
        let msg = a.error("write").to_string();
        assert!(
            msg.starts_with("write quorum not reached: 1 of 2 acks"),
            "{msg}"
        );
        assert!(
            msg.contains("node2: unreachable (connection refused)"),
            "{msg}"
        );
        assert!(msg.contains("node3: deadline exceeded"), "{msg}");
        assert!(
            msg.contains("node4: malformed answer: answered 2 of 1 requests"),
            "{msg}"
        );
    }
}
