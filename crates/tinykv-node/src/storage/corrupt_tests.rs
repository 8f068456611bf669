//! A stored record that fails to decode is contained: a point read sees
//! it as missing, a scan skips it, a write batch over it succeeds, and its
//! bytes are quarantined. Each test corrupts one record through
//! `FjallEngine::write_raw` and reopens the engine (as after a restart, so
//! no in-memory stamp knows the key).

use std::path::Path;

use super::codec::hint_key;
use super::tests::{hint, put, val};
use super::*;
use crate::merkle::digest_span;

/// Bytes that are not a `Record`: field 1 with wire type 7, which does
/// not exist.
const GARBAGE: &[u8] = &[0x0f, 0xff, 0xff, 0x01];

/// An engine in `dir` holding `a`, `b` and `c`, with `b`'s bytes replaced
/// by [`GARBAGE`], reopened.
fn corrupted(dir: &Path) -> FjallEngine {
    {
        let e = FjallEngine::open(dir).unwrap();
        let ops = [
            put("a", val("1", 10, "n1")),
            put("b", val("2", 10, "n1")),
            put("c", val("3", 10, "n1")),
        ];
        e.apply(&ops, true).unwrap();
        e.write_raw(b"b", GARBAGE).unwrap();
    }
    FjallEngine::open(dir).unwrap()
}

fn keys(page: &[(Bytes, Record)]) -> Vec<&[u8]> {
    page.iter().map(|(k, _)| k.as_ref()).collect()
}

#[test]
fn a_point_read_of_a_corrupt_record_is_missing_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let e = corrupted(dir.path());
    assert_eq!(e.corrupt_records(), 0);
    assert_eq!(e.get(b"b").unwrap(), None);
    assert_eq!(e.corrupt_records(), 1);
    assert_eq!(e.get(b"a").unwrap(), Some(val("1", 10, "n1")));
    assert_eq!(e.get(b"c").unwrap(), Some(val("3", 10, "n1")));
    assert_eq!(e.corrupt_records(), 1);
}

#[test]
fn a_scan_skips_a_corrupt_record_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let e = corrupted(dir.path());
    let all = e.scan(0, 0, None, ScanLimit::count(100)).unwrap();
    let mut got = keys(&all);
    got.sort();
    assert_eq!(got, vec![b"a".as_ref(), b"c".as_ref()]);
    assert_eq!(e.corrupt_records(), 1);
    // Page by page (one version a page), the scan gets past it too.
    let mut paged = Vec::new();
    let mut after: Option<Bytes> = None;
    loop {
        let page = e.scan(0, 0, after.as_deref(), ScanLimit::count(1)).unwrap();
        match page.last() {
            Some((k, _)) => after = Some(k.clone()),
            None => break,
        }
        paged.extend(page);
    }
    assert_eq!(keys(&paged), keys(&all));
}

#[test]
fn a_digest_over_a_corrupt_record_differs_from_a_healthy_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let e = corrupted(dir.path());
    let healthy = MemoryEngine::new();
    let ops = [
        put("a", val("1", 10, "n1")),
        put("b", val("2", 10, "n1")),
        put("c", val("3", 10, "n1")),
    ];
    healthy.apply(&ops, true).unwrap();
    let ours = digest_span(&e, 0, 0, 0).unwrap();
    assert_ne!(ours, digest_span(&healthy, 0, 0, 0).unwrap());
    assert_eq!(
        ours.count, 2,
        "the bad record is left out, the rest counted"
    );
    // After the healthy version is written over it, the digests agree.
    e.apply(&ops[1..2], true).unwrap();
    assert_eq!(
        digest_span(&e, 0, 0, 0).unwrap(),
        digest_span(&healthy, 0, 0, 0).unwrap()
    );
}

#[test]
fn a_write_batch_over_a_corrupt_record_succeeds_and_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = corrupted(dir.path());
    // An older version than the one that rotted: nothing can tell, so it
    // is written (the trade-off in `plan`), with the rest of its batch.
    let ops = [put("b", val("old", 5, "n2")), put("d", val("4", 10, "n1"))];
    assert_eq!(e.apply(&ops, true).unwrap(), vec![true, true]);
    assert_eq!(e.get(b"b").unwrap(), Some(val("old", 5, "n2")));
    assert_eq!(e.get(b"d").unwrap(), Some(val("4", 10, "n1")));
    // The corrupt key was already counted as a key.
    assert_eq!(e.key_count().unwrap(), 4);
    assert_eq!(e.corrupt_records(), 1);
}

#[test]
fn the_quarantine_holds_the_bad_bytes_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = corrupted(dir.path());
    assert_eq!(e.get(b"b").unwrap(), None);
    e.scan(0, 0, None, ScanLimit::count(100)).unwrap();
    assert_eq!(e.corrupt_records(), 2, "each read counts");
    let qdir = dir.path().join(quarantine::DIR);
    let mut files: Vec<_> = std::fs::read_dir(&qdir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "one .key and one .bytes: {files:?}");
    let stem = format!("{:016x}-", crate::ring::key_token(b"b"));
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&stem), "{name}");
    }
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        GARBAGE,
        "the .bytes file"
    );
    assert_eq!(std::fs::read(&files[1]).unwrap(), b"b", "the .key file");
}

#[test]
fn a_hint_that_does_not_decode_is_quarantined_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let e = FjallEngine::open(dir.path()).unwrap();
    let ops: Vec<WriteOp> = (0..3)
        .map(|i| hint("n2", &format!("h{i}"), val("v", 10, "n1"), 9))
        .collect();
    e.apply(&ops, true).unwrap();
    let bad = hint_key("n2", 1).unwrap();
    e.write_raw_hint(&bad, GARBAGE).unwrap();

    let ids: Vec<u64> = e.hints("n2", 10).unwrap().iter().map(|h| h.id).collect();
    assert_eq!(ids, vec![0, 2], "the others are still delivered");
    assert_eq!(e.corrupt_records(), 1);
    assert_eq!(e.hint_stats().unwrap().count, 2, "the bad one is deleted");
    assert_eq!(e.hints("n2", 10).unwrap().len(), 2);
    assert_eq!(e.corrupt_records(), 1, "and not met again");
    let kept = std::fs::read_dir(dir.path().join(quarantine::DIR))
        .unwrap()
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "bytes"))
        .expect("quarantined");
    assert!(kept
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("hint-"));
    assert_eq!(std::fs::read(kept).unwrap(), GARBAGE);
}
