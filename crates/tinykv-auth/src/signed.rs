//! A client-side service that signs every call it sends, so a tonic client
//! built on it (`PeerClient<Signed<Channel>>`, `AdminClient<..>`) proves
//! the secret on each call without its callers knowing; it also carries a
//! client token (`--client-auth token`) when given one.

use std::task::{Context, Poll};

use http::HeaderValue;
use tower_service::Service;

use crate::token::{now_ms, Signer, HEADER};

/// Wraps a channel; with a signer, adds the proof header to every request,
/// over the request's own method.
#[derive(Clone, Debug)]
pub struct Signed<S> {
    inner: S,
    signer: Option<Signer>,
    token: Option<HeaderValue>,
}

impl<S> Signed<S> {
    /// Signs calls through `inner` with `signer` (none: calls go unsigned).
    pub fn new(inner: S, signer: Option<Signer>) -> Self {
        Signed {
            inner,
            signer,
            token: None,
        }
    }

    /// The same service signing with `signer` instead.
    pub fn signed_by(mut self, signer: Option<Signer>) -> Self {
        self.signer = signer;
        self
    }

    /// Also sends `token` as `authorization: Bearer` on every call; a token
    /// that is not a valid header value is refused here.
    pub fn with_token(mut self, token: Option<&str>) -> Result<Self, crate::AuthError> {
        self.token = match token {
            Some(t) => Some(
                HeaderValue::from_str(&crate::bearer(t))
                    .map_err(|_| crate::AuthError::Malformed("a token must be printable ASCII"))?,
            ),
            None => None,
        };
        Ok(self)
    }
}

impl<S, B> Service<http::Request<B>> for Signed<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(signer) = &self.signer {
            let proof = signer.proof(req.uri().path(), now_ms());
            // A proof is ASCII (validated ids, digits, hex): always a valid
            // header value; a caller id that is not is sent without one and
            // refused by the node with a clear message.
            if let Ok(v) = HeaderValue::from_str(&proof) {
                req.headers_mut().insert(HEADER, v);
            }
        }
        if let Some(token) = &self.token {
            req.headers_mut()
                .insert(crate::AUTHORIZATION, token.clone());
        }
        self.inner.call(req)
    }
}
