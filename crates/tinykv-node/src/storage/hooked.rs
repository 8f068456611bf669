//! A test engine: any [`Engine`] with hooks around `apply` and `flush`, so
//! a test can count, record, hold or fail them without writing out every
//! method of the trait again.

use std::ops::Deref;

use bytes::Bytes;

use super::{Engine, Hint, HintStats, Record, ScanLimit, StorageError, WriteOp};

/// What a test does around the wrapped engine's calls; every hook is a
/// no-op unless overridden.
pub(super) trait Hooks: Send + Sync + 'static {
    /// Runs before the wrapped `apply` (it may block, to hold the writer).
    fn before_apply(&self) {}
    /// Runs after a successful `apply` of `ops`.
    fn after_apply(&self, _ops: &[WriteOp], _durable: bool) {}
    /// Runs before the wrapped `flush`; an error is returned instead of
    /// flushing.
    fn before_flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// `inner` with `hooks` around its `apply` and `flush`; derefs to the
/// hooks, so a test reads its counters as fields of the engine.
#[derive(Default)]
pub(super) struct Hooked<E, H> {
    pub inner: E,
    pub hooks: H,
}

impl<E, H> Deref for Hooked<E, H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.hooks
    }
}

impl<E: Engine, H: Hooks> Engine for Hooked<E, H> {
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        self.inner.get(key)
    }
    fn apply(&self, ops: &[WriteOp], durable: bool) -> Result<Vec<bool>, StorageError> {
        self.hooks.before_apply();
        let applied = self.inner.apply(ops, durable)?;
        self.hooks.after_apply(ops, durable);
        Ok(applied)
    }
    fn flush(&self) -> Result<(), StorageError> {
        self.hooks.before_flush()?;
        self.inner.flush()
    }
    fn scan(
        &self,
        start: u64,
        end: u64,
        after: Option<&[u8]>,
        limit: ScanLimit,
    ) -> Result<Vec<(Bytes, Record)>, StorageError> {
        self.inner.scan(start, end, after, limit)
    }
    fn key_count(&self) -> Result<u64, StorageError> {
        self.inner.key_count()
    }
    fn hints(&self, target: &str, limit: usize) -> Result<Vec<Hint>, StorageError> {
        self.inner.hints(target, limit)
    }
    fn hint_stats(&self) -> Result<HintStats, StorageError> {
        self.inner.hint_stats()
    }
}
