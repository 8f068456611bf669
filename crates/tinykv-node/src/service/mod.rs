//! The gRPC services a node serves: the client-facing `tinykv.TinyKV`, the
//! operator-facing `tinykv.Admin`, and the node-to-node `tinykv.internal.Peer`.

pub mod admin;
pub mod backup;
pub mod client;
pub mod peer;
mod request_span;

use std::time::Duration;

use std::future::Future;

use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::config::{DefaultConsistency, MAX_KEY_BYTES};
use crate::coordinator::RequestError;
use tinykv_proto::tinykv::Consistency;

/// How the client-facing services judge requests, fixed at start.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Deadline of a request that asks for none.
    pub request_timeout: Duration,
    /// The consistency of a request that names none.
    pub default_consistency: DefaultConsistency,
    /// Largest value accepted.
    pub max_value_bytes: usize,
    /// Largest message a client may send or receive.
    pub message_limit: usize,
}

/// Serves a bidirectional stream of requests one at a time: each message is
/// answered by `handle`'s result, in order. The first failure ends the
/// stream (after being sent), and so does shutdown, between messages: the
/// server's graceful stop waits for every stream, and peers and clients
/// keep theirs open for good.
pub(crate) fn serve_in_order<Req, Resp, F, Fut>(
    mut inbound: tonic::Streaming<Req>,
    shutdown: CancellationToken,
    handle: F,
) -> ReceiverStream<Result<Resp, tonic::Status>>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, tonic::Status>> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let req = tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(m)) => m,
                    _ => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let result = handle(req).await;
            let failed = result.is_err();
            if tx.send(result).await.is_err() || failed {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Longest deadline a request may ask for.
const MAX_DEADLINE: Duration = Duration::from_secs(60);

/// The deadline of a request: the smallest of its `timeout_ms` field, its
/// `grpc-timeout` header and the node's default.
pub(crate) fn deadline<T>(rules: &Rules, req: &tonic::Request<T>, timeout_ms: u32) -> Instant {
    deadline_at(rules, header_timeout(req), timeout_ms, Instant::now())
}

/// The request's `grpc-timeout` header, if it has a valid one.
pub(crate) fn header_timeout<T>(req: &tonic::Request<T>) -> Option<Duration> {
    req.metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
}

/// The deadline of an operation with its own `timeout_ms` inside a call
/// bounded by `header` (a batch's operations share the call's header),
/// counted from `now`: the operations of one batch share one `now`, so
/// those with the same timeout have the same deadline.
pub(crate) fn deadline_at(
    rules: &Rules,
    header: Option<Duration>,
    timeout_ms: u32,
    now: Instant,
) -> Instant {
    let mut d = rules.request_timeout;
    if timeout_ms > 0 {
        d = Duration::from_millis(u64::from(timeout_ms)).min(MAX_DEADLINE);
    }
    if let Some(h) = header {
        d = d.min(h);
    }
    now + d
}

/// Parses a `grpc-timeout` header value (`<digits><unit>`).
pub(crate) fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 {
        return None;
    }
    // Checked: a value ending in a multi-byte character (not a unit) is
    // refused instead of split inside it.
    let (num, unit) = v.split_at_checked(v.len() - 1)?;
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Rejects empty and oversize keys.
pub(crate) fn check_key(key: &[u8]) -> Result<(), tonic::Status> {
    if key.is_empty() {
        return Err(tonic::Status::invalid_argument("key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(tonic::Status::invalid_argument(format!(
            "key is {} bytes; the limit is {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// The number of replicas a request needs of `n` (the replication
/// factor): an explicit legacy count if given (`field` names it in errors),
/// else the named level, else the node default.
pub(crate) fn replicas_needed(
    default: DefaultConsistency,
    n: usize,
    explicit: i32,
    field: &str,
    level: i32,
) -> Result<(usize, &'static str), tonic::Status> {
    let quorum = n / 2 + 1;
    if explicit < 0 {
        return Err(tonic::Status::invalid_argument(format!(
            "{field} must not be negative (got {explicit})"
        )));
    }
    if explicit > 0 {
        let e = explicit as usize;
        if e > n {
            return Err(tonic::Status::invalid_argument(format!(
                "{field} {e} exceeds the replication factor {n}"
            )));
        }
        return Ok((e, "count"));
    }
    let level = Consistency::try_from(level).map_err(|_| {
        tonic::Status::invalid_argument(format!("unknown consistency level {level}"))
    })?;
    Ok(match level {
        Consistency::One => (1, "one"),
        Consistency::Two if n < 2 => {
            return Err(tonic::Status::invalid_argument(format!(
                "consistency TWO exceeds the replication factor {n}"
            )))
        }
        Consistency::Two => (2, "two"),
        Consistency::Quorum => (quorum, "quorum"),
        Consistency::All => (n, "all"),
        Consistency::Default => match default {
            DefaultConsistency::One => (1, "one"),
            DefaultConsistency::Quorum => (quorum, "quorum"),
            DefaultConsistency::All => (n, "all"),
        },
    })
}

impl From<RequestError> for tonic::Status {
    fn from(e: RequestError) -> Self {
        tonic::Status::unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header() {
        assert_eq!(
            parse_grpc_timeout("5000m"),
            Some(Duration::from_millis(5000))
        );
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout("12q"), None);
        // Found by the client_requests fuzz target: a panic before.
        assert_eq!(parse_grpc_timeout("ι"), None);
        assert_eq!(parse_grpc_timeout("5ι"), None);
    }

    #[test]
    fn key_limits() {
        assert!(check_key(b"").is_err());
        assert!(check_key(&vec![b'k'; MAX_KEY_BYTES]).is_ok());
        let e = check_key(&vec![b'k'; MAX_KEY_BYTES + 1])
            .err()
            .map(|s| s.code());
        assert_eq!(e, Some(tonic::Code::InvalidArgument));
    }
}
