//! A client of several nodes keeps working when one of them dies, in every
//! routing mode, and its cluster-wide admin calls work with its first
//! endpoint down.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tinykv_client::{Client, ClientError, ClientOptions, Consistency, RoutingPolicy};
use tinykv_tests::{Cluster, ClusterOptions};

/// How long a client passes over an endpoint that could not be reached
/// (the client's documented cool-down: "failed within the last 2s").
const COOL_DOWN: Duration = Duration::from_secs(2);

/// Runs `op` once and, if it fails as unavailable (its endpoint was just
/// found dead), once more at once: the retry must go to a live node.
/// Returns the result and whether the first try failed.
async fn with_one_retry<T, F, Fut>(what: &str, op: F) -> (T, bool)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    match op().await {
        Ok(v) => (v, false),
        Err(ClientError::Unavailable(_)) => match op().await {
            Ok(v) => (v, true),
            Err(e) => panic!("{what}: the retry after a dead endpoint failed too: {e}"),
        },
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Kills a node under a client routing by `policy` and checks that every
/// write and read goes through, the only failures being the calls that
/// find the dead node (at most one per cool-down), each followed by a
/// retry that succeeds.
async fn survives_a_dead_node(policy: RoutingPolicy) {
    let mut c = Cluster::start(3).await;
    let client = c.client_with(|o: &mut ClientOptions| o.routing = policy);
    if policy == RoutingPolicy::TokenAware {
        client.refresh_topology().await.expect("ring map");
    }
    client
        .put("first", "x", Consistency::Quorum)
        .await
        .expect("put");
    let first = client.get("first", Consistency::Quorum).await.expect("get");
    // A sticky client's node is the one that coordinated its write; the
    // other modes use every node, so any will do.
    let victim = match policy {
        RoutingPolicy::Sticky => first.expect("value").writer,
        _ => "node1".to_string(),
    };
    c.kill(c.index_of(&victim));

    let started = Instant::now();
    let (mut failures, mut writers) = (0u32, BTreeSet::new());
    for i in 0..90 {
        let key = format!("f{i}");
        let (out, failed) = with_one_retry(&format!("put {key}"), || {
            client.put(key.clone(), key.clone(), Consistency::Quorum)
        })
        .await;
        failures += u32::from(failed);
        let (got, failed) = with_one_retry(&format!("get {key}"), || {
            client.get(key.clone(), Consistency::Quorum)
        })
        .await;
        failures += u32::from(failed);
        let got = got.unwrap_or_else(|| panic!("{key} not found"));
        assert_eq!(
            (&got.val[..], got.timestamp),
            (key.as_bytes(), out.timestamp)
        );
        writers.insert(got.writer);
    }
    assert!(
        !writers.contains(&victim),
        "{victim} coordinated a write after its death"
    );
    if policy == RoutingPolicy::Sticky {
        assert_eq!(
            writers.len(),
            1,
            "a sticky client stays on its new node: {writers:?}"
        );
    }
    // Without passing over the dead endpoint, a third of the calls would
    // fail (round-robin) or all (sticky, token-aware on its keys).
    let windows = (started.elapsed().as_secs_f64() / COOL_DOWN.as_secs_f64()).floor() as u32;
    assert!(
        failures <= 1 + windows,
        "{policy:?}: {failures} calls failed in {} cool-downs",
        windows + 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sticky_client_fails_over() {
    survives_a_dead_node(RoutingPolicy::Sticky).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_round_robin_client_fails_over() {
    survives_a_dead_node(RoutingPolicy::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_aware_client_fails_over() {
    survives_a_dead_node(RoutingPolicy::TokenAware).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_admin_calls_work_with_the_first_endpoint_down() {
    let mut c = Cluster::start_with(
        3,
        ClusterOptions {
            secret: Some("test-cluster-secret-0123456789abcdef".into()),
            ..ClusterOptions::default()
        },
    )
    .await;
    // Endpoint 0 is node1.
    let client: Client = c.client();
    assert_eq!(client.endpoints().next(), Some(c.addr(0).as_str()));
    c.kill(0);
    c.wait_health(1, "node1", "down").await;

    let owners = client.key_owners("k").await.expect("owners");
    assert_eq!(owners.node_ids.len(), 3, "{owners:?}");
    let status = client.status().await.expect("status");
    assert_eq!(status.members.len(), 3, "{status:?}");
    assert_ne!(status.node_id, "node1");
    // A call about one node stays with that node: no other node's copy.
    match client.local_get("k").await {
        Err(ClientError::Unavailable(_)) => {}
        other => panic!("local-get from a dead endpoint 0: {other:?}"),
    }
    client.remove_node("node1").await.expect("removenode");
    let status = client.status().await.expect("status after removenode");
    let node1 = status.members.iter().find(|m| m.node_id == "node1");
    assert!(
        node1.is_none_or(|m| m.state != "normal"),
        "node1 still a normal member: {status:?}"
    );
}
