//! Expiring values in storage: the codec still reads records and hints
//! written before TTL existed (and writes records without an expiry
//! byte for byte as before), every engine keeps the expiry as part of the
//! version (LWW, exact-match purge, reopen), and only values expired
//! before the purge cutoff are purged.

use std::sync::Arc;

use bytes::Bytes;

use super::codec::{decode_hint, decode_record, encode_hint};
use super::tests::{put, val};
use super::*;
use crate::merkle::purgeable;

/// A record as written before TTL: value "hello", timestamp 42, writer
/// "node1" (protobuf fields 1-3).
const OLD_RECORD: &[u8] = b"\x0a\x05hello\x10\x2a\x1a\x05node1";
/// A tombstone as written before TTL: timestamp 43, writer "node2".
const OLD_TOMBSTONE: &[u8] = b"\x10\x2b\x1a\x05node2\x20\x01";

#[test]
fn records_and_hints_written_before_ttl_still_decode() {
    let r = decode_record(b"k", OLD_RECORD).expect("old record");
    assert_eq!(r, val("hello", 42, "node1"));
    assert_eq!(r.expires_at, 0);
    let t = decode_record(b"k", OLD_TOMBSTONE).expect("old tombstone");
    assert_eq!(t, Record::tombstone(43, "node2"));
    // An old hint: stored_at (8 BE) ++ key length (4 BE) ++ key ++ record.
    let mut hint = 7u64.to_be_bytes().to_vec();
    hint.extend_from_slice(&3u32.to_be_bytes());
    hint.extend_from_slice(b"key");
    hint.extend_from_slice(OLD_RECORD);
    let (key, record, at) = decode_hint(&hint).expect("old hint");
    assert_eq!((&key[..], record, at), (&b"key"[..], r.clone(), 7));
    // Without an expiry the new code writes exactly the old bytes.
    assert_eq!(r.encode(), OLD_RECORD);
    assert_eq!(encode_hint(b"key", &r, 7), hint);
    // With one, the old fields are unchanged and the expiry follows.
    let e = r.clone().expiring(1_000);
    assert!(e.encode().starts_with(OLD_RECORD));
    assert_eq!(decode_record(b"k", &e.encode()).ok(), Some(e));
}

/// The memory engine and the disk engine, each in its own directory.
fn engines() -> Vec<(tempfile::TempDir, Arc<dyn Engine>)> {
    let fjall = tempfile::tempdir().unwrap();
    let f: Arc<dyn Engine> = Arc::new(FjallEngine::open(fjall.path()).unwrap());
    let m: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    vec![(tempfile::tempdir().unwrap(), m), (fjall, f)]
}

/// The expiry is part of the version: kept as written, and at an equal
/// (timestamp, writer, value) it still orders the two versions, so every
/// engine (fjall's stamp index included) keeps the same one.
fn expiry_is_part_of_the_version(e: &dyn Engine) {
    let plain = val("v", 10, "n1");
    let expiring = plain.clone().expiring(500);
    assert_eq!(
        e.apply(&[put("k", expiring.clone())], false).unwrap(),
        vec![true]
    );
    assert_eq!(e.get(b"k").unwrap(), Some(expiring.clone()));
    assert_eq!(
        e.apply(&[put("k", plain.clone())], false).unwrap(),
        vec![false]
    );
    let later = plain.clone().expiring(900);
    assert_eq!(
        e.apply(&[put("k", later.clone())], false).unwrap(),
        vec![true]
    );
    // A newer plain put replaces the expiring value (no expiry kept).
    let newer = val("w", 11, "n1");
    assert_eq!(
        e.apply(&[put("k", newer.clone())], false).unwrap(),
        vec![true]
    );
    assert_eq!(e.get(b"k").unwrap(), Some(newer));
}

/// A purge removes an expiring value only if it names its exact expiry.
fn purge_names_the_expiry(e: &dyn Engine) {
    let stored = val("v", 10, "n1").expiring(500);
    e.apply(&[put("k", stored.clone())], false).unwrap();
    let purge = |r: Record| WriteOp::Purge {
        key: Bytes::from_static(b"k"),
        record: r,
    };
    let other = val("v", 10, "n1").expiring(400);
    assert_eq!(e.apply(&[purge(other)], false).unwrap(), vec![false]);
    assert_eq!(
        e.apply(&[purge(val("v", 10, "n1"))], false).unwrap(),
        vec![false]
    );
    assert_eq!(e.get(b"k").unwrap(), Some(stored.clone()));
    assert_eq!(e.apply(&[purge(stored)], false).unwrap(), vec![true]);
    assert_eq!(e.key_count().unwrap(), 0);
}

/// What anti-entropy purges once every replica agrees: values that expired
/// before the cutoff and tombstones written before it; never a live value,
/// nor one expiring at or after the cutoff, however old its timestamp.
fn only_values_expired_before_the_cutoff_are_purged(e: &dyn Engine) {
    let cutoff = 1_000;
    let records = [
        ("expired", val("a", 10, "n1").expiring(999), true),
        ("at_cutoff", val("b", 10, "n1").expiring(1_000), false),
        ("expiring_later", val("c", 10, "n1").expiring(5_000), false),
        ("persistent", val("d", 10, "n1"), false),
        ("old_tombstone", Record::tombstone(10, "n1"), true),
        ("new_tombstone", Record::tombstone(1_000, "n1"), false),
    ];
    let ops: Vec<_> = records.iter().map(|(k, r, _)| put(k, r.clone())).collect();
    e.apply(&ops, false).unwrap();
    let page = e.scan(0, 0, None, ScanLimit::count(100)).unwrap();
    let purges: Vec<_> = page
        .into_iter()
        .filter(|(_, r)| purgeable(r, cutoff))
        .map(|(key, record)| WriteOp::Purge { key, record })
        .collect();
    e.apply(&purges, false).unwrap();
    for (k, r, gone) in records {
        let want = (!gone).then_some(r);
        assert_eq!(e.get(k.as_bytes()).unwrap(), want, "{k}");
    }
    assert_eq!(e.key_count().unwrap(), 4);
}

#[test]
fn every_engine_keeps_the_expiry_in_the_version() {
    for (_dir, e) in engines() {
        expiry_is_part_of_the_version(e.as_ref());
    }
}

#[test]
fn every_engine_purges_an_expiring_value_only_by_its_exact_version() {
    for (_dir, e) in engines() {
        purge_names_the_expiry(e.as_ref());
    }
}

#[test]
fn every_engine_purges_only_values_expired_before_the_cutoff() {
    for (_dir, e) in engines() {
        only_values_expired_before_the_cutoff_are_purged(e.as_ref());
    }
}

#[test]
fn the_expiry_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let r = val("v", 10, "n1").expiring(77);
    {
        let e = FjallEngine::open(dir.path()).unwrap();
        e.apply(&[put("k", r.clone())], true).unwrap();
    }
    let e = FjallEngine::open(dir.path()).unwrap();
    assert_eq!(e.get(b"k").unwrap(), Some(r));
}
