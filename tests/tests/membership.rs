//! Join, decommission and removenode on real node processes.

use std::time::Duration;

use tinykv_client::Consistency;
use tinykv_tests::{wait_until, Cluster, ClusterOptions};

const KEYS: usize = 300;

fn with_secret(o: ClusterOptions) -> ClusterOptions {
    ClusterOptions {
        secret: Some("membership-test-secret-0123456789".into()),
        ..o
    }
}

async fn load(c: &Cluster) {
    let client = c.client();
    for i in 0..KEYS {
        client
            .put(format!("m-{i}"), format!("v{i}"), Consistency::All)
            .await
            .expect("load");
    }
}

/// Every owner on `via`'s ring holds every key in its own store, each
/// node of `exact` holds exactly the keys it owns (no more, no fewer), and
/// every key reads back at ALL. The local copies are checked before any
/// read: a read at ALL repairs a missing copy in the background, which
/// would hide a gap the streaming left.
async fn check_every_key(c: &Cluster, via: usize, exact: &[usize]) {
    let mut owned = vec![0u64; c.nodes.len()];
    for i in 0..KEYS {
        let key = format!("m-{i}");
        let owners = c.owners(via, &key).await;
        assert_eq!(owners.len(), 3, "{key}: {owners:?}");
        for o in owners {
            let node = c.index_of(&o);
            owned[node] += 1;
            assert_eq!(
                c.local(node, &key).await,
                Some(format!("v{i}")),
                "{key} missing on owner {o}"
            );
        }
    }
    for &node in exact {
        let status = c.client_for(node).status().await.expect("status");
        assert_eq!(
            status.local_keys, owned[node],
            "{} holds {} keys and owns {}",
            c.nodes[node].id, status.local_keys, owned[node]
        );
    }
    let client = c.client_for(via);
    for i in 0..KEYS {
        let key = format!("m-{i}");
        let got = client
            .get(key.clone(), Consistency::All)
            .await
            .unwrap_or_else(|e| panic!("{key} at ALL: {e}"));
        assert_eq!(
            got.map(|v| v.val),
            Some(format!("v{i}").into_bytes().into()),
            "{key}"
        );
    }
}

/// A joining node serves no reads of its ranges from its own store before
/// its streaming is done: held back (it cannot reach node1 and node2, so no
/// range that both replicate gets a majority of its sources, and join
/// streaming retries), it answers every read at ONE with the value from
/// the current replicas, although it lacks keys it will own. Once it can
/// reach everyone it finishes, and holds exactly the keys it owns.
#[tokio::test(flavor = "multi_thread")]
async fn a_joining_node_streams_its_ranges_before_serving() {
    let mut c = Cluster::start(4).await;
    load(&c).await;
    for i in 0..2 {
        c.block(i, &["node5"]);
    }
    let new = c.add_node_blocking(&["--join"], &["node1", "node2"]).await;
    wait_until(
        "node5 to fail a join streaming attempt",
        Duration::from_secs(30),
        || async { c.log(new).contains("join streaming failed") },
    )
    .await;
    let mut absent = Vec::new();
    let through_new = c.client_for(new);
    for i in 0..KEYS {
        let key = format!("m-{i}");
        if c.local(new, &key).await.is_none() {
            absent.push(key.clone());
        }
        let got = through_new
            .get(key.clone(), Consistency::One)
            .await
            .unwrap_or_else(|e| panic!("{key} at ONE through the joining node: {e}"));
        assert_eq!(
            got.map(|v| v.val),
            Some(format!("v{i}").into_bytes().into()),
            "{key} read at ONE through the joining node"
        );
    }
    let status = c.client_for(new).status().await.expect("status");
    assert_eq!(status.state, "joining", "node5 joined while cut off");

    for i in 0..5 {
        c.block(i, &[]);
    }
    for via in 0..5 {
        c.wait_state(via, "node5", "normal").await;
    }
    // The reads above were not vacuous: node5 lacked keys it now owns.
    let mut lacked = 0;
    for key in &absent {
        lacked += usize::from(c.owners(0, key).await.contains(&"node5".to_string()));
    }
    assert!(lacked > 0, "node5 held every key it owns before the check");
    check_every_key(&c, 0, &[new]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decommission_moves_every_range_before_leaving() {
    // With a cluster secret: the forwarded call must be signed by node1.
    let c = Cluster::start_with(5, with_secret(ClusterOptions::default())).await;
    load(&c).await;
    // Through another node: the request is forwarded to node3.
    let r = c
        .client_for(0)
        .decommission("node3")
        .await
        .expect("decommission");
    assert!(r.state == "leaving" || r.state == "left", "{r:?}");
    wait_until("node3 to leave", Duration::from_secs(60), || async {
        c.client_for(0)
            .decommission("node3")
            .await
            .map(|r| r.state == "left")
            .unwrap_or(false)
    })
    .await;
    for via in [0, 1, 3, 4] {
        c.wait_state(via, "node3", "left").await;
    }
    // node3 still runs, but no key lists it as an owner, and nothing was lost.
    for i in 0..KEYS {
        assert!(!c
            .owners(0, &format!("m-{i}"))
            .await
            .contains(&"node3".to_string()));
    }
    check_every_key(&c, 0, &[0, 1, 3, 4]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removenode_rereplicates_a_dead_nodes_ranges() {
    let mut o = ClusterOptions::default();
    o.args
        .extend(["--phi-threshold".to_string(), "3".to_string()]);
    // With a cluster secret: node1's repair requests to the others must be
    // signed, or re-replication is incomplete.
    let mut c = Cluster::start_with(5, with_secret(o)).await;
    load(&c).await;
    c.kill(1);
    c.wait_health(0, "node2", "down").await;
    let r = c
        .client_for(0)
        .remove_node("node2")
        .await
        .expect("removenode");
    assert!(r.message.contains("removed"), "{r:?}");
    assert!(!r.message.contains("incomplete"), "{r:?}");
    for via in [0, 2, 3, 4] {
        c.wait_state(via, "node2", "removed").await;
    }
    check_every_key(&c, 0, &[0, 2, 3, 4]).await;

    // node2 comes back with its old data: it learns it was removed, says
    // so, and records it; started again, it refuses to run with that data.
    c.restart(1).await;
    wait_until(
        "node2 to learn it was removed",
        Duration::from_secs(20),
        || {
            let log = c.log(1);
            async move { log.contains("was removed from the cluster") }
        },
    )
    .await;
    c.wait_state(1, "node2", "removed").await;
    c.kill(1);
    let mut node = std::process::Command::new(tinykv_tests::binary("tinykv-node"))
        .args([
            "--node-id",
            "node2",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&c.nodes[1].data_dir)
        .env("TINYKV_METRICS_LISTEN", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tinykv-node");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while node.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = node.kill();
            panic!("a removed node started with its old data and kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = node.wait_with_output().expect("output");
    assert!(
        !out.status.success(),
        "a removed node must not start with its old data"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was removed") && err.contains("--join"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_finds_the_cluster_through_dns_and_joins() {
    let mut c = Cluster::start(3).await;
    c.client()
        .put("dns-key", "v", Consistency::All)
        .await
        .expect("put");
    let new = c.add_node_dns(0, &["--join"]).await;
    for via in 0..4 {
        c.wait_state(via, "node4", "normal").await;
    }
    wait_until(
        "node4 to learn every member",
        Duration::from_secs(30),
        || async {
            c.client_for(new)
                .status()
                .await
                .map(|s| {
                    ["node1", "node2", "node3"].iter().all(|id| {
                        s.members
                            .iter()
                            .any(|m| m.node_id == *id && m.health == "up")
                    })
                })
                .unwrap_or(false)
        },
    )
    .await;
    let through_new = c.client_for(new);
    through_new
        .put("dns-key-2", "w", Consistency::All)
        .await
        .expect("put through the discovered node");
    let got = through_new
        .get("dns-key", Consistency::All)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.val, "v".as_bytes());
}

/// The members node `i` of `c` lists, as (id, address).
async fn members(c: &Cluster, i: usize) -> Vec<(String, String)> {
    c.client_for(i)
        .status()
        .await
        .map(|s| {
            s.members
                .into_iter()
                .map(|m| (m.node_id, m.address))
                .collect()
        })
        .unwrap_or_else(|e| panic!("status of node{}: {e}", i + 1))
}

/// A node of one cluster given a node of another as a seed (an address
/// reused, a wrong seed list) is refused by it, and neither cluster takes
/// the other's members into its table. Both clusters use the ids `node1..`,
/// as two test clusters (or two deployments of one chart) do.
#[tokio::test]
async fn a_node_of_another_cluster_is_refused_and_the_clusters_stay_apart() {
    let a = Cluster::start(2).await;
    let seed = format!("seed={}", a.addr(0));
    let b = Cluster::start_with(
        1,
        ClusterOptions {
            args: vec![
                "--heartbeat-interval".into(),
                "200ms".into(),
                "--peers".into(),
                seed,
            ],
            ..Default::default()
        },
    )
    .await;
    assert_ne!(a.name, b.name);
    let status = a.client_for(0).status().await.expect("status");
    assert_eq!(status.cluster_name, a.name);
    wait_until(
        "the second cluster's node to be refused by the first's",
        Duration::from_secs(30),
        || async { b.log(0).contains("a node of another cluster answers") },
    )
    .await;
    // Its heartbeat carried its table; a merge would have happened in the
    // refused call, so the tables are final here.
    for i in 0..2 {
        let seen = members(&a, i).await;
        assert!(
            seen.iter()
                .all(|(id, addr)| id != "seed" && *addr != b.addr(0)),
            "node{} of the first cluster took in the second's members: {seen:?}",
            i + 1
        );
    }
    let seen = members(&b, 0).await;
    assert!(
        seen.iter().all(|(id, _)| id != "node2"),
        "the second cluster took in the first's members: {seen:?}"
    );
    // The first cluster still works as one.
    a.client()
        .put("apart", "yes", Consistency::Quorum)
        .await
        .expect("put at QUORUM in the first cluster");
}

/// A node restarted with the same id and data on a new address (a pod with
/// a new IP) re-announces itself: the others learn the new address from
/// gossip although their `--peers` still name the old one, and writes at
/// ALL reach it there.
#[tokio::test]
async fn a_node_restarted_on_a_new_address_is_reached_there() {
    let mut c = Cluster::start(3).await;
    let old = c.nodes[2].port;
    // The others' row for node3 and its own start at the same version, so
    // the tie is broken by address: a new port that sorts below the old one
    // loses it, and only the node's re-announcement can correct the table.
    c.restart_on_new_port(2, |p| p.to_string() < old.to_string())
        .await;
    let new = c.addr(2);
    for via in [0, 1, 2] {
        wait_until(
            &format!("node{} to list node3 at {new}", via + 1),
            Duration::from_secs(30),
            || async {
                members(&c, via)
                    .await
                    .contains(&("node3".to_string(), new.clone()))
            },
        )
        .await;
    }
    let client = c.client_for(0);
    for i in 0..20 {
        client
            .put(format!("moved-{i}"), "v", Consistency::All)
            .await
            .unwrap_or_else(|e| panic!("put at ALL after node3 moved: {e}"));
    }
}
