//! Paging through this node's own versions of a token range, for the
//! background work that must see all of them (anti-entropy, purging,
//! streaming a leaving node's data out) without holding them all at once.

use bytes::Bytes;

use crate::storage::{page_bytes, ScanLimit, StorageError, Store};
use crate::version::Record;

/// Bytes of a page's versions (keys and versions, as [`page_bytes`]
/// counts them).
pub(crate) fn page_size(page: &[(Bytes, Record)]) -> u64 {
    page.iter().map(|(k, r)| page_bytes(k, r) as u64).sum()
}

/// The pages of the local versions in `(lo, hi]`, in scan order, each
/// bounded by a [`ScanLimit`] and read off the async workers.
pub(crate) struct Pages {
    range: (u64, u64),
    limit: ScanLimit,
    /// The last key of the previous page.
    after: Option<Bytes>,
    done: bool,
}

impl Pages {
    /// Pages of `(lo, hi]` (`(0, 0]` is the whole ring), `limit` each.
    pub(crate) fn new(lo: u64, hi: u64, limit: ScanLimit) -> Self {
        Pages {
            range: (lo, hi),
            limit,
            after: None,
            done: false,
        }
    }

    /// The next page of `store`'s versions; `None` after the last one.
    pub(crate) async fn next(
        &mut self,
        store: &Store,
    ) -> Result<Option<Vec<(Bytes, Record)>>, StorageError> {
        if self.done {
            return Ok(None);
        }
        let (engine, (lo, hi), after, limit) = (
            store.engine().clone(),
            self.range,
            self.after.take(),
            self.limit,
        );
        let page =
            tokio::task::spawn_blocking(move || engine.scan(lo, hi, after.as_deref(), limit))
                .await
                .map_err(|e| StorageError::Engine(format!("scan task: {e}")))??;
        match page.last() {
            Some((k, _)) if limit.filled_by(&page) => self.after = Some(k.clone()),
            _ => self.done = true,
        }
        Ok(Some(page))
    }

    /// Bytes of every local version in `(lo, hi]` (keys and versions, as
    /// [`page_bytes`] counts them), read page by page.
    pub(crate) async fn bytes_in(store: &Store, lo: u64, hi: u64) -> Result<u64, StorageError> {
        let mut pages = Pages::new(lo, hi, ScanLimit::count(4096));
        let mut total = 0;
        while let Some(p) = pages.next(store).await? {
            total += page_size(&p);
        }
        Ok(total)
    }

    /// Every local version in `(lo, hi]`, page by page.
    pub(crate) async fn all(
        store: &Store,
        lo: u64,
        hi: u64,
        page: usize,
    ) -> Result<Vec<(Bytes, Record)>, StorageError> {
        let mut pages = Pages::new(lo, hi, ScanLimit::count(page));
        let mut out = Vec::new();
        while let Some(p) = pages.next(store).await? {
            out.extend(p);
        }
        Ok(out)
    }
}
