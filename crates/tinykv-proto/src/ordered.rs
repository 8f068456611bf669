//! The calling side of a long-lived bidirectional stream on which every
//! request is answered by one response, in order (`BatchStream` from
//! clients, `ExchangeStream` between nodes): one request in flight, the
//! stream opened on first use and again after any failure (including one
//! that happened while it was idle, found before the next request is sent),
//! and a fallback for servers that do not have it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;

/// How long a server found without the stream gets the fallback before the
/// stream is tried again (it may have been upgraded meanwhile).
pub const FALLBACK_RECHECK: Duration = Duration::from_secs(60);

/// What one call on a [`StreamLink`] gave.
pub enum StreamCall<Req, Resp> {
    /// The request's answer.
    Answer(Resp),
    /// No answer: the stream could not be opened, broke, or the deadline
    /// passed (the stream is dropped and reopened for the next call).
    Failed(tonic::Status),
    /// The server has no such stream (UNIMPLEMENTED): send the request,
    /// handed back, the fallback way.
    Unsupported(Req),
}

/// One caller's link to one server's stream.
pub enum StreamLink<Req, Resp> {
    /// Not open: opened by the next call.
    Unopened,
    /// Requests out, answers back in the same order.
    Open {
        /// Requests to the server.
        out: mpsc::Sender<Req>,
        /// Its answers.
        answers: Box<tonic::Streaming<Resp>>,
    },
    /// The server had no stream at this time.
    Fallback(Instant),
}

impl<Req, Resp> StreamLink<Req, Resp> {
    /// Sends `req` and waits for its answer until `deadline`, opening the
    /// stream with `open` (the generated client's streaming method) first
    /// when it is not open.
    pub async fn call<F, Fut>(
        &mut self,
        req: Req,
        deadline: Instant,
        open: F,
    ) -> StreamCall<Req, Resp>
    where
        F: FnOnce(ReceiverStream<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status>>,
    {
        if matches!(self, StreamLink::Fallback(since) if since.elapsed() >= FALLBACK_RECHECK) {
            *self = StreamLink::Unopened;
        }
        if let StreamLink::Open { out, answers } = self {
            if !idle_and_alive(out, answers) {
                // Broken while idle (the server restarted, the connection
                // was reset): the request has not been sent, so it goes out
                // on a new stream instead of failing on the dead one.
                *self = StreamLink::Unopened;
            }
        }
        match self {
            StreamLink::Fallback(_) => return StreamCall::Unsupported(req),
            StreamLink::Unopened => {
                let (out, rx) = mpsc::channel(4);
                match tokio::time::timeout_at(deadline, open(ReceiverStream::new(rx))).await {
                    Ok(Ok(resp)) => {
                        *self = StreamLink::Open {
                            out,
                            answers: Box::new(resp.into_inner()),
                        }
                    }
                    Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                        *self = StreamLink::Fallback(Instant::now());
                        return StreamCall::Unsupported(req);
                    }
                    Ok(Err(s)) => return StreamCall::Failed(s),
                    Err(_) => return StreamCall::Failed(deadline_passed()),
                }
            }
            StreamLink::Open { .. } => {}
        }
        let StreamLink::Open { out, answers } = self else {
            return StreamCall::Failed(closed());
        };
        let answer = match out.send(req).await {
            Err(_) => Err(closed()),
            Ok(()) => match tokio::time::timeout_at(deadline, answers.message()).await {
                Ok(Ok(Some(r))) => Ok(r),
                Ok(Ok(None)) => Err(closed()),
                Ok(Err(s)) => Err(s),
                Err(_) => Err(deadline_passed()),
            },
        };
        match answer {
            Ok(r) => StreamCall::Answer(r),
            Err(s) => {
                // An unanswered request leaves the stream out of step.
                *self = StreamLink::Unopened;
                StreamCall::Failed(s)
            }
        }
    }
}

/// True when an open stream with no request in flight can take the next
/// one: its request side is open and no answer, error or end is waiting on
/// its answer side (between requests nothing is due, so anything there
/// means the stream broke or fell out of step).
fn idle_and_alive<Req, Resp>(
    out: &mpsc::Sender<Req>,
    answers: &mut tonic::Streaming<Resp>,
) -> bool {
    if out.is_closed() {
        return false;
    }
    // One poll, no wait: whatever arrives later is awaited by the call.
    let mut cx = Context::from_waker(Waker::noop());
    matches!(Pin::new(answers).poll_next(&mut cx), Poll::Pending)
}

fn closed() -> tonic::Status {
    tonic::Status::unavailable("stream closed")
}

fn deadline_passed() -> tonic::Status {
    tonic::Status::deadline_exceeded("no answer before the deadline")
}
