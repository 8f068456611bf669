//! Test-only fault switches: with the `fault-injection` feature (never in
//! release builds), drop all traffic to and from chosen peers to simulate a
//! network partition. Set through the `TINYKV_FAULT_BLOCK_FILE` file, which
//! lists blocked peer ids, one per line, and is re-read when it changes.
//! Without the feature nothing is ever blocked, and the check costs nothing.

#[cfg(feature = "fault-injection")]
use std::collections::HashSet;
#[cfg(feature = "fault-injection")]
use std::sync::Mutex;
#[cfg(feature = "fault-injection")]
use std::time::SystemTime;

/// Peers this node must not talk to.
#[derive(Default)]
pub struct Faults {
    #[cfg(feature = "fault-injection")]
    cache: Mutex<(Option<SystemTime>, HashSet<String>)>,
}

impl Faults {
    /// True when traffic with `peer` must be dropped.
    #[cfg(not(feature = "fault-injection"))]
    pub fn blocks(&self, _peer: &str) -> bool {
        false
    }

    /// True when traffic with `peer` must be dropped.
    #[cfg(feature = "fault-injection")]
    pub fn blocks(&self, peer: &str) -> bool {
        let Ok(path) = std::env::var("TINYKV_FAULT_BLOCK_FILE") else {
            return false;
        };
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let Ok(mut cache) = self.cache.lock() else {
            return false;
        };
        if cache.0 != modified {
            let set = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            *cache = (modified, set);
        }
        cache.1.contains(peer)
    }
}
