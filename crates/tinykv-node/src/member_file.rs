//! The member table on disk, so a restarted node knows its peers before
//! the first heartbeat round, also when it was started with `--peers-dns`
//! only (no `--peers`).
//!
//! The table is written to `members.json` in the data directory when it
//! has changed (checked once a heartbeat interval, and at shutdown),
//! atomically and durably ([`crate::durable_file::write_atomic`]), and
//! merged into the configured peers at start before anything is served.
//! Its rows are checked as gossiped rows are ([`Member::from_info`]); a
//! file that cannot be read or parsed is logged and ignored: the node
//! starts from its configured peers, as it would without the file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tinykv_proto::internal::MemberInfo;

use crate::membership::{Member, Membership, MAX_MEMBERS};

/// The file in the data directory holding the member table.
pub const MEMBER_FILE: &str = "members.json";

/// The file layout's version, so a later one is refused, not misread.
const FORMAT: u32 = 1;

/// Largest member file read: a full table of the longest rows is well
/// under it, so a bigger file is not one this node wrote.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why the member file was not used.
#[derive(Debug, thiserror::Error)]
pub enum MemberFileError {
    /// Reading it failed.
    #[error("reading {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        error: std::io::Error,
    },
    /// It is larger than any member table.
    #[error("{0} is larger than {MAX_FILE_BYTES} bytes, more than any member table")]
    TooLarge(PathBuf),
    /// It is not a member table in this layout.
    #[error("{path} is not a member table: {error}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        error: serde_json::Error,
    },
    /// It was written in a layout this version does not know.
    #[error("{path} has layout {format}; this version reads layout {FORMAT}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Its layout version.
        format: u32,
    },
    /// It has more rows than a cluster may have.
    #[error("{path} holds {rows} members; a cluster has at most {MAX_MEMBERS}")]
    TooManyRows {
        /// The file.
        path: PathBuf,
        /// Its rows.
        rows: usize,
    },
}

#[derive(Serialize, Deserialize)]
struct Row {
    id: String,
    address: String,
    state: String,
    version: u64,
}

#[derive(Serialize, Deserialize)]
struct Form {
    format: u32,
    members: Vec<Row>,
}

/// The file's content for `members`.
fn encode(members: &[Member]) -> Vec<u8> {
    let form = Form {
        format: FORMAT,
        members: members
            .iter()
            .map(|m| Row {
                id: m.id.clone(),
                address: m.addr.clone(),
                state: m.state.to_string(),
                version: m.version,
            })
            .collect(),
    };
    // Plain strings and numbers: serialising them cannot fail.
    serde_json::to_vec_pretty(&form).unwrap_or_default()
}

/// The rows of the file at `path` (content `bytes`), each checked as a
/// gossiped row is; malformed rows are skipped with a warning.
fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<Member>, MemberFileError> {
    let form: Form = serde_json::from_slice(bytes).map_err(|error| MemberFileError::Malformed {
        path: path.to_path_buf(),
        error,
    })?;
    if form.format != FORMAT {
        return Err(MemberFileError::Format {
            path: path.to_path_buf(),
            format: form.format,
        });
    }
    if form.members.len() > MAX_MEMBERS {
        return Err(MemberFileError::TooManyRows {
            path: path.to_path_buf(),
            rows: form.members.len(),
        });
    }
    let mut out = Vec::with_capacity(form.members.len());
    for row in form.members {
        let info = MemberInfo {
            node_id: row.id,
            address: row.address,
            state: row.state,
            version: row.version,
        };
        match Member::from_info(&info) {
            Some(m) => out.push(m),
            None => {
                tracing::warn!(path = %path.display(), id = %info.node_id.escape_debug(), "malformed row in the member file skipped")
            }
        }
    }
    Ok(out)
}

/// The member table saved in `data_dir`: none when there is no file.
pub fn load(data_dir: &Path) -> Result<Option<Vec<Member>>, MemberFileError> {
    let path = data_dir.join(MEMBER_FILE);
    let io = |error| MemberFileError::Io {
        path: path.clone(),
        error,
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(MemberFileError::TooLarge(path));
    }
    decode(&path, &bytes).map(Some)
}

/// The saved member table, or none (said in the log) when the file is
/// missing or unusable: the node then starts from its configured peers.
pub fn load_or_log(data_dir: &Path) -> Vec<Member> {
    match load(data_dir) {
        Ok(Some(rows)) => {
            tracing::info!(
                members = rows.len(),
                "member table loaded from the data directory"
            );
            rows
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!(error = %e, "member file ignored; starting from the configured peers");
            Vec::new()
        }
    }
}

/// Writes the member table to the data directory when it has changed.
pub struct MemberFile {
    path: PathBuf,
    membership: Arc<Membership>,
    /// The table generation last written (0: none yet).
    saved: AtomicU64,
}

impl MemberFile {
    /// The member file of `membership` in `data_dir`.
    pub fn new(data_dir: &Path, membership: Arc<Membership>) -> Self {
        MemberFile {
            path: data_dir.join(MEMBER_FILE),
            membership,
            saved: AtomicU64::new(0),
        }
    }

    /// Writes the table if it changed since the last write (a failed
    /// write is logged and tried again next time).
    pub async fn save_if_changed(&self) {
        // Read before the rows: a change in between is written next time.
        let generation = self.membership.generation();
        if self.saved.load(Ordering::Acquire) == generation {
            return;
        }
        let content = encode(&self.membership.members());
        let path = self.path.clone();
        let written =
            tokio::task::spawn_blocking(move || crate::durable_file::write_atomic(&path, &content))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match written {
            Ok(()) => self.saved.store(generation, Ordering::Release),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write the member file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberState;

    fn row(id: &str, state: MemberState, version: u64) -> Member {
        Member {
            id: id.into(),
            addr: format!("10.0.0.1:{}", 5000 + version),
            state,
            version,
        }
    }

    #[tokio::test]
    async fn the_table_round_trips_through_the_file_and_is_rewritten_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            row("a", MemberState::Normal, 3),
            row("b", MemberState::Leaving, 9),
            row("c", MemberState::Left, 12),
        ];
        let membership = Arc::new(Membership::new("a", rows.clone(), 3, 8));
        let file = MemberFile::new(dir.path(), membership.clone());
        assert!(load(dir.path()).unwrap().is_none(), "no file yet");
        file.save_if_changed().await;
        assert_eq!(load(dir.path()).unwrap(), Some(rows));
        membership.merge([row("d", MemberState::Joining, 20)]);
        file.save_if_changed().await;
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded, membership.members());
        assert_eq!(loaded.len(), 4);
    }

    #[test]
    fn a_corrupt_file_is_ignored_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MEMBER_FILE);
        std::fs::write(&path, b"{\"format\":1,\"members\":[{\"id\":").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, MemberFileError::Malformed { .. }), "{err}");
        assert!(load_or_log(dir.path()).is_empty());
        std::fs::write(&path, b"{\"format\":2,\"members\":[]}").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(MemberFileError::Format { format: 2, .. })
        ));
        std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(MemberFileError::TooLarge(_))
        ));
    }

    #[test]
    fn rows_are_checked_as_gossiped_rows_are() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"format":1,"members":[
            {"id":"ok","address":"10.0.0.1:1","state":"normal","version":1},
            {"id":"bad id","address":"10.0.0.1:2","state":"normal","version":1},
            {"id":"noaddr","address":"","state":"normal","version":1},
            {"id":"odd","address":"10.0.0.1:3","state":"sleeping","version":1}
        ]}"#;
        std::fs::write(dir.path().join(MEMBER_FILE), text).unwrap();
        let rows = load(dir.path()).unwrap().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, "ok");
        let many: Vec<Member> = (0..=MAX_MEMBERS)
            .map(|i| row(&format!("n{i}"), MemberState::Normal, 1))
            .collect();
        std::fs::write(dir.path().join(MEMBER_FILE), encode(&many)).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(MemberFileError::TooManyRows { .. })
        ));
    }
}
