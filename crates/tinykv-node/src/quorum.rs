//! The one quorum helper every read and write path uses.
//!
//! Calls to replicas are spawned as tasks, so a call still running when the
//! quorum is reached keeps going (the remaining replicas of a write still get
//! it; the remaining answers of a read still feed read repair). Every call is
//! bounded by the request deadline.

use std::fmt;
use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
    inflight: FuturesUnordered<JoinHandle<(String, CallResult<T>)>>,
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
            inflight: FuturesUnordered::new(),
            ok: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Starts a call to `node`; it fails with "deadline exceeded" at the deadline.
    pub fn spawn<F>(&mut self, node: String, call: F)
    where
        F: Future<Output = CallResult<T>> + Send + 'static,
    {
        let deadline = self.deadline;
        self.inflight.push(tokio::spawn(async move {
            let res = match tokio::time::timeout_at(deadline, call).await {
                Ok(r) => r,
                Err(_) => Err("deadline exceeded".to_string()),
            };
            (node, res)
        }));
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
    /// is in flight. Returns the node and, on failure, its reason.
    pub async fn next(&mut self) -> Option<(String, Option<String>)> {
        let joined = self.inflight.next().await?;
        Some(match joined {
            Ok((node, Ok(v))) => {
                self.ok.push((node.clone(), v));
                (node, None)
            }
            Ok((node, Err(e))) => {
                self.failed.push((node.clone(), e.clone()));
                (node, Some(e))
            }
            Err(join) => {
                let e = format!("replica call panicked: {join}");
                self.failed.push(("?".into(), e.clone()));
                ("?".into(), Some(e))
            }
        })
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
        let _ = tx.send(());
        let (ok, failed) = q.finish().await;
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
