//! Node-to-node requests: arbitrary bytes decoded as each
//! `tinykv.internal` request message, then the checks the peer service
//! runs before it touches anything (a record and a key for every version,
//! the storage limits, the digest spans, the heartbeat's member rows), and
//! what follows them that needs no network: the versions applied to an
//! in-memory engine, the member rows merged into a member table (the
//! gossip merge and the ring rebuild), a range fetched from an engine.

#![no_main]

use std::collections::BTreeMap;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tinykv_node::fuzzing as f;
use tinykv_node::membership::{self, Member, MemberState, Membership, MAX_MEMBERS};
use tinykv_node::merkle;
use tinykv_node::ring::{key_token, range_contains};
use tinykv_node::storage::{
    Engine, MemoryEngine, ScanLimit, StorageError, WriteOp, MAX_HINT_TARGET_BYTES, MAX_KEY_BYTES,
};
use tinykv_node::version::Record;
use tinykv_proto::internal as pb;

/// The peer service's check of one version (`PeerService::version`,
/// without the clock): a record and a non-empty key.
fn version(key: &[u8], record: Option<pb::Record>) -> Option<Record> {
    let record: Record = record?.into();
    (!key.is_empty()).then_some(record)
}

/// A batch of versions as `PeerService::apply` makes it: all checked or
/// none applied.
fn puts(records: Vec<pb::KeyedRecord>) -> Option<Vec<WriteOp>> {
    records
        .into_iter()
        .map(|kr| {
            let record = version(&kr.key, kr.record)?;
            Some(WriteOp::Put {
                key: kr.key,
                record,
            })
        })
        .collect()
}

/// Applies `ops` as the store does (limits first) and checks the result
/// against the Last-Writer-Wins model of a fresh engine.
fn apply(ops: Vec<WriteOp>) {
    let too_long = ops.iter().any(|op| match op {
        WriteOp::Put { key, .. } | WriteOp::Purge { key, .. } => key.len() > MAX_KEY_BYTES,
        WriteOp::Hint { key, target, .. } => {
            key.len() > MAX_KEY_BYTES || target.len() > MAX_HINT_TARGET_BYTES
        }
        WriteOp::DeleteHints { target, .. } => target.len() > MAX_HINT_TARGET_BYTES,
    });
    match f::check_ops(&ops) {
        Err(StorageError::TooLong { .. }) => {
            assert!(too_long);
            return;
        }
        Err(e) => panic!("check_ops: {e}"),
        Ok(()) => assert!(!too_long),
    }
    let engine = MemoryEngine::new();
    let applied = engine.apply(&ops, false).expect("a checked batch applies");
    assert_eq!(applied.len(), ops.len());
    let mut model: BTreeMap<Bytes, Record> = BTreeMap::new();
    let mut hints: BTreeMap<String, Vec<(Bytes, Record)>> = BTreeMap::new();
    for (op, changed) in ops.iter().zip(&applied) {
        match op {
            WriteOp::Put { key, record } => {
                let wins = model.get(key).is_none_or(|old| record.supersedes(old));
                assert_eq!(*changed, wins);
                if wins {
                    model.insert(key.clone(), record.clone());
                }
            }
            WriteOp::Hint {
                target,
                key,
                record,
                ..
            } => {
                assert!(*changed);
                hints
                    .entry(target.clone())
                    .or_default()
                    .push((key.clone(), record.clone()));
            }
            _ => unreachable!("peers send puts and hints"),
        }
    }
    for (key, record) in &model {
        assert_eq!(engine.get(key).expect("get").as_ref(), Some(record));
    }
    assert_eq!(engine.key_count().expect("count"), model.len() as u64);
    for (target, kept) in &hints {
        let got: Vec<(Bytes, Record)> = engine
            .hints(target, usize::MAX)
            .expect("hints")
            .into_iter()
            .map(|h| (h.key, h.record))
            .collect();
        assert_eq!(&got, kept);
    }
}

/// A small engine for reads, digests and range fetches.
fn sample_engine() -> MemoryEngine {
    let e = MemoryEngine::new();
    let ops: Vec<WriteOp> = (0u64..32)
        .map(|i| WriteOp::Put {
            key: Bytes::from(format!("key-{i}")),
            record: if i % 5 == 0 {
                Record::tombstone(i, "n1")
            } else {
                Record::value(Bytes::from(vec![i as u8; i as usize]), i, "n1")
            },
        })
        .collect();
    e.apply(&ops, false).expect("sample");
    e
}

/// The reads of a request, as the store answers them (`Store::get`:
/// an overlong key was never stored).
fn reads(keys: &[Bytes]) {
    let e = sample_engine();
    for k in keys {
        if k.len() <= MAX_KEY_BYTES {
            let _ = e.get(k).expect("get");
        }
    }
}

/// The gossip merge: the heartbeat's rows as `Gossip::receive` takes them
/// (refused above MAX_MEMBERS rows, malformed rows skipped), merged into a
/// table; the merge must not depend on the rows' order, must be idempotent,
/// and the rings must be the members in the matching states.
fn heartbeat(hb: pb::HeartbeatRequest) {
    if hb.members.len() > MAX_MEMBERS {
        return;
    }
    let rows = f::well_formed_rows(&hb.members);
    assert!(rows.iter().all(|m| membership::valid_id(&m.id)));
    let rf = 1 + (hb.sent_at_us % 5) as usize;
    let vnodes = 1 + ((hb.sent_at_us >> 8) % 8) as u32;
    let me = Member {
        id: "self".into(),
        addr: "127.0.0.1:1".into(),
        state: MemberState::Normal,
        version: 1,
    };
    let a = Membership::new("self", vec![me.clone()], rf, vnodes);
    let b = Membership::new("self", vec![me], rf, vnodes);
    a.merge(rows.iter().cloned());
    b.merge(rows.iter().rev().cloned());
    assert!(a.members().len() <= MAX_MEMBERS, "the table outgrew its bound");
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|m| m.id.as_str()).collect();
    if ids.len() + 1 > MAX_MEMBERS {
        // A full table takes no new member, so which ones it took depends
        // on the order rows arrived in: nothing more to compare.
        return;
    }
    assert_eq!(a.members(), b.members(), "merge depends on row order");
    assert!(
        !a.merge(rows.iter().cloned()),
        "a second merge changed the table"
    );
    let members = a.members();
    let read: Vec<String> = members
        .iter()
        .filter(|m| m.state.in_read_ring())
        .map(|m| m.id.clone())
        .collect();
    let future: Vec<String> = members
        .iter()
        .filter(|m| m.state.in_future_ring())
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(a.read_ring().nodes(), &read[..]);
    assert_eq!(a.future_ring().nodes(), &future[..]);
    for key in [&b"a"[..], b"key-1", hb.from.as_bytes()] {
        let prefs = a.read_ring().preference_list(key).len();
        assert_eq!(prefs, rf.min(read.len()));
        let targets = a.write_targets(key).nodes;
        let mut dedup = targets.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), targets.len(), "a write target twice");
        assert!(targets.len() <= 2 * rf);
    }
}

/// A digest request: the spans are checked (`merkle::check_spans`), then
/// digested over a small engine.
fn digest(r: pb::RangeDigestRequest) {
    let spans: Vec<(u64, u64)> = r.spans.iter().map(|s| (s.start, s.end)).collect();
    let width: u128 = spans
        .iter()
        .map(|&(s, e)| {
            if s < e {
                u128::from(e - s)
            } else {
                (1u128 << 64) - u128::from(s - e)
            }
        })
        .sum();
    let ok = merkle::check_spans(&spans).is_ok();
    assert_eq!(ok, spans.len() <= merkle::MAX_SPANS && width <= 1u128 << 64);
    if ok {
        let e = sample_engine();
        let leaves = merkle::digest_spans(&e, &spans, r.purge_before).expect("digest");
        assert_eq!(leaves.len(), spans.len());
        // Spans no wider than the ring: a version counted twice would need
        // overlapping spans, so only the sum over the ring is bounded.
        if let [(s, e2)] = spans[..] {
            if s == e2 {
                let all = leaves[0].count;
                let live = e.key_count().expect("count");
                assert!(all <= live);
            }
        }
    }
}

/// A range fetch, as `PeerService::fetch_range` runs it.
fn fetch(r: pb::FetchRangeRequest) {
    let e = sample_engine();
    let limit = ScanLimit {
        count: (r.limit as usize).clamp(1, 2048),
        bytes: 1 << 20,
    };
    let after = (!r.after_key.is_empty()).then_some(&r.after_key[..]);
    let page = e.scan(r.start, r.end, after, limit).expect("scan");
    assert!(page.len() <= limit.count);
    let mut last: Option<(u64, Bytes)> = after.map(|a| (key_token(a), Bytes::copy_from_slice(a)));
    for (key, _) in &page {
        let t = key_token(key);
        assert!(range_contains(r.start, r.end, t), "key outside the range");
        if let Some((lt, lk)) = &last {
            // In scan order: ascending (token, key), except one wrap
            // past the top of the ring.
            assert!((t, key) != (*lt, lk), "a key twice");
        }
        last = Some((t, key.clone()));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 9 {
        0 => {
            if let Ok(w) = pb::ReplicaWrite::decode(bytes) {
                if let Some(record) = version(&w.key, w.record) {
                    apply(vec![if w.hint_for.is_empty() {
                        WriteOp::Put { key: w.key, record }
                    } else {
                        WriteOp::Hint {
                            target: w.hint_for,
                            key: w.key,
                            record,
                            stored_at_us: 1,
                        }
                    }]);
                }
            }
        }
        1 => {
            if let Ok(b) = pb::ReplicaWriteBatch::decode(bytes) {
                if let Some(ops) = puts(b.records) {
                    apply(ops);
                }
            }
        }
        2 => {
            if let Ok(b) = pb::ReplicaHintBatch::decode(bytes) {
                if b.hint_for.is_empty() {
                    return;
                }
                if let Some(ops) = puts(b.records) {
                    let ops = ops
                        .into_iter()
                        .map(|op| match op {
                            WriteOp::Put { key, record } => WriteOp::Hint {
                                target: b.hint_for.clone(),
                                key,
                                record,
                                stored_at_us: 1,
                            },
                            other => other,
                        })
                        .collect();
                    apply(ops);
                }
            }
        }
        3 => {
            if let Ok(r) = pb::ReplicaRead::decode(bytes) {
                reads(&[r.key]);
            }
        }
        4 => {
            if let Ok(r) = pb::ReplicaReadBatch::decode(bytes) {
                reads(&r.keys);
            }
        }
        5 => {
            if let Ok(x) = pb::ReplicaExchange::decode(bytes) {
                reads(&x.reads);
                if let Some(ops) = puts(x.writes) {
                    apply(ops);
                }
            }
        }
        6 => {
            if let Ok(hb) = pb::HeartbeatRequest::decode(bytes) {
                heartbeat(hb);
            }
        }
        7 => {
            if let Ok(r) = pb::RangeDigestRequest::decode(bytes) {
                digest(r);
            }
        }
        _ => {
            if let Ok(r) = pb::FetchRangeRequest::decode(bytes) {
                fetch(r);
            }
        }
    }
});
