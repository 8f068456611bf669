//! A node that lost its disk says so, and a `--join` node that hears from
//! nobody waits instead of starting a cluster of its own (real node
//! processes).

use std::time::Duration;

use tinykv_client::Consistency;
use tinykv_tests::{binary, wait_until, Cluster, ClusterOptions, QUIET_ARGS};

const KEYS: usize = 200;

/// A member restarted on an empty data directory with the same id and
/// flags comes back as `joining` (its status, `tinykv_client status` and
/// its log say it lost its data) and out of the read ring on every node
/// (held back from node1, its join streaming cannot finish; it lacks keys,
/// yet every read at ONE through it finds the key), then streams, becomes
/// `normal`, and holds in its own store every key no read touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_restarted_on_an_empty_disk_rejoins_before_serving_reads() {
    // No periodic repair (its first round runs at start) and no hints:
    // only the join streaming can bring node3 the keys no read touches.
    let mut c = Cluster::start_with(3, ClusterOptions::with_args(&QUIET_ARGS)).await;
    let client = c.client();
    for i in 0..KEYS {
        client
            .put(format!("d-{i}"), format!("v{i}"), Consistency::All)
            .await
            .expect("load at ALL");
    }
    c.stop(2).await;
    c.wipe_data(2);
    // Cut off from node1, node3 can stream no range (each needs both of
    // its other replicas): it stays joining until the block is lifted.
    c.block(2, &["node1"]);
    c.restart(2).await;

    let status = c.client_for(2).status().await.expect("status");
    assert_eq!(
        status.state, "joining",
        "node3 came back as {}",
        status.state
    );
    assert!(
        status.operation_reason.starts_with("lost its data"),
        "status says {:?}",
        status.operation_reason
    );
    assert!(c.log(2).contains("lost its data"), "{}", c.log(2));
    let cli = std::process::Command::new(binary("tinykv_client"))
        .args([c.addr(2).as_str(), "status"])
        .env_remove("TINYKV_ADDR")
        .output()
        .expect("run tinykv_client status");
    let shown = String::from_utf8_lossy(&cli.stdout);
    assert!(
        shown.contains("joining:") && shown.contains("why: lost its data"),
        "tinykv_client status shows:\n{shown}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    c.wait_state(1, "node3", "joining").await;
    c.wait_state(0, "node3", "joining").await;
    // Half the keys are read through node3 while it re-joins; the other
    // half are never read before the end, so no read repair (the reads
    // at ONE fan out to every replica) can put them on node3: only the
    // join streaming can.
    let (read, unread) = (0..KEYS / 2, KEYS / 2..KEYS);
    let mut lacking = 0;
    for i in unread.clone() {
        lacking += usize::from(c.local(2, &format!("d-{i}")).await.is_none());
    }
    assert!(
        lacking > 0,
        "node3 held every key although its disk was wiped"
    );
    let through_node3 = c.client_for(2);
    for i in read {
        let key = format!("d-{i}");
        let got = through_node3
            .get(key.clone(), Consistency::One)
            .await
            .unwrap_or_else(|e| panic!("{key} at ONE through node3: {e}"));
        assert_eq!(
            got.map(|v| v.val),
            Some(format!("v{i}").into_bytes().into()),
            "{key} read at ONE through the re-joining node3"
        );
    }

    c.block(2, &[]);
    for via in 0..3 {
        c.wait_state(via, "node3", "normal").await;
    }
    let status = c.client_for(2).status().await.expect("status");
    assert_eq!(status.operation_reason, "", "reason kept after the join");
    for i in unread {
        let key = format!("d-{i}");
        assert_eq!(
            c.local(2, &key).await,
            Some(format!("v{i}")),
            "{key} missing from node3's own store after the re-join"
        );
    }
}

/// A `--join` node whose peers do not answer does not become a cluster of
/// one: it stays `joining`, says in its status and (every 5 s) in its log
/// that it waits and for whom, past the 10 s after which earlier versions
/// bootstrapped alone; once the peer starts it joins. It finds its peer
/// through `--peers-dns`, as the operator's pods do (so no `--peers` row
/// of the peer holds it back either).
#[tokio::test(flavor = "multi_thread")]
async fn a_join_to_peers_that_do_not_answer_waits_for_them() {
    let mut c = Cluster::start(1).await;
    c.client()
        .put("w-1", "one", Consistency::One)
        .await
        .expect("put");
    c.stop(0).await;
    let new = c.add_node_dns(0, &["--join"]).await;
    wait_until(
        "node2 to say three times that it waits for its peers",
        Duration::from_secs(40),
        || async {
            let log = c.log(new);
            log.matches("waiting for peers to answer").count() >= 3 || log.contains("bootstrapping")
        },
    )
    .await;
    let status = c.client_for(new).status().await.expect("status");
    assert_eq!(
        status.state,
        "joining",
        "node2 did not wait: {}",
        c.log(new)
    );
    let dns = format!("--peers-dns localhost:{}", c.nodes[0].port);
    assert!(
        status.operation_reason.contains("waiting for peers")
            && status.operation_reason.contains(&dns),
        "status says {:?}",
        status.operation_reason
    );
    assert!(!c.log(new).contains("bootstrapping"), "{}", c.log(new));

    c.restart(0).await;
    c.wait_state(new, "node2", "normal").await;
    c.wait_state(0, "node2", "normal").await;
    assert!(!c.log(new).contains("bootstrapping"), "{}", c.log(new));
    assert_eq!(c.local(new, "w-1").await.as_deref(), Some("one"));
}

/// With `--bootstrap`, a `--join` node that hears from nobody starts a new
/// cluster (after `--membership-convergence-timeout`) and serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_join_with_bootstrap_starts_a_new_cluster_when_nobody_answers() {
    let mut c = Cluster::start(1).await;
    c.stop(0).await;
    let new = c.add_node_unwaited(&["--join", "--bootstrap"]);
    c.wait_ready(new).await;
    c.wait_state(new, "node2", "normal").await;
    assert!(
        c.log(new).contains("--bootstrap: no peer answered"),
        "{}",
        c.log(new)
    );
    c.client_for(new)
        .put("b-1", "one", Consistency::One)
        .await
        .expect("put on the new cluster");
}
