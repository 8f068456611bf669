//! Core behaviour on real node processes: consistency levels, read-your-
//! writes, replica failures, read repair, durability, convergence.

use std::time::Duration;

use tinykv_client::{ClientError, Consistency};
use tinykv_tests::{wait_until, Cluster, ClusterOptions};

#[tokio::test(flavor = "multi_thread")]
async fn put_get_delete_at_every_level() {
    let c = Cluster::start(5).await;
    let client = c.client();
    for (i, level) in [Consistency::One, Consistency::Quorum, Consistency::All]
        .into_iter()
        .enumerate()
    {
        let key = format!("k-{i}");
        let out = client
            .put(key.clone(), format!("v-{i}"), level)
            .await
            .expect("put");
        // W of N = 3: 1 at ONE, 2 at QUORUM (a third may answer first), 3 at ALL.
        let (least, most) = match level {
            Consistency::One => (1, 3),
            Consistency::Quorum => (2, 3),
            _ => (3, 3),
        };
        assert!(
            (least..=most).contains(&out.acks),
            "{} acks at {level:?}",
            out.acks
        );
        // Read-your-writes needs R + W > N: after a write at ONE read at
        // ALL; a read at ONE is only eventually consistent, so poll it.
        let read_level = if level == Consistency::One {
            Consistency::All
        } else {
            level
        };
        let got = client
            .get(key.clone(), read_level)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.val, format!("v-{i}").as_bytes());
        assert_eq!(got.timestamp, out.timestamp);
        wait_until("a read at the write's level sees it", Duration::from_secs(5), || {
            let (client, key) = (client.clone(), key.clone());
            async move {
                matches!(client.get(key, level).await, Ok(Some(v)) if v.timestamp == out.timestamp)
            }
        })
        .await;
        client.delete(key.clone(), level).await.expect("delete");
        assert_eq!(
            client
                .get(key.clone(), Consistency::All)
                .await
                .expect("get after delete"),
            None
        );
    }
    // A key never written is not found at every level, with an OK status.
    for level in [Consistency::One, Consistency::Quorum, Consistency::All] {
        assert_eq!(client.get("never-written", level).await.expect("get"), None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_your_writes_through_every_coordinator() {
    let c = Cluster::start(5).await;
    // W=2, R=2, N=3: every read through any node sees the latest write through any other.
    for round in 0..20 {
        let writer = c.client_for(round % 5);
        let reader = c.client_for((round + 2) % 5);
        writer
            .put("ryw", format!("v{round}"), Consistency::Quorum)
            .await
            .expect("put");
        let got = reader
            .get("ryw", Consistency::Quorum)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.val, format!("v{round}").as_bytes(), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quorum_survives_one_replica_down_but_not_two() {
    let mut c = Cluster::start(5).await;
    let key = "fragile";
    let owners = c.owners(0, key).await;
    assert_eq!(owners.len(), 3);
    let client = c.client();
    client
        .put(key, "before", Consistency::All)
        .await
        .expect("put at ALL");

    // One replica down: QUORUM reads and writes still succeed.
    c.kill(c.index_of(&owners[0]));
    let coord = c.client_for(c.index_of(&owners[1]));
    coord
        .put(key, "after-one", Consistency::Quorum)
        .await
        .expect("QUORUM put with one replica down");
    let got = coord
        .get(key, Consistency::Quorum)
        .await
        .expect("QUORUM get")
        .expect("found");
    assert_eq!(got.val, "after-one".as_bytes());

    // Two replicas down: QUORUM fails with UNAVAILABLE naming the shortfall; ONE works.
    c.kill(c.index_of(&owners[1]));
    let survivor = c.client_for(c.index_of(&owners[2]));
    match survivor.get(key, Consistency::Quorum).await {
        Err(ClientError::Unavailable(msg)) => {
            assert!(msg.contains("read quorum not reached: 1 of 2"), "{msg}");
            assert!(
                msg.contains(&owners[0]) && msg.contains(&owners[1]),
                "{msg}"
            );
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    let got = survivor
        .get(key, Consistency::One)
        .await
        .expect("ONE get")
        .expect("found");
    assert_eq!(got.val, "after-one".as_bytes());
    survivor
        .put(key, "one-write", Consistency::One)
        .await
        .expect("ONE put");
    // A strict QUORUM write (hinted fallbacks not counted) fails the same way.
    let err = tonic_strict_put(&c.addr(c.index_of(&owners[2])), key).await;
    assert!(err.contains("write quorum not reached: 1 of 2"), "{err}");
}

/// A strict-quorum put through the raw protocol; returns the error message.
async fn tonic_strict_put(addr: &str, key: &str) -> String {
    use tinykv_proto::tinykv::{tiny_kv_client::TinyKvClient, Consistency as C, PutRequest};
    let mut client = TinyKvClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let req = PutRequest {
        key: key.as_bytes().to_vec().into(),
        val: "strict".as_bytes().to_vec().into(),
        consistency: C::Quorum as i32,
        strict_quorum: true,
        timeout_ms: 2000,
        ..Default::default()
    };
    match client.put(req).await {
        Ok(_) => panic!("strict QUORUM put succeeded with two replicas down"),
        Err(s) => {
            assert_eq!(s.code(), tonic::Code::Unavailable);
            s.message().to_string()
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_replica_is_repaired_by_a_read() {
    // No hints and no anti-entropy rounds: only the read may repair (a
    // round landing between the reconnect and the check made this flaky).
    let opts = ClusterOptions {
        args: vec![
            "--hinted-handoff".into(),
            "false".into(),
            "--anti-entropy-interval".into(),
            "0s".into(),
            "--heartbeat-interval".into(),
            "200ms".into(),
        ],
        ..ClusterOptions::default()
    };
    let c = Cluster::start_with(3, opts).await;
    let key = "repair-me";
    c.client()
        .put(key, "old", Consistency::All)
        .await
        .expect("put");
    let owners = c.owners(0, key).await;
    let stale = c.index_of(&owners[2]);
    // Cut the replica off (both ways) so it misses the next write for sure.
    let others: Vec<usize> = (0..3).filter(|&i| i != stale).collect();
    let other_ids: Vec<&str> = others.iter().map(|&i| c.nodes[i].id.as_str()).collect();
    c.block(stale, &other_ids);
    for &i in &others {
        c.block(i, &[owners[2].as_str()]);
    }
    c.client_for(others[0])
        .put(key, "new", Consistency::Quorum)
        .await
        .expect("put while cut off");
    for i in 0..3 {
        c.block(i, &[]);
    }
    assert_eq!(
        c.local(stale, key).await.as_deref(),
        Some("old"),
        "replica should be stale before the read"
    );
    let got = c
        .client_for(others[1])
        .get(key, Consistency::All)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.val, "new".as_bytes());
    c.wait_local(
        stale,
        key,
        "new",
        "read repair of the stale replica",
        Duration::from_secs(10),
    )
    .await;
}

/// The process side of `--sync always`. What `always` promises (a durable
/// commit before each ack) is checked on the write path itself
/// (`storage::sync_tests`): SIGKILL keeps the page cache, so this test
/// would pass with `periodic` too. Anti-entropy is off, so a restarted
/// node cannot pull the keys back from a peer, and every node's own copy
/// is checked before any read (which would repair).
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_sigkill_with_sync_always() {
    let mut opts = ClusterOptions {
        sync: "always",
        ..ClusterOptions::default()
    };
    opts.args
        .extend(["--anti-entropy-interval", "0s"].map(String::from));
    let mut c = Cluster::start_with(3, opts).await;
    let client = c.client();
    for i in 0..200 {
        client
            .put(format!("durable-{i}"), format!("v{i}"), Consistency::All)
            .await
            .expect("put");
    }
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.restart(i).await;
    }
    // Every node's own replica holds every acknowledged write after SIGKILL.
    for node in 0..3 {
        assert_eq!(
            c.client_for(node).status().await.expect("status").sync,
            "always"
        );
        for i in 0..200 {
            assert_eq!(
                c.local(node, &format!("durable-{i}")).await,
                Some(format!("v{i}")),
                "node {node} key {i}"
            );
        }
    }
    let client = c.client();
    for i in 0..200 {
        let got = client
            .get(format!("durable-{i}"), Consistency::Quorum)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.val, format!("v{i}").as_bytes());
    }
}

/// What `--sync periodic` promises for a crash of the process (not of the
/// machine): nothing acknowledged is lost even before any fsync, because
/// fjall hands each batch to the OS (write(2)) before the write is
/// acknowledged, and SIGKILL does not take the page cache with it. One
/// node with RF 1 (no replica could refill it), a sync period of an hour
/// so the periodic fsync never runs (checked: no flush is counted), then
/// SIGKILL and a restart on the same data directory.
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_sigkill_with_sync_periodic_before_any_fsync() {
    let mut opts = ClusterOptions {
        rf: 1,
        ..ClusterOptions::default()
    };
    opts.args.extend(["--sync-period", "1h"].map(String::from));
    let mut c = Cluster::start_with(1, opts).await;
    let client = c.client();
    const N: usize = 300;
    for i in 0..N {
        client
            .put(format!("unsynced-{i}"), format!("v{i}"), Consistency::All)
            .await
            .expect("put");
    }
    assert_eq!(c.metric(0, "tinykv_storage_flushes_total").await, 0.0);
    assert!(c.metric(0, "tinykv_storage_commits_total").await >= 1.0);
    c.kill(0);
    c.restart(0).await;
    assert_eq!(
        c.client_for(0).status().await.expect("status").sync,
        "periodic(3600000ms)"
    );
    let mut lost = Vec::new();
    for i in 0..N {
        if c.local(0, &format!("unsynced-{i}")).await != Some(format!("v{i}")) {
            lost.push(i);
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {N} acknowledged keys lost: {lost:?}",
        lost.len()
    );
}

/// The process side of a graceful shutdown: SIGTERM exits 0 and the writes
/// are there after a restart. That the final flush happens (periodic
/// writes reach the OS inside `apply`, so this test cannot tell) and that
/// its failure is reported is checked on the write path itself
/// (`storage::sync_tests`).
#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_flushes_periodic_writes() {
    let mut c = Cluster::start_with(
        1,
        ClusterOptions {
            rf: 1,
            ..ClusterOptions::default()
        },
    )
    .await;
    let client = c.client();
    for i in 0..100 {
        client
            .put(format!("g{i}"), "x", Consistency::One)
            .await
            .expect("put");
    }
    let status = c.stop(0).await.expect("exit status");
    assert!(status.success(), "SIGTERM exit: {status:?}");
    assert!(
        c.log(0).contains("node stopped; storage flushed"),
        "{}",
        c.log(0)
    );
    c.restart(0).await;
    for i in 0..100 {
        assert_eq!(c.local(0, &format!("g{i}")).await.as_deref(), Some("x"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_ends_open_client_and_peer_streams() {
    let mut c = Cluster::start(3).await;
    // Batches from this client and replica traffic between the nodes travel
    // on long-lived streams; SIGTERM must still end every node promptly.
    let client = c.client();
    for i in 0..50 {
        client
            .put(format!("s{i}"), "x", Consistency::All)
            .await
            .expect("put");
    }
    for i in 0..3 {
        let status = c.stop(i).await.expect("exit status");
        assert!(status.success(), "node {i} SIGTERM exit: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_converge_on_every_replica() {
    let c = Cluster::start(5).await;
    let key = "contended";
    let mut tasks = Vec::new();
    for w in 0..5 {
        let client = c.client_for(w);
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                client
                    .put(key, format!("w{w}-{i}"), Consistency::Quorum)
                    .await
                    .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let final_value = c
        .client()
        .get(key, Consistency::All)
        .await
        .expect("get")
        .expect("found");
    let owners = c.owners(0, key).await;
    wait_until(
        "every replica to hold the same version",
        Duration::from_secs(10),
        || async {
            let mut vals = Vec::new();
            for o in &owners {
                vals.push(c.local(c.index_of(o), key).await);
            }
            vals.iter()
                .all(|v| v.as_deref().map(str::as_bytes) == Some(&final_value.val[..]))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn needed_fanout_reads_route_around_dead_and_paused_replicas() {
    let mut o = ClusterOptions::default();
    o.args
        .extend(["--read-fanout", "needed", "--request-timeout", "1s"].map(String::from));
    let mut c = Cluster::start_with(3, o).await;
    let key = "fanout";
    let owners = c.owners(0, key).await;
    let via = c.index_of(&owners[0]);
    c.client()
        .put(key, "v1", Consistency::All)
        .await
        .expect("put");
    // A paused replica among the first R asked: the speculative retry asks the third.
    let paused = c.index_of(&owners[1]);
    c.pause(paused);
    for _ in 0..5 {
        let got = c
            .client_for(via)
            .get(key, Consistency::Quorum)
            .await
            .expect("QUORUM read with a paused replica");
        assert_eq!(got.map(|v| v.val), Some("v1".as_bytes().to_vec().into()));
    }
    c.resume(paused);
    // A dead replica: its failure makes the read ask the next one.
    c.kill(c.index_of(&owners[2]));
    c.client_for(via)
        .put(key, "v2", Consistency::Quorum)
        .await
        .expect("put");
    let got = c
        .client_for(c.index_of(&owners[1]))
        .get(key, Consistency::Quorum)
        .await
        .expect("read");
    assert_eq!(got.map(|v| v.val), Some("v2".as_bytes().to_vec().into()));
}
