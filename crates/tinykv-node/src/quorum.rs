//! The one quorum helper every read and write path uses.
//!
//! The calls of one request are polled together by the task that waits for
//! the quorum, under one deadline timer: no task and no timer per replica
//! call, which mattered (a spawned task and a timer per call were ~10 % of
//! the CPU of a write benchmark). Calls still running when the quorum is
//! reached keep going once the caller hands the [`Quorum`] to a task of its
//! own ([`Quorum::finish`] in a spawned task): the remaining replicas of a
//! write still get it, the remaining answers of a read still feed read
//! repair. Every call is bounded by the request deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::{Instant, Sleep};

/// What one replica call returned: a value, or why it failed.
pub type CallResult<T> = Result<T, String>;

/// Not enough replicas answered in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumError {
    /// "write" or "read".
    pub op: &'static str,
    /// Answers needed.
    pub required: usize,
    /// Answers received.
    pub got: usize,
    /// Per-node failure reasons, in the order they happened.
    pub failures: Vec<(String, String)>,
}

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.op == "write" {
            "acks"
        } else {
            "replies"
        };
        write!(
            f,
            "{} quorum not reached: {} of {} {}",
            self.op, self.got, self.required, what
        )?;
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

/// A set of in-flight replica calls and the answers so far.
pub struct Quorum<T> {
    required: usize,
    deadline: Instant,
    /// Started on the first wait, so a request whose calls all finish at
    /// once never arms a timer.
    timer: Option<Pin<Box<Sleep>>>,
    inflight: FuturesUnordered<BoxFuture<'static, (String, CallResult<T>)>>,
    /// Nodes whose calls are still running, for the deadline's failures.
    running: Vec<String>,
    /// Successful answers, by node.
    pub ok: Vec<(String, T)>,
    /// Failures, by node.
    pub failed: Vec<(String, String)>,
}

impl<T: Send + 'static> Quorum<T> {
    /// Waits for `required` successes, none after `deadline`.
    pub fn new(required: usize, deadline: Instant) -> Self {
        Quorum {
            required,
            deadline,
            timer: None,
            inflight: FuturesUnordered::new(),
            running: Vec::new(),
            ok: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Adds a call to `node`; it runs while the quorum is waited on (or
    /// finished) and fails with "deadline exceeded" at the deadline.
    pub fn spawn<F>(&mut self, node: String, call: F)
    where
        F: Future<Output = CallResult<T>> + Send + 'static,
    {
        self.running.push(node.clone());
        self.inflight
            .push(Box::pin(async move { (node, call.await) }));
    }

    /// True once `required` calls succeeded.
    pub fn reached(&self) -> bool {
        self.ok.len() >= self.required
    }

    /// Calls still running.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Waits for the next call to finish and records it; `None` when no call
    /// is in flight. Returns the node and, on failure, its reason. At the
    /// deadline every call still running fails at once.
    pub async fn next(&mut self) -> Option<(String, Option<String>)> {
        if self.inflight.is_empty() {
            return None;
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        let done = tokio::select! {
            biased;
            done = self.inflight.next() => done,
            _ = timer.as_mut() => None,
        };
        let Some((node, res)) = done else {
            return self.expire();
        };
        if let Some(i) = self.running.iter().position(|n| *n == node) {
            self.running.swap_remove(i);
        }
        Some(match res {
            Ok(v) => {
                self.ok.push((node.clone(), v));
                (node, None)
            }
            Err(e) => {
                self.failed.push((node.clone(), e.clone()));
                (node, Some(e))
            }
        })
    }

    /// The deadline passed: drops every running call and records each as
    /// failed; returns the first of them.
    fn expire(&mut self) -> Option<(String, Option<String>)> {
        self.inflight = FuturesUnordered::new();
        let reason = "deadline exceeded".to_string();
        let running = std::mem::take(&mut self.running);
        for node in &running {
            self.failed.push((node.clone(), reason.clone()));
        }
        running.into_iter().next().map(|n| (n, Some(reason)))
    }

    /// Waits until the quorum is reached or no call is left.
    pub async fn wait(&mut self) -> bool {
        while !self.reached() {
            if self.next().await.is_none() {
                break;
            }
        }
        self.reached()
    }

    /// Waits for every call still in flight (each bounded by the deadline).
    pub async fn finish(mut self) -> (Vec<(String, T)>, Vec<(String, String)>) {
        while self.next().await.is_some() {}
        (self.ok, self.failed)
    }

    /// The error describing a quorum that was not reached.
    pub fn error(&self, op: &'static str) -> QuorumError {
        QuorumError {
            op,
            required: self.required,
            got: self.ok.len(),
            failures: self.failed.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn returns_at_quorum_and_late_calls_still_finish() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut q = Quorum::new(2, Instant::now() + Duration::from_secs(5));
        q.spawn("a".into(), async { Ok(1) });
        q.spawn("b".into(), async { Ok(2) });
        q.spawn("c".into(), async move {
            let _ = rx.await;
            Ok(3)
        });
        assert!(q.wait().await);
        assert_eq!(q.ok.len(), 2);
        assert_eq!(q.in_flight(), 1);
        // Handed to a task, the late call runs on after the caller moved on.
        let rest = tokio::spawn(q.finish());
        let _ = tx.send(());
        let (ok, failed) = rest.await.unwrap();
        assert_eq!(ok.len(), 3);
        assert!(failed.is_empty());
    }

    #[tokio::test]
    async fn reports_shortfall_with_reasons() {
        let mut q: Quorum<()> = Quorum::new(2, Instant::now() + Duration::from_millis(50));
        q.spawn("node1".into(), async { Ok(()) });
        q.spawn("node2".into(), async {
            Err("connection refused".to_string())
        });
        q.spawn("node3".into(), futures::future::pending());
        assert!(!q.wait().await);
        let msg = q.error("write").to_string();
        assert!(
            msg.starts_with("write quorum not reached: 1 of 2 acks"),
            "{msg}"
        );
        assert!(msg.contains("node2: connection refused"), "{msg}");
        assert!(msg.contains("node3: deadline exceeded"), "{msg}");
    }
}
