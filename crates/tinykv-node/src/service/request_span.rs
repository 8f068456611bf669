//! One span per client request, so `RUST_LOG=debug` ties together every
//! line a request logs, in the coordinator and its replica calls. Spans
//! are at debug level: at the default level they cost one check.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Span;

/// Numbers the requests that come without an `x-request-id`.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// The span of client request `op`: its id is the caller's
/// `x-request-id`, else a number of this node's; the consistency is
/// recorded once the request is checked.
pub(crate) fn request_span<T>(op: &'static str, req: &tonic::Request<T>) -> Span {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return Span::none();
    }
    let id = req
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect::<String>())
        .unwrap_or_else(|| NEXT.fetch_add(1, Ordering::Relaxed).to_string());
    tracing::debug_span!(
        "request",
        op,
        request_id = %id,
        consistency = tracing::field::Empty
    )
}

/// Records the consistency level of the request being handled.
pub(crate) fn record_consistency(level: &str) {
    Span::current().record("consistency", level);
}
