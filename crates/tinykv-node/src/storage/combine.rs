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

impl Store {
    /// Applies one op like [`Store::write`], batched with the other single
    /// writes that arrive before the drain task runs; whether it changed
    /// anything.
    pub async fn write_one(&self, op: WriteOp) -> Result<bool, StorageError> {
        // Checked alone: an op the engine cannot store must fail by itself,
        // not the combined batch of everyone's writes it would join.
        super::check_ops(std::slice::from_ref(&op))?;
        if tokio::runtime::Handle::try_current().is_err() {
            // Polled outside a tokio runtime (the Store itself needs none):
            // there is no drain task to spawn, so the op is written alone.
            return first(self.write(vec![op]).await);
        }
        let (reply, rx) = oneshot::channel();
        let spawn = {
            let mut p = self.pending().lock().map_err(|_| poisoned())?;
            p.push(op, reply)
        };
        if spawn {
            let guard = Undrained(Some(self.clone()));
            tokio::spawn(drain(guard));
        }
        rx.await.map_err(|_| StorageError::Closed)?
    }
}

/// Held by a drain task until it has taken the pending list. A task dropped
/// before that (its runtime shutting down) empties the list instead, so its
/// writers get `Closed` rather than waiting forever, and the next write
/// schedules a new drain.
struct Undrained(Option<Store>);

impl Drop for Undrained {
    fn drop(&mut self) {
        if let Some(store) = self.0.take() {
            if let Ok(mut p) = store.pending().lock() {
                p.clear();
            }
        }
    }
}

/// Applies everything pending as one batch and answers each writer.
async fn drain(mut guard: Undrained) {
    // Behind the tasks already ready to run: a coordinator's task that ran
    // out of its scheduling budget mid-batch adds the rest first.
    tokio::task::yield_now().await;
    let Some(store) = guard.0.take() else {
        return;
    };
    let (ops, replies) = match store.pending().lock() {
        Ok(mut p) => p.take(),
        // Nothing can be taken; the writers see their replies dropped.
        Err(_) => return,
    };
    match store.write(ops).await {
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
    async fn an_overlong_key_fails_alone_not_the_writes_combined_with_it() {
        let store = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::default());
        let over = WriteOp::Put {
            key: Bytes::from(vec![b'k'; super::super::MAX_KEY_BYTES + 1]),
            record: val("v", 5, "n1"),
        };
        let (a, bad, b) = futures::join!(
            store.write_one(put("a", val("v", 5, "n1"))),
            store.write_one(over),
            store.write_one(put("b", val("v", 5, "n1"))),
        );
        assert!(
            matches!(a, Ok(true)) && matches!(b, Ok(true)),
            "{a:?} {b:?}"
        );
        assert!(matches!(bad, Err(StorageError::TooLong { .. })), "{bad:?}");
        store.close().await.unwrap();
    }

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
        store.close().await.unwrap();
    }

    #[test]
    fn a_drain_task_dropped_unrun_fails_its_writers_and_frees_the_list() {
        let store = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::default());
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
        };
        let first = runtime();
        let mut write = Box::pin(store.write_one(put("a", val("v", 5, "n1"))));
        // Queued, and a drain task spawned that has not run yet.
        let polled = first.block_on(async { futures::poll!(&mut write) });
        assert!(polled.is_pending());
        drop(first); // drops the unrun drain task
        let second = runtime();
        let r = second.block_on(write);
        assert!(matches!(r, Err(StorageError::Closed)), "{r:?}");
        // The list was freed: the next write is drained as usual.
        let r = second.block_on(store.write_one(put("b", val("v", 5, "n1"))));
        assert!(matches!(r, Ok(true)), "{r:?}");
        assert!(
            store.get(b"a").unwrap().is_none(),
            "the dropped write was not applied"
        );
        second.block_on(store.close()).unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_store_fails_single_writes() {
        let store = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::default());
        store.close().await.unwrap();
        let r = store.write_one(put("k", val("v", 5, "n1"))).await;
        assert!(matches!(r, Err(StorageError::Closed)), "{r:?}");
    }
}
