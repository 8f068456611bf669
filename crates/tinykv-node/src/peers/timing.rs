//! The latency of every outgoing node-to-node call, by member and call
//! (`tinykv_peer_call_duration_seconds`): a layer on each peer channel
//! times unary calls from request to response headers; the exchange
//! stream, whose one HTTP call lasts as long as the stream, is timed per
//! message by the sender instead ([`CallTimer::observe`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus::HistogramVec;
use tower_service::Service;

/// The `call` label of an exchange-stream message.
pub const EXCHANGE_CALL: &str = "ExchangeStream";
/// The `member` label of an address no member has (a peer found through
/// DNS before it is in the table): every such address shares it, so the
/// labels stay as many as the members.
pub const OTHER_MEMBER: &str = "other";

/// Names the member at an address.
pub type MemberAt = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Observes call durations into the histogram, labelled by the member at
/// the called address and the gRPC method.
#[derive(Clone)]
pub struct CallTimer {
    histogram: HistogramVec,
    member_at: Arc<MemberAt>,
}

impl CallTimer {
    /// A timer observing into `histogram` (labels `member`, `call`),
    /// naming members with `member_at`.
    pub fn new(histogram: HistogramVec, member_at: Arc<MemberAt>) -> Self {
        CallTimer {
            histogram,
            member_at,
        }
    }

    /// Records one call of `call` to `addr` that took `elapsed`.
    pub fn observe(&self, addr: &str, call: &str, elapsed: Duration) {
        let member = (self.member_at)(addr);
        let member = member.as_deref().unwrap_or(OTHER_MEMBER);
        self.histogram
            .with_label_values(&[member, call])
            .observe(elapsed.as_secs_f64());
    }
}

/// The method of a gRPC path (`/tinykv.internal.Peer/Heartbeat`:
/// `Heartbeat`): one of the peer service's, a fixed set.
pub fn method_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A peer channel whose unary calls are timed (see the module doc).
#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    addr: Arc<str>,
    timer: Option<CallTimer>,
}

impl<S> Timed<S> {
    /// Calls through `inner` to `addr`, timed by `timer` when there is one.
    pub fn new(inner: S, addr: &str, timer: Option<CallTimer>) -> Self {
        Timed {
            inner,
            addr: addr.into(),
            timer,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_of(req.uri().path()).to_string();
        let timer = self.timer.clone().filter(|_| method != EXCHANGE_CALL);
        let addr = self.addr.clone();
        let call = self.inner.call(req);
        Box::pin(async move {
            let start = Instant::now();
            let answer = call.await;
            if let Some(t) = timer {
                t.observe(&addr, &method, start.elapsed());
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::HistogramOpts;

    fn timer() -> (CallTimer, HistogramVec) {
        let h = HistogramVec::new(HistogramOpts::new("t", "t"), &["member", "call"]).unwrap();
        let at: Arc<MemberAt> = Arc::new(|a: &str| (a == "10.0.0.1:1").then(|| "n1".into()));
        (CallTimer::new(h.clone(), at), h)
    }

    #[test]
    fn calls_are_labelled_by_member_and_method() {
        let (t, h) = timer();
        assert_eq!(method_of("/tinykv.internal.Peer/Heartbeat"), "Heartbeat");
        t.observe("10.0.0.1:1", "Heartbeat", Duration::from_millis(3));
        t.observe("10.0.0.9:1", "Heartbeat", Duration::from_millis(3));
        t.observe("10.0.0.8:1", "Heartbeat", Duration::from_millis(3));
        let n1 = h.with_label_values(&["n1", "Heartbeat"]);
        assert_eq!(n1.get_sample_count(), 1);
        assert!((n1.get_sample_sum() - 0.003).abs() < 1e-9);
        // Addresses of no member share one label.
        let other = h.with_label_values(&[OTHER_MEMBER, "Heartbeat"]);
        assert_eq!(other.get_sample_count(), 2);
    }

    /// A service that answers every request at once.
    struct Answer;

    impl Service<http::Request<()>> for Answer {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(())))
        }
    }

    #[tokio::test]
    async fn the_layer_times_unary_calls_but_not_the_stream() {
        let (t, h) = timer();
        let mut timed = Timed::new(Answer, "10.0.0.1:1", Some(t));
        for path in ["/p.Peer/WriteHints", "/p.Peer/ExchangeStream"] {
            let req = http::Request::builder().uri(path).body(()).unwrap();
            timed.call(req).await.unwrap();
        }
        let count = |call| h.with_label_values(&["n1", call]).get_sample_count();
        assert_eq!(count("WriteHints"), 1);
        assert_eq!(count(EXCHANGE_CALL), 0);
    }
}
