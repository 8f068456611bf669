//! The node's clock as the rest of the node uses it: the hybrid logical
//! clock, plus the accounting of remote timestamps it refused to absorb.

use std::time::Duration;

use prometheus::IntCounter;

use crate::hlc::{Hlc, Observed};

/// How far ahead of the wall clock a remote timestamp may be absorbed.
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// The clock that stamps this node's versions.
pub struct Clock {
    hlc: Hlc,
    /// Counts timestamps refused for being too far ahead.
    refused: IntCounter,
}

impl Clock {
    /// A clock on the wall clock; refusals are counted in `refused`.
    pub fn new(refused: IntCounter) -> Clock {
        Clock {
            hlc: Hlc::new(MAX_SKEW),
            refused,
        }
    }

    /// A new timestamp, greater than every one issued or absorbed before.
    pub fn now(&self) -> u64 {
        self.hlc.now()
    }

    /// Moves the clock past a timestamp seen from `from` (a peer's id or
    /// "client"); one too far ahead is refused, counted and logged.
    pub fn observe(&self, ts: u64, from: &str) {
        if let Observed::TooFarAhead(ahead) = self.hlc.observe(ts) {
            self.refused.inc();
            tracing::warn!(
                from,
                ahead_us = ahead,
                "timestamp too far ahead of our clock; not absorbed"
            );
        }
    }
}
