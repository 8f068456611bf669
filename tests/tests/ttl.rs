//! Per-key TTL across real nodes: an expiring value reads the same way
//! through every node and the legacy proto, before and after its expiry; a
//! later plain put outlives the TTL; expire and persist round trips; and an
//! expired value is purged only once every replica holds its expiry, so a
//! replica that was down with an older live copy cannot bring it back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tinykv_client::{Consistency, Expiry, KeyTtl};
use tinykv_tests::legacy::tiny_kv_client::TinyKvClient;
use tinykv_tests::legacy::GetRequest;
use tinykv_tests::{binary, wait_until, Cluster, ClusterOptions, QUIET_ARGS};

fn now_us() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as u64
}

/// What the legacy client generated from the C++ proto reads via node `i`.
async fn legacy_found(c: &Cluster, i: usize, key: &str) -> bool {
    let mut old = TinyKvClient::connect(format!("http://{}", c.addr(i)))
        .await
        .expect("connect");
    let req = GetRequest {
        key: key.into(),
        sender_id: "legacy".into(),
        quorum_size: 2,
    };
    old.get(req)
        .await
        .expect("legacy get")
        .into_inner()
        .operation_success
}

/// Whether `key` reads as found via every node, at ONE and QUORUM, through
/// the client and the legacy proto: all agree, or the test fails. (Not for
/// polling across an expiry: reads on either side of it differ.)
async fn found_everywhere(c: &Cluster, key: &str) -> bool {
    let seen = reads(c, key).await;
    let first = seen[0];
    assert!(
        seen.iter().all(|s| *s == first),
        "{key}: nodes disagree: {seen:?}"
    );
    first
}

/// Whether each read of `key` found it, via every node, at QUORUM and ALL
/// and through the legacy proto, in that order.
async fn reads(c: &Cluster, key: &str) -> Vec<bool> {
    let mut seen = Vec::new();
    for i in 0..c.nodes.len() {
        for level in [Consistency::Quorum, Consistency::All] {
            let got = c.client_for(i).get(key.to_string(), level).await;
            let got = got.expect("get");
            seen.push(got.is_some());
        }
        seen.push(legacy_found(c, i, key).await);
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_value_reads_the_same_through_every_node_and_the_legacy_proto() {
    let c = Cluster::start(3).await;
    let client = c.client_for(0);
    let ttl = Duration::from_millis(1500);
    let put = client
        .put_expiring("short", "lived", Expiry::After(ttl), Consistency::All)
        .await
        .expect("put");
    client
        .put("forever", "here", Consistency::All)
        .await
        .expect("put");
    for i in 0..3 {
        let v = c
            .client_for(i)
            .get("short", Consistency::All)
            .await
            .expect("get");
        let v = v.expect("found before its expiry");
        assert_eq!(v.expires_at_us, Some(put.timestamp as u64 + 1_500_000));
        assert!(v.ttl_remaining.is_some_and(|left| left <= ttl), "{v:?}");
    }
    // Every node turns it into "not found" (polled: the TTL is real time).
    wait_until("the value expired", Duration::from_secs(20), || async {
        c.client_for(1)
            .get("short", Consistency::Quorum)
            .await
            .expect("get")
            .is_none()
    })
    .await;
    assert!(!found_everywhere(&c, "short").await);
    assert!(
        found_everywhere(&c, "forever").await,
        "a value without TTL stays"
    );
    for i in 0..3 {
        assert_eq!(
            c.client_for(i)
                .ttl("short", Consistency::All)
                .await
                .expect("ttl"),
            KeyTtl::Missing
        );
        // Within the grace the replicas still hold the expired version.
        let local = c.client_for(i).local_get("short").await.expect("local get");
        assert!(
            local.present && local.expires_at_us != 0,
            "node {i}: {local:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_put_after_a_ttl_put_survives_past_the_ttl() {
    let c = Cluster::start(3).await;
    let client = c.client_for(0);
    let ttl = Expiry::After(Duration::from_secs(1));
    client
        .put_expiring("k", "temp", ttl, Consistency::Quorum)
        .await
        .expect("put");
    client
        .put("k", "kept", Consistency::Quorum)
        .await
        .expect("put");
    // A witness written after both, with the same TTL, expires first.
    client
        .put_expiring("witness", "w", ttl, Consistency::All)
        .await
        .expect("put");
    wait_until("the witness expired", Duration::from_secs(20), || async {
        !reads(&c, "witness").await.contains(&true)
    })
    .await;
    assert!(!found_everywhere(&c, "witness").await);
    assert!(found_everywhere(&c, "k").await);
    for i in 0..3 {
        let v = c
            .client_for(i)
            .get("k", Consistency::All)
            .await
            .expect("get");
        let v = v.expect("found");
        assert_eq!((&v.val[..], v.expires_at_us), (&b"kept"[..], None));
        assert_eq!(
            c.client_for(i)
                .ttl("k", Consistency::All)
                .await
                .expect("ttl"),
            KeyTtl::Persistent
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn expire_and_persist_round_trip() {
    let c = Cluster::start(3).await;
    let (a, b) = (c.client_for(0), c.client_for(2));
    let q = Consistency::Quorum;
    a.put("k", "v", q).await.expect("put");
    assert_eq!(b.ttl("k", q).await.expect("ttl"), KeyTtl::Persistent);
    let minute = Duration::from_secs(60);
    assert!(a
        .expire("k", Expiry::After(minute), q)
        .await
        .expect("expire"));
    for i in 0..3 {
        match c.client_for(i).ttl("k", q).await.expect("ttl") {
            KeyTtl::Remaining(left) => assert!(left <= minute && left > minute / 2, "{left:?}"),
            other => panic!("node {i}: expected a TTL, got {other:?}"),
        }
    }
    let v = b.get("k", q).await.expect("get").expect("found");
    assert_eq!(&v.val[..], b"v", "expire keeps the value");
    assert!(b.persist("k", q).await.expect("persist"));
    for i in 0..3 {
        assert_eq!(
            c.client_for(i).ttl("k", q).await.expect("ttl"),
            KeyTtl::Persistent
        );
    }
    // Missing keys: nothing to expire or persist, nothing written.
    assert!(!a
        .expire("nope", Expiry::After(minute), q)
        .await
        .expect("expire"));
    assert!(!a.persist("nope", q).await.expect("persist"));
    assert!(c
        .client_for(1)
        .local_get("nope")
        .await
        .is_ok_and(|r| !r.present));
    // A short expire makes it go; persist cannot bring it back.
    assert!(a
        .expire("k", Expiry::After(Duration::from_millis(800)), q)
        .await
        .expect("expire"));
    wait_until("k expired", Duration::from_secs(20), || async {
        b.ttl("k", q).await.expect("ttl") == KeyTtl::Missing
    })
    .await;
    assert!(!a.persist("k", q).await.expect("persist"));
    assert!(!found_everywhere(&c, "k").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_puts_with_a_ttl_and_shows_it() {
    let c = Cluster::start(3).await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(binary("tinykv_client"))
            .arg(c.addr(0))
            .args(args)
            .output()
            .expect("run tinykv_client");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, _) = cli(&["put", "--ttl", "1m", "k", "v"]);
    assert_eq!(code, Some(0));
    let (code, json) = cli(&["-o", "json", "get", "k"]);
    assert_eq!(code, Some(0));
    let got: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert!(
        got["expires_at_us"]
            .as_u64()
            .is_some_and(|at| at > now_us()),
        "{got}"
    );
    let left = got["ttl_remaining_ms"].as_u64().expect("ttl_remaining_ms");
    assert!(left <= 60_000 && left > 30_000, "{got}");
    assert_eq!(cli(&["persist", "k"]).0, Some(0));
    assert_eq!(cli(&["ttl", "k"]), (Some(0), "none\n".into()));
    assert_eq!(cli(&["expire", "k", "500ms"]).0, Some(0));
    wait_until("k expired", Duration::from_secs(20), || async {
        cli(&["get", "k"]).0 == Some(1)
    })
    .await;
    assert_eq!(cli(&["ttl", "k"]).0, Some(1));
}

/// Three nodes, no hints and no periodic repair (only the rounds the test
/// asks for), tombstone grace 1 s.
async fn purge_cluster() -> Cluster {
    let args = [&QUIET_ARGS[..], &["--tombstone-grace", "1s"]].concat();
    Cluster::start_with(3, ClusterOptions::with_args(&args)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_value_is_purged_only_once_every_replica_holds_its_expiry() {
    let mut c = purge_cluster().await;
    let key = "expires-while-away";
    c.client_for(0)
        .put(key, "old", Consistency::All)
        .await
        .expect("put");
    c.stop(2).await;
    let ttl = Expiry::After(Duration::from_millis(500));
    c.client_for(0)
        .put_expiring(key, "new", ttl, Consistency::Quorum)
        .await
        .expect("put while node 2 is down");
    let expires_at = c
        .client_for(0)
        .local_get(key)
        .await
        .expect("local")
        .expires_at_us;
    assert!(expires_at > 0);
    // Past expiry and grace: a round on the two up replicas purges nothing,
    // since the third could not be compared.
    let cutoff = expires_at + 1_000_000 + 200_000;
    wait_until(
        "expiry and grace passed",
        Duration::from_secs(20),
        || async { now_us() > cutoff },
    )
    .await;
    for i in 0..2 {
        let report = c.client_for(i).repair().await.expect("repair");
        assert_eq!(
            report.tombstones_purged, 0,
            "node {i} purged with a replica down"
        );
        let local = c.client_for(i).local_get(key).await.expect("local");
        assert_eq!(
            (local.present, local.expires_at_us),
            (true, expires_at),
            "node {i}"
        );
    }
    c.restart(2).await;
    let stale = c.client_for(2).local_get(key).await.expect("local");
    assert_eq!(
        (&stale.val[..], stale.expires_at_us),
        (&b"old"[..], 0),
        "node 2 kept the old copy"
    );
    // Quorum reads through every node: the expired version wins.
    for i in 0..3 {
        let got = c
            .client_for(i)
            .get(key, Consistency::Quorum)
            .await
            .expect("get");
        assert!(got.is_none(), "via node {i}: {got:?}");
    }
    // Repairs bring node 2 the expiry, then purge it everywhere.
    wait_until(
        "purged on every replica",
        Duration::from_secs(60),
        || async {
            for i in 0..3 {
                let _ = c.client_for(i).repair().await;
            }
            let mut gone = true;
            for i in 0..3 {
                gone &= !c.client_for(i).local_get(key).await.expect("local").present;
            }
            gone
        },
    )
    .await;
    for i in 0..3 {
        c.client_for(i).repair().await.expect("repair");
    }
    for i in 0..3 {
        assert!(
            !c.client_for(i).local_get(key).await.expect("local").present,
            "node {i}"
        );
        assert!(c
            .client_for(i)
            .get(key, Consistency::All)
            .await
            .expect("get")
            .is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hint_replayed_to_a_replica_carries_the_expiry() {
    let args = [
        "--anti-entropy-interval",
        "0s",
        "--heartbeat-interval",
        "200ms",
    ];
    let opts = ClusterOptions {
        args: args.map(String::from).to_vec(),
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start_with(3, opts).await;
    let key = "hinted";
    c.stop(2).await;
    let ttl = Expiry::After(Duration::from_secs(3600));
    c.client_for(0)
        .put_expiring(key, "v", ttl, Consistency::Quorum)
        .await
        .expect("put while node 2 is down");
    let want = c.client_for(0).local_get(key).await.expect("local");
    assert!(want.expires_at_us > now_us());
    c.restart(2).await;
    // No reads and no anti-entropy: only the hint can bring it.
    wait_until("node 2 got the hint", Duration::from_secs(30), || async {
        c.client_for(2)
            .local_get(key)
            .await
            .is_ok_and(|r| r.present)
    })
    .await;
    let got = c.client_for(2).local_get(key).await.expect("local");
    assert_eq!(
        (got.timestamp, got.expires_at_us),
        (want.timestamp, want.expires_at_us)
    );
}
