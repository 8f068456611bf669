//! The trust boundary around a node's internal and admin planes.
//!
//! `tinykv.internal.Peer` (replica writes and reads, hints, heartbeats,
//! range exchanges) and `tinykv.Admin` (decommission, removenode, repair,
//! local reads) can change or reveal any data, so every call to them is
//! checked here before the service sees it, in one of three modes:
//!
//! - **secret** (`--cluster-secret-file`): the call must carry a proof made
//!   with the cluster secret ([`tinykv_auth`]), for its own method and
//!   within a minute of this node's clock;
//! - **loopback** (no secret, listening on a loopback address): only calls
//!   from this machine are accepted, as for a `make run` cluster;
//! - **open** (`--insecure`): every call is accepted, as before this guard.
//!
//! A refused call answers `UNAUTHENTICATED` and is counted in
//! `tinykv_auth_refused_total{service, reason}`. The client plane
//! (`tinykv.TinyKV`) is not wrapped: legacy clients keep working unchanged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{self, Either, MapOk, Ready};
use futures::TryFutureExt;
use prometheus::IntCounterVec;
use tinykv_auth::{now_ms, AuthError, Verifier, HEADER};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::TcpConnectInfo;
use tonic::Status;
use tower_service::Service;

/// Who a call's proof names (a node id, `admin` or `operator`), put in the
/// request's extensions when the call passed the cluster-secret check, so
/// a handler can hold claims in the message (a heartbeat's `from`) to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub String);

/// How a node decides whether a peer or admin call may act.
#[derive(Clone, Debug)]
pub enum Mode {
    /// The call must prove the cluster secret.
    Secret(Verifier),
    /// The call must come from a loopback address.
    Loopback,
    /// Every call is accepted (`--insecure`).
    Open,
}

impl Mode {
    /// The mode's name, for the start-up log line.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Secret(_) => "cluster-secret",
            Mode::Loopback => "loopback-only",
            Mode::Open => "insecure",
        }
    }
}

/// The check every guarded call goes through.
#[derive(Debug)]
pub struct Guard {
    mode: Mode,
    refused: IntCounterVec,
}

impl Guard {
    /// A guard in `mode` that counts refusals in `refused`.
    pub fn new(mode: Mode, refused: IntCounterVec) -> Arc<Guard> {
        Arc::new(Guard { mode, refused })
    }

    /// Wraps `svc` so every call to it is checked first.
    pub fn wrap<S>(self: &Arc<Self>, svc: S) -> Guarded<S> {
        Guarded {
            inner: svc,
            guard: self.clone(),
        }
    }

    /// Why the call `req` to `service` must be refused, if it must; a
    /// verified caller is recorded in its extensions.
    fn refusal<B>(&self, service: &str, req: &mut http::Request<B>) -> Option<Status> {
        let (reason, message) = match &self.mode {
            Mode::Open => return None,
            Mode::Loopback => {
                let from = req
                    .extensions()
                    .get::<TcpConnectInfo>()
                    .and_then(TcpConnectInfo::remote_addr);
                if from.as_ref().is_some_and(|a| a.ip().is_loopback()) {
                    return None;
                }
                ("not_loopback", not_loopback(from))
            }
            Mode::Secret(verifier) => {
                let header = req.headers().get(HEADER).map(|v| v.as_bytes());
                match verifier.verify(header, req.uri().path(), now_ms()) {
                    Ok(caller) => {
                        req.extensions_mut().insert(Caller(caller));
                        return None;
                    }
                    Err(e) => (reason_of(&e), e.to_string()),
                }
            }
        };
        self.refused.with_label_values(&[service, reason]).inc();
        tracing::debug!(service, reason, %message, path = req.uri().path(), "call refused");
        Some(Status::unauthenticated(message))
    }
}

fn not_loopback(from: Option<SocketAddr>) -> String {
    let from = from.map_or_else(|| "an unknown address".to_string(), |a| a.ip().to_string());
    format!(
        "peer and admin calls are accepted only from this machine when no cluster secret is set \
         (this one came from {from}); start the nodes with --cluster-secret-file"
    )
}

fn reason_of(e: &AuthError) -> &'static str {
    match e {
        AuthError::Missing => "missing",
        AuthError::Malformed(_) => "malformed",
        AuthError::Stale { .. } => "stale",
        AuthError::BadSignature { .. } => "bad_signature",
        AuthError::Read { .. } | AuthError::BadFile { .. } => "config",
    }
}

/// A service whose calls pass the [`Guard`] first.
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
        + NamedService,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<
        MapOk<S::Future, fn(http::Response<B>) -> http::Response<Body>>,
        Ready<Result<http::Response<Body>, Infallible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        match self.guard.refusal(S::NAME, &mut req) {
            None => Either::Left(self.inner.call(req).map_ok(boxed_body::<B>)),
            Some(status) => Either::Right(future::ready(Ok(status.into_http()))),
        }
    }
}

/// A response with its body as tonic's own body type.
fn boxed_body<B>(resp: http::Response<B>) -> http::Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    resp.map(Body::new)
}
