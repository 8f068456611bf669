//! The backup format: round trip, checksums, bounds.

use std::io::Write;

use bytes::Bytes;
use tinykv_proto::tinykv as pb;

use super::format::{verify, DataReader, DataWriter, Manifest, FORMAT_NAME};
use super::{lww_cmp, BackupError, FORMAT_VERSION, MANIFEST};

fn version(key: &str, val: &str, ts: u64, tombstone: bool) -> pb::KeyVersion {
    pb::KeyVersion {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(val.to_string()),
        timestamp: ts,
        writer: "node1".into(),
        tombstone,
        expires_at_us: if tombstone { 0 } else { ts + 10 },
    }
}

fn write_file(dir: &std::path::Path, vs: &[pb::KeyVersion]) -> super::FileEntry {
    let mut w = DataWriter::create(dir, "data-00000.tkvb".into()).unwrap();
    for v in vs {
        w.append(v).unwrap();
    }
    w.finish().unwrap()
}

fn manifest(files: Vec<super::FileEntry>) -> Manifest {
    Manifest {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        cluster_name: "test".into(),
        started_at_us: 1,
        finished_at_us: 2,
        since: 0,
        fast: false,
        replication_factor: 3,
        nodes: vec!["node1".into()],
        ranges: Vec::new(),
        files,
        versions: 2,
        tombstones: 1,
    }
}

#[test]
fn versions_round_trip_with_a_matching_checksum() {
    let dir = tempdir();
    let vs = vec![version("a", "1", 5, false), version("b", "", 6, true)];
    let entry = write_file(&dir, &vs);
    assert_eq!(entry.versions, 2);
    verify(&dir, &entry).unwrap();
    let mut r = DataReader::open(&dir, &entry.name).unwrap();
    let mut back = Vec::new();
    while let Some(v) = r.next_version().unwrap() {
        back.push(v);
    }
    assert_eq!(back, vs);
    let m = manifest(vec![entry]);
    m.save(&dir).unwrap();
    assert_eq!(Manifest::load(&dir).unwrap(), m);
}

#[test]
fn one_flipped_byte_fails_the_checksum() {
    let dir = tempdir();
    let entry = write_file(&dir, &[version("key", "value", 5, false)]);
    let path = dir.join(&entry.name);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    match verify(&dir, &entry) {
        Err(BackupError::Checksum { file, .. }) => assert_eq!(file, path),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn a_huge_record_length_is_refused_without_allocating_it() {
    let dir = tempdir();
    let path = dir.join("data-00000.tkvb");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&super::MAGIC).unwrap();
    f.write_all(&u32::MAX.to_le_bytes()).unwrap();
    drop(f);
    let mut r = DataReader::open(&dir, "data-00000.tkvb").unwrap();
    let err = r.next_version().unwrap_err();
    assert!(err.to_string().contains("record length"), "{err}");
}

#[test]
fn a_truncated_record_and_a_wrong_magic_are_errors() {
    let dir = tempdir();
    let entry = write_file(&dir, &[version("key", "value", 5, false)]);
    let path = dir.join(&entry.name);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
    let mut r = DataReader::open(&dir, &entry.name).unwrap();
    assert!(r
        .next_version()
        .unwrap_err()
        .to_string()
        .contains("truncated"));
    std::fs::write(&path, b"NOTABACKUPFILE").unwrap();
    assert!(DataReader::open(&dir, &entry.name).is_err());
}

#[test]
fn a_manifest_naming_a_path_is_refused() {
    let dir = tempdir();
    let mut entry = write_file(&dir, &[]);
    entry.name = "../etc/passwd".into();
    manifest(vec![entry]).save(&dir).unwrap();
    let err = Manifest::load(&dir).unwrap_err();
    assert!(
        err.to_string().contains("bad or repeated file name"),
        "{err}"
    );
    std::fs::write(dir.join(MANIFEST), b"{not json").unwrap();
    assert!(Manifest::load(&dir).is_err());
}

#[test]
fn lww_prefers_the_later_timestamp_then_the_writer() {
    let old = version("k", "old", 5, false);
    let new = version("k", "", 6, true);
    assert!(lww_cmp(&new, &old).is_gt());
    let mut other_writer = old.clone();
    other_writer.writer = "node2".into();
    assert!(lww_cmp(&other_writer, &old).is_gt());
}

/// A fresh directory, removed when the test ends.
struct TempDir(tempfile::TempDir);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

fn tempdir() -> TempDir {
    TempDir(tempfile::tempdir().unwrap())
}
