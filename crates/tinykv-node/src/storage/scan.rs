//! How much one range scan returns.
//!
//! Anti-entropy, range streaming and Merkle digests page through ranges. A
//! page bounded only by a count holds that many values whatever their size
//! (1,024 values of 4 MiB are 4 GiB in memory, and more than any message),
//! so a page is bounded by bytes too.

use bytes::Bytes;

use crate::version::Record;

/// The byte budget of a page that stays in this node (digests, local
/// range reads).
pub const SCAN_PAGE_BYTES: usize = 8 << 20;

/// One page of a scan: at most `count` versions, ending with the version
/// that brings their size ([`page_bytes`]) to `bytes` or more. The version
/// that reaches the budget is included, so every page makes progress
/// however large a single value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLimit {
    /// Most versions in the page.
    pub count: usize,
    /// Size at which the page ends.
    pub bytes: usize,
}

impl ScanLimit {
    /// At most `count` versions and [`SCAN_PAGE_BYTES`].
    pub fn count(count: usize) -> Self {
        ScanLimit {
            count,
            bytes: SCAN_PAGE_BYTES,
        }
    }

    /// Whether a page of `len` versions of `bytes` in all is full: the
    /// scan stopped there, so more versions may follow it.
    pub fn full(&self, len: usize, bytes: usize) -> bool {
        len >= self.count || bytes >= self.bytes
    }

    /// Whether `page`, as a scan with this limit returned it, is full.
    pub fn filled_by(&self, page: &[(Bytes, Record)]) -> bool {
        self.full(page.len(), page.iter().map(|(k, r)| page_bytes(k, r)).sum())
    }
}

/// What one version counts toward a page's size: its key and record.
pub fn page_bytes(key: &[u8], record: &Record) -> usize {
    key.len() + record.approx_size()
}

/// Collects a scan's versions into a page: pushes until `limit` is full.
/// Engines call [`Page::push`] per version and stop when it returns false.
pub(crate) struct Page {
    limit: ScanLimit,
    bytes: usize,
    /// The versions so far.
    pub out: Vec<(Bytes, Record)>,
}

impl Page {
    pub(crate) fn new(limit: ScanLimit) -> Self {
        Page {
            limit,
            bytes: 0,
            out: Vec::new(),
        }
    }

    /// True while the page has room for another version.
    pub(crate) fn open(&self) -> bool {
        !self.limit.full(self.out.len(), self.bytes)
    }

    /// Adds a version; false once the page is full.
    pub(crate) fn push(&mut self, key: Bytes, record: Record) -> bool {
        self.bytes += page_bytes(&key, &record);
        self.out.push((key, record));
        self.open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_ends_at_its_count_or_with_the_version_that_reaches_its_bytes() {
        let rec = |n: usize| Record::value(vec![0u8; n].into(), 1, "w");
        // page_bytes: 1 (key) + n + 1 (writer) + 16.
        let mut p = Page::new(ScanLimit {
            count: 3,
            bytes: 100,
        });
        assert!(p.open());
        assert!(p.push("a".into(), rec(10)));
        assert!(
            !p.push("b".into(), rec(500)),
            "the version past the budget ends it"
        );
        assert_eq!(p.out.len(), 2);
        assert!(ScanLimit {
            count: 3,
            bytes: 100
        }
        .filled_by(&p.out));

        let mut p = Page::new(ScanLimit::count(2));
        assert!(p.push("a".into(), rec(1)));
        assert!(!p.push("b".into(), rec(1)));
        assert!(!ScanLimit::count(3).filled_by(&p.out));
        assert!(ScanLimit::count(0).full(0, 0));
    }
}
