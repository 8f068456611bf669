//! Reading requests off a connection's buffer: RESP arrays of bulk
//! strings (what every client sends), decoded by `redis-protocol`, and
//! inline commands (`PING\r\n`, as typed into telnet).
//!
//! Before the crate sees a frame, [`scan`] walks its length prefixes and
//! checks them against the limits, so no declared length reaches an
//! allocation, no nesting reaches its recursive parser, and the buffer
//! never holds more than one frame's limit of an incomplete request.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes;
use redis_protocol::resp2::types::BytesFrame;

use super::error::RespError;

/// Most arguments (the command name included) a request may have: an
/// `MSET` of a full batch of pairs fits.
pub const MAX_ARGS: usize = 4096;

/// Longest inline command line.
pub const MAX_INLINE: usize = 64 * 1024;

/// Longest length prefix line (`*4096\r\n`, `$4194304\r\n`): digits of an i64.
const MAX_PREFIX: usize = 24;

/// How large a request may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest bulk string (a value a little over the value limit still
    /// parses, so it gets the same error as over gRPC).
    pub max_bulk: usize,
    /// Largest whole request.
    pub max_frame: usize,
}

fn protocol(msg: impl Into<String>) -> RespError {
    RespError::Protocol(msg.into())
}

/// The next request in `buf`, removed from it: its arguments, or none
/// when `buf` does not hold a whole request yet. An empty array (`*0`)
/// and a blank inline line are skipped, as Redis does.
pub fn next_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, RespError> {
    loop {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let args = if first == b'*' {
            match scan(buf, limits)? {
                None => return Ok(None),
                Some(Scanned::Empty(len)) => {
                    let _ = buf.split_to(len);
                    continue;
                }
                Some(Scanned::Frame(len)) => decode(buf.split_to(len).freeze())?,
            }
        } else {
            match inline(buf)? {
                None => return Ok(None),
                Some(args) if args.is_empty() => continue,
                Some(args) => args,
            }
        };
        return Ok(Some(args));
    }
}

/// What [`scan`] found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
enum Scanned {
    /// A whole array of bulk strings of this many bytes.
    Frame(usize),
    /// An empty or null array of this many bytes.
    Empty(usize),
}

/// The integer of the `\r\n`-ended line after the type byte at `at`, and
/// where the next line starts; none if the line is not complete yet.
fn prefix(buf: &[u8], at: usize, what: &str) -> Result<Option<(i64, usize)>, RespError> {
    let line = &buf[at + 1..];
    let window = &line[..line.len().min(MAX_PREFIX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if line.len() >= MAX_PREFIX {
            return Err(protocol(format!("invalid {what} length")));
        }
        return Ok(None);
    };
    let n = std::str::from_utf8(&line[..end])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| protocol(format!("invalid {what} length")))?;
    Ok(Some((n, at + 1 + end + 2)))
}

/// Walks the array at the start of `buf` (which starts with `*`) without
/// copying: every element must be a bulk string within the limits.
fn scan(buf: &[u8], limits: &Limits) -> Result<Option<Scanned>, RespError> {
    let Some((n, mut at)) = prefix(buf, 0, "multibulk")? else {
        return Ok(None);
    };
    if n <= 0 {
        return Ok(Some(Scanned::Empty(at)));
    }
    if n as u64 > MAX_ARGS as u64 {
        return Err(protocol(format!(
            "invalid multibulk length {n}; at most {MAX_ARGS} arguments"
        )));
    }
    for _ in 0..n {
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        if kind != b'$' {
            return Err(protocol(format!("expected '$', got '{}'", kind as char)));
        }
        let Some((len, start)) = prefix(buf, at, "bulk")? else {
            return Ok(None);
        };
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            return Err(protocol(format!(
                "invalid bulk length {len}; at most {} bytes",
                limits.max_bulk
            )));
        }
        let end = start + len as usize + 2;
        if end > limits.max_frame {
            return Err(protocol(format!("request over {} bytes", limits.max_frame)));
        }
        match buf.get(end - 2..end) {
            None => return Ok(None),
            Some(b"\r\n") => at = end,
            Some(_) => return Err(protocol("bulk string not ended by CRLF")),
        }
    }
    Ok(Some(Scanned::Frame(at)))
}

/// The arguments of a scanned frame, decoded by `redis-protocol`.
fn decode(frame: Bytes) -> Result<Vec<Bytes>, RespError> {
    let decoded = decode_bytes(&frame).map_err(|e| protocol(e.to_string()))?;
    match decoded {
        Some((BytesFrame::Array(items), _)) => items
            .into_iter()
            .map(|f| match f {
                BytesFrame::BulkString(b) => Ok(b),
                _ => Err(protocol("expected a bulk string")),
            })
            .collect(),
        _ => Err(protocol("expected an array of bulk strings")),
    }
}

/// An inline command: one line, arguments separated by spaces.
fn inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
    let window = &buf[..buf.len().min(MAX_INLINE)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= MAX_INLINE {
            return Err(protocol("too big inline request"));
        }
        return Ok(None);
    };
    let line = buf.split_to(end + 1).freeze();
    let text = line.slice(..end);
    let mut args = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && !text[i].is_ascii_whitespace() {
            i += 1;
        }
        args.push(text.slice(start..i));
    }
    Ok(Some(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bulk: 100,
        max_frame: 300,
    };

    fn parse(input: &[u8]) -> Result<Option<Vec<Bytes>>, RespError> {
        next_request(&mut BytesMut::from(input), &LIMITS)
    }

    #[test]
    fn arrays_of_bulk_strings_and_pipelines() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"[..]);
        let a = next_request(&mut buf, &LIMITS).unwrap().unwrap();
        assert_eq!(a, vec![Bytes::from("GET"), Bytes::from("k")]);
        let b = next_request(&mut buf, &LIMITS).unwrap().unwrap();
        assert_eq!(b, vec![Bytes::from("PING")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn binary_values_pass_unchanged() {
        let a = parse(b"*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\0\xff\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(a[1].as_ref(), b"\r\n\0\xff");
    }

    #[test]
    fn incomplete_requests_wait_for_more() {
        for cut in [
            &b"*"[..],
            b"*2\r",
            b"*2\r\n$3\r\nGE",
            b"*2\r\n$3\r\nGET\r\n",
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r",
        ] {
            assert!(parse(cut).unwrap().is_none(), "{cut:?}");
        }
    }

    #[test]
    fn limits_are_protocol_errors_before_any_allocation() {
        for bad in [
            &b"*99999999999\r\n"[..],
            b"*5000\r\n",
            b"*1\r\n$101\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n*1\r\n$1\r\nx\r\n",
            b"*1\r\n:5\r\n",
            b"*x\r\n",
            b"*1\r\n$1\r\nxyz",
            b"*11111111111111111111111111111",
        ] {
            let bytes = bad.to_vec();
            assert!(
                matches!(parse(&bytes), Err(RespError::Protocol(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn inline_commands_and_empty_requests() {
        assert_eq!(
            parse(b"SET  k v\r\n").unwrap().unwrap(),
            vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("v")]
        );
        assert_eq!(
            parse(b"*0\r\n\r\nPING\n").unwrap().unwrap(),
            vec![Bytes::from("PING")]
        );
        assert!(parse(b"PING").unwrap().is_none());
        assert!(parse(&vec![b'x'; MAX_INLINE + 1]).is_err());
    }

    #[test]
    fn a_request_over_the_frame_limit_is_refused_before_it_is_whole() {
        let v = vec![b'v'; 100];
        let mut req = b"*4\r\n".to_vec();
        for _ in 0..2 {
            req.extend_from_slice(b"$100\r\n");
            req.extend_from_slice(&v);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"$100\r\n");
        assert!(matches!(parse(&req), Err(RespError::Protocol(_))));
    }
}
