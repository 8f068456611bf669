//! What the benchmark does: the read/write mix, which keys it touches and
//! the zipfian generator behind skewed key choice.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use rand::Rng;
use serde::Serialize;

mod latest;
pub use latest::Latest;

/// The kind of one benchmark operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// A `get` of one key.
    Read,
    /// A `put` of one key (YCSB "update", or "insert" of a new key under
    /// the `latest` distribution).
    Write,
    /// A `get` then a `put` of the same key (YCSB F's read-modify-write),
    /// timed as one operation.
    #[serde(rename = "rmw")]
    ReadModifyWrite,
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
    /// YCSB D: 95% reads skewed to recently inserted keys, 5% inserts of
    /// new keys (the `latest` distribution).
    D,
    /// YCSB F: 50% reads, 50% read-modify-writes of one key.
    F,
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
            Workload::D => 0.95,
            Workload::F => 0.5,
            Workload::Write => 0.0,
        }
    }

    /// What the operations that are not reads do.
    pub fn non_read(self) -> OpKind {
        match self {
            Workload::F => OpKind::ReadModifyWrite,
            _ => OpKind::Write,
        }
    }

    /// The key distribution the workload is defined with, if it has one
    /// (D reads the latest keys); the others take `--distribution`.
    pub fn distribution(self) -> Option<Distribution> {
        match self {
            Workload::D => Some(Distribution::Latest),
            _ => None,
        }
    }
}

/// Picks a read or the other kind (a write, or a read-modify-write for
/// YCSB F) for each operation with a fixed read ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpMix {
    read_ratio: f64,
    non_read: OpKind,
}

impl OpMix {
    /// A mix with `read_ratio` reads (clamped to `0.0..=1.0`), writes otherwise.
    pub fn new(read_ratio: f64) -> OpMix {
        OpMix::with_non_read(read_ratio, OpKind::Write)
    }

    /// A mix with `read_ratio` reads and `non_read` operations otherwise.
    pub fn with_non_read(read_ratio: f64, non_read: OpKind) -> OpMix {
        let read_ratio = if read_ratio.is_nan() {
            0.0
        } else {
            read_ratio.clamp(0.0, 1.0)
        };
        OpMix {
            read_ratio,
            non_read,
        }
    }

    /// The kind of the operations that are not reads.
    pub fn non_read(&self) -> OpKind {
        self.non_read
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
            self.non_read
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
    /// YCSB's "latest": writes insert new keys past the key space, reads
    /// are zipfian over the most recently inserted keys (newest hottest).
    Latest,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
            Distribution::Latest => "latest",
        })
    }
}

impl FromStr for Distribution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "uniform" => Ok(Distribution::Uniform),
            "zipfian" | "zipf" => Ok(Distribution::Zipfian),
            "latest" => Ok(Distribution::Latest),
            _ => Err(format!(
                "unknown distribution {s:?} (uniform, zipfian or latest)"
            )),
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

/// Chooses key indices in `0..keyspace` (past it for `latest` inserts).
/// One is shared by all workers.
#[derive(Debug)]
pub enum KeyChooser {
    /// Every index equally likely.
    Uniform {
        /// The key-space size.
        keyspace: u64,
    },
    /// Zipfian over the indices, index 0 the hottest.
    Zipfian(Zipfian),
    /// Writes insert new keys, reads favour the newest ([`Latest`]).
    Latest(Latest),
}

/// The key of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyChoice {
    /// The key's index.
    pub index: u64,
    /// Whether the operation inserts a new key (to acknowledge once done).
    pub insert: bool,
}

impl KeyChooser {
    /// A chooser over `keyspace` keys (at least 1).
    pub fn new(distribution: Distribution, keyspace: u64) -> KeyChooser {
        let keyspace = keyspace.max(1);
        match distribution {
            Distribution::Uniform => KeyChooser::Uniform { keyspace },
            Distribution::Zipfian => KeyChooser::Zipfian(Zipfian::new(keyspace, ZIPFIAN_THETA)),
            Distribution::Latest => KeyChooser::Latest(Latest::new(keyspace)),
        }
    }

    /// The key-space size.
    pub fn keyspace(&self) -> u64 {
        match self {
            KeyChooser::Uniform { keyspace } => *keyspace,
            KeyChooser::Zipfian(z) => z.items(),
            KeyChooser::Latest(l) => l.keyspace(),
        }
    }

    /// The next key index.
    pub fn next_index<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match self {
            KeyChooser::Uniform { keyspace } => rng.random_range(0..*keyspace),
            KeyChooser::Zipfian(z) => z.sample(rng),
            KeyChooser::Latest(l) => l.next_read(rng),
        }
    }

    /// The key for an operation of `kind`: under `latest` a write inserts
    /// a new key; everything else picks an existing index.
    pub fn choose<R: Rng + ?Sized>(&self, kind: OpKind, rng: &mut R) -> KeyChoice {
        match (self, kind) {
            (KeyChooser::Latest(l), OpKind::Write) => KeyChoice {
                index: l.claim_insert(),
                insert: true,
            },
            _ => KeyChoice {
                index: self.next_index(rng),
                insert: false,
            },
        }
    }

    /// Records that the insert chosen as `choice` succeeded.
    pub fn acknowledge(&self, choice: KeyChoice) {
        if let (KeyChooser::Latest(l), true) = (self, choice.insert) {
            l.acknowledge(choice.index);
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
mod tests;
