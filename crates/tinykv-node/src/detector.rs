//! Phi-accrual failure detection (Hayashibara et al.), as in Cassandra.
//!
//! Each heartbeat answer from a peer is an arrival; phi is how unlikely it is
//! that the peer is still alive given the time since its last arrival and the
//! mean interval between arrivals (exponential model). Above the threshold a
//! peer is down; above half of it, suspect.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::hlc::wall_micros;

const WINDOW: usize = 100;

/// A peer's health as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Never heard from yet (treated as up for routing).
    Unknown,
    /// Answering heartbeats.
    Up,
    /// Late; still used.
    Suspect,
    /// Considered failed; requests go to fallbacks.
    Down,
}

impl Health {
    /// Lower-case name for status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Suspect => "suspect",
            Health::Down => "down",
        }
    }
}

struct PeerHistory {
    last: Instant,
    intervals: VecDeque<f64>,
    health: Health,
    since_us: u64,
    /// The peer's clock minus ours at its last heartbeat answer (µs).
    offset_us: Option<i64>,
}

/// A view of one peer's health.
#[derive(Clone, Copy, Debug)]
pub struct PeerHealth {
    /// Current classification.
    pub health: Health,
    /// Current phi.
    pub phi: f64,
    /// Time since the last heartbeat answer, if any.
    pub since_last: Option<Duration>,
    /// When the classification last changed (µs since epoch).
    pub since_us: u64,
    /// The peer's clock minus this node's, as its last heartbeat answer
    /// showed (µs; none before one arrived).
    pub offset_us: Option<i64>,
}

/// The detector for every peer.
pub struct Detector {
    threshold: f64,
    min_interval_ms: f64,
    peers: Mutex<HashMap<String, PeerHistory>>,
}

impl Detector {
    /// A detector that calls a peer down at `threshold` phi; the mean interval
    /// never counts as shorter than `heartbeat` (avoids a hair trigger).
    pub fn new(threshold: f64, heartbeat: Duration) -> Self {
        Detector {
            threshold,
            min_interval_ms: heartbeat.as_secs_f64() * 1000.0,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Records a heartbeat answer from `id`.
    pub fn heartbeat(&self, id: &str) {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        match peers.get_mut(id) {
            Some(h) => {
                let ms = now.duration_since(h.last).as_secs_f64() * 1000.0;
                h.intervals.push_back(ms);
                if h.intervals.len() > WINDOW {
                    h.intervals.pop_front();
                }
                h.last = now;
                if h.health != Health::Up {
                    h.health = Health::Up;
                    h.since_us = wall_micros();
                }
            }
            None => {
                peers.insert(
                    id.to_string(),
                    PeerHistory {
                        last: now,
                        intervals: VecDeque::new(),
                        health: Health::Up,
                        since_us: wall_micros(),
                        offset_us: None,
                    },
                );
            }
        }
    }

    fn phi_of(&self, h: &PeerHistory, now: Instant) -> f64 {
        let mean = if h.intervals.is_empty() {
            self.min_interval_ms
        } else {
            (h.intervals.iter().sum::<f64>() / h.intervals.len() as f64).max(self.min_interval_ms)
        };
        let t = now.duration_since(h.last).as_secs_f64() * 1000.0;
        t / mean * std::f64::consts::LOG10_E
    }

    /// Records `id`'s clock offset (its clock minus ours, µs) as measured by
    /// a heartbeat answer.
    pub fn clock_offset(&self, id: &str, offset_us: i64) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = peers.get_mut(id) {
            h.offset_us = Some(offset_us);
        }
    }

    /// Starts tracking `id` before it ever answers, so a peer that is dead
    /// from the start is eventually classified down rather than unknown.
    pub fn expect(&self, id: &str) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.entry(id.to_string()).or_insert_with(|| PeerHistory {
            last: Instant::now(),
            intervals: VecDeque::new(),
            health: Health::Unknown,
            since_us: wall_micros(),
            offset_us: None,
        });
    }

    /// Re-evaluates every peer and returns the ones whose health changed.
    pub fn evaluate(&self) -> Vec<(String, Health)> {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = Vec::new();
        let ids: Vec<String> = peers.keys().cloned().collect();
        for id in ids {
            let Some(h) = peers.get(&id) else { continue };
            let phi = self.phi_of(h, now);
            let health = if phi >= self.threshold {
                Health::Down
            } else if h.health == Health::Unknown {
                Health::Unknown
            } else if phi >= self.threshold / 2.0 {
                Health::Suspect
            } else {
                Health::Up
            };
            if let Some(h) = peers.get_mut(&id) {
                if h.health != health {
                    h.health = health;
                    h.since_us = wall_micros();
                    changed.push((id.clone(), health));
                }
            }
        }
        changed
    }

    /// The current view of `id`.
    pub fn get(&self, id: &str) -> PeerHealth {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        match peers.get(id) {
            None => PeerHealth {
                health: Health::Unknown,
                phi: 0.0,
                since_last: None,
                since_us: 0,
                offset_us: None,
            },
            Some(h) => PeerHealth {
                health: h.health,
                phi: self.phi_of(h, now),
                since_last: Some(now.duration_since(h.last)),
                since_us: h.since_us,
                offset_us: h.offset_us,
            },
        }
    }

    /// True when `id` is classified down.
    pub fn is_down(&self, id: &str) -> bool {
        // On every replica call: the classification only, without the
        // clock read and phi that `get` computes for status reports.
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.get(id).is_some_and(|h| h.health == Health::Down)
    }

    /// Classifies `id` down at once, as missed heartbeats would (tests of
    /// the layers above).
    #[cfg(test)]
    pub(crate) fn mark_down(&self, id: &str) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let h = peers.entry(id.to_string()).or_insert_with(|| PeerHistory {
            last: Instant::now(),
            intervals: VecDeque::new(),
            health: Health::Down,
            since_us: wall_micros(),
            offset_us: None,
        });
        h.health = Health::Down;
    }

    /// Forgets a peer (after it was removed).
    pub fn forget(&self, id: &str) {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_never_answers_goes_down() {
        let d = Detector::new(1.0, Duration::from_millis(5));
        d.expect("p");
        assert_eq!(d.get("p").health, Health::Unknown);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !d.is_down("p") {
            d.evaluate();
            assert!(Instant::now() < deadline, "never went down");
            std::thread::yield_now();
        }
    }

    #[test]
    fn unknown_then_up_then_down_without_heartbeats() {
        let d = Detector::new(1.0, Duration::from_millis(5));
        assert_eq!(d.get("p").health, Health::Unknown);
        d.heartbeat("p");
        assert_eq!(d.get("p").health, Health::Up);
        // phi 1.0 at 5ms mean interval is reached after ~11.5ms without answers.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !d.is_down("p") {
            d.evaluate();
            assert!(Instant::now() < deadline, "never went down");
            std::thread::yield_now();
        }
        assert!(d.get("p").phi >= 1.0);
        d.heartbeat("p");
        assert_eq!(d.get("p").health, Health::Up);
    }
}
