//! `/metrics` (and `/healthz`) on the node's own gRPC port, the way etcd
//! serves them on its client port: an HTTP GET for those paths is answered
//! here, anything else goes on to the gRPC services. So five nodes on one
//! host need no metrics port each, and a scrape reaches a node wherever
//! its clients do (over TLS too, when the port serves TLS).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::{self, Either, Ready};
use http_body_util::Full;
use tonic::body::Body;
use tower_service::Service;

use crate::metrics::Metrics;
use crate::storage::Store;

/// What a scrape reads.
#[derive(Clone)]
pub struct Scrape {
    metrics: Arc<Metrics>,
    store: Store,
}

impl Scrape {
    /// Answers scrapes from `metrics` (with `store`'s gauges refreshed).
    pub fn new(metrics: Arc<Metrics>, store: Store) -> Scrape {
        Scrape { metrics, store }
    }

    /// The answer to `GET path`, if the path is one of ours.
    fn answer(&self, path: &str) -> Option<http::Response<Body>> {
        let (content_type, text) = match path {
            "/metrics" => {
                self.metrics.observe(&self.store);
                (
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render(),
                )
            }
            "/healthz" => ("text/plain; charset=utf-8", "ok".to_string()),
            _ => return None,
        };
        let mut resp = http::Response::new(Body::new(Full::new(Bytes::from(text))));
        if let Ok(v) = http::HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        Some(resp)
    }
}

/// The layer that puts [`Scrape`] in front of the gRPC router.
#[derive(Clone)]
pub struct ScrapeLayer(pub Option<Scrape>);

impl<S> tower_layer::Layer<S> for ScrapeLayer {
    type Service = Scraped<S>;

    fn layer(&self, inner: S) -> Scraped<S> {
        Scraped {
            inner,
            scrape: self.0.clone(),
        }
    }
}

/// The gRPC router, with scrapes answered first.
#[derive(Clone)]
pub struct Scraped<S> {
    inner: S,
    scrape: Option<Scrape>,
}

impl<S, B> Service<http::Request<B>> for Scraped<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let is_get = req.method() == http::Method::GET;
        if let Some(resp) = self
            .scrape
            .as_ref()
            .filter(|_| is_get)
            .and_then(|s| s.answer(req.uri().path()))
        {
            return Either::Right(future::ready(Ok(resp)));
        }
        Either::Left(self.inner.call(req))
    }
}
