//! The member table a node saves in its data directory: a node restarted
//! with no static peer list (only itself in `--peers`, the others to be
//! found through `--peers-dns`) knows its peers before any heartbeat, and
//! one restarted without a usable table keeps its hints for the members
//! it does not know until gossip brings them back.

use std::time::Duration;

use tinykv_client::Consistency;
use tinykv_tests::{wait_until, Cluster, LocalCopy};

/// Restarts node `i` knowing only itself in `--peers`, and resolving
/// `localhost:<port of node seed>` to find the others (`--peers-dns`).
async fn restart_with_dns_only(c: &mut Cluster, i: usize, seed: usize) {
    c.kill(i);
    c.nodes[i].peers = format!("{}=127.0.0.1:{}", c.nodes[i].id, c.nodes[i].port);
    c.nodes[i].extra = vec![
        "--peers-dns".into(),
        format!("localhost:{}", c.nodes[seed].port),
    ];
    c.restart(i).await;
}

/// The member ids node `i` reports, sorted.
async fn members_seen_by(c: &Cluster, i: usize) -> Vec<String> {
    let status = c.client_for(i).status().await.expect("status");
    let mut ids: Vec<String> = status.members.into_iter().map(|m| m.node_id).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_node_knows_its_peers_from_its_saved_table_before_any_heartbeat() {
    let mut c = Cluster::start(3).await;
    let file = c.nodes[2].data_dir.join("members.json");
    wait_until(
        "node3 to save a table of every member",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(&file)
                .is_ok_and(|t| ["node1", "node2", "node3"].iter().all(|n| t.contains(n)))
        },
    )
    .await;
    // The others are gone, so no heartbeat can tell node3 about them.
    c.kill(0);
    c.kill(1);
    restart_with_dns_only(&mut c, 2, 0).await;

    assert_eq!(
        members_seen_by(&c, 2).await,
        ["node1", "node2", "node3"],
        "the table saved before the restart:\n{}",
        c.log(2)
    );
    let status = c.client_for(2).status().await.expect("status");
    for m in status.members.iter().filter(|m| m.node_id != "node3") {
        assert_ne!(m.health, "up", "{} cannot have answered", m.node_id);
    }
    assert!(c
        .log(2)
        .contains("member table loaded from the data directory"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_restarted_without_its_table_keeps_hints_for_unknown_members_and_delivers_them() {
    let mut c = Cluster::start(3).await;
    c.kill(0);
    c.kill(1);
    c.wait_health(2, "node1", "down").await;
    c.wait_health(2, "node2", "down").await;
    c.client_for(2)
        .put("hinted", "v", Consistency::One)
        .await
        .expect("a write at ONE on a replica");
    wait_until(
        "node3 to keep a hint for node1 and one for node2",
        Duration::from_secs(10),
        || async { c.pending_hints([2]).await == 2 },
    )
    .await;

    // A corrupt table and no static peers: node3 starts knowing only itself.
    std::fs::write(c.nodes[2].data_dir.join("members.json"), b"\0not json")
        .expect("corrupting the member file");
    restart_with_dns_only(&mut c, 2, 0).await;
    let log = c.log(2);
    assert!(log.contains("member file ignored"), "{log}");
    assert_eq!(members_seen_by(&c, 2).await, ["node3"]);
    // A replay round has looked at the hints (after convergence: the
    // restart waits for it) when it says it keeps them, or drops them.
    wait_until(
        "a hint replay round on node3",
        Duration::from_secs(20),
        || async {
            c.log(2)
                .contains("keeping hints for a node not in the member table")
                || c.pending_hints([2]).await < 2
        },
    )
    .await;
    assert_eq!(
        c.pending_hints([2]).await,
        2,
        "hints for the unknown node1 and node2 were dropped:\n{}",
        c.log(2)
    );

    // The others come back (their --peers name node3): gossip brings them
    // to node3's table and the hints are delivered.
    c.restart(0).await;
    c.restart(1).await;
    for i in [0, 1] {
        wait_until(
            &format!("node{} to get the hinted write", i + 1),
            Duration::from_secs(30),
            || async {
                matches!(c.local_copy(i, "hinted").await, LocalCopy::Value { val, .. } if val == "v")
            },
        )
        .await;
    }
    wait_until(
        "node3's hints to be gone",
        Duration::from_secs(10),
        || async { c.pending_hints([2]).await == 0 },
    )
    .await;
}
