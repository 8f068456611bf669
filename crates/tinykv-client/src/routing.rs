//! Token-aware routing: send each operation to a node that holds a replica
//! of its key, so the coordinator serves one replica locally instead of
//! over the network.
//!
//! Any node can coordinate any request, so routing is only an optimisation:
//! a stale or missing map, or a replica the client has no endpoint for,
//! just means another node coordinates.

use std::collections::HashMap;

use tinykv_proto::tinykv::TopologyResponse;
use xxhash_rust::xxh3::xxh3_64;

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
