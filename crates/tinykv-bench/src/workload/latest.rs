//! YCSB's "latest" key choice (workload D): writes insert new keys after
//! the key space, reads favour the newest keys. It models feeds and
//! timelines, where what was just written is what gets read.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;

use super::{Zipfian, ZIPFIAN_THETA};

/// Shared by every worker: the next index to insert, and the newest index
/// whose insert was acknowledged.
#[derive(Debug)]
pub struct Latest {
    /// Popularity by age: 0 is the newest acknowledged key.
    zipf: Zipfian,
    /// The initial key space (indices below it exist before the run).
    initial: u64,
    /// The next index an insert takes.
    next: AtomicU64,
    /// One past the highest acknowledged insert. Reads stay below it, so
    /// they do not ask for keys whose insert is still in flight (YCSB's
    /// acknowledged counter does the same; an older insert still in
    /// flight can be read, and is counted as "found nothing").
    acked: AtomicU64,
}

impl Latest {
    /// Over an initial key space of `keyspace` keys (at least 1), which
    /// `--load` writes.
    pub fn new(keyspace: u64) -> Latest {
        let keyspace = keyspace.max(1);
        Latest {
            // Skew over the newest `keyspace` keys: a fixed window rather
            // than YCSB's growing one, so no zeta recomputation per insert.
            zipf: Zipfian::new(keyspace, ZIPFIAN_THETA),
            initial: keyspace,
            next: AtomicU64::new(keyspace),
            acked: AtomicU64::new(keyspace),
        }
    }

    /// The initial key-space size.
    pub fn keyspace(&self) -> u64 {
        self.initial
    }

    /// Claims the index of a new key to insert.
    pub fn claim_insert(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Records that the insert of `index` succeeded, making it readable.
    pub fn acknowledge(&self, index: u64) {
        self.acked.fetch_max(index + 1, Ordering::Relaxed);
    }

    /// Inserts claimed so far.
    pub fn inserts_claimed(&self) -> u64 {
        self.next.load(Ordering::Relaxed) - self.initial
    }

    /// The index for a read: the newest acknowledged key minus a zipfian
    /// age, so the newest key is the hottest.
    pub fn next_read<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let newest = self.acked.load(Ordering::Relaxed).saturating_sub(1);
        newest.saturating_sub(self.zipf.sample(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn reads_favour_the_newest_acknowledged_keys() {
        let latest = Latest::new(1_000);
        let mut rng = SmallRng::seed_from_u64(3);
        // 100 inserts, all acknowledged: the newest key is index 1099.
        for _ in 0..100 {
            let i = latest.claim_insert();
            latest.acknowledge(i);
        }
        assert_eq!(latest.inserts_claimed(), 100);
        let n = 100_000;
        let reads: Vec<u64> = (0..n).map(|_| latest.next_read(&mut rng)).collect();
        assert!(reads.iter().all(|&i| i < 1_100), "read past the newest key");
        let newest = reads.iter().filter(|&&i| i == 1_099).count() as f64 / n as f64;
        let recent = reads.iter().filter(|&&i| i >= 1_000).count() as f64 / n as f64;
        let oldest_half = reads.iter().filter(|&&i| i < 600).count() as f64 / n as f64;
        // Zipfian(1000, 0.99): the hottest item draws about 13%.
        assert!(newest > 0.1, "newest key share {newest}");
        // The 100 newest keys (10% of the window) take most reads...
        assert!(recent > 0.5, "recent share {recent}");
        // ...and the oldest half of the window only a little.
        assert!(oldest_half < 0.15, "oldest half share {oldest_half}");
    }

    #[test]
    fn unacknowledged_inserts_are_not_read() {
        let latest = Latest::new(10);
        let mut rng = SmallRng::seed_from_u64(5);
        let first = latest.claim_insert();
        let second = latest.claim_insert();
        assert_eq!((first, second), (10, 11));
        assert!((0..1_000).all(|_| latest.next_read(&mut rng) < 10));
        latest.acknowledge(second);
        latest.acknowledge(first); // out of order: the high mark stays
        assert!((0..1_000).all(|_| latest.next_read(&mut rng) < 12));
        assert!((0..1_000).any(|_| latest.next_read(&mut rng) == 11));
    }
}
