//! Replicas that saw different versions end up with the same one: a
//! tombstone repaired by a read, and two writes with the same timestamp
//! from two coordinators settled by the LWW tie-break the same way on
//! every replica. Hints and periodic anti-entropy are off, so only the
//! mechanism under test can move a version.

use std::time::Duration;

use tinykv_client::Consistency;
use tinykv_proto::tinykv::{tiny_kv_client::TinyKvClient, Consistency as C, PutRequest};
use tinykv_tests::{wait_until, Cluster, ClusterOptions, LocalCopy, QUIET_ARGS};

/// Three nodes (every key on all three) with no hints and no periodic
/// repair.
async fn quiet_cluster() -> Cluster {
    Cluster::start_with(3, ClusterOptions::with_args(&QUIET_ARGS)).await
}

/// Cuts node `i` off from the others, both ways.
fn isolate(c: &Cluster, i: usize) {
    let others: Vec<&str> = (0..3)
        .filter(|&j| j != i)
        .map(|j| c.nodes[j].id.as_str())
        .collect();
    c.block(i, &others);
    for j in (0..3).filter(|&j| j != i) {
        c.block(j, &[c.nodes[i].id.as_str()]);
    }
}

fn heal(c: &Cluster) {
    for i in 0..3 {
        c.block(i, &[]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_repairs_a_missed_delete() {
    let c = quiet_cluster().await;
    let key = "deleted-while-away";
    c.client_for(0)
        .put(key, "old", Consistency::All)
        .await
        .expect("put");
    isolate(&c, 2);
    c.client_for(0)
        .delete(key, Consistency::Quorum)
        .await
        .expect("delete while node3 is cut off");
    heal(&c);
    assert!(
        matches!(c.local_copy(2, key).await, LocalCopy::Value { ref val, .. } if val == "old"),
        "node3 missed the delete"
    );
    let tombstone = c.local_copy(0, key).await;
    assert!(
        matches!(tombstone, LocalCopy::Tombstone { .. }),
        "{tombstone:?}"
    );

    let got = c
        .client_for(1)
        .get(key, Consistency::All)
        .await
        .expect("get");
    assert_eq!(got, None, "the delete wins the read");
    wait_until(
        "the read to repair node3's copy with the tombstone",
        Duration::from_secs(10),
        || async { c.local_copy(2, key).await == tombstone },
    )
    .await;
}

/// A put with the client's timestamp `ts`, coordinated by node `i`, at
/// QUORUM.
async fn put_at(c: &Cluster, i: usize, key: &str, val: &str, ts: i64) {
    let mut kv = TinyKvClient::connect(format!("http://{}", c.addr(i)))
        .await
        .expect("connect");
    let req = PutRequest {
        key: key.as_bytes().to_vec().into(),
        val: val.as_bytes().to_vec().into(),
        timestamp: ts,
        consistency: C::Quorum as i32,
        timeout_ms: 5000,
        ..Default::default()
    };
    let out = kv.put(req).await.expect("put").into_inner();
    assert!(out.operation_success);
    assert_eq!(out.timestamp, ts, "the client's timestamp is kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn equal_timestamps_from_two_coordinators_converge_on_one_value() {
    let c = quiet_cluster().await;
    let key = "tie";
    let ts = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros(),
    )
    .expect("timestamp");
    // node1 and node2 take A (from node1); then node2 and node3 take B
    // (from node2), same timestamp: node1 holds A, node3 B, node2 both.
    isolate(&c, 2);
    put_at(&c, 0, key, "A", ts).await;
    heal(&c);
    isolate(&c, 0);
    put_at(&c, 1, key, "B", ts).await;
    heal(&c);
    let copy = |val: &str, writer: &str| LocalCopy::Value {
        val: val.into(),
        timestamp: ts,
        writer: writer.into(),
    };
    assert_eq!(c.local_copy(0, key).await, copy("A", "node1"));
    assert_eq!(c.local_copy(2, key).await, copy("B", "node2"));
    // The tie goes to the greater writer, on node2 which saw both.
    let winner = copy("B", "node2");
    assert_eq!(c.local_copy(1, key).await, winner);

    // A repair round from each node exchanges the differing ranges.
    for i in 0..3 {
        c.client_for(i).repair().await.expect("repair");
    }
    wait_until(
        "every replica to hold the tie's winner",
        Duration::from_secs(20),
        || async {
            for i in 0..3 {
                if c.local_copy(i, key).await != winner {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let got = c.client().get(key, Consistency::All).await.expect("get");
    assert_eq!(
        got.map(|v| (v.val.to_vec(), v.writer)),
        Some((b"B".to_vec(), "node2".into()))
    );
}
