//! Paging through this node's own versions of a token range, for the
//! background work that must see all of them (anti-entropy, purging,
//! streaming a leaving node's data out) without holding them all at once.

use std::sync::Arc;

use bytes::Bytes;

use crate::node::Node;
use crate::storage::ScanLimit;
use crate::version::Record;

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

    /// The next page of `node`'s versions; `None` after the last one.
    pub(crate) async fn next(
        &mut self,
        node: &Arc<Node>,
    ) -> Result<Option<Vec<(Bytes, Record)>>, String> {
        if self.done {
            return Ok(None);
        }
        let (node, (lo, hi), after, limit) =
            (node.clone(), self.range, self.after.take(), self.limit);
        let page = tokio::task::spawn_blocking(move || {
            node.store
                .engine()
                .scan(lo, hi, after.as_deref(), limit)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        match page.last() {
            Some((k, _)) if limit.filled_by(&page) => self.after = Some(k.clone()),
            _ => self.done = true,
        }
        Ok(Some(page))
    }
}
