//! Client and admin requests: arbitrary bytes decoded as each
//! `tinykv` request message, then the checks the client and admin
//! services run before coordinating anything (`check_key`,
//! `replicas_needed`, the value and batch limits, the `grpc-timeout`
//! header), and the key's replicas for `KeyOwners`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tinykv_node::config::DefaultConsistency;
use tinykv_node::fuzzing as f;
use tinykv_node::membership::{self, Member, MemberState, Membership};
use tinykv_node::service::client::MAX_BATCH_OPS;
use tinykv_node::storage::MAX_KEY_BYTES;
use tinykv_proto::tinykv as pb;

/// A five-member table, as a node would hold it.
fn table() -> &'static Membership {
    static T: OnceLock<Membership> = OnceLock::new();
    T.get_or_init(|| {
        let members = (1..=5)
            .map(|i| Member {
                id: format!("node-{i}"),
                addr: format!("127.0.0.1:5005{i}"),
                state: MemberState::Normal,
                version: 1,
            })
            .collect();
        Membership::new("node-1", members, 3, 16)
    })
}

/// The key check: refused exactly when empty or over the limit.
fn key(k: &[u8]) -> bool {
    let ok = f::check_key(k).is_ok();
    assert_eq!(ok, !k.is_empty() && k.len() <= MAX_KEY_BYTES);
    ok
}

/// The replica count check: what it accepts is between 1 and N.
fn needed(default: DefaultConsistency, n: usize, explicit: i32, level: i32) {
    if let Ok((k, _)) = f::replicas_needed(default, n, explicit, level) {
        assert!((1..=n).contains(&k), "{k} replicas of {n}");
        if explicit > 0 {
            assert_eq!(k, explicit as usize);
        }
    } else {
        assert!(
            explicit < 0
                || explicit as usize > n
                || (explicit == 0 && pb::Consistency::try_from(level).is_err())
                || (explicit == 0 && level == pb::Consistency::Two as i32 && n < 2),
            "refused explicit {explicit} level {level} of {n}"
        );
    }
}

fn op(default: DefaultConsistency, n: usize, o: pb::operation::Op) {
    match o {
        pb::operation::Op::Put(p) => put(default, n, p),
        pb::operation::Op::Get(g) => get(default, n, g),
        pb::operation::Op::Delete(d) => delete(default, n, d),
    }
}

fn put(default: DefaultConsistency, n: usize, p: pb::PutRequest) {
    needed(default, n, p.replication_factor, p.consistency);
    key(&p.key);
}

fn get(default: DefaultConsistency, n: usize, g: pb::GetRequest) {
    needed(default, n, g.quorum_size, g.consistency);
    key(&g.key);
}

fn delete(default: DefaultConsistency, n: usize, d: pb::DeleteRequest) {
    needed(default, n, d.w, d.consistency);
    key(&d.key);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let n = 1 + usize::from(which >> 4) % 5;
    let default = match (which >> 2) % 3 {
        0 => DefaultConsistency::One,
        1 => DefaultConsistency::Quorum,
        _ => DefaultConsistency::All,
    };
    match which % 11 {
        0 => {
            if let Ok(p) = pb::PutRequest::decode(bytes) {
                put(default, n, p);
            }
        }
        1 => {
            if let Ok(g) = pb::GetRequest::decode(bytes) {
                get(default, n, g);
            }
        }
        2 => {
            if let Ok(d) = pb::DeleteRequest::decode(bytes) {
                delete(default, n, d);
            }
        }
        3 => {
            if let Ok(b) = pb::BatchRequest::decode(bytes) {
                if b.ops.len() > MAX_BATCH_OPS {
                    return;
                }
                for o in b.ops.into_iter().filter_map(|o| o.op) {
                    op(default, n, o);
                }
            }
        }
        4 => {
            if let Ok(r) = pb::LocalGetRequest::decode(bytes) {
                key(&r.key);
            }
        }
        5 => {
            if let Ok(r) = pb::KeyOwnersRequest::decode(bytes) {
                if key(&r.key) {
                    let ring = table().read_ring();
                    let owners = ring.preference_list(&r.key);
                    assert_eq!(owners.len(), 3);
                    for id in owners {
                        assert!(table().address_of(id).is_some());
                    }
                }
            }
        }
        6 => {
            if let Ok(r) = pb::DecommissionRequest::decode(bytes) {
                let _ = membership::valid_id(&r.node_id) && table().get(&r.node_id).is_some();
            }
        }
        7 => {
            if let Ok(r) = pb::RemoveNodeRequest::decode(bytes) {
                let _ = membership::valid_id(&r.node_id) && table().get(&r.node_id).is_some();
            }
        }
        8 => {
            let _ = pb::RepairRequest::decode(bytes);
            let _ = pb::StatusRequest::decode(bytes);
            let _ = pb::TopologyRequest::decode(bytes);
            let _ = pb::PingRequest::decode(bytes);
        }
        _ => {
            // The `grpc-timeout` header every call may carry.
            if let Ok(text) = std::str::from_utf8(bytes) {
                if let Some(d) = f::parse_grpc_timeout(text) {
                    let _ = std::time::Instant::now().checked_add(d);
                }
            }
        }
    }
});
