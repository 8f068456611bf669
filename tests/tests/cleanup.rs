//! Cleanup after ownership moves, on real node processes: the copies a
//! node keeps of ranges a joiner took over are removed once every replica
//! has them, and until then no decommission can hand the ranges back.

use std::process::Command;
use std::time::Duration;

use tinykv_client::{ClientError, Consistency};
use tinykv_tests::{binary, wait_until, Cluster, ClusterOptions};

const KEYS: usize = 60;

fn options(extra: &[&str]) -> ClusterOptions {
    let mut o = ClusterOptions {
        secret: Some("cleanup-test-secret-0123456789abcdef".into()),
        ..ClusterOptions::default()
    };
    o.args.extend(extra.iter().map(|s| s.to_string()));
    o
}

async fn load(c: &Cluster) {
    for i in 0..KEYS {
        c.client()
            .put(format!("k{i}"), format!("v{i}"), Consistency::All)
            .await
            .unwrap_or_else(|e| panic!("put k{i}: {e}"));
    }
}

/// Whether node `i` holds any version (value or tombstone) of `key`.
async fn holds(c: &Cluster, i: usize, key: &str) -> bool {
    c.client_for(i)
        .local_get(key.to_string())
        .await
        .unwrap_or_else(|e| panic!("local-get {key} on node{}: {e}", i + 1))
        .present
}

/// Decommissions `node` through node1, retrying while it is refused
/// because a cleanup is still pending, then waits until it has left.
async fn decommission(c: &Cluster, node: &str) {
    wait_until(
        &format!("{node}'s decommission to be accepted"),
        Duration::from_secs(60),
        || async {
            match c.client_for(0).decommission(node).await {
                Ok(_) => true,
                Err(ClientError::Rpc { code, message })
                    if code == tonic::Code::FailedPrecondition && message.contains("cleanup") =>
                {
                    false
                }
                Err(e) => panic!("decommission {node}: {e}"),
            }
        },
    )
    .await;
    for via in 0..c.nodes.len() {
        c.wait_state(via, node, "left").await;
    }
}

/// The scenario of issue #15: 3 nodes, 60 keys written at ALL, a 4th node
/// joins, every key is deleted at ALL, repair rounds run until the
/// tombstones are purged, the 4th node is decommissioned. Before cleanup
/// existed, the old replicas kept the values of the ranges they lost to
/// the joiner and got them back with the decommission: 36 of the 60 keys
/// came back. Now none may.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_keys_stay_deleted_after_a_join_and_a_decommission() {
    let mut c = Cluster::start_with(
        3,
        options(&["--tombstone-grace", "1s", "--max-hint-age", "1s"]),
    )
    .await;
    load(&c).await;
    let new = c.add_node(&["--join"]).await;
    for via in 0..4 {
        c.wait_state(via, "node4", "normal").await;
    }
    for i in 0..KEYS {
        c.client()
            .delete(format!("k{i}"), Consistency::All)
            .await
            .unwrap_or_else(|e| panic!("delete k{i}: {e}"));
    }
    // Repair rounds until every owner has purged every tombstone.
    wait_until(
        "the tombstones to be purged on every owner",
        Duration::from_secs(60),
        || async {
            for i in 0..4 {
                let _ = c.client_for(i).repair().await;
            }
            for i in 0..KEYS {
                let key = format!("k{i}");
                for o in c.owners(0, &key).await {
                    if holds(&c, c.index_of(&o), &key).await {
                        return false;
                    }
                }
            }
            true
        },
    )
    .await;
    decommission(&c, &c.nodes[new].id.clone()).await;
    for i in 0..3 {
        c.client_for(i).repair().await.expect("repair");
    }
    let mut back = Vec::new();
    for i in 0..KEYS {
        let key = format!("k{i}");
        let all = c.client().get(key.clone(), Consistency::All).await;
        let all = all.unwrap_or_else(|e| panic!("{key} at ALL: {e}"));
        let mut one = false;
        for via in 0..3 {
            one |= c
                .client_for(via)
                .get(key.clone(), Consistency::One)
                .await
                .unwrap_or_else(|e| panic!("{key} at ONE: {e}"))
                .is_some();
        }
        if all.is_some() || one {
            back.push(key);
        }
    }
    assert!(
        back.is_empty(),
        "{} of {KEYS} deleted keys came back: {back:?}",
        back.len()
    );
}

/// With automatic cleanup off, a node that lost ranges to a joiner reports
/// cleanup pending, and a decommission is refused, naming it; `cleanup` on
/// each old node then removes exactly the keys it no longer owns, every
/// owner still has every key, and the decommission is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn decommission_waits_for_cleanup_which_removes_exactly_the_unowned_keys() {
    let mut c = Cluster::start_with(3, options(&["--auto-cleanup", "false"])).await;
    load(&c).await;
    c.add_node(&["--join"]).await;
    for via in 0..4 {
        c.wait_state(via, "node4", "normal").await;
    }
    let mut pending = Vec::new();
    for i in 0..3 {
        if c.client_for(i)
            .status()
            .await
            .expect("status")
            .cleanup_pending
        {
            pending.push(c.nodes[i].id.clone());
        }
    }
    assert!(!pending.is_empty(), "no old node lost a range to node4");
    let refused = c.client_for(0).decommission("node4").await;
    match refused {
        Err(ClientError::Rpc { code, message }) => {
            assert_eq!(code, tonic::Code::FailedPrecondition, "{message}");
            assert!(
                message.contains("tinykv_client <node> cleanup"),
                "{message}"
            );
            for p in &pending {
                assert!(message.contains(p.as_str()), "{message} names {p}");
            }
        }
        other => panic!("decommission while cleanup is pending: {other:?}"),
    }
    // What each old node holds but does not own.
    let mut unowned = [0u64; 3];
    for k in 0..KEYS {
        let key = format!("k{k}");
        let owners = c.owners(0, &key).await;
        for (i, n) in unowned.iter_mut().enumerate() {
            let owner = owners.contains(&c.nodes[i].id);
            *n += u64::from(!owner && holds(&c, i, &key).await);
        }
    }
    assert!(unowned.iter().sum::<u64>() > 0, "nothing to clean");
    let cli = binary("tinykv_client");
    let secret = c.secret_file().expect("secret file");
    for (i, expected) in unowned.iter().enumerate() {
        let out = Command::new(&cli)
            .args([c.addr(i).as_str(), "cleanup", "--cluster-secret-file"])
            .arg(&secret)
            .output()
            .expect("run tinykv_client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cleanup on node{}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("cleanup: {expected} keys removed")),
            "node{}: {stdout}",
            i + 1
        );
    }
    for k in 0..KEYS {
        let key = format!("k{k}");
        let owners = c.owners(0, &key).await;
        for i in 0..4 {
            let owner = owners.contains(&c.nodes[i].id);
            let local = c.local(i, &key).await;
            if owner {
                assert_eq!(local, Some(format!("v{k}")), "{key} on owner node{}", i + 1);
            } else {
                assert!(!holds(&c, i, &key).await, "{key} left on node{}", i + 1);
            }
        }
    }
    for i in 0..4 {
        let s = c.client_for(i).status().await.expect("status");
        assert!(!s.cleanup_pending, "node{} still pending", i + 1);
    }
    decommission(&c, "node4").await;
    for k in 0..KEYS {
        let got = c
            .client()
            .get(format!("k{k}"), Consistency::All)
            .await
            .expect("get at ALL");
        assert_eq!(
            got.map(|v| v.val),
            Some(format!("v{k}").into_bytes().into())
        );
    }
}
