//! Writes while a join is under way keep R + W > N: a write needs W acks
//! among the key's current replicas AND among its future ones (issue #15),
//! on real node processes with the test-only fault switches.

use std::time::Duration;

use tinykv_client::Consistency;
use tinykv_node::ring::Ring;
use tinykv_tests::{wait_until, Cluster, ClusterOptions, QUIET_ARGS};

/// Virtual nodes per member, given to every node so the test can place
/// keys on the rings before and after the join itself.
const VNODES: u32 = 16;

/// The replicas of `key` on the ring of `node1`..`node{members}`.
fn replicas(members: usize, key: &str) -> Vec<String> {
    let ids = (1..=members).map(|i| format!("node{i}"));
    let ring = Ring::new(ids, VNODES, 3);
    let mut set: Vec<String> = ring
        .preference_list(key.as_bytes())
        .into_iter()
        .map(String::from)
        .collect();
    set.sort();
    set
}

/// A key whose replicas node5's join changes, and its roles: `stay` are
/// its current replicas that stay, `dropped` the one that leaves its set,
/// `other` the fourth old node.
struct Roles {
    key: String,
    stay: [usize; 2],
    dropped: usize,
    other: usize,
}

fn roles() -> Roles {
    (0..1000)
        .find_map(|i| {
            let key = format!("join-{i}");
            let (now, after) = (replicas(4, &key), replicas(5, &key));
            if !after.contains(&"node5".to_string()) {
                return None;
            }
            let index = |id: &String| id[4..].parse::<usize>().ok().map(|n| n - 1);
            let stay: Vec<usize> = now
                .iter()
                .filter(|n| after.contains(n))
                .filter_map(index)
                .collect();
            let dropped = now.iter().find(|n| !after.contains(n)).and_then(index)?;
            let other = (0..4).find(|i| !stay.contains(i) && *i != dropped)?;
            Some(Roles {
                key,
                stay: [stay[0], stay[1]],
                dropped,
                other,
            })
        })
        .expect("a key node5 takes")
}

/// node5 joins while cut off from the two current replicas of a key that
/// stay its replicas (so its streaming cannot finish and the join stays
/// under way). The replica that leaves the key's set coordinates a QUORUM
/// write while cut off from those two: it and node5 ack, W over the old and
/// new replicas together, but one of the three current replicas. The
/// write must not be acknowledged: once node5 has joined, a QUORUM read
/// that gets its answers from the two that stay (node5 cut off from the
/// reader) would not see it. A write during the join that reaches both
/// sets is acknowledged and read at QUORUM after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_write_during_a_join_is_read_at_quorum_after_it() {
    let r = roles();
    let vnodes = VNODES.to_string();
    let mut args = QUIET_ARGS.to_vec();
    args.extend(["--vnodes", vnodes.as_str(), "--auto-cleanup", "false"]);
    let mut c = Cluster::start_with(4, ClusterOptions::with_args(&args)).await;
    let id = |i: usize| format!("node{}", i + 1);
    let (a, b, dropped) = (id(r.stay[0]), id(r.stay[1]), id(r.dropped));
    assert_eq!(
        {
            let mut o = c.owners(0, &r.key).await;
            o.sort();
            o
        },
        replicas(4, &r.key),
        "the test places keys as the nodes do"
    );
    for s in r.stay {
        c.block(s, &["node5"]);
    }
    let new = c
        .add_node_blocking(&["--join"], &[a.as_str(), b.as_str()])
        .await;
    wait_until(
        "node5 to fail a join streaming attempt",
        Duration::from_secs(30),
        || async { c.log(new).contains("join streaming failed") },
    )
    .await;
    for via in 0..4 {
        c.wait_state(via, "node5", "joining").await;
    }

    // The dropped replica cannot reach the two that stay.
    c.block(r.dropped, &[a.as_str(), b.as_str()]);
    for s in r.stay {
        c.block(s, &["node5", dropped.as_str()]);
    }
    let written = c
        .client_for(r.dropped)
        .put(r.key.clone(), "lost?", Consistency::Quorum)
        .await;
    // A write that reaches every replica of both sets, for a control.
    let control = format!("{}-control", r.key);
    c.client_for(r.other)
        .put(control.clone(), "kept", Consistency::Quorum)
        .await
        .expect("a write reaching both sets during the join");

    // node5 finishes its join (the dropped replica still cut off from
    // the two that stay, so nothing brings them the first write).
    for s in r.stay {
        c.block(s, &[dropped.as_str()]);
    }
    c.block(new, &[]);
    for via in 0..5 {
        c.wait_state(via, "node5", "normal").await;
    }
    let mut owners = c.owners(r.stay[0], &r.key).await;
    owners.sort();
    assert_eq!(owners, replicas(5, &r.key), "node5 took the key");

    // A QUORUM read through a replica that stays, cut off from node5: its
    // two answers come from the replicas that stay.
    c.block(r.stay[0], &["node5", dropped.as_str()]);
    c.block(new, &[a.as_str()]);
    let read = c
        .client_for(r.stay[0])
        .get(r.key.clone(), Consistency::Quorum)
        .await
        .expect("two of the three replicas answer");
    if let Ok(acks) = &written {
        assert_eq!(
            read.map(|v| v.val),
            Some("lost?".into()),
            "a QUORUM write acknowledged during the join ({acks:?}) is not read at QUORUM after it"
        );
    }
    let msg = written.expect_err("refused").to_string();
    assert!(
        msg.contains("write quorum not reached among the key's current replicas")
            && msg.contains("1 of 2 acks"),
        "{msg}"
    );
    let got = c
        .client_for(r.other)
        .get(control.clone(), Consistency::Quorum)
        .await
        .expect("the control key reads");
    assert_eq!(got.map(|v| v.val), Some("kept".into()), "{control}");
}
