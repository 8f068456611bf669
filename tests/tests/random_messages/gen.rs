//! Random field values for the messages of `random_messages.rs`: lengths
//! from empty to past the node's limits, enums with unknown values,
//! timestamps from zero to the far future, repeated fields past their
//! bounds. Keys never start with [`RECORDED`], so nothing sent can touch
//! the keys the test reads back.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, RngCore};

/// The prefix of the keys written before the barrage and read back after.
pub const RECORDED: &[u8] = b"recorded-5c1e7a/";
/// The prefix of most keys the random messages use.
pub const FUZZ: &[u8] = b"fz/";
/// The longest key the node stores (the engine's 65,535 minus 8).
pub const KEY_LIMIT: usize = 65_527;
/// The node's default `--max-value-bytes`.
pub const VALUE_LIMIT: usize = 4 * 1024 * 1024;
/// Ten years, in microseconds.
const DECADE_US: u64 = 10 * 365 * 24 * 3600 * 1_000_000;

/// Substrings no random or mutated payload may hold: the recorded keys'
/// prefix, and what could make a signed heartbeat name a real member or
/// put a new one in the ring.
pub const FORBIDDEN: &[&[u8]] = &[RECORDED, b"node", b"normal", b"joining", b"leaving"];

/// True when `bytes` holds none of [`FORBIDDEN`] (one pass: only where a
/// byte starts one of them is anything compared).
pub fn allowed(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, b)| {
        !matches!(b, b'r' | b'n' | b'j' | b'l')
            || FORBIDDEN
                .iter()
                .all(|f| f[0] != *b || !bytes[i..].starts_with(f))
    })
}

/// `n` bytes: up to 256 random ones, repeated to the length (filling
/// megabytes from the RNG would make the test's debug build, not the node,
/// the bottleneck; the node sees the same sizes).
pub fn bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n.min(256)];
    rng.fill_bytes(&mut v);
    while v.len() < n {
        let more = v.len().min(n - v.len());
        v.extend_from_within(..more);
    }
    v
}

/// Random bytes, as many as `range` draws.
pub fn bytes_in(rng: &mut StdRng, range: std::ops::Range<usize>) -> Vec<u8> {
    let n = rng.random_range(range);
    bytes(rng, n)
}

/// Now, in microseconds since the epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A key: empty, short, raw bytes, at the limit or past it; never one
/// starting with [`RECORDED`].
pub fn key(rng: &mut StdRng) -> Vec<u8> {
    let mut k = FUZZ.to_vec();
    match rng.random_range(0..100) {
        0..5 => return Vec::new(),
        5..15 => {
            let raw = bytes_in(rng, 1..40);
            if raw.starts_with(RECORDED) {
                k.extend(raw);
                return k;
            }
            return raw;
        }
        15..17 => {
            let n = KEY_LIMIT - 1 + rng.random_range(0..3);
            k.resize(n, b'k');
        }
        17 => k.extend(bytes_in(rng, KEY_LIMIT..70_000)),
        // A few keys many requests share, so writes race on them.
        18..40 => k.extend(format!("hot{}", rng.random_range(0..8)).bytes()),
        _ => k.extend(bytes_in(rng, 1..32)),
    }
    k
}

/// A value: empty, small, large, rarely past `--max-value-bytes`.
pub fn value(rng: &mut StdRng) -> Vec<u8> {
    let n = match rng.random_range(0..1000) {
        0..100 => 0,
        100..800 => rng.random_range(1..64),
        800..950 => rng.random_range(64..4096),
        950..990 => rng.random_range(4096..65_536),
        990..999 => rng.random_range(65_536..262_144),
        _ => VALUE_LIMIT + rng.random_range(1..64),
    };
    bytes(rng, n)
}

/// A string: empty, ASCII, arbitrary characters, or long.
pub fn string(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..2 => String::new(),
        2..7 => (0..rng.random_range(1..24))
            .map(|_| rng.random_range(b' '..=b'~') as char)
            .collect(),
        7..9 => (0..rng.random_range(1..16))
            .map(|_| rng.random::<char>())
            .collect(),
        _ => "x".repeat(rng.random_range(254..3000)),
    }
}

/// A node id that is no member's: random text, or `fz-<prefix>-N`.
pub fn stranger_id(rng: &mut StdRng, prefix: &str) -> String {
    if rng.random_bool(0.5) {
        format!("fz-{prefix}-{}", rng.random_range(0..64))
    } else {
        format!("fz-{prefix}-{}", string(rng).replace("node", "n0de"))
    }
}

/// A consistency level: known, unknown, negative or extreme.
pub fn enum_value(rng: &mut StdRng) -> i32 {
    match rng.random_range(0..20) {
        0..14 => rng.random_range(0..=4),
        14..17 => rng.random_range(5..100),
        17 => -1,
        18 => i32::MIN,
        _ => i32::MAX,
    }
}

/// A replica count (`replication_factor`, `quorum_size`, `w`).
pub fn count(rng: &mut StdRng) -> i32 {
    match rng.random_range(0..20) {
        0..12 => 0,
        12..17 => rng.random_range(1..=5),
        17 => rng.random_range(-5..0),
        18 => i32::MIN,
        _ => i32::MAX,
    }
}

/// A request deadline in milliseconds.
pub fn timeout_ms(rng: &mut StdRng) -> u32 {
    match rng.random_range(0..10) {
        0..5 => 0,
        5..8 => rng.random_range(1..5000),
        8 => 1,
        _ => u32::MAX,
    }
}

/// A microsecond timestamp: now, a little or a decade ahead, zero,
/// random, the extremes.
pub fn timestamp_u64(rng: &mut StdRng) -> u64 {
    let now = now_us();
    match rng.random_range(0..10) {
        0..3 => now,
        3 => now + rng.random_range(0..2_000_000),
        4 => now + DECADE_US,
        5 => 0,
        6 => u64::MAX,
        7 => now.saturating_sub(rng.random_range(0..DECADE_US)),
        _ => rng.random(),
    }
}

/// The legacy signed `timestamp` field: mostly zero (the node stamps).
pub fn timestamp_i64(rng: &mut StdRng) -> i64 {
    match rng.random_range(0..10) {
        0..5 => 0,
        5 => -1,
        6 => i64::MIN,
        7 => i64::MAX,
        _ => timestamp_u64(rng) as i64,
    }
}

/// How many entries a repeated field gets: mostly a few, now and then
/// past `limit`.
pub fn repeat(rng: &mut StdRng, limit: usize) -> usize {
    match rng.random_range(0..100) {
        0..20 => 0,
        20..87 => rng.random_range(1..8),
        87..99 => rng.random_range(8..64),
        _ => limit + rng.random_range(1..10),
    }
}

/// Random bytes as a payload, or `valid` mutated (bytes flipped, cut,
/// grown), holding none of [`FORBIDDEN`].
pub fn garbage(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    for _ in 0..16 {
        let out = if rng.random_bool(0.5) || valid.is_empty() || valid.len() > 100_000 {
            let n = match rng.random_range(0..10) {
                0 => 0,
                1..7 => rng.random_range(1..64),
                7..9 => rng.random_range(64..2048),
                _ => rng.random_range(2048..70_000),
            };
            bytes(rng, n)
        } else {
            mutate(rng, valid)
        };
        if allowed(&out) {
            return out;
        }
    }
    bytes(rng, 7)
}

fn mutate(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    let mut out = valid.to_vec();
    for _ in 0..rng.random_range(1..6) {
        match rng.random_range(0..4) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] = rng.random();
            }
            1 if !out.is_empty() => out.truncate(rng.random_range(0..out.len())),
            2 => {
                let at = rng.random_range(0..=out.len());
                let extra = bytes_in(rng, 1..16);
                out.splice(at..at, extra);
            }
            _ => out.extend(bytes_in(rng, 1..8)),
        }
    }
    out
}
