//! Token-aware routing: send each operation to a node that holds a replica
//! of its key, so the coordinator serves one replica locally instead of
//! over the network.
//!
//! Any node can coordinate any request, so routing is only an optimisation:
//! a stale or missing map, or a replica the client has no endpoint for,
//! just means another node coordinates.

use std::collections::HashMap;
use std::time::Duration;

use crate::client::Conn;
use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::TopologyResponse;
use xxhash_rust::xxh3::xxh3_64;

use crate::batch;
use crate::ClientError;

/// The key hash this client implements (the node's `TopologyResponse.key_hash`).
const KEY_HASH: &str = "xxh3_64";

/// Which of the client's endpoints replicate each token range.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    /// Inclusive upper token of each range, ascending.
    ends: Vec<u64>,
    /// The client endpoints (indexes) replicating each range, primary first.
    endpoints: Vec<Vec<usize>>,
}

impl Routing {
    /// The routing for `topology`, given the endpoint index of each node id
    /// the client knows.
    pub(crate) fn build(
        topology: &TopologyResponse,
        endpoint_of: &HashMap<String, usize>,
    ) -> Result<Routing, String> {
        if topology.key_hash != KEY_HASH {
            return Err(format!(
                "the cluster hashes keys with {:?}; this client knows only {KEY_HASH}",
                topology.key_hash
            ));
        }
        let mut ends = Vec::with_capacity(topology.ranges.len());
        let mut endpoints = Vec::with_capacity(topology.ranges.len());
        for range in &topology.ranges {
            if ends.last().is_some_and(|&last| last >= range.end) {
                return Err("topology ranges are not in ascending order".into());
            }
            let mut eps = Vec::with_capacity(range.replicas.len());
            for &r in &range.replicas {
                let id = topology.node_ids.get(r as usize).ok_or_else(|| {
                    format!(
                        "topology names replica {r} of {} nodes",
                        topology.node_ids.len()
                    )
                })?;
                if let Some(&e) = endpoint_of.get(id) {
                    eps.push(e);
                }
            }
            ends.push(range.end);
            endpoints.push(eps);
        }
        Ok(Routing { ends, endpoints })
    }

    /// The client endpoints replicating `key`, primary first (empty when the
    /// client has none of them, or no map).
    pub(crate) fn replicas(&self, key: &[u8]) -> &[usize] {
        self.replicas_of_token(xxh3_64(key))
    }

    fn replicas_of_token(&self, token: u64) -> &[usize] {
        if self.ends.is_empty() {
            return &[];
        }
        let i = self.ends.partition_point(|&end| end < token);
        let i = if i == self.ends.len() { 0 } else { i };
        &self.endpoints[i]
    }
}

/// How a client chooses the node that coordinates an operation. Any node
/// can coordinate any operation, so this only moves cost around.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RoutingPolicy {
    /// The default, like etcd's client: one endpoint for everything (a
    /// random one per client, the next one when it cannot be reached). All
    /// of the client's concurrent calls share one batch queue, so the node
    /// coordinates them together and its replica traffic to each peer goes
    /// out as one large exchange: ~5x fewer messages than spreading the same
    /// calls over five nodes, which made it the fastest policy by far
    /// (docs/benchmarks.md). Many clients spread over the nodes.
    #[default]
    Sticky,
    /// A node that replicates the key (its primary), per the ring map
    /// fetched from the cluster and refreshed every [`TOPOLOGY_REFRESH`]:
    /// the coordinator serves one replica locally and coordination work
    /// spreads like the data, but a client's calls split into one small
    /// batch per node. Round-robin until the map is known, and for keys
    /// whose replicas the client has no endpoint for.
    TokenAware,
    /// The endpoints in turn.
    RoundRobin,
}

impl std::fmt::Display for RoutingPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoutingPolicy::TokenAware => "token-aware",
            RoutingPolicy::RoundRobin => "round-robin",
            RoutingPolicy::Sticky => "sticky",
        })
    }
}

impl std::str::FromStr for RoutingPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "token-aware" => Ok(RoutingPolicy::TokenAware),
            "round-robin" => Ok(RoutingPolicy::RoundRobin),
            "sticky" => Ok(RoutingPolicy::Sticky),
            other => Err(format!(
                "unknown routing {other:?}: want token-aware, round-robin or sticky"
            )),
        }
    }
}

/// Fetches the ring map: each endpoint's node id (by `Ping`), then the
/// ring from the first endpoint that serves `Topology`.
pub(crate) async fn fetch_routing(
    channels: &[Conn],
    timeout: Duration,
    sender_id: &str,
) -> Result<Routing, ClientError> {
    let timeout = timeout.min(Duration::from_secs(2));
    fn request<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        r
    }
    let mut ids = HashMap::new();
    for (i, ch) in channels.iter().enumerate() {
        let ping = pb::PingRequest {
            sender_id: sender_id.to_string(),
        };
        if let Ok(resp) = batch::kv(ch.clone()).ping(request(ping, timeout)).await {
            let id = resp.into_inner().node_id;
            if !id.is_empty() {
                ids.entry(id).or_insert(i);
            }
        }
    }
    let mut last = ClientError::NoEndpoints;
    for ch in channels {
        match batch::kv(ch.clone())
            .topology(request(pb::TopologyRequest {}, timeout))
            .await
        {
            Ok(resp) => {
                return Routing::build(&resp.into_inner(), &ids).map_err(|m| ClientError::Rpc {
                    code: tonic::Code::FailedPrecondition,
                    message: m,
                })
            }
            Err(s) => last = s.into(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinykv_proto::tinykv::RangeReplicas;

    fn topology(ranges: &[(u64, &[u32])]) -> TopologyResponse {
        TopologyResponse {
            node_id: "a".into(),
            node_ids: vec!["a".into(), "b".into(), "c".into()],
            ranges: ranges
                .iter()
                .map(|(end, r)| RangeReplicas {
                    end: *end,
                    replicas: r.to_vec(),
                })
                .collect(),
            key_hash: KEY_HASH.into(),
        }
    }

    fn endpoints() -> HashMap<String, usize> {
        // The client knows a (endpoint 0) and c (endpoint 1), not b.
        HashMap::from([("a".to_string(), 0), ("c".to_string(), 1)])
    }

    #[test]
    fn token_falls_in_the_range_that_ends_at_or_after_it() {
        let t = topology(&[(100, &[0, 1]), (200, &[1, 2]), (300, &[2, 0])]);
        let r = Routing::build(&t, &endpoints()).expect("valid");
        assert_eq!(r.replicas_of_token(0), &[0]);
        assert_eq!(r.replicas_of_token(100), &[0]);
        assert_eq!(r.replicas_of_token(101), &[1]);
        assert_eq!(r.replicas_of_token(200), &[1]);
        assert_eq!(r.replicas_of_token(250), &[1, 0]);
        // Past the last end the ring wraps to the first range.
        assert_eq!(r.replicas_of_token(301), &[0]);
        assert_eq!(r.replicas_of_token(u64::MAX), &[0]);
    }

    #[test]
    fn keys_are_hashed_like_the_nodes_do() {
        let key = b"some key";
        let token = xxh3_64(key);
        let t = topology(&[(token, &[2, 0]), (u64::MAX, &[0])]);
        let r = Routing::build(&t, &endpoints()).expect("valid");
        assert_eq!(r.replicas(key), &[1, 0]);
    }

    #[test]
    fn bad_topologies_are_refused() {
        let mut t = topology(&[(100, &[0])]);
        t.key_hash = "md5".into();
        assert!(Routing::build(&t, &endpoints())
            .expect_err("unknown hash")
            .contains("md5"));
        let t = topology(&[(100, &[7])]);
        assert!(Routing::build(&t, &endpoints()).is_err());
        let t = topology(&[(200, &[0]), (100, &[1])]);
        assert!(Routing::build(&t, &endpoints()).is_err());
        let empty = Routing::build(&topology(&[]), &endpoints()).expect("empty is valid");
        assert!(empty.replicas(b"k").is_empty());
    }
}
