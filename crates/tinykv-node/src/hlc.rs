//! A hybrid logical clock in microseconds.
//!
//! `now()` returns the wall clock in microseconds since the epoch unless that
//! would not be greater than the last timestamp issued or seen, in which case
//! it returns last + 1. So timestamps from one node strictly increase, never
//! go backwards when the wall clock does, and move past every timestamp the
//! node has observed from others (a causal write gets a larger timestamp).
//! Observed timestamps further ahead of the wall clock than `max_skew` are
//! not absorbed (they are reported instead), so one bad clock or a client
//! supplying a wild timestamp cannot drag every node's clock into the future.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock microseconds since the Unix epoch.
pub fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The node's clock. Lock-free; share it by reference or `Arc`.
#[derive(Debug)]
pub struct Hlc {
    last: AtomicU64,
    max_skew_us: u64,
    source: fn() -> u64,
}

/// What observing a remote timestamp did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The timestamp was at or behind our clock, or was absorbed.
    Ok,
    /// The timestamp was ahead of our wall clock by more than the allowed
    /// skew (microseconds ahead given) and was not absorbed.
    TooFarAhead(u64),
}

impl Hlc {
    /// A clock on the system wall clock that absorbs timestamps up to
    /// `max_skew` ahead of it.
    pub fn new(max_skew: Duration) -> Hlc {
        Hlc::with_source(max_skew, wall_micros)
    }

    /// A clock on a custom time source (tests).
    pub fn with_source(max_skew: Duration, source: fn() -> u64) -> Hlc {
        Hlc {
            last: AtomicU64::new(0),
            max_skew_us: u64::try_from(max_skew.as_micros()).unwrap_or(u64::MAX),
            source,
        }
    }

    /// A new timestamp, greater than every one issued or absorbed before.
    pub fn now(&self) -> u64 {
        let wall = (self.source)();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// The clock's time now without issuing a timestamp: the wall clock, or
    /// the last timestamp issued or absorbed if that is ahead. For checking
    /// expiries: a value stamped to expire at `t` by any node this one
    /// heard from is expired here once this passes `t`.
    pub fn peek(&self) -> u64 {
        (self.source)().max(self.last.load(Ordering::Acquire))
    }

    /// Moves the clock past a timestamp seen from another node or a client.
    pub fn observe(&self, ts: u64) -> Observed {
        let wall = (self.source)();
        if ts > wall.saturating_add(self.max_skew_us) {
            return Observed::TooFarAhead(ts - wall);
        }
        self.last.fetch_max(ts, Ordering::AcqRel);
        Observed::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    static FAKE: AtomicU64 = AtomicU64::new(1_000_000);
    fn fake() -> u64 {
        FAKE.load(Ordering::SeqCst)
    }

    #[test]
    fn strictly_increasing_even_when_wall_clock_goes_back() {
        let c = Hlc::with_source(Duration::from_secs(1), fake);
        FAKE.store(1_000_000, Ordering::SeqCst);
        let a = c.now();
        FAKE.store(500_000, Ordering::SeqCst); // wall clock jumps back
        let b = c.now();
        let d = c.now();
        assert!(a < b && b < d, "{a} {b} {d}");
        FAKE.store(2_000_000, Ordering::SeqCst);
        assert_eq!(c.now(), 2_000_000);
        // A remote timestamp slightly ahead is absorbed and passed.
        assert_eq!(c.observe(2_500_000), Observed::Ok);
        assert!(c.now() > 2_500_000);
        // One far ahead is refused.
        assert_eq!(c.observe(10_000_000), Observed::TooFarAhead(8_000_000));
        assert!(c.now() < 10_000_000);
    }

    #[test]
    fn unique_across_threads() {
        let c = Arc::new(Hlc::new(Duration::from_secs(1)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..10_000).map(|_| c.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let v = h.join().unwrap_or_default();
            assert!(v.windows(2).all(|w| w[0] < w[1]));
            all.extend(v);
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(n, 40_000);
    }
}
