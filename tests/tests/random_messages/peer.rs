//! Bodies of the `tinykv.internal.Peer` methods. With valid credentials a
//! heartbeat's rows name no member and put no one in the ring: only
//! `left`/`removed` (or invalid) states, for ids that are not members.

use prost::Message;
use rand::rngs::StdRng;
use rand::Rng;
use tinykv_proto::internal as pb;

use crate::gen::{self, key, repeat, string, timestamp_u64, value};
use crate::methods::Ctx;

/// A sender or hint target: a member, empty, a stranger or junk.
pub fn id(r: &mut StdRng, c: &Ctx) -> String {
    match r.random_range(0..4) {
        0 => c.members[r.random_range(0..c.members.len())].clone(),
        1 => String::new(),
        2 => gen::stranger_id(r, "peer"),
        _ => string(r),
    }
}

fn record(r: &mut StdRng) -> Option<pb::Record> {
    r.random_bool(0.95).then(|| pb::Record {
        value: value(r).into(),
        timestamp: timestamp_u64(r),
        writer: string(r),
        tombstone: r.random_bool(0.2),
        expires_at: if r.random_bool(0.1) {
            timestamp_u64(r)
        } else {
            0
        },
    })
}

pub fn keyed(r: &mut StdRng, limit: usize) -> Vec<pb::KeyedRecord> {
    (0..repeat(r, limit))
        .map(|_| pb::KeyedRecord {
            key: key(r).into(),
            record: record(r),
        })
        .collect()
}

pub fn replica_write(r: &mut StdRng, c: &Ctx) -> Vec<u8> {
    pb::ReplicaWrite {
        key: key(r).into(),
        record: record(r),
        hint_for: if r.random_bool(0.5) {
            String::new()
        } else {
            id(r, c)
        },
        from: id(r, c),
    }
    .encode_to_vec()
}

pub fn exchange(r: &mut StdRng, c: &Ctx) -> Vec<u8> {
    pb::ReplicaExchange {
        writes: keyed(r, 512),
        reads: (0..repeat(r, 512)).map(|_| key(r).into()).collect(),
        from: id(r, c),
        may_omit: r.random(),
    }
    .encode_to_vec()
}

pub fn heartbeat(r: &mut StdRng, c: &Ctx) -> Vec<u8> {
    let from = match (c.signed, r.random_range(0..3)) {
        (true, 0) => crate::send::CALLER.to_string(),
        (_, 1) => String::new(),
        _ => id(r, c),
    };
    let members = (0..repeat(r, 1024)).map(|_| row(r, c)).collect();
    pb::HeartbeatRequest {
        from,
        sent_at_us: timestamp_u64(r),
        members,
    }
    .encode_to_vec()
}

/// A member row. Signed: never a member's id, never a state that puts a
/// node in the ring.
fn row(r: &mut StdRng, c: &Ctx) -> pb::MemberInfo {
    let states: &[&str] = if c.signed {
        &["left", "removed"]
    } else {
        &["normal", "joining", "leaving", "left", "removed"]
    };
    let node_id = match (c.signed, r.random_range(0..3)) {
        (false, 0) => c.members[r.random_range(0..c.members.len())].clone(),
        (_, 1) => gen::stranger_id(r, "row"),
        _ => string(r).replace("node", "n0de"),
    };
    let state = if r.random_bool(0.8) {
        states[r.random_range(0..states.len())].to_string()
    } else {
        string(r)
    };
    pb::MemberInfo {
        node_id,
        address: match r.random_range(0..3) {
            0 => "127.0.0.1:1".into(),
            1 => "x".repeat(r.random_range(290..310)),
            _ => string(r),
        },
        state,
        version: if r.random_bool(0.5) {
            r.random_range(0..100)
        } else {
            timestamp_u64(r)
        },
    }
}

fn token(r: &mut StdRng) -> u64 {
    match r.random_range(0..4) {
        0 => 0,
        1 => u64::MAX,
        _ => r.random(),
    }
}

pub fn digest(r: &mut StdRng, _: &Ctx) -> Vec<u8> {
    let spans = (0..repeat(r, 2048))
        .map(|_| {
            let start = token(r);
            let end = if r.random_bool(0.5) {
                start.wrapping_add(r.random_range(0..1 << 50))
            } else {
                token(r)
            };
            pb::TokenSpan { start, end }
        })
        .collect();
    pb::RangeDigestRequest {
        spans,
        purge_before: timestamp_u64(r),
    }
    .encode_to_vec()
}

pub fn fetch(r: &mut StdRng, _: &Ctx) -> Vec<u8> {
    pb::FetchRangeRequest {
        start: token(r),
        end: token(r),
        after_key: if r.random_bool(0.5) {
            Vec::new().into()
        } else {
            key(r).into()
        },
        limit: match r.random_range(0..4) {
            0 => 0,
            1 => u32::MAX,
            _ => r.random_range(1..3000),
        },
    }
    .encode_to_vec()
}
