//! The list of single writes waiting to be combined into one engine batch.
//!
//! The [`Store`](super::Store) owns one (`storage/writer.rs`); the drain
//! task of `storage/combine.rs` fills and empties it. It lives in its own
//! module so that the write path and the combiner each depend on it, not
//! on each other.

use tokio::sync::oneshot;

use super::{StorageError, WriteOp};

/// Where a single write's outcome goes: whether it changed anything.
pub(super) type Reply = oneshot::Sender<Result<bool, StorageError>>;

/// Single writes waiting for the drain task.
#[derive(Default)]
pub(super) struct Pending {
    ops: Vec<WriteOp>,
    replies: Vec<Reply>,
    /// A drain task has been spawned and has not taken the list yet.
    scheduled: bool,
}

impl Pending {
    /// Queues `op`; true if no drain task is scheduled yet, so the caller
    /// must spawn one (it is then marked scheduled).
    pub(super) fn push(&mut self, op: WriteOp, reply: Reply) -> bool {
        self.ops.push(op);
        self.replies.push(reply);
        !std::mem::replace(&mut self.scheduled, true)
    }

    /// Takes everything queued for one batch; the next write schedules a
    /// new drain task.
    pub(super) fn take(&mut self) -> (Vec<WriteOp>, Vec<Reply>) {
        self.scheduled = false;
        (
            std::mem::take(&mut self.ops),
            std::mem::take(&mut self.replies),
        )
    }

    /// Drops everything queued (their writers see `Closed`); the next write
    /// schedules a new drain task.
    pub(super) fn clear(&mut self) {
        self.scheduled = false;
        self.ops.clear();
        self.replies.clear();
    }
}
