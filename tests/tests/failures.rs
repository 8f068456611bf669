//! Failures and convergence on real node processes: owner loss, SIGKILL
//! churn, paused nodes, hinted handoff, anti-entropy, partitions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinykv_client::{ClientError, Consistency};
use tinykv_tests::{wait_until, Cluster, ClusterOptions};

fn opts(extra: &[&str]) -> ClusterOptions {
    let mut o = ClusterOptions::default();
    o.args.extend(extra.iter().map(|s| s.to_string()));
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_primary_owner_keeps_the_key_available() {
    let mut c = Cluster::start(5).await;
    let key = "owned";
    let owners = c.owners(0, key).await;
    c.client()
        .put(key, "v1", Consistency::Quorum)
        .await
        .expect("put");
    let primary = c.index_of(&owners[0]);
    c.kill(primary);
    for via in (0..5).filter(|&i| i != primary) {
        let client = c.client_for(via);
        client
            .put(key, format!("via{via}"), Consistency::Quorum)
            .await
            .expect("QUORUM put without the primary");
        let got = client
            .get(key, Consistency::Quorum)
            .await
            .expect("QUORUM get")
            .expect("found");
        assert_eq!(got.val, format!("via{via}").as_bytes());
    }
}

/// Four writers put at QUORUM while every node in turn is SIGKILLed and
/// restarted. Each node's downtime must see new acknowledgements (counted,
/// not distinct keys, which run out), and afterwards every key reads back
/// at least its last acknowledged value at QUORUM and at ALL.
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_and_restart_churn() {
    let mut c = Cluster::start_with(5, opts(&["--request-timeout", "1s"])).await;
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::new(Mutex::new(HashMap::new()));
    let acks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = c.client();
        let (acked, acks, stop) = (acked.clone(), acks.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut attempts = 0u64;
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("churn-{w}-{}", seq % 50);
                attempts += 1;
                if client
                    .put(key.clone(), seq.to_string(), Consistency::Quorum)
                    .await
                    .is_ok()
                {
                    acked.lock().expect("lock").insert(key, seq);
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
            attempts
        }));
    }
    // Kill and restart every node in turn while the writers run.
    for i in 0..5 {
        c.kill(i);
        let before = acks.load(Ordering::Relaxed);
        let t = std::time::Instant::now();
        wait_until(
            &format!("30 writes acknowledged while node{} is down", i + 1),
            Duration::from_secs(30),
            || {
                let n = acks.load(Ordering::Relaxed);
                async move { n >= before + 30 }
            },
        )
        .await;
        eprintln!("node {i} down: {:?}", t.elapsed());
        c.restart(i).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut attempts = 0;
    for w in writers {
        attempts += w.await.expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    let client = c.client();
    for level in [Consistency::Quorum, Consistency::All] {
        for (key, seq) in &acked {
            let got = client
                .get(key.clone(), level)
                .await
                .unwrap_or_else(|e| panic!("get {key} at {level:?}: {e}"))
                .unwrap_or_else(|| panic!("acknowledged key {key} lost at {level:?}"));
            let v: u64 = String::from_utf8_lossy(&got.val).parse().expect("number");
            assert!(
                v >= *seq,
                "{key} at {level:?}: read {v}, last acknowledged {seq}"
            );
        }
    }
    eprintln!(
        "churn: {attempts} writes attempted, {} acknowledged, {} keys checked",
        acks.load(Ordering::Relaxed),
        acked.len()
    );
    assert_eq!(acked.len(), 200, "a key never acknowledged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_node_does_not_stall_requests_and_catches_up() {
    let c = Cluster::start_with(5, opts(&["--request-timeout", "1s"])).await;
    let key = "paused";
    let owners = c.owners(0, key).await;
    let paused = c.index_of(&owners[1]);
    let via = (0..5)
        .find(|i| !owners.contains(&c.nodes[*i].id))
        .expect("a non-owner");
    let client = c.client_for(via);
    client
        .put(key, "before", Consistency::All)
        .await
        .expect("put");
    c.pause(paused);
    // Longer than the request deadline: requests still succeed, each within it.
    for i in 0..15 {
        let started = std::time::Instant::now();
        client
            .put(key, format!("during{i}"), Consistency::Quorum)
            .await
            .expect("put while paused");
        let got = client
            .get(key, Consistency::Quorum)
            .await
            .expect("get while paused")
            .expect("found");
        assert_eq!(got.val, format!("during{i}").as_bytes());
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "request took {:?}",
            started.elapsed()
        );
    }
    c.resume(paused);
    c.wait_local(
        paused,
        key,
        "during14",
        "the paused replica to catch up",
        Duration::from_secs(15),
    )
    .await;
}

/// No anti-entropy (its round at start would hand the returned owner its
/// keys whether or not any hint exists) and no reads of the keys (read
/// repair): only hints can bring the owner what it missed. The hints are
/// seen stored before it returns, and the replay counters account for the
/// delivery.
#[tokio::test(flavor = "multi_thread")]
async fn hints_are_delivered_when_the_owner_returns() {
    let mut c =
        Cluster::start_with(5, opts(&["--anti-entropy-interval", "0s"]).with_metrics()).await;
    let keys: Vec<String> = (0..60).map(|i| format!("hinted-{i}")).collect();
    let down = 2usize;
    let live: Vec<usize> = (0..5).filter(|&i| i != down).collect();
    c.kill(down);
    let client = c.client();
    let mut owned_by_down = Vec::new();
    for k in &keys {
        client
            .put(k.clone(), format!("v-{k}"), Consistency::Quorum)
            .await
            .expect("put with a replica down");
        if c.owners(0, k).await.contains(&c.nodes[down].id) {
            owned_by_down.push(k.clone());
        }
    }
    assert!(!owned_by_down.is_empty());
    // Each write the dead owner missed left a hint for it somewhere (a
    // missed call's hint may be stored just after the put returns).
    let missed = owned_by_down.len() as u64;
    wait_until(
        "hints for the dead owner",
        Duration::from_secs(10),
        || async { c.pending_hints(live.clone()).await >= missed },
    )
    .await;
    let stored = c
        .metric_sum(live.clone(), "tinykv_hints_stored_total")
        .await;
    assert!(
        stored >= missed as f64,
        "{stored} hints stored for {missed} missed writes"
    );

    c.restart(down).await;
    wait_until(
        "hinted handoff to the restarted replica",
        Duration::from_secs(20),
        || async {
            for k in &owned_by_down {
                if c.local(down, k).await != Some(format!("v-{k}")) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    // The hints are gone once delivered, every one of them counted as
    // replayed and none dropped.
    wait_until("hints to be deleted", Duration::from_secs(10), || async {
        c.pending_hints(0..5).await == 0
    })
    .await;
    let stored = c
        .metric_sum(live.clone(), "tinykv_hints_stored_total")
        .await;
    let replayed = c
        .metric_sum(live.clone(), "tinykv_hints_replayed_total")
        .await;
    let dropped = c
        .metric_sum(live.clone(), "tinykv_hints_dropped_total")
        .await;
    assert_eq!(
        (replayed, dropped),
        (stored, 0.0),
        "hints replayed and dropped of {stored} stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anti_entropy_converges_a_diverged_replica_and_deletes_stay_deleted() {
    // No hints at all: the replica that was down can only converge by repair.
    let c = Cluster::start_with(
        3,
        opts(&["--max-hints", "0", "--anti-entropy-interval", "0s"]),
    )
    .await;
    let client = c.client();
    for i in 0..100 {
        client
            .put(format!("ae-{i}"), "old", Consistency::All)
            .await
            .expect("put");
    }
    // node3 misses everything that follows: cut off both ways (a killed node
    // could still receive writes queued for it if it came back in time).
    c.block(2, &["node1", "node2"]);
    c.block(0, &["node3"]);
    c.block(1, &["node3"]);
    let client = c.client_for(0);
    for i in 0..100 {
        if i % 2 == 0 {
            client
                .delete(format!("ae-{i}"), Consistency::Quorum)
                .await
                .expect("delete while down");
        } else {
            client
                .put(format!("ae-{i}"), "new", Consistency::Quorum)
                .await
                .expect("update while down");
        }
    }
    for i in 100..150 {
        client
            .put(format!("ae-{i}"), "fresh", Consistency::Quorum)
            .await
            .expect("insert while down");
    }
    for i in 0..3 {
        c.block(i, &[]);
    }
    assert_eq!(
        c.local(2, "ae-1").await.as_deref(),
        Some("old"),
        "replica should have diverged"
    );
    let report = c.client_for(2).repair().await.expect("repair");
    assert!(
        report.keys_received >= 150,
        "repair moved too little: {report:?}"
    );
    for i in 0..150 {
        let want = if i >= 100 {
            Some("fresh")
        } else if i % 2 == 0 {
            None
        } else {
            Some("new")
        };
        assert_eq!(
            c.local(2, &format!("ae-{i}")).await.as_deref(),
            want,
            "ae-{i} after one repair round"
        );
    }
    // A second round finds nothing to do, and deletes stay deleted.
    let again = c.client_for(0).repair().await.expect("repair");
    assert_eq!((again.keys_sent, again.keys_received), (0, 0), "{again:?}");
    for i in (0..100).step_by(2) {
        assert_eq!(
            c.client()
                .get(format!("ae-{i}"), Consistency::All)
                .await
                .expect("get"),
            None
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_keeps_the_majority_serving_quorum() {
    let c = Cluster::start_with(5, opts(&["--request-timeout", "1s"])).await;
    let (majority, minority) = (["node1", "node2", "node3"], ["node4", "node5"]);
    // A key replicated only on the majority side, and one with one replica on the minority side.
    let mut all_major = None;
    let mut split = None;
    for i in 0..500 {
        let k = format!("part-{i}");
        let owners = c.owners(0, &k).await;
        let on_minority = owners
            .iter()
            .filter(|o| minority.contains(&o.as_str()))
            .count();
        if on_minority == 0 && all_major.is_none() {
            all_major = Some(k);
        } else if on_minority == 1 && split.is_none() {
            split = Some((k, owners));
        }
    }
    let all_major = all_major.expect("a majority-only key");
    let (split, split_owners) = split.expect("a split key");
    c.client()
        .put(split.clone(), "before", Consistency::All)
        .await
        .expect("put");

    for i in 0..3 {
        c.block(i, &minority);
    }
    for i in 3..5 {
        c.block(i, &majority);
    }
    let major = c.client_for(0);
    let minor_node = c.index_of(
        split_owners
            .iter()
            .find(|o| minority.contains(&o.as_str()))
            .expect("minority owner"),
    );
    let minor = c.client_for(minor_node);

    // Majority side: QUORUM works for both keys.
    major
        .put(all_major.clone(), "m", Consistency::Quorum)
        .await
        .expect("majority put");
    major
        .put(split.clone(), "majority-wins", Consistency::Quorum)
        .await
        .expect("majority put (split key)");
    let got = major
        .get(split.clone(), Consistency::Quorum)
        .await
        .expect("majority get");
    assert_eq!(
        got.map(|v| v.val),
        Some(bytes::Bytes::from_static(b"majority-wins")),
        "the majority's QUORUM read sees its own write"
    );
    // Minority side: QUORUM reads are UNAVAILABLE, ONE still serves.
    for k in [&all_major, &split] {
        match minor.get(k.clone(), Consistency::Quorum).await {
            Err(ClientError::Unavailable(m)) => {
                assert!(m.contains("read quorum not reached"), "{m}")
            }
            other => panic!("minority QUORUM read of {k} should be UNAVAILABLE, got {other:?}"),
        }
    }
    let one = minor
        .get(split.clone(), Consistency::One)
        .await
        .expect("minority ONE read")
        .expect("found");
    assert_eq!(
        one.val,
        "before".as_bytes(),
        "the minority replica has not seen the majority's write"
    );

    // Heal: every replica of the split key converges to the majority's write.
    for i in 0..5 {
        c.block(i, &[]);
    }
    let _ = c.client().get(split.clone(), Consistency::All).await;
    wait_until(
        "replicas to converge after healing",
        Duration::from_secs(20),
        || async {
            for o in &split_owners {
                if c.local(c.index_of(o), &split).await.as_deref() != Some("majority-wins") {
                    let _ = c.client().get(split.clone(), Consistency::All).await;
                    return false;
                }
            }
            true
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_peer_is_reached_at_once_through_a_fresh_stream() {
    // Three nodes, RF 3: an ALL write needs every node, and no fallback
    // exists, so the first write after a peer's restart fails unless the
    // coordinator replaces its dead stream to that peer at once.
    let mut c = Cluster::start(3).await;
    let client = c.client_for(0);
    client
        .put("k", "before", Consistency::All)
        .await
        .expect("ALL write with every node up");
    c.restart(1).await;
    let ack = client.put("k", "after", Consistency::All).await;
    assert!(
        ack.is_ok(),
        "first ALL write after the restart failed: {ack:?}"
    );
    assert_eq!(c.local(1, "k").await.as_deref(), Some("after"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_reaches_a_restarted_node_at_once_through_a_fresh_stream() {
    // A client of one node only (no other endpoint to fall back to): its
    // batch stream to the node died with the old process, and its first
    // call after the restart must go out on a new stream instead of
    // failing on the dead one.
    let mut c = Cluster::start(3).await;
    let client = c.client_for(1);
    client
        .put("k", "before", Consistency::Quorum)
        .await
        .expect("write with every node up");
    c.restart(1).await;
    let ack = client.put("k", "after", Consistency::Quorum).await;
    assert!(
        ack.is_ok(),
        "first write after the node's restart failed: {ack:?}"
    );
    let got = client.get("k", Consistency::Quorum).await;
    assert_eq!(
        got.ok().flatten().map(|v| v.val),
        Some(bytes::Bytes::from_static(b"after"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_fallback_still_leaves_a_hint_for_the_owner() {
    // 4 nodes, RF 3: a key's one non-owner is the only fallback. It refuses
    // every hint (--max-hints 0), so the hinted write for the dead owner
    // fails while the write still reaches W on the two live owners; the
    // coordinator must then keep the hint itself. No anti-entropy and no
    // reads of the key: only a hint can bring the owner its copy.
    let mut c = Cluster::start_with(4, opts(&["--anti-entropy-interval", "0s"])).await;
    let key = "hint-after-failed-fallback";
    let owners = c.owners(0, key).await;
    let coordinator = c.index_of(&owners[0]);
    let dead = c.index_of(&owners[2]);
    let fallback = (0..4)
        .find(|i| !owners.contains(&c.nodes[*i].id))
        .expect("a non-owner");
    c.nodes[fallback].extra = vec!["--max-hints".into(), "0".into()];
    c.restart(fallback).await;
    let (dead_id, fallback_id) = (c.nodes[dead].id.clone(), c.nodes[fallback].id.clone());
    c.wait_health(coordinator, &fallback_id, "up").await;
    c.kill(dead);
    c.wait_health(coordinator, &dead_id, "down").await;

    let put = c
        .client_for(coordinator)
        .put(key, "kept", Consistency::Quorum)
        .await
        .expect("QUORUM put on the two live owners");
    assert_eq!(put.acks, 2, "the refused hint must not count as an ack");

    c.restart(dead).await;
    c.wait_local(
        dead,
        key,
        "kept",
        "the coordinator's hint to reach the returned owner",
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tombstones_are_purged_only_once_every_replica_holds_them() {
    // Grace 1 ms: any tombstone is old enough. No hints, no background
    // rounds: only the repairs below move or purge anything.
    let c = Cluster::start_with(
        3,
        opts(&[
            "--tombstone-grace",
            "1ms",
            "--max-hints",
            "0",
            "--anti-entropy-interval",
            "0s",
        ]),
    )
    .await;
    let client = c.client_for(0);
    let present = |i: usize, key: &'static str| {
        let client = c.client_for(i);
        async move {
            client
                .local_get(key)
                .await
                .unwrap_or_else(|e| panic!("local-get {key}: {e}"))
                .present
        }
    };
    // Deleted everywhere: the first round purges the tombstone on every
    // replica it compares with agreement.
    client
        .put("gone", "v", Consistency::All)
        .await
        .expect("put");
    client
        .delete("gone", Consistency::All)
        .await
        .expect("delete");
    // Deleted while node3 was cut off: node3 still holds the value.
    client
        .put("stale", "v", Consistency::All)
        .await
        .expect("put");
    c.block(2, &["node1", "node2"]);
    c.block(0, &["node3"]);
    c.block(1, &["node3"]);
    client
        .delete("stale", Consistency::Quorum)
        .await
        .expect("delete without node3");
    for i in 0..3 {
        c.block(i, &[]);
    }
    assert_eq!(c.local(2, "stale").await.as_deref(), Some("v"));

    let first = client.repair().await.expect("repair");
    assert!(first.tombstones_purged >= 1, "{first:?}");
    assert!(!present(0, "gone").await, "an agreed tombstone stays");
    // The range holding "stale" disagreed: its tombstone was sent to node3,
    // not purged (a purge there would let node3's value come back).
    assert!(present(0, "stale").await, "a disputed tombstone was purged");
    assert_eq!(c.local(2, "stale").await, None, "node3 got the delete");

    // Now every replica holds it: one round on each node purges it on
    // each, without a node that purged first getting it back from one that
    // had not yet (it did before: purged tombstones bounced between
    // replicas every round), and the value never comes back.
    for i in 0..3 {
        c.client_for(i).repair().await.expect("repair");
    }
    for i in 0..3 {
        assert!(
            !present(i, "stale").await,
            "node{} kept the tombstone",
            i + 1
        );
    }
    assert_eq!(
        c.client()
            .get("stale", Consistency::All)
            .await
            .expect("get"),
        None
    );
}
