//! The client: one lazily connected HTTP/2 channel per endpoint, requests
//! spread round-robin, a deadline on every call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::admin_client::AdminClient;
use tinykv_proto::tinykv::tiny_kv_client::TinyKvClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::{ClientError, Consistency};

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline for each call, also sent to the server as the request's
    /// own deadline for reaching its replicas.
    pub timeout: Duration,
    /// Deadline for establishing a connection.
    pub connect_timeout: Duration,
    /// Informational sender id put in requests.
    pub sender_id: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            sender_id: "tinykv-client".into(),
        }
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
    endpoints: Vec<(String, Channel)>,
    next: AtomicUsize,
    opts: ClientOptions,
}

/// Turns `host:port` (or a full `http://` URI) into a lazily connected channel.
fn channel(addr: &str, opts: &ClientOptions) -> Result<Channel, ClientError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let invalid = |reason: String| ClientError::InvalidAddress {
        addr: addr.to_string(),
        reason,
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| invalid(e.to_string()))?;
    if endpoint.uri().port_u16().is_none() {
        return Err(invalid("missing port (expected host:port)".into()));
    }
    Ok(endpoint
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy())
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
            .map(|a| channel(a, &opts).map(|c| (a.to_string(), c)))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                next: AtomicUsize::new(0),
                opts,
            }),
        })
    }

    /// The endpoints this client uses.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.inner.endpoints.iter().map(|(a, _)| a.as_str())
    }

    fn pick(&self) -> Channel {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.endpoints.len();
        self.inner.endpoints[i].1.clone()
    }

    /// The first endpoint: admin calls go there.
    fn first(&self) -> Channel {
        self.inner.endpoints[0].1.clone()
    }

    /// Largest message accepted: values may be up to the server's limit.
    const MAX_MESSAGE: usize = 64 * 1024 * 1024;

    fn kv(&self, ch: Channel) -> TinyKvClient<Channel> {
        TinyKvClient::new(ch)
            .max_decoding_message_size(Self::MAX_MESSAGE)
            .max_encoding_message_size(Self::MAX_MESSAGE)
    }

    fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.first()).max_decoding_message_size(Self::MAX_MESSAGE)
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
        let (level, count) = consistency.to_wire();
        let req = pb::PutRequest {
            key: key.into(),
            val: val.into(),
            sender_id: self.inner.opts.sender_id.clone(),
            replication_factor: count,
            timestamp: 0,
            consistency: level as i32,
            timeout_ms: self.timeout_ms(),
            strict_quorum: false,
        };
        let resp = self
            .kv(self.pick())
            .put(self.request(req))
            .await?
            .into_inner();
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

    /// Reads `key`; `Ok(None)` when it is missing or deleted.
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
        let resp = self
            .kv(self.pick())
            .get(self.request(req))
            .await?
            .into_inner();
        if resp.status == pb::ReadStatus::Found as i32 || resp.operation_success {
            Ok(Some(Value {
                val: resp.val,
                timestamp: resp.timestamp,
                writer: resp.writer,
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
        let resp = self
            .kv(self.pick())
            .delete(self.request(req))
            .await?
            .into_inner();
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

    /// The first endpoint's view of the cluster.
    pub async fn status(&self) -> Result<pb::StatusResponse, ClientError> {
        Ok(self
            .kv(self.first())
            .status(self.request(pb::StatusRequest {}))
            .await?
            .into_inner())
    }

    /// The first endpoint's own replica of `key`, no quorum involved.
    pub async fn local_get(
        &self,
        key: impl Into<Bytes>,
    ) -> Result<pb::LocalGetResponse, ClientError> {
        let req = pb::LocalGetRequest { key: key.into() };
        Ok(self
            .admin()
            .local_get(self.request(req))
            .await?
            .into_inner())
    }

    /// The replicas of `key`, primary first, per the first endpoint's ring.
    pub async fn key_owners(
        &self,
        key: impl Into<Bytes>,
    ) -> Result<pb::KeyOwnersResponse, ClientError> {
        let req = pb::KeyOwnersRequest { key: key.into() };
        Ok(self
            .admin()
            .key_owners(self.request(req))
            .await?
            .into_inner())
    }

    /// Runs one anti-entropy round on the first endpoint.
    pub async fn repair(&self) -> Result<pb::RepairResponse, ClientError> {
        Ok(self
            .admin()
            .repair(self.request(pb::RepairRequest {}))
            .await?
            .into_inner())
    }

    /// Starts (or reports on) decommissioning `node_id`.
    pub async fn decommission(
        &self,
        node_id: &str,
    ) -> Result<pb::DecommissionResponse, ClientError> {
        let req = pb::DecommissionRequest {
            node_id: node_id.to_string(),
        };
        Ok(self
            .admin()
            .decommission(self.request(req))
            .await?
            .into_inner())
    }

    /// Removes a dead node for good and re-replicates its ranges.
    pub async fn remove_node(&self, node_id: &str) -> Result<pb::RemoveNodeResponse, ClientError> {
        let req = pb::RemoveNodeRequest {
            node_id: node_id.to_string(),
        };
        Ok(self
            .admin()
            .remove_node(self.request(req))
            .await?
            .into_inner())
    }
}
