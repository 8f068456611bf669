//! Combining single writes that arrive together into one engine batch.
//!
//! A coordinator handling a client's batch of puts starts one local replica
//! write per operation, all in the same poll of its task. Applied one by
//! one, each would be its own engine batch: a lock, a plan and a journal
//! write to the OS per put, which made the coordinating node commit ten
//! times as often as its replicas (they receive their writes batched per
//! peer exchange). Instead, single writes join a pending list; the first
//! one schedules a drain task, which runs once the current task yields and
//! applies the whole list through [`Store::write`] as one batch. An idle
//! node's write waits only for that task switch.

use tokio::sync::oneshot;

use super::{StorageError, Store, WriteOp};

type Reply = oneshot::Sender<Result<bool, StorageError>>;

/// Single writes waiting for the drain task.
#[derive(Default)]
pub(super) struct Pending {
    ops: Vec<WriteOp>,
    replies: Vec<Reply>,
    /// A drain task has been spawned and has not taken the list yet.
    scheduled: bool,
}

impl Store {
    /// Applies one op like [`Store::write`], batched with the other single
    /// writes that arrive before the drain task runs; whether it changed
    /// anything.
    pub async fn write_one(&self, op: WriteOp) -> Result<bool, StorageError> {
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to run a drain task on (the writer's own tests).
            return first(self.write(vec![op]).await);
        }
        let (reply, rx) = oneshot::channel();
        let spawn = {
            let mut p = self.pending().lock().map_err(|_| poisoned())?;
            p.ops.push(op);
            p.replies.push(reply);
            !std::mem::replace(&mut p.scheduled, true)
        };
        if spawn {
            let store = self.clone();
            tokio::spawn(async move { store.drain().await });
        }
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// Applies everything pending as one batch and answers each writer.
    async fn drain(&self) {
        // Behind the tasks already ready to run: a coordinator's task that
        // ran out of its scheduling budget mid-batch adds the rest first.
        tokio::task::yield_now().await;
        let (ops, replies) = match self.pending().lock() {
            Ok(mut p) => {
                p.scheduled = false;
                (std::mem::take(&mut p.ops), std::mem::take(&mut p.replies))
            }
            // Nothing can be taken; the writers see their replies dropped.
            Err(_) => return,
        };
        match self.write(ops).await {
            Ok(applied) => {
                for (reply, changed) in replies.into_iter().zip(applied) {
                    let _ = reply.send(Ok(changed));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(super::writer::dup(&e)));
                }
            }
        }
    }
}

fn first(r: Result<Vec<bool>, StorageError>) -> Result<bool, StorageError> {
    r.map(|v| v.first().copied().unwrap_or(false))
}

fn poisoned() -> StorageError {
    StorageError::Engine("pending write list poisoned".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::super::tests::{put, val};
    use super::super::{MemoryEngine, SyncPolicy};
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn writes_started_together_share_one_batch() {
        let store = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::default());
        let writes = (0..20).map(|i| store.write_one(put(&format!("k{i}"), val("v", 5, "n1"))));
        let results = futures::future::join_all(writes).await;
        assert!(results.iter().all(|r| matches!(r, Ok(true))), "{results:?}");
        let stats = store.stats();
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(stats.committed_ops.load(Relaxed), 20);
        assert_eq!(stats.commits.load(Relaxed), 1, "one engine batch");
        // Each op still gets its own LWW answer.
        let again = store
            .write_one(put("k3", val("older", 4, "n1")))
            .await
            .unwrap();
        assert!(!again);
        assert_eq!(
            store.get(b"k3").unwrap().map(|r| r.value),
            Some(Bytes::from_static(b"v"))
        );
        store.close().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_store_fails_single_writes() {
        let store = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::default());
        store.close().await;
        let r = store.write_one(put("k", val("v", 5, "n1"))).await;
        assert!(matches!(r, Err(StorageError::Closed)), "{r:?}");
    }
}
