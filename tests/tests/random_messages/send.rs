//! Sending one planned call: raw bytes as the protobuf payload through
//! tonic's `Grpc` client with a pass-through codec, so a valid message and
//! random bytes take the same path, with one of three credential states.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use rand::rngs::StdRng;
use rand::Rng;
use tinykv_client::auth::{now_ms, Secrets, Signer, HEADER};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::gen;
use crate::methods::{Ctx, Method, Shape, METHODS};

/// The caller id of the valid proofs.
pub const CALLER: &str = "fuzzer";
/// The deadline of every call but `Repair`.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// The deadline of `Repair`: rounds run one at a time and a second one
/// waits for the first, each comparing every range with both peers; in a
/// debug build on a loaded machine (load 19) a few took over 30 s.
pub const REPAIR_DEADLINE: Duration = Duration::from_secs(120);
/// Largest answer read (the node's own limits are lower; tonic's 4 MiB
/// default would refuse some of its valid pages).
const MAX_ANSWER: usize = 64 << 20;

/// Payloads pass through as they are.
#[derive(Clone, Copy, Default)]
pub struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// The credentials a call carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cred {
    None,
    Valid,
    /// A proof that must not verify (kind 0..8, see [`garbled`]).
    Garbled(u8),
}

/// The signers: the cluster's secret, another one, and the cluster's
/// with a caller id over the limit.
pub struct Signers {
    good: Signer,
    wrong: Signer,
    overlong: Signer,
}

impl Signers {
    pub fn new(secret: &str) -> Signers {
        let parse = |s: &str| Secrets::parse(s).unwrap_or_else(|e| panic!("secret: {e}"));
        Signers {
            good: Signer::new(CALLER, parse(secret)),
            wrong: Signer::new(CALLER, parse("a-wrong-secret-for-the-random-test")),
            overlong: Signer::new(&"c".repeat(300), parse(secret)),
        }
    }
}

/// One call, ready to send.
pub struct Plan {
    pub method: &'static Method,
    pub bodies: Vec<Bytes>,
    pub cred: Cred,
    pub raw: bool,
    /// `tinykv-cluster` header: none, the cluster's name, or another.
    pub cluster: Option<bool>,
}

/// Picks a method, its credentials and its bodies.
pub fn plan(r: &mut StdRng, members: &[String]) -> Plan {
    let method = &METHODS[r.random_range(0..METHODS.len())];
    let cred = match r.random_range(0..3) {
        0 => Cred::None,
        1 => Cred::Valid,
        _ => Cred::Garbled(r.random_range(0..8)),
    };
    let ctx = Ctx {
        signed: cred == Cred::Valid,
        members,
    };
    let raw = r.random_bool(0.35) && !(ctx.signed && method.names_member);
    let n = match method.shape {
        Shape::Bidi => r.random_range(0..5),
        _ => 1,
    };
    let bodies = (0..n)
        .map(|_| {
            let valid = (method.body)(r, &ctx);
            Bytes::from(if raw { gen::garbage(r, &valid) } else { valid })
        })
        .collect();
    let cluster = match r.random_range(0..10) {
        0 => Some(true),
        1 => Some(false),
        _ => None,
    };
    Plan {
        method,
        bodies,
        cred,
        raw,
        cluster,
    }
}

/// A proof header that must be refused.
fn garbled(r: &mut StdRng, kind: u8, s: &Signers, path: &str) -> Option<AsciiMetadataValue> {
    let now = now_ms();
    let text = match kind {
        0 => (0..r.random_range(0..300))
            .map(|_| r.random_range(b' '..=b'~') as char)
            .collect(),
        // Signed for another method.
        1 if path == "/tinykv.Admin/Repair" => s.good.proof("/tinykv.Admin/LocalGet", now),
        1 => s.good.proof("/tinykv.Admin/Repair", now),
        2 => s.wrong.proof(path, now),
        3 => {
            let mut p = s.good.proof(path, now).into_bytes();
            let i = r.random_range(0..p.len());
            p[i] = if p[i] == b'0' { b'1' } else { b'0' };
            String::from_utf8_lossy(&p).into_owned()
        }
        4 => s.good.proof(path, now - 10 * 60 * 1000),
        5 => s.good.proof(path, now + 10 * 60 * 1000),
        6 => s.overlong.proof(path, now),
        _ => {
            // Not even text: bytes 0x20..=0xff (what a header may carry).
            let raw: Vec<u8> = (0..r.random_range(1..200))
                .map(|_| r.random_range(0x20..=0xffu8))
                .filter(|&b| b != 0x7f)
                .collect();
            return AsciiMetadataValue::try_from(raw.as_slice()).ok();
        }
    };
    AsciiMetadataValue::try_from(text.as_str()).ok()
}

/// Builds the request metadata of `plan`.
fn request<T>(r: &mut StdRng, plan: &Plan, s: &Signers, cluster: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    let path = plan.method.path;
    let proof = match plan.cred {
        Cred::None => None,
        Cred::Valid => AsciiMetadataValue::try_from(s.good.proof(path, now_ms())).ok(),
        Cred::Garbled(kind) => garbled(r, kind, s, path),
    };
    if let Some(p) = proof {
        req.metadata_mut().insert(HEADER, p);
    }
    if let Some(right) = plan.cluster {
        let name = if right { cluster } else { "another-cluster" };
        if let Ok(v) = AsciiMetadataValue::try_from(name) {
            req.metadata_mut().insert("tinykv-cluster", v);
        }
    }
    req
}

/// Sends `plan` over `ch`; the answer's code (`Ok`, a gRPC code, or
/// `client timeout`) and message.
pub async fn send(
    r: &mut StdRng,
    plan: &Plan,
    ch: Channel,
    s: &Signers,
    cluster: &str,
) -> (String, String) {
    let mut grpc = tonic::client::Grpc::new(ch).max_decoding_message_size(MAX_ANSWER);
    let path = PathAndQuery::from_static(plan.method.path);
    let call = async {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        match plan.method.shape {
            Shape::Unary => {
                let body = plan.bodies.first().cloned().unwrap_or_default();
                let req = request(r, plan, s, cluster, body);
                grpc.unary(req, path, Raw).await.map(|_| ())
            }
            Shape::ServerStream => {
                let body = plan.bodies.first().cloned().unwrap_or_default();
                let req = request(r, plan, s, cluster, body);
                let mut answers = grpc.server_streaming(req, path, Raw).await?.into_inner();
                answers.message().await.map(|_| ())
            }
            Shape::Bidi => {
                let out = tokio_stream::iter(plan.bodies.clone());
                let req = request(r, plan, s, cluster, out);
                let mut answers = grpc.streaming(req, path, Raw).await?.into_inner();
                while answers.message().await?.is_some() {}
                Ok(())
            }
        }
    };
    let deadline = if plan.method.label == "Repair" {
        REPAIR_DEADLINE
    } else {
        CALL_DEADLINE
    };
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(())) => ("Ok".into(), String::new()),
        Ok(Err(status)) => (format!("{:?}", status.code()), status.message().into()),
        Err(_) => ("client timeout".into(), String::new()),
    }
}
