//! The marker in the data directory that says cleanup is pending: this
//! node lost ranges and may still hold copies of them. It survives a
//! restart, so a node never forgets it holds leftovers and other nodes'
//! decommissions and removals keep being refused until they are gone.

use std::path::{Path, PathBuf};

/// File in the data directory present while cleanup is pending.
pub const CLEANUP_MARKER: &str = "cleanup-pending";

/// The pending-cleanup marker of one data directory.
#[derive(Clone, Debug)]
pub(crate) struct Marker {
    path: PathBuf,
}

impl Marker {
    /// The marker in `data_dir`.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Marker {
            path: data_dir.join(CLEANUP_MARKER),
        }
    }

    /// Whether cleanup was pending when the marker was last written.
    pub(crate) fn is_set(&self) -> bool {
        self.path.exists()
    }

    /// Records that cleanup is pending, atomically and durably (a crash
    /// right after a ring change must not forget it).
    pub(crate) fn set(&self) -> std::io::Result<()> {
        crate::durable_file::write_atomic(&self.path, b"pending\n")
    }

    /// Records that a complete round removed every leftover. Not fsynced:
    /// a crash that brings the marker back only costs one more round.
    pub(crate) fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_set_cleared_and_survives_a_new_handle() {
        let dir = tempfile::tempdir().unwrap();
        let m = Marker::new(dir.path());
        assert!(!m.is_set());
        m.set().unwrap();
        assert!(Marker::new(dir.path()).is_set(), "seen after a restart");
        m.set().unwrap();
        m.clear().unwrap();
        assert!(!Marker::new(dir.path()).is_set());
        m.clear().unwrap();
    }
}
