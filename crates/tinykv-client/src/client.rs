//! The client: one lazily connected HTTP/2 channel per endpoint, requests
//! spread round-robin, a deadline on every call, and concurrent calls
//! coalesced into batch RPCs (see [`crate::batch`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tinykv_auth::Signed;
use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::admin_client::AdminClient;
use tinykv_proto::tinykv::tiny_kv_client::TinyKvClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use tinykv_proto::tinykv::operation::Op;
use tinykv_proto::tinykv::operation_result::Result as OpResult;
use tokio::time::Instant;

use crate::batch::{self, Batcher};
use crate::options::{ClientOptions, DOWN_FOR, TOPOLOGY_REFRESH};
use crate::routing::{fetch_routing, Routing, RoutingPolicy};
use crate::{ClientError, Consistency};

mod admin;
mod backup;
mod cleanup;
mod ttl;
pub use ttl::{Expiry, KeyTtl};

/// A connection to one node: a channel that sends the client's token (and,
/// for admin calls, the cluster-secret proof).
pub(crate) type Conn = Signed<Channel>;

/// The error for a server answering an operation with another kind's result.
fn mismatched(op: &str, got: &OpResult) -> ClientError {
    let kind = match got {
        OpResult::Put(_) => "put",
        OpResult::Get(_) => "get",
        OpResult::Delete(_) => "delete",
        OpResult::Error(_) => "error",
    };
    ClientError::Rpc {
        code: tonic::Code::Internal,
        message: format!("server answered a {op} with a {kind} result"),
    }
}

/// A value read from the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The bytes stored.
    pub val: Bytes,
    /// The version's timestamp, microseconds since the epoch.
    pub timestamp: i64,
    /// The node that coordinated the winning write.
    pub writer: String,
    /// When the value expires, microseconds since the epoch (HLC time);
    /// `None`: never.
    pub expires_at_us: Option<u64>,
    /// Its time left as the coordinating node saw it when answering.
    pub ttl_remaining: Option<Duration>,
}

/// What a successful write returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The version's timestamp, microseconds since the epoch.
    pub timestamp: i64,
    /// Replica acknowledgements received before the answer.
    pub acks: u32,
}

/// A TinyKV client over one or more node endpoints. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<NodeEndpoint>,
    next: AtomicUsize,
    /// The endpoint a sticky client uses.
    sticky: AtomicUsize,
    opts: ClientOptions,
    /// The ring map for token-aware routing (empty until fetched).
    routing: RwLock<Arc<Routing>>,
    /// When the map was last fetched (or tried), and whether a fetch runs.
    refreshed: Mutex<Option<Instant>>,
    refreshing: AtomicBool,
}

/// A random index below `n` (differs between clients, so sticky clients
/// spread over the nodes).
fn random_index(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    (h.finish() % n.max(1) as u64) as usize
}

/// Replaces the ring map if a fresh one can be fetched; keeps the old one
/// (or none, so round-robin) otherwise.
async fn refresh_routing(inner: &Inner) {
    let channels: Vec<Conn> = inner.endpoints.iter().map(|e| e.channel.clone()).collect();
    if let Ok(routing) = fetch_routing(&channels, inner.opts.timeout, &inner.opts.sender_id).await {
        if let Ok(mut r) = inner.routing.write() {
            *r = Arc::new(routing);
        }
    }
}

/// One node the client talks to.
struct NodeEndpoint {
    addr: String,
    channel: Conn,
    /// Reads and writes share one queue: measured, one batch call for both
    /// beats a queue each (fewer, larger calls; docs/benchmarks.md).
    batcher: Batcher,
}

/// Turns `host:port` (or a full `http://` URI) into a lazily connected channel.
fn channel(addr: &str, opts: &ClientOptions) -> Result<Conn, ClientError> {
    let invalid = |reason: String| ClientError::InvalidAddress {
        addr: addr.to_string(),
        reason,
    };
    let endpoint =
        tinykv_auth::tls::endpoint(addr, opts.tls.as_ref()).map_err(|e| invalid(e.to_string()))?;
    if endpoint.uri().port_u16().is_none() {
        return Err(invalid("missing port (expected host:port)".into()));
    }
    let channel = endpoint
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy();
    Signed::new(channel, None)
        .with_token(opts.token.as_deref())
        .map_err(|e| ClientError::InvalidArgument(e.to_string()))
}

impl Client {
    /// A client for one node.
    pub fn connect(addr: &str) -> Result<Client, ClientError> {
        Client::connect_many([addr], ClientOptions::default())
    }

    /// A client spreading requests over several nodes.
    pub fn connect_many<'a>(
        addrs: impl IntoIterator<Item = &'a str>,
        opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        let endpoints = addrs
            .into_iter()
            .map(|a| {
                channel(a, &opts).map(|c| NodeEndpoint {
                    addr: a.to_string(),
                    batcher: Batcher::new(c.clone()),
                    channel: c,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let endpoints_len = endpoints.len();
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                next: AtomicUsize::new(0),
                sticky: AtomicUsize::new(random_index(endpoints_len)),
                opts,
                routing: RwLock::new(Arc::new(Routing::default())),
                refreshed: Mutex::new(None),
                refreshing: AtomicBool::new(false),
            }),
        })
    }

    fn channels(&self) -> Vec<Conn> {
        self.inner
            .endpoints
            .iter()
            .map(|e| e.channel.clone())
            .collect()
    }

    /// The endpoints this client uses.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.inner.endpoints.iter().map(|e| e.addr.as_str())
    }

    /// The endpoint for an operation on `key`, per the routing policy;
    /// endpoints that just could not be reached are passed over.
    fn pick(&self, key: &[u8]) -> &NodeEndpoint {
        let eps = &self.inner.endpoints;
        if self.inner.opts.routing == RoutingPolicy::Sticky {
            let start = self.inner.sticky.load(Ordering::Relaxed);
            for k in 0..eps.len() {
                let i = (start + k) % eps.len();
                if !eps[i].batcher.recently_unreachable(DOWN_FOR) {
                    if k > 0 {
                        self.inner.sticky.store(i, Ordering::Relaxed);
                    }
                    return &eps[i];
                }
            }
            return &eps[start % eps.len()];
        }
        if self.inner.opts.routing == RoutingPolicy::TokenAware && eps.len() > 1 {
            self.refresh_if_stale();
            let routing = match self.inner.routing.read() {
                Ok(r) => Arc::clone(&r),
                Err(_) => Arc::new(Routing::default()),
            };
            if let Some(&i) = routing
                .replicas(key)
                .iter()
                .find(|&&i| !eps[i].batcher.recently_unreachable(DOWN_FOR))
            {
                return &eps[i];
            }
        }
        for _ in 0..eps.len() {
            let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % eps.len();
            if !eps[i].batcher.recently_unreachable(DOWN_FOR) {
                return &eps[i];
            }
        }
        &eps[self.inner.next.fetch_add(1, Ordering::Relaxed) % eps.len()]
    }

    /// Starts fetching the ring map in the background when it is older
    /// than [`TOPOLOGY_REFRESH`] (or was never fetched).
    fn refresh_if_stale(&self) {
        let stale = match self.inner.refreshed.lock() {
            Ok(at) => at.is_none_or(|t| t.elapsed() >= TOPOLOGY_REFRESH),
            Err(_) => false,
        };
        if stale && !self.inner.refreshing.swap(true, Ordering::AcqRel) {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                refresh_routing(&inner).await;
                if let Ok(mut at) = inner.refreshed.lock() {
                    *at = Some(Instant::now());
                }
                inner.refreshing.store(false, Ordering::Release);
            });
        }
    }

    /// Fetches the ring map now and waits for it; token-aware routing
    /// otherwise fetches it in the background on first use.
    pub async fn refresh_topology(&self) -> Result<(), ClientError> {
        let routing = fetch_routing(
            &self.channels(),
            self.inner.opts.timeout,
            &self.inner.opts.sender_id,
        )
        .await?;
        if let Ok(mut r) = self.inner.routing.write() {
            *r = Arc::new(routing);
        }
        if let Ok(mut at) = self.inner.refreshed.lock() {
            *at = Some(Instant::now());
        }
        Ok(())
    }

    /// The first endpoint: calls about one node go there (cluster-wide
    /// admin calls go on to the next when it cannot be reached).
    fn first(&self) -> Conn {
        self.inner.endpoints[0].channel.clone()
    }

    fn kv(&self, ch: Conn) -> TinyKvClient<Conn> {
        batch::kv(ch)
    }

    /// The admin service on `channel`, with the cluster-secret proof.
    fn admin_on(&self, channel: Conn) -> AdminClient<Conn> {
        let channel = channel.signed_by(self.inner.opts.admin_signer.clone());
        AdminClient::new(channel).max_decoding_message_size(batch::MAX_MESSAGE)
    }

    fn admin(&self) -> AdminClient<Conn> {
        self.admin_on(self.first())
    }

    /// Runs a put, get or delete on the next endpoint: in a batch when
    /// coalescing, else as its own RPC.
    async fn call(&self, op: Op) -> Result<OpResult, ClientError> {
        let deadline = Instant::now() + self.inner.opts.timeout;
        let key = match &op {
            Op::Put(r) => &r.key,
            Op::Get(r) => &r.key,
            Op::Delete(r) => &r.key,
        };
        let endpoint = self.pick(key);
        if self.inner.opts.coalesce {
            if endpoint.batcher.recently_unreachable(DOWN_FOR) {
                // `pick` passes over unreachable endpoints, so every one of
                // them failed just now: fail fast instead of reconnecting as
                // fast as calls come (as a driver with no live host does).
                return Err(ClientError::Unavailable(format!(
                    "no node reachable: all {} endpoints failed within the last {}s; \
                     trying again after that",
                    self.inner.endpoints.len(),
                    DOWN_FOR.as_secs()
                )));
            }
            endpoint.batcher.call(op, deadline).await
        } else {
            batch::single(endpoint.channel.clone(), op, deadline).await
        }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.inner.opts.timeout);
        req
    }

    fn timeout_ms(&self) -> u32 {
        u32::try_from(self.inner.opts.timeout.as_millis()).unwrap_or(u32::MAX)
    }

    /// Writes `val` under `key`, waiting for `consistency` acknowledgements.
    pub async fn put(
        &self,
        key: impl Into<Bytes>,
        val: impl Into<Bytes>,
        consistency: Consistency,
    ) -> Result<PutOutcome, ClientError> {
        self.put_expiring(key, val, Expiry::Never, consistency)
            .await
    }

    /// Writes `val` under `key` with an expiry (see [`Expiry`]), waiting
    /// for `consistency` acknowledgements.
    pub async fn put_expiring(
        &self,
        key: impl Into<Bytes>,
        val: impl Into<Bytes>,
        expiry: Expiry,
        consistency: Consistency,
    ) -> Result<PutOutcome, ClientError> {
        let (level, count) = consistency.to_wire();
        let (ttl_ms, expires_at_us) = expiry.to_wire();
        let req = pb::PutRequest {
            key: key.into(),
            val: val.into(),
            sender_id: self.inner.opts.sender_id.clone(),
            replication_factor: count,
            timestamp: 0,
            consistency: level as i32,
            timeout_ms: self.timeout_ms(),
            strict_quorum: false,
            ttl_ms,
            expires_at_us,
        };
        let resp = match self.call(Op::Put(req)).await? {
            OpResult::Put(resp) => resp,
            other => return Err(mismatched("put", &other)),
        };
        if !resp.operation_success {
            return Err(ClientError::Rpc {
                code: tonic::Code::Unknown,
                message: "server reported the write as failed".into(),
            });
        }
        Ok(PutOutcome {
            timestamp: resp.timestamp,
            acks: resp.acks,
        })
    }

    /// Reads `key`; `Ok(None)` when it is missing, deleted or expired.
    pub async fn get(
        &self,
        key: impl Into<Bytes>,
        consistency: Consistency,
    ) -> Result<Option<Value>, ClientError> {
        let (level, count) = consistency.to_wire();
        let req = pb::GetRequest {
            key: key.into(),
            sender_id: self.inner.opts.sender_id.clone(),
            quorum_size: count,
            consistency: level as i32,
            timeout_ms: self.timeout_ms(),
        };
        let resp = match self.call(Op::Get(req)).await? {
            OpResult::Get(resp) => resp,
            other => return Err(mismatched("get", &other)),
        };
        if resp.status == pb::ReadStatus::Found as i32 || resp.operation_success {
            Ok(Some(Value {
                val: resp.val,
                timestamp: resp.timestamp,
                writer: resp.writer,
                expires_at_us: (resp.expires_at_us != 0).then_some(resp.expires_at_us),
                ttl_remaining: (resp.expires_at_us != 0)
                    .then(|| Duration::from_micros(resp.ttl_remaining_us)),
            }))
        } else {
            Ok(None)
        }
    }

    /// Deletes `key` (writes a tombstone), waiting for `consistency` acks.
    pub async fn delete(
        &self,
        key: impl Into<Bytes>,
        consistency: Consistency,
    ) -> Result<PutOutcome, ClientError> {
        let (level, count) = consistency.to_wire();
        let req = pb::DeleteRequest {
            key: key.into(),
            sender_id: self.inner.opts.sender_id.clone(),
            w: count,
            consistency: level as i32,
            timeout_ms: self.timeout_ms(),
            strict_quorum: false,
        };
        let resp = match self.call(Op::Delete(req)).await? {
            OpResult::Delete(resp) => resp,
            other => return Err(mismatched("delete", &other)),
        };
        Ok(PutOutcome {
            timestamp: resp.timestamp,
            acks: resp.acks,
        })
    }

    /// The legacy liveness check.
    pub async fn ping(&self) -> Result<bool, ClientError> {
        let req = pb::PingRequest {
            sender_id: self.inner.opts.sender_id.clone(),
        };
        Ok(self
            .kv(self.first())
            .ping(self.request(req))
            .await?
            .into_inner()
            .is_ready)
    }

    /// True when the first endpoint's gRPC health service reports SERVING.
    pub async fn health(&self) -> Result<bool, ClientError> {
        let req = HealthCheckRequest {
            service: String::new(),
        };
        let resp = HealthClient::new(self.first())
            .check(self.request(req))
            .await?
            .into_inner();
        Ok(resp.status == ServingStatus::Serving as i32)
    }
}
