//! The trust boundary around a node's internal and admin planes.
//!
//! `tinykv.internal.Peer` (replica writes and reads, hints, heartbeats,
//! range exchanges) and `tinykv.Admin` (decommission, removenode, repair,
//! local reads) can change or reveal any data, so every call to them is
//! checked here before the service sees it, in one of four modes:
//!
//! - **secret** (`--cluster-secret-file`): the call must carry a proof made
//!   with the cluster secret ([`tinykv_auth`]), for its own method and
//!   within a minute of this node's clock;
//! - **certificate** (TLS, no secret): the call must come over a
//!   connection that showed a certificate signed by the cluster CA;
//! - **loopback** (no secret, listening on a loopback address): only calls
//!   from this machine are accepted, as for a `make run` cluster;
//! - **open** (`--insecure`): every call is accepted, as before this guard.
//!
//! With TLS on, a peer call must also come with a certificate naming the
//! node it claims to be. The client plane is checked only when
//! `--client-auth` asks ([`ClientCheck`]: a token or a certificate).
//!
//! A refused call answers `UNAUTHENTICATED` and is counted in
//! `tinykv_auth_refused_total{service, reason}`. Without `--client-auth`
//! the client plane is not wrapped: legacy clients keep working unchanged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{self, Either, MapOk, Ready};
use futures::TryFutureExt;
use prometheus::IntCounterVec;
use tinykv_auth::{check_bearer, now_ms, AuthError, Keyring, Verifier, AUTHORIZATION, HEADER};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;
use tower_service::Service;

use crate::server::incoming::ConnInfo;

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
    /// TLS without a secret: the call must come over a connection that
    /// showed a certificate signed by the CA; its first name is the caller.
    Certificate,
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
            Mode::Certificate => "certificate",
            Mode::Loopback => "loopback-only",
            Mode::Open => "insecure",
        }
    }
}

/// Why a call is refused: a metric label and a message for the caller.
type Refusal = (&'static str, String);

/// What a guarded service asks of a call.
pub trait Check: Send + Sync + std::fmt::Debug + 'static {
    /// Why the call `req` to `service` must be refused, if it must; what the
    /// call proved is recorded in its extensions.
    fn refusal<B>(&self, service: &str, req: &mut http::Request<B>) -> Option<Status>;
}

/// The check every peer and admin call goes through.
#[derive(Debug)]
pub struct Guard {
    mode: Mode,
    /// TLS is on: a peer call must also come over a connection whose
    /// certificate names the node it claims to be.
    bind_peers: bool,
    /// Failed checks are counted and logged, and the call goes on
    /// (`--auth-permissive`, for turning a secret on by a rolling restart).
    permissive: bool,
    refused: IntCounterVec,
}

impl Guard {
    /// A guard in `mode` that counts refusals in `refused`; with
    /// `bind_peers`, peer calls must show a certificate naming their caller;
    /// with `permissive`, nothing is refused (only counted).
    pub fn new(
        mode: Mode,
        refused: IntCounterVec,
        bind_peers: bool,
        permissive: bool,
    ) -> Arc<Guard> {
        Arc::new(Guard {
            mode,
            bind_peers,
            permissive,
            refused,
        })
    }

    /// The mode's name, for the start-up log line.
    pub fn mode_name(&self) -> &'static str {
        self.mode.name()
    }

    /// Wraps `svc` so every call to it is checked first.
    pub fn wrap<S>(self: &Arc<Self>, svc: S) -> Guarded<S, Guard> {
        Guarded {
            inner: svc,
            check: self.clone(),
        }
    }

    /// Who the call proves to be (none when the mode names no one).
    fn caller<B>(
        &self,
        req: &http::Request<B>,
        conn: Option<&ConnInfo>,
    ) -> Result<Option<String>, Refusal> {
        match &self.mode {
            Mode::Open => Ok(None),
            Mode::Loopback => {
                let from = conn.and_then(|c| c.remote);
                if from.as_ref().is_some_and(|a| a.ip().is_loopback()) {
                    Ok(None)
                } else {
                    Err(("not_loopback", not_loopback(from)))
                }
            }
            Mode::Secret(verifier) => {
                let header = req.headers().get(HEADER).map(|v| v.as_bytes());
                verifier
                    .verify(header, req.uri().path(), now_ms())
                    .map(Some)
                    .map_err(|e| (reason_of(&e), e.to_string()))
            }
            Mode::Certificate => match conn.and_then(|c| c.cert_names.as_ref()).and_then(|n| n.first()) {
                Some(name) => Ok(Some(name.clone())),
                None => Err((
                    "no_certificate",
                    "this node authenticates peer and admin calls by certificate: connect with a certificate signed by the cluster CA (--tls-cert, --tls-key)".to_string(),
                )),
            },
        }
    }

    /// With TLS on, a peer call's connection must show a certificate that
    /// names `caller`: a node holding the secret cannot pose as another.
    fn bound(&self, service: &str, caller: &str, conn: Option<&ConnInfo>) -> Result<(), Refusal> {
        if !self.bind_peers || service != PEER_SERVICE {
            return Ok(());
        }
        match conn.and_then(|c| c.cert_names.as_ref()) {
            Some(names) if names.iter().any(|n| n.eq_ignore_ascii_case(caller)) => Ok(()),
            Some(names) => Err((
                "wrong_certificate",
                format!("the certificate of this connection names {names:?}, not the calling node {caller:?}"),
            )),
            None => Err((
                "no_certificate",
                format!("peer calls must come with the calling node's certificate (from {caller:?}, none shown)"),
            )),
        }
    }
}

impl Check for Guard {
    fn refusal<B>(&self, service: &str, req: &mut http::Request<B>) -> Option<Status> {
        let conn = req.extensions().get::<ConnInfo>().cloned();
        let checked = self
            .caller(req, conn.as_ref())
            .and_then(|caller| match caller {
                Some(c) => self.bound(service, &c, conn.as_ref()).map(|()| Some(c)),
                None => Ok(None),
            });
        let (reason, message) = match checked {
            Ok(caller) => {
                if let Some(caller) = caller {
                    req.extensions_mut().insert(Caller(caller));
                }
                return None;
            }
            Err(refusal) => refusal,
        };
        self.refused.with_label_values(&[service, reason]).inc();
        if self.permissive {
            tracing::warn!(service, reason, %message, path = req.uri().path(), "call failed authentication; accepted (--auth-permissive)");
            return None;
        }
        tracing::debug!(service, reason, %message, path = req.uri().path(), "call refused");
        Some(Status::unauthenticated(message))
    }
}

const PEER_SERVICE: &str = tinykv_proto::internal::peer_server::SERVICE_NAME;

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
        AuthError::NoToken => "no_token",
        AuthError::UnknownToken => "unknown_token",
        AuthError::Malformed(_) => "malformed",
        AuthError::Stale { .. } => "stale",
        AuthError::BadSignature { .. } => "bad_signature",
        AuthError::Read { .. } | AuthError::BadFile { .. } => "config",
    }
}

/// What the client plane (`tinykv.TinyKV`) demands (`--client-auth`).
#[derive(Debug)]
pub enum ClientGate {
    /// A bearer token from the token file.
    Token(Keyring),
    /// A certificate signed by the CA, shown at the TLS handshake.
    Cert,
}

/// A [`ClientGate`] with its refusal counter.
#[derive(Debug)]
pub struct ClientCheck {
    gate: ClientGate,
    refused: IntCounterVec,
}

impl ClientCheck {
    /// Checks client calls with `gate`, counting refusals in `refused`.
    pub fn new(gate: ClientGate, refused: IntCounterVec) -> Arc<ClientCheck> {
        Arc::new(ClientCheck { gate, refused })
    }

    /// Whether the gate is a client certificate (`--client-auth cert`),
    /// which only the TLS handshake can show.
    pub fn wants_certificate(&self) -> bool {
        matches!(self.gate, ClientGate::Cert)
    }

    /// Checks a token given in-band (the RESP door's `AUTH`) as a bearer
    /// token is checked, counting a refusal under `service`.
    pub fn check_token(&self, service: &str, token: &[u8]) -> Result<(), String> {
        let (reason, message) = match &self.gate {
            ClientGate::Token(keys) => {
                let header = [&b"Bearer "[..], token].concat();
                match check_bearer(keys, Some(&header)) {
                    Ok(()) => return Ok(()),
                    Err(e) => (reason_of(&e), e.to_string()),
                }
            }
            ClientGate::Cert => (
                "no_certificate",
                "this node requires a client certificate, which a token cannot replace".to_string(),
            ),
        };
        self.refused.with_label_values(&[service, reason]).inc();
        Err(message)
    }

    /// Wraps `svc` so every call to it is checked first.
    pub fn wrap<S>(self: &Arc<Self>, svc: S) -> Guarded<S, ClientCheck> {
        Guarded {
            inner: svc,
            check: self.clone(),
        }
    }
}

impl Check for ClientCheck {
    fn refusal<B>(&self, service: &str, req: &mut http::Request<B>) -> Option<Status> {
        let (reason, message) = match &self.gate {
            ClientGate::Token(keys) => {
                let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
                match check_bearer(keys, header) {
                    Ok(()) => return None,
                    Err(e) => (reason_of(&e), e.to_string()),
                }
            }
            ClientGate::Cert => {
                let shown = req
                    .extensions()
                    .get::<ConnInfo>()
                    .is_some_and(|c| c.cert_names.as_ref().is_some_and(|n| !n.is_empty()));
                if shown {
                    return None;
                }
                ("no_certificate", "this node requires a client certificate signed by its CA (--tls-cert, --tls-key)".to_string())
            }
        };
        self.refused.with_label_values(&[service, reason]).inc();
        Some(Status::unauthenticated(message))
    }
}

/// A service whose calls pass a [`Check`] first.
#[derive(Debug)]
pub struct Guarded<S, C> {
    inner: S,
    check: Arc<C>,
}

impl<S: Clone, C> Clone for Guarded<S, C> {
    fn clone(&self) -> Self {
        Guarded {
            inner: self.inner.clone(),
            check: self.check.clone(),
        }
    }
}

impl<S: NamedService, C> NamedService for Guarded<S, C> {
    const NAME: &'static str = S::NAME;
}

impl<S, C, B> Service<http::Request<Body>> for Guarded<S, C>
where
    C: Check,
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
        match self.check.refusal(S::NAME, &mut req) {
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
