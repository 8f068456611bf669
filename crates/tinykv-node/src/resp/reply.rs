//! Answers, written as RESP2 or (after `HELLO 3`) RESP3 frames by
//! `redis-protocol`.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::BytesFrame as Frame3;

/// One answer to a command.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+text`.
    Simple(&'static str),
    /// `+text` of a text made at run time.
    Status(String),
    /// `-CODE message`: the whole line after `-`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// A bulk string (binary-safe).
    Bulk(Bytes),
    /// Nothing: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// An array.
    Array(Vec<Reply>),
    /// A map in RESP3, a flat array of key, value, ... in RESP2.
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple("OK");

    /// `-ERR message`.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// A bulk string of text.
    pub fn text(s: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(s.into()))
    }

    /// Whether this answer is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends this answer to `out` in protocol version `proto` (2 or 3).
    pub fn encode(self, proto: u8, out: &mut BytesMut) {
        // Encoding into a growing buffer only fails on a frame the types
        // cannot hold; the answer is replaced by an error then.
        let done = if proto >= 3 {
            redis_protocol::resp3::encode::complete::extend_encode(out, &self.into_resp3(), false)
                .map(|_| ())
        } else {
            redis_protocol::resp2::encode::extend_encode(out, &self.into_resp2(), false).map(|_| ())
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "an answer could not be encoded");
            out.extend_from_slice(b"-ERR answer could not be encoded\r\n");
        }
    }

    fn into_resp2(self) -> Frame2 {
        match self {
            Reply::Simple(s) => Frame2::SimpleString(Bytes::from_static(s.as_bytes())),
            Reply::Status(s) => Frame2::SimpleString(Bytes::from(s)),
            Reply::Error(e) => Frame2::Error(one_line(e).into()),
            Reply::Int(n) => Frame2::Integer(n),
            Reply::Bulk(b) => Frame2::BulkString(b),
            Reply::Null => Frame2::Null,
            Reply::Array(items) => {
                Frame2::Array(items.into_iter().map(Reply::into_resp2).collect())
            }
            Reply::Map(pairs) => Frame2::Array(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [k.into_resp2(), v.into_resp2()])
                    .collect(),
            ),
        }
    }

    fn into_resp3(self) -> Frame3 {
        match self {
            Reply::Simple(s) => Frame3::SimpleString {
                data: Bytes::from_static(s.as_bytes()),
                attributes: None,
            },
            Reply::Status(s) => Frame3::SimpleString {
                data: Bytes::from(s),
                attributes: None,
            },
            Reply::Error(e) => Frame3::SimpleError {
                data: one_line(e).into(),
                attributes: None,
            },
            Reply::Int(n) => Frame3::Number {
                data: n,
                attributes: None,
            },
            Reply::Bulk(b) => Frame3::BlobString {
                data: b,
                attributes: None,
            },
            Reply::Null => Frame3::Null,
            Reply::Array(items) => Frame3::Array {
                data: items.into_iter().map(Reply::into_resp3).collect(),
                attributes: None,
            },
            Reply::Map(pairs) => Frame3::Map {
                data: pairs
                    .into_iter()
                    .map(|(k, v)| (k.into_resp3(), v.into_resp3()))
                    .collect(),
                attributes: None,
            },
        }
    }
}

/// An error or status line cannot hold a line break.
fn one_line(s: String) -> String {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: Reply, proto: u8) -> Vec<u8> {
        let mut out = BytesMut::new();
        r.encode(proto, &mut out);
        out.to_vec()
    }

    #[test]
    fn resp2_and_resp3_forms() {
        assert_eq!(wire(Reply::OK, 2), b"+OK\r\n");
        assert_eq!(wire(Reply::Null, 2), b"$-1\r\n");
        assert_eq!(wire(Reply::Null, 3), b"_\r\n");
        assert_eq!(wire(Reply::Int(-3), 3), b":-3\r\n");
        assert_eq!(
            wire(Reply::Bulk(Bytes::from_static(b"a\r\nb")), 2),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(wire(Reply::err("x\r\ny"), 2), b"-ERR x  y\r\n");
        let map = || Reply::Map(vec![(Reply::text("proto"), Reply::Int(3))]);
        assert_eq!(wire(map(), 2), b"*2\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(wire(map(), 3), b"%1\r\n$5\r\nproto\r\n:3\r\n");
    }
}
