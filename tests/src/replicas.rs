//! A node's own copy of a key as it is stored: value or tombstone, with
//! its timestamp and writer (the LWW version), so tests can see deletes
//! and tie-breaks on each replica without a quorum read (which repairs).

use std::time::{Duration, Instant};

use crate::Cluster;

/// One replica's version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalCopy {
    /// The node holds no version.
    Absent,
    /// A value, with its timestamp and writer.
    Value {
        /// The value, as text.
        val: String,
        /// Microseconds since the epoch.
        timestamp: i64,
        /// The coordinator that stamped it.
        writer: String,
    },
    /// A tombstone, with its timestamp and writer.
    Tombstone {
        /// Microseconds since the epoch.
        timestamp: i64,
        /// The coordinator that stamped it.
        writer: String,
    },
}

impl Cluster {
    /// Node `i`'s own version of `key` (admin LocalGet). Transient RPC
    /// errors are retried for up to 10 s, then fail the test.
    pub async fn local_copy(&self, i: usize, key: &str) -> LocalCopy {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.client_for(i).local_get(key.to_string()).await {
                Ok(r) if !r.present => return LocalCopy::Absent,
                Ok(r) if r.tombstone => {
                    return LocalCopy::Tombstone {
                        timestamp: r.timestamp,
                        writer: r.writer,
                    }
                }
                Ok(r) => {
                    return LocalCopy::Value {
                        val: String::from_utf8_lossy(&r.val).into_owned(),
                        timestamp: r.timestamp,
                        writer: r.writer,
                    }
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "local-get {key} on {}: {e}",
                    self.nodes[i].id
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
