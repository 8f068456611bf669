//! Test-only fault switches: with the `fault-injection` feature (never in
//! release builds), drop all traffic to and from chosen peers to simulate a
//! network partition. Set through the `TINYKV_FAULT_BLOCK_FILE` file, which
//! lists blocked peer ids, one per line. Writers replace the file whole
//! (a temporary file renamed over it), and the node re-reads it when its
//! inode, modification time or length changes: a rename gives a new inode
//! even when two writes fall in one timestamp tick, so a block followed at
//! once by an unblock is never missed.
//! Without the feature nothing is ever blocked, and the check costs nothing.

#[cfg(feature = "fault-injection")]
use std::collections::HashSet;
#[cfg(feature = "fault-injection")]
use std::path::PathBuf;
#[cfg(feature = "fault-injection")]
use std::sync::Mutex;
#[cfg(feature = "fault-injection")]
use std::time::SystemTime;

/// What identifies one version of the block file: a new file renamed over
/// the old one differs at least in its inode.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileKey {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

#[cfg(feature = "fault-injection")]
impl FileKey {
    fn of(path: &std::path::Path) -> Option<FileKey> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileKey {
            inode: meta.ino(),
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// Peers this node must not talk to.
#[derive(Default)]
pub struct Faults {
    #[cfg(feature = "fault-injection")]
    file: Option<PathBuf>,
    #[cfg(feature = "fault-injection")]
    cache: Mutex<(Option<FileKey>, HashSet<String>)>,
}

impl Faults {
    /// The switches named by the environment (`TINYKV_FAULT_BLOCK_FILE`);
    /// without the feature, none.
    pub fn from_env() -> Faults {
        #[cfg(feature = "fault-injection")]
        {
            let file = std::env::var_os("TINYKV_FAULT_BLOCK_FILE").map(PathBuf::from);
            Faults::with_file(file)
        }
        #[cfg(not(feature = "fault-injection"))]
        Faults::default()
    }

    /// The switches read from `file` (none: nothing is blocked).
    #[cfg(feature = "fault-injection")]
    pub fn with_file(file: Option<PathBuf>) -> Faults {
        Faults {
            file,
            cache: Mutex::default(),
        }
    }

    /// True when traffic with `peer` must be dropped.
    #[cfg(not(feature = "fault-injection"))]
    pub fn blocks(&self, _peer: &str) -> bool {
        false
    }

    /// True when traffic with `peer` must be dropped.
    #[cfg(feature = "fault-injection")]
    pub fn blocks(&self, peer: &str) -> bool {
        let Some(path) = &self.file else {
            return false;
        };
        let key = FileKey::of(path);
        let Ok(mut cache) = self.cache.lock() else {
            return false;
        };
        if cache.0 != key {
            let set = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            *cache = (key, set);
        }
        cache.1.contains(peer)
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// Replaces `path` whole, the way the test harness does (temporary
    /// file, rename), with the modification time forced to `mtime`: two
    /// writes in one timestamp tick.
    fn replace(path: &std::path::Path, text: &str, mtime: SystemTime) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
        std::fs::rename(&tmp, path).expect("rename");
    }

    #[test]
    fn a_replacement_in_the_same_tick_with_the_same_length_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blocked");
        let faults = Faults::with_file(Some(path.clone()));
        assert!(!faults.blocks("node2"), "no file: nothing blocked");
        let tick = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        replace(&path, "node2\n", tick);
        assert!(faults.blocks("node2"));
        // Same mtime, same length: only the inode tells them apart.
        replace(&path, "node3\n", tick);
        assert!(!faults.blocks("node2"), "the unblock was missed");
        assert!(faults.blocks("node3"));
        replace(&path, "", tick);
        assert!(!faults.blocks("node3"));
    }
}
