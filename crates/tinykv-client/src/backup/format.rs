//! The backup's files: data files of length-prefixed versions and the
//! manifest that lists them with their checksums (docs/backup.md).
//!
//! A data file is the 8-byte magic [`MAGIC`] followed by records, each a
//! little-endian `u32` length (1 to [`MAX_RECORD_BYTES`]) and that many
//! bytes of a protobuf `tinykv.KeyVersion`. The manifest gives each file's
//! size, record count and xxh3-64 of every byte of it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use serde::{Deserialize, Serialize};
use tinykv_proto::tinykv as pb;
use xxhash_rust::xxh3::Xxh3;

use super::BackupError;

/// First bytes of every data file: "TKVBAK", a zero, format version 1.
pub const MAGIC: [u8; 8] = *b"TKVBAK\x00\x01";
/// Largest record accepted: the client's largest message (a value of the
/// largest size a node can take, with its key and version).
pub const MAX_RECORD_BYTES: usize = 64 << 20;
/// The manifest's name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's `format` field.
pub const FORMAT_NAME: &str = "tinykv-backup";
/// The manifest's `version` field this client writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest manifest read (a manifest lists ranges and files: a few MiB at most).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Longest key a node accepts.
const MAX_KEY_BYTES: usize = u16::MAX as usize - 8;

/// The manifest: what was backed up, from where, and every file's checksum.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The cluster's `--cluster-name` (empty: none set).
    pub cluster_name: String,
    /// When the backup started, microseconds since the epoch.
    pub started_at_us: u64,
    /// When it finished.
    pub finished_at_us: u64,
    /// Only versions with a timestamp above this were backed up (0: all).
    pub since: u64,
    /// Each range was read from one replica, not a quorum.
    pub fast: bool,
    /// The cluster's replication factor.
    pub replication_factor: u32,
    /// The ring's members when the backup started.
    pub nodes: Vec<String>,
    /// Token ranges, each with the replicas it was read from.
    pub ranges: Vec<RangeEntry>,
    /// Data files, in order.
    pub files: Vec<FileEntry>,
    /// Versions in all files.
    pub versions: u64,
    /// How many of them are tombstones.
    pub tombstones: u64,
}

/// One token range `(start, end]` of the ring.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RangeEntry {
    pub start: u64,
    pub end: u64,
    /// The replicas whose copies were merged (LWW).
    pub read_from: Vec<String>,
    /// Versions of the range (after the merge).
    pub versions: u64,
    /// The data file holding them.
    pub file: String,
}

/// One data file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// File name inside the backup directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Records in it.
    pub versions: u64,
    /// xxh3-64 of the whole file, 16 hex digits.
    pub xxh3_64: String,
}

impl Manifest {
    /// Reads and checks `dir`'s manifest.
    pub fn load(dir: &Path) -> Result<Manifest, BackupError> {
        let path = dir.join(MANIFEST);
        let file = File::open(&path).map_err(|e| BackupError::io(&path, e))?;
        let mut text = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| BackupError::io(&path, e))?;
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(BackupError::corrupt(&path, "manifest larger than 64 MiB"));
        }
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| BackupError::corrupt(&path, format!("manifest: {e}")))?;
        m.check().map_err(|why| BackupError::corrupt(&path, why))?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT_NAME || self.version != FORMAT_VERSION {
            return Err(format!(
                "not a {FORMAT_NAME} version {FORMAT_VERSION} manifest (format {:?}, version {})",
                self.format, self.version
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.files {
            if !safe_name(&f.name) || !seen.insert(f.name.as_str()) {
                return Err(format!("bad or repeated file name {:?}", f.name));
            }
        }
        if let Some(r) = self.ranges.iter().find(|r| !seen.contains(r.file.as_str())) {
            return Err(format!(
                "range ({}, {}] names an unlisted file",
                r.start, r.end
            ));
        }
        Ok(())
    }

    /// Writes the manifest to `dir` (through a temporary file, so a
    /// manifest is never half written).
    pub fn save(&self, dir: &Path) -> Result<(), BackupError> {
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| BackupError::corrupt(&tmp, e.to_string()))?;
        let mut f = File::create(&tmp).map_err(|e| BackupError::io(&tmp, e))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| BackupError::io(&tmp, e))?;
        let path = dir.join(MANIFEST);
        std::fs::rename(&tmp, &path).map_err(|e| BackupError::io(&path, e))
    }
}

/// A file name without any path in it.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Writes one data file, hashing as it goes.
pub struct DataWriter {
    path: PathBuf,
    name: String,
    out: BufWriter<File>,
    hash: Xxh3,
    bytes: u64,
    versions: u64,
}

impl DataWriter {
    /// A new data file `name` in `dir`.
    pub fn create(dir: &Path, name: String) -> Result<DataWriter, BackupError> {
        let path = dir.join(&name);
        let file = File::create(&path).map_err(|e| BackupError::io(&path, e))?;
        let mut w = DataWriter {
            path,
            name,
            out: BufWriter::new(file),
            hash: Xxh3::new(),
            bytes: 0,
            versions: 0,
        };
        w.put(&MAGIC)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| BackupError::io(&self.path, e))
    }

    /// Appends one version.
    pub fn append(&mut self, v: &pb::KeyVersion) -> Result<(), BackupError> {
        let body = v.encode_to_vec();
        if body.is_empty() || body.len() > MAX_RECORD_BYTES {
            return Err(BackupError::corrupt(
                &self.path,
                "a version too large to back up",
            ));
        }
        self.put(&(body.len() as u32).to_le_bytes())?;
        self.put(&body)?;
        self.versions += 1;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Flushes and syncs the file; its manifest entry.
    pub fn finish(mut self) -> Result<FileEntry, BackupError> {
        self.out
            .flush()
            .map_err(|e| BackupError::io(&self.path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| BackupError::io(&self.path, e))?;
        Ok(FileEntry {
            name: self.name,
            bytes: self.bytes,
            versions: self.versions,
            xxh3_64: format!("{:016x}", self.hash.digest()),
        })
    }
}

/// Checks a data file against its manifest entry: size and checksum.
pub fn verify(dir: &Path, entry: &FileEntry) -> Result<(), BackupError> {
    let path = dir.join(&entry.name);
    let file = File::open(&path).map_err(|e| BackupError::io(&path, e))?;
    let mut input = BufReader::new(file);
    let mut hash = Xxh3::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| BackupError::io(&path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hash.update(&buf[..n]);
    }
    let sum = format!("{:016x}", hash.digest());
    if size != entry.bytes || sum != entry.xxh3_64 {
        return Err(BackupError::Checksum {
            file: path,
            detail: format!(
                "{size} bytes with xxh3-64 {sum}; the manifest says {} bytes with {}",
                entry.bytes, entry.xxh3_64
            ),
        });
    }
    Ok(())
}

/// Reads a data file's versions one at a time.
pub struct DataReader {
    path: PathBuf,
    input: BufReader<File>,
}

impl DataReader {
    /// Opens `dir`/`name` and checks its magic.
    pub fn open(dir: &Path, name: &str) -> Result<DataReader, BackupError> {
        let path = dir.join(name);
        let file = File::open(&path).map_err(|e| BackupError::io(&path, e))?;
        let mut r = DataReader {
            path,
            input: BufReader::new(file),
        };
        let mut magic = [0u8; 8];
        r.input
            .read_exact(&mut magic)
            .map_err(|e| BackupError::corrupt(&r.path, format!("header: {e}")))?;
        if magic != MAGIC {
            return Err(BackupError::corrupt(
                &r.path,
                "not a TinyKV backup data file",
            ));
        }
        Ok(r)
    }

    /// The next version, or `None` at the end of the file.
    pub fn next_version(&mut self) -> Result<Option<pb::KeyVersion>, BackupError> {
        let mut len = [0u8; 4];
        match self.input.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(BackupError::io(&self.path, e)),
        }
        self.input
            .read_exact(&mut len[1..])
            .map_err(|e| BackupError::corrupt(&self.path, format!("truncated record: {e}")))?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > MAX_RECORD_BYTES {
            return Err(BackupError::corrupt(
                &self.path,
                format!("record length {len} outside 1..={MAX_RECORD_BYTES}"),
            ));
        }
        let mut body = vec![0u8; len];
        self.input
            .read_exact(&mut body)
            .map_err(|e| BackupError::corrupt(&self.path, format!("truncated record: {e}")))?;
        let v = pb::KeyVersion::decode(body.as_slice())
            .map_err(|e| BackupError::corrupt(&self.path, format!("record: {e}")))?;
        check_version(&v).map_err(|why| BackupError::corrupt(&self.path, why))?;
        Ok(Some(v))
    }
}

/// A version as a node would take it.
fn check_version(v: &pb::KeyVersion) -> Result<(), String> {
    if v.key.is_empty() || v.key.len() > MAX_KEY_BYTES {
        return Err(format!("a key of {} bytes", v.key.len()));
    }
    if v.timestamp == 0 || v.writer.is_empty() {
        return Err("a version without timestamp or writer".into());
    }
    if v.tombstone && !v.value.is_empty() {
        return Err("a tombstone with a value".into());
    }
    Ok(())
}
