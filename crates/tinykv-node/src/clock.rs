//! The node's clock as the rest of the node uses it: the hybrid logical
//! clock, the offset bound every incoming timestamp is held to, and the
//! accounting of timestamps refused for being too far ahead.

use std::time::Duration;

use prometheus::IntCounter;

use crate::hlc::{Hlc, Observed};

/// A timestamp too far ahead of this node's clock to be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timestamp is {}ms ahead of this node's clock; the limit is {}ms (--max-clock-offset; twice that for peers)", .ahead.as_millis(), .limit.as_millis())]
pub struct TooFarAhead {
    /// How far ahead it is.
    pub ahead: Duration,
    /// The bound.
    pub limit: Duration,
}

/// The clock that stamps this node's versions.
pub struct Clock {
    hlc: Hlc,
    max_offset: Duration,
    /// Counts timestamps refused for being too far ahead.
    refused: IntCounter,
}

impl Clock {
    /// A clock on the wall clock that holds a client's timestamps to
    /// `max_offset` ahead of it, and peers' to twice that (a version a
    /// coordinator admitted at its bound must still be admitted by a
    /// replica whose clock lags the coordinator's by up to the bound);
    /// refusals are counted in `refused`.
    pub fn new(max_offset: Duration, refused: IntCounter) -> Clock {
        Clock {
            hlc: Hlc::new(max_offset.saturating_mul(2)),
            max_offset,
            refused,
        }
    }

    /// A new timestamp, greater than every one issued or absorbed before.
    pub fn now(&self) -> u64 {
        self.hlc.now()
    }

    /// The time now, without issuing a timestamp (see [`Hlc::peek`]).
    pub fn peek(&self) -> u64 {
        self.hlc.peek()
    }

    /// Admits a client's timestamp: refused (counted and logged) when it
    /// is more than the offset bound ahead of this node's wall clock, else
    /// the clock moves past it.
    pub fn admit_client(&self, ts: u64) -> Result<(), TooFarAhead> {
        let limit = u64::try_from(self.max_offset.as_micros()).unwrap_or(u64::MAX);
        let wall = crate::hlc::wall_micros();
        if ts > wall.saturating_add(limit) {
            return Err(self.refuse(ts - wall, "client", self.max_offset));
        }
        self.admit(ts, "client")
    }

    /// Admits a peer's timestamp (a version to store, a member row): the
    /// clock moves past it, unless it is more than twice the offset bound
    /// ahead, in which case it is refused, counted and logged.
    pub fn admit(&self, ts: u64, from: &str) -> Result<(), TooFarAhead> {
        match self.hlc.observe(ts) {
            Observed::Ok => Ok(()),
            Observed::TooFarAhead(ahead_us) => {
                Err(self.refuse(ahead_us, from, self.max_offset.saturating_mul(2)))
            }
        }
    }

    fn refuse(&self, ahead_us: u64, from: &str, limit: Duration) -> TooFarAhead {
        self.refused.inc();
        tracing::warn!(
            from,
            ahead_us,
            "timestamp too far ahead of this node's clock; refused"
        );
        TooFarAhead {
            ahead: Duration::from_micros(ahead_us),
            limit,
        }
    }

    /// Moves the clock past a timestamp seen in a replica's answer (data
    /// already stored elsewhere: nothing to refuse); one too far ahead is
    /// not absorbed, and is counted and logged.
    pub fn observe(&self, ts: u64, from: &str) {
        let _ = self.admit(ts, from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::wall_micros;

    #[test]
    fn timestamps_beyond_the_offset_are_refused_and_counted() {
        let refused = IntCounter::new("r", "r").expect("counter");
        let clock = Clock::new(Duration::from_millis(500), refused.clone());
        let now = wall_micros();
        assert!(clock.admit_client(now + 100_000).is_ok());
        assert!(
            clock.now() > now + 100_000,
            "an admitted timestamp is passed"
        );
        // A client is held to the offset, a peer to twice it.
        assert!(clock.admit_client(now + 800_000).is_err());
        assert!(clock.admit(now + 800_000, "n2").is_ok());
        assert!(clock.admit(now + 1_200_000, "n2").is_err());
        let far = clock.admit_client(now + 10 * 365 * 86_400_000_000);
        let err = far.expect_err("ten years ahead");
        assert!(err.ahead > Duration::from_secs(86_400));
        assert_eq!(err.limit, Duration::from_millis(500));
        assert!(err.to_string().contains("--max-clock-offset"), "{err}");
        assert_eq!(refused.get(), 3);
        assert!(
            clock.now() < now + 10_000_000,
            "a refused timestamp is not absorbed"
        );
    }
}
