//! Work still to do, in bytes, exported as a gauge while it is being done
//! (`tinykv_stream_pending_bytes`, `tinykv_cleanup_pending_bytes`).

use prometheus::IntGauge;

/// Bytes still to move: the gauge is set to the total when the work
/// starts, lowered as each part is done, and set to 0 when the work
/// [finishes](Backlog::finish). Work that fails leaves what it did not do
/// on the gauge (still to do: a retry measures again).
pub struct Backlog {
    gauge: IntGauge,
    left: u64,
}

impl Backlog {
    /// Starts a backlog of `total` bytes on `gauge`.
    pub fn start(gauge: &IntGauge, total: u64) -> Backlog {
        let b = Backlog {
            gauge: gauge.clone(),
            left: total,
        };
        b.publish();
        b
    }

    /// `bytes` of it are done (never below 0: what was written meanwhile
    /// was not counted in the total).
    pub fn done(&mut self, bytes: u64) {
        self.left = self.left.saturating_sub(bytes);
        self.publish();
    }

    /// Bytes still to do.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// The work is complete: nothing left, whatever was written or
    /// deleted meanwhile.
    pub fn finish(self) {
        self.gauge.set(0);
    }

    fn publish(&self) {
        self.gauge.set(i64::try_from(self.left).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_follows_the_bytes_left_and_is_zero_once_finished() {
        let gauge = IntGauge::new("t", "t").unwrap();
        let mut b = Backlog::start(&gauge, 1000);
        assert_eq!(gauge.get(), 1000);
        b.done(300);
        assert_eq!((b.left(), gauge.get()), (700, 700));
        // More done than measured (written meanwhile): 0, not negative.
        b.done(900);
        assert_eq!((b.left(), gauge.get()), (0, 0));
        // Work that fails leaves what is left on the gauge; finishing
        // clears it, even with bytes deleted meanwhile still counted.
        let mut b = Backlog::start(&gauge, 42);
        b.done(40);
        drop(b);
        assert_eq!(gauge.get(), 2);
        Backlog::start(&gauge, 42).finish();
        assert_eq!(gauge.get(), 0);
    }
}
