//! Every gRPC method a node serves, each with a generator of structurally
//! valid requests whose fields are random (see `gen.rs`).
//!
//! A request sent with valid credentials must not legitimately change what
//! the test checks afterwards: keys never carry the recorded prefix,
//! `Decommission`/`RemoveNode` name no member (and are never sent as raw
//! bytes, which could decode to an empty id: the answering node), and a
//! heartbeat's rows name no member and put no one in the ring (states
//! `left`/`removed` or invalid ones). Without valid credentials anything
//! goes: the node must refuse it.

use prost::Message;
use rand::rngs::StdRng;
use rand::Rng;
use tinykv_proto::internal as pb;
use tinykv_proto::tinykv as kv;
use tinykv_tests::legacy;

use crate::gen::{self, key, repeat, string, value};
use crate::peer::{digest, exchange, fetch, heartbeat, id, keyed, replica_write};

/// How a method streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Unary,
    /// Both ways: a few messages are sent, then the stream is closed.
    Bidi,
    /// One request, a stream of answers (the first one is read).
    ServerStream,
}

/// Which plane a method belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    Client,
    Admin,
    Peer,
    Health,
}

/// What a body generator knows.
pub struct Ctx<'a> {
    /// The body is sent with a valid proof of the cluster secret.
    pub signed: bool,
    /// The member ids.
    pub members: &'a [String],
}

/// One method.
pub struct Method {
    pub label: &'static str,
    pub path: &'static str,
    pub shape: Shape,
    pub plane: Plane,
    /// Acts on the member named in the body: never sent signed as raw bytes.
    pub names_member: bool,
    pub body: fn(&mut StdRng, &Ctx) -> Vec<u8>,
}

const fn m(
    label: &'static str,
    path: &'static str,
    shape: Shape,
    plane: Plane,
    body: fn(&mut StdRng, &Ctx) -> Vec<u8>,
) -> Method {
    Method {
        label,
        path,
        shape,
        plane,
        names_member: false,
        body,
    }
}

use Plane::{Admin, Client, Health, Peer};
use Shape::{Bidi, ServerStream, Unary};

/// Every method of `tinykv.TinyKV`, `tinykv.Admin`, `tinykv.internal.Peer`,
/// the legacy proto and `grpc.health.v1.Health`.
pub static METHODS: &[Method] = &[
    m("Ping", "/tinykv.TinyKV/Ping", Unary, Client, ping),
    m("Put", "/tinykv.TinyKV/Put", Unary, Client, |r, _| {
        put(r).encode_to_vec()
    }),
    m("Get", "/tinykv.TinyKV/Get", Unary, Client, |r, _| {
        get(r).encode_to_vec()
    }),
    m("Delete", "/tinykv.TinyKV/Delete", Unary, Client, |r, _| {
        delete(r).encode_to_vec()
    }),
    m("Status", "/tinykv.TinyKV/Status", Unary, Client, |_, _| {
        Vec::new()
    }),
    m("Batch", "/tinykv.TinyKV/Batch", Unary, Client, batch),
    m(
        "BatchStream",
        "/tinykv.TinyKV/BatchStream",
        Bidi,
        Client,
        batch,
    ),
    m("Expire", "/tinykv.TinyKV/Expire", Unary, Client, expire),
    m(
        "Topology",
        "/tinykv.TinyKV/Topology",
        Unary,
        Client,
        |_, _| Vec::new(),
    ),
    m(
        "legacy Ping",
        "/tinykv.TinyKV/Ping",
        Unary,
        Client,
        legacy_ping,
    ),
    m(
        "legacy Put",
        "/tinykv.TinyKV/Put",
        Unary,
        Client,
        legacy_put,
    ),
    m(
        "legacy Get",
        "/tinykv.TinyKV/Get",
        Unary,
        Client,
        legacy_get,
    ),
    m(
        "LocalGet",
        "/tinykv.Admin/LocalGet",
        Unary,
        Admin,
        |r, _| kv::LocalGetRequest { key: key(r).into() }.encode_to_vec(),
    ),
    m("Repair", "/tinykv.Admin/Repair", Unary, Admin, |_, _| {
        Vec::new()
    }),
    Method {
        names_member: true,
        ..m(
            "Decommission",
            "/tinykv.Admin/Decommission",
            Unary,
            Admin,
            |r, c| {
                kv::DecommissionRequest {
                    node_id: target(r, c),
                }
                .encode_to_vec()
            },
        )
    },
    Method {
        names_member: true,
        ..m(
            "RemoveNode",
            "/tinykv.Admin/RemoveNode",
            Unary,
            Admin,
            |r, c| {
                kv::RemoveNodeRequest {
                    node_id: target(r, c),
                }
                .encode_to_vec()
            },
        )
    },
    m(
        "KeyOwners",
        "/tinykv.Admin/KeyOwners",
        Unary,
        Admin,
        |r, _| kv::KeyOwnersRequest { key: key(r).into() }.encode_to_vec(),
    ),
    m(
        "ScanRange",
        "/tinykv.Admin/ScanRange",
        Unary,
        Admin,
        |r, _| {
            kv::ScanRangeRequest {
                start: r.random(),
                end: r.random(),
                after_key: key(r).into(),
                limit: r.random_range(0..5000),
                since: 0,
            }
            .encode_to_vec()
        },
    ),
    m(
        "WriteVersions",
        "/tinykv.Admin/WriteVersions",
        Unary,
        Admin,
        |r, _| {
            let versions = (0..r.random_range(0..8))
                .map(|_| kv::KeyVersion {
                    key: key(r).into(),
                    value: key(r).into(),
                    timestamp: r.random_range(0..1_000_000),
                    writer: "fuzz".into(),
                    tombstone: r.random_bool(0.2),
                    expires_at_us: 0,
                })
                .collect();
            kv::WriteVersionsRequest {
                versions,
                ..Default::default()
            }
            .encode_to_vec()
        },
    ),
    m(
        "Write",
        "/tinykv.internal.Peer/Write",
        Unary,
        Peer,
        replica_write,
    ),
    m(
        "WriteBatch",
        "/tinykv.internal.Peer/WriteBatch",
        Unary,
        Peer,
        |r, c| {
            let records = keyed(r, 1024);
            pb::ReplicaWriteBatch {
                records,
                from: id(r, c),
            }
            .encode_to_vec()
        },
    ),
    m(
        "WriteHints",
        "/tinykv.internal.Peer/WriteHints",
        Unary,
        Peer,
        |r, c| {
            let records = keyed(r, 1024);
            let (hint_for, from) = (id(r, c), id(r, c));
            pb::ReplicaHintBatch {
                records,
                hint_for,
                from,
            }
            .encode_to_vec()
        },
    ),
    m("Read", "/tinykv.internal.Peer/Read", Unary, Peer, |r, _| {
        pb::ReplicaRead { key: key(r).into() }.encode_to_vec()
    }),
    m(
        "ReadBatch",
        "/tinykv.internal.Peer/ReadBatch",
        Unary,
        Peer,
        |r, _| {
            let keys = (0..repeat(r, 4096)).map(|_| key(r).into()).collect();
            pb::ReplicaReadBatch {
                keys,
                may_omit: r.random(),
            }
            .encode_to_vec()
        },
    ),
    m(
        "ExchangeStream",
        "/tinykv.internal.Peer/ExchangeStream",
        Bidi,
        Peer,
        exchange,
    ),
    m(
        "Heartbeat",
        "/tinykv.internal.Peer/Heartbeat",
        Unary,
        Peer,
        heartbeat,
    ),
    m(
        "RangeDigest",
        "/tinykv.internal.Peer/RangeDigest",
        Unary,
        Peer,
        digest,
    ),
    m(
        "FetchRange",
        "/tinykv.internal.Peer/FetchRange",
        Unary,
        Peer,
        fetch,
    ),
    m(
        "health Check",
        "/grpc.health.v1.Health/Check",
        Unary,
        Health,
        health,
    ),
    m(
        "health Watch",
        "/grpc.health.v1.Health/Watch",
        ServerStream,
        Health,
        health,
    ),
];

fn ping(r: &mut StdRng, _: &Ctx) -> Vec<u8> {
    kv::PingRequest {
        sender_id: string(r),
    }
    .encode_to_vec()
}

fn put(r: &mut StdRng) -> kv::PutRequest {
    kv::PutRequest {
        key: key(r).into(),
        val: value(r).into(),
        sender_id: string(r),
        replication_factor: gen::count(r),
        timestamp: gen::timestamp_i64(r),
        consistency: gen::enum_value(r),
        timeout_ms: gen::timeout_ms(r),
        strict_quorum: r.random(),
        ttl_ms: ttl_ms(r),
        expires_at_us: if r.random_bool(0.1) {
            gen::timestamp_u64(r)
        } else {
            0
        },
    }
}

/// Mostly none, else short, long or absurd.
fn ttl_ms(r: &mut StdRng) -> u64 {
    match r.random_range(0..10) {
        0 => r.random_range(1..10_000),
        1 => u64::MAX,
        _ => 0,
    }
}

fn expire(r: &mut StdRng, _: &Ctx) -> Vec<u8> {
    kv::ExpireRequest {
        key: key(r).into(),
        ttl_ms: ttl_ms(r),
        expires_at_us: if r.random_bool(0.3) {
            gen::timestamp_u64(r)
        } else {
            0
        },
        persist: r.random_bool(0.3),
        consistency: gen::enum_value(r),
        timeout_ms: gen::timeout_ms(r),
        strict_quorum: r.random(),
        replicas: gen::count(r),
    }
    .encode_to_vec()
}

fn get(r: &mut StdRng) -> kv::GetRequest {
    kv::GetRequest {
        key: key(r).into(),
        sender_id: string(r),
        quorum_size: gen::count(r),
        consistency: gen::enum_value(r),
        timeout_ms: gen::timeout_ms(r),
    }
}

fn delete(r: &mut StdRng) -> kv::DeleteRequest {
    kv::DeleteRequest {
        key: key(r).into(),
        sender_id: string(r),
        w: gen::count(r),
        consistency: gen::enum_value(r),
        timeout_ms: gen::timeout_ms(r),
        strict_quorum: r.random(),
    }
}

fn batch(r: &mut StdRng, _: &Ctx) -> Vec<u8> {
    use kv::operation::Op;
    let ops = (0..repeat(r, 1024))
        .map(|_| kv::Operation {
            op: match r.random_range(0..7) {
                0..3 => Some(Op::Put(put(r))),
                3..5 => Some(Op::Get(get(r))),
                5 => Some(Op::Delete(delete(r))),
                _ => None,
            },
        })
        .collect();
    kv::BatchRequest {
        ops,
        sender_id: string(r),
    }
    .encode_to_vec()
}

fn legacy_ping(r: &mut StdRng, _: &Ctx) -> Vec<u8> {
    legacy::PingRequest {
        sender_id: string(r),
    }
    .encode_to_vec()
}

fn legacy_key(r: &mut StdRng) -> String {
    String::from_utf8_lossy(&key(r)).into_owned()
}

fn legacy_put(r: &mut StdRng, _: &Ctx) -> Vec<u8> {
    legacy::PutRequest {
        key: legacy_key(r),
        val: String::from_utf8_lossy(&value(r)).into_owned(),
        sender_id: string(r),
        replication_factor: gen::count(r),
        timestamp: gen::timestamp_i64(r),
    }
    .encode_to_vec()
}

fn legacy_get(r: &mut StdRng, _: &Ctx) -> Vec<u8> {
    legacy::GetRequest {
        key: legacy_key(r),
        sender_id: string(r),
        quorum_size: gen::count(r),
    }
    .encode_to_vec()
}

/// The node a `Decommission`/`RemoveNode` names: with valid credentials
/// never a member nor empty (the answering node); without, anything.
fn target(r: &mut StdRng, c: &Ctx) -> String {
    if c.signed {
        return gen::stranger_id(r, "absent");
    }
    match r.random_range(0..3) {
        0 => String::new(),
        1 => c.members[r.random_range(0..c.members.len())].clone(),
        _ => gen::stranger_id(r, "absent"),
    }
}

fn health(r: &mut StdRng, _: &Ctx) -> Vec<u8> {
    let service = match r.random_range(0..3) {
        0 => String::new(),
        1 => "tinykv.TinyKV".into(),
        _ => string(r),
    };
    tonic_health::pb::HealthCheckRequest { service }.encode_to_vec()
}
