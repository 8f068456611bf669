//! What the benchmark does: the read/write mix, which keys it touches and
//! the zipfian generator behind skewed key choice.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use rand::Rng;
use serde::Serialize;

/// The kind of one benchmark operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// A `get` of one key.
    Read,
    /// A `put` of one key (YCSB "update").
    Write,
}

/// A named YCSB-style workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// YCSB A: 50% reads, 50% updates.
    A,
    /// YCSB B: 95% reads, 5% updates.
    B,
    /// YCSB C: reads only.
    C,
    /// Writes only.
    Write,
}

impl Workload {
    /// The fraction of operations that are reads.
    pub fn read_ratio(self) -> f64 {
        match self {
            Workload::A => 0.5,
            Workload::B => 0.95,
            Workload::C => 1.0,
            Workload::Write => 0.0,
        }
    }
}

/// Picks read or write for each operation with a fixed read ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpMix {
    read_ratio: f64,
}

impl OpMix {
    /// A mix with `read_ratio` reads (clamped to `0.0..=1.0`).
    pub fn new(read_ratio: f64) -> OpMix {
        let read_ratio = if read_ratio.is_nan() {
            0.0
        } else {
            read_ratio.clamp(0.0, 1.0)
        };
        OpMix { read_ratio }
    }

    /// The fraction of reads.
    pub fn read_ratio(&self) -> f64 {
        self.read_ratio
    }

    /// The next operation's kind.
    pub fn next_op<R: Rng + ?Sized>(&self, rng: &mut R) -> OpKind {
        // Exact at the ends, so read-only and write-only never stray.
        if self.read_ratio >= 1.0 {
            OpKind::Read
        } else if self.read_ratio <= 0.0 || rng.random::<f64>() >= self.read_ratio {
            OpKind::Write
        } else {
            OpKind::Read
        }
    }
}

/// How keys are chosen from the key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Zipfian with theta 0.99: a few keys get most of the traffic.
    Zipfian,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
        })
    }
}

impl FromStr for Distribution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "uniform" => Ok(Distribution::Uniform),
            "zipfian" | "zipf" => Ok(Distribution::Zipfian),
            _ => Err(format!("unknown distribution {s:?} (uniform or zipfian)")),
        }
    }
}

/// The YCSB zipfian constant.
pub const ZIPFIAN_THETA: f64 = 0.99;

/// A zipfian generator over `0..n` (item 0 the most popular), after Gray et
/// al., "Quickly Generating Billion-Record Synthetic Databases" (SIGMOD
/// 1994), as used by YCSB's `ZipfianGenerator`.
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    /// `1 + 0.5^theta`: the threshold below which item 1 is returned.
    half_pow_theta: f64,
}

/// `sum_{i=1..=n} 1 / i^theta`.
fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    /// A generator over `0..items` with skew `theta` (`0 < theta < 1`).
    /// `items` of 0 is treated as 1.
    pub fn new(items: u64, theta: f64) -> Zipfian {
        let items = items.max(1);
        let zetan = zeta(items, theta);
        let zeta2 = zeta(2, theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipfian {
            items,
            theta,
            alpha,
            zetan,
            eta,
            half_pow_theta: 1.0 + 0.5f64.powf(theta),
        }
    }

    /// The number of items.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The skew parameter.
    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// The next item, in `0..items`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.half_pow_theta {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }
}

/// Chooses key indices in `0..keyspace` and renders them as keys.
#[derive(Clone, Debug)]
pub enum KeyChooser {
    /// Every index equally likely.
    Uniform {
        /// The key-space size.
        keyspace: u64,
    },
    /// Zipfian over the indices, index 0 the hottest.
    Zipfian(Zipfian),
}

impl KeyChooser {
    /// A chooser over `keyspace` keys (at least 1).
    pub fn new(distribution: Distribution, keyspace: u64) -> KeyChooser {
        let keyspace = keyspace.max(1);
        match distribution {
            Distribution::Uniform => KeyChooser::Uniform { keyspace },
            Distribution::Zipfian => KeyChooser::Zipfian(Zipfian::new(keyspace, ZIPFIAN_THETA)),
        }
    }

    /// The key-space size.
    pub fn keyspace(&self) -> u64 {
        match self {
            KeyChooser::Uniform { keyspace } => *keyspace,
            KeyChooser::Zipfian(z) => z.items(),
        }
    }

    /// The next key index.
    pub fn next_index<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match self {
            KeyChooser::Uniform { keyspace } => rng.random_range(0..*keyspace),
            KeyChooser::Zipfian(z) => z.sample(rng),
        }
    }
}

/// The key for index `i`. The ring hashes keys, so neighbouring (and hot)
/// indices still land on different nodes.
pub fn key_for(prefix: &str, i: u64) -> Bytes {
    Bytes::from(format!("{prefix}{i}"))
}

/// A random printable value of `size` bytes.
pub fn random_value<R: Rng + ?Sized>(rng: &mut R, size: usize) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect::<Vec<u8>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(42)
    }

    fn read_fraction(mix: OpMix, n: usize) -> f64 {
        let mut rng = rng();
        let reads = (0..n)
            .filter(|_| mix.next_op(&mut rng) == OpKind::Read)
            .count();
        reads as f64 / n as f64
    }

    #[test]
    fn workload_mixes_within_tolerance() {
        let n = 100_000;
        for (w, want) in [(Workload::A, 0.5), (Workload::B, 0.95)] {
            let got = read_fraction(OpMix::new(w.read_ratio()), n);
            assert!((got - want).abs() < 0.01, "{w:?}: {got} reads, want {want}");
        }
        assert_eq!(read_fraction(OpMix::new(Workload::C.read_ratio()), n), 1.0);
        assert_eq!(
            read_fraction(OpMix::new(Workload::Write.read_ratio()), n),
            0.0
        );
        let got = read_fraction(OpMix::new(0.3), n);
        assert!((got - 0.3).abs() < 0.01, "{got}");
    }

    #[test]
    fn mix_clamps_out_of_range_ratios() {
        assert_eq!(OpMix::new(1.7).read_ratio(), 1.0);
        assert_eq!(OpMix::new(-0.2).read_ratio(), 0.0);
        assert_eq!(OpMix::new(f64::NAN).read_ratio(), 0.0);
    }

    fn counts(chooser: &KeyChooser, samples: usize) -> Vec<u64> {
        let mut rng = rng();
        let mut counts = vec![0u64; chooser.keyspace() as usize];
        for _ in 0..samples {
            let i = chooser.next_index(&mut rng);
            counts[i as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipfian_is_skewed_and_uniform_is_not() {
        let keyspace = 1_000;
        let samples = 200_000;
        let zipf = counts(&KeyChooser::new(Distribution::Zipfian, keyspace), samples);
        let unif = counts(&KeyChooser::new(Distribution::Uniform, keyspace), samples);

        // Uniform expectation per key is 200; zipfian's hottest key gets
        // 1/zeta(1000, 0.99), about 13% of all draws.
        let expected_top = samples as f64 / zeta(keyspace, ZIPFIAN_THETA);
        let top = zipf[0] as f64;
        assert!(
            (top - expected_top).abs() / expected_top < 0.05,
            "top key {top}, expected about {expected_top}"
        );
        let unif_max = unif.iter().copied().max().unwrap_or(0) as f64;
        assert!(
            top > 50.0 * unif_max,
            "zipfian top {top} vs uniform max {unif_max}"
        );
        // Popularity falls with rank: rank 0 beats rank 1 beats rank 10.
        assert!(zipf[0] > zipf[1] && zipf[1] > zipf[10], "{:?}", &zipf[..11]);
        // The ten hottest keys take a large share; uniformly they take 1%.
        let top10: u64 = zipf[..10].iter().sum();
        assert!(top10 as f64 / samples as f64 > 0.3, "top10 {top10}");
        // Every uniform key is hit, roughly equally.
        assert!(unif.iter().all(|&c| c > 100 && c < 320), "uniform spread");
    }

    #[test]
    fn zipfian_stays_in_range() {
        let mut rng = rng();
        for items in [1u64, 2, 3, 10, 100_000] {
            let z = Zipfian::new(items, ZIPFIAN_THETA);
            for _ in 0..10_000 {
                assert!(z.sample(&mut rng) < items);
            }
        }
        assert_eq!(Zipfian::new(0, ZIPFIAN_THETA).items(), 1);
    }

    #[test]
    fn keys_and_values() {
        assert_eq!(key_for("bench:", 42), Bytes::from_static(b"bench:42"));
        let v = random_value(&mut rng(), 100);
        assert_eq!(v.len(), 100);
        assert!(v.iter().all(u8::is_ascii_alphanumeric));
        assert_eq!("Zipf".parse(), Ok(Distribution::Zipfian));
        assert!("normal".parse::<Distribution>().is_err());
    }
}
