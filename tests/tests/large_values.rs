//! Large values through coalesced batches: every operation that is valid
//! alone is valid beside others. The client library coalesces concurrent
//! calls into one batch message, and a coordinator sends a batch's replica
//! reads and writes to each peer as one message; neither may make a set of
//! values each under `--max-value-bytes` fail because together they pass
//! a message limit.

use tinykv_client::Consistency;
use tinykv_tests::{Cluster, ClusterOptions};

/// 3 MiB: under the 4 MiB value limit, but two of them pass it.
const BIG: usize = 3 * 1024 * 1024;

fn value(i: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; BIG];
    v[..8].copy_from_slice(&(i as u64).to_be_bytes());
    v
}

/// Runs every future at once (each a task) and returns their outputs in order.
async fn all<T: Send + 'static>(
    futs: impl IntoIterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_large_values_are_written_and_read_back() {
    let c = Cluster::start(3).await;
    // One client: its concurrent calls share one queue per endpoint, so
    // they are coalesced into batches.
    let client = c.client_for(0);
    const N: usize = 8;

    let puts = all((0..N).map(|i| {
        let client = client.clone();
        async move {
            client
                .put(format!("big{i}"), value(i), Consistency::All)
                .await
        }
    }))
    .await;
    for (i, r) in puts.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("put big{i}: {e}"));
    }

    let gets = all((0..N).map(|i| {
        let client = client.clone();
        async move { client.get(format!("big{i}"), Consistency::All).await }
    }))
    .await;
    for (i, r) in gets.into_iter().enumerate() {
        let got = r.unwrap_or_else(|e| panic!("get big{i}: {e}"));
        let got = got.unwrap_or_else(|| panic!("big{i} not found"));
        assert!(got.val == value(i), "big{i}: wrong value");
    }

    // A mix in flight together: small puts beside large reads.
    let (gets, smalls) = tokio::join!(
        all((0..N).map(|i| {
            let client = client.clone();
            async move { client.get(format!("big{i}"), Consistency::Quorum).await }
        })),
        all((0..N).map(|i| {
            let client = client.clone();
            async move {
                client
                    .put(format!("small{i}"), "v", Consistency::Quorum)
                    .await
            }
        }))
    );
    for (i, r) in gets.into_iter().enumerate() {
        let got = r.unwrap_or_else(|e| panic!("mixed get big{i}: {e}"));
        assert!(got.is_some_and(|g| g.val == value(i)), "big{i}");
    }
    for (i, r) in smalls.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("mixed put small{i}: {e}"));
    }
}

/// A value of `BIG` bytes that the test helper's `local` reads back as text.
fn text(i: usize) -> String {
    char::from(b'a' + (i % 26) as u8).to_string().repeat(BIG)
}

#[tokio::test(flavor = "multi_thread")]
async fn anti_entropy_moves_large_values_page_by_page() {
    // No hints: the replica that was cut off converges only by repair, which
    // fetches ranges in pages and pushes versions in batches, both of which
    // must stay under the message limit however large the values are.
    // A repair round digests, fetches and applies 18 MiB (about 2 s in a
    // debug build): its deadline is well above the default 5 s.
    let mut opts = ClusterOptions {
        client_timeout: std::time::Duration::from_secs(60),
        ..ClusterOptions::default()
    };
    opts.args.extend(
        ["--max-hints", "0", "--anti-entropy-interval", "0s"]
            .into_iter()
            .map(String::from),
    );
    let c = Cluster::start_with(3, opts).await;
    c.block(2, &["node1", "node2"]);
    c.block(0, &["node3"]);
    c.block(1, &["node3"]);
    let client = c.client_for(0);
    const N: usize = 6;
    for i in 0..N {
        client
            .put(format!("ae-big{i}"), text(i), Consistency::Quorum)
            .await
            .unwrap_or_else(|e| panic!("put ae-big{i}: {e}"));
    }
    for i in 0..3 {
        c.block(i, &[]);
    }
    assert_eq!(
        c.local(2, "ae-big0").await,
        None,
        "node3 should have missed it"
    );
    let report = c
        .client_for(2)
        .repair()
        .await
        .unwrap_or_else(|e| panic!("repair: {e}\n{}", c.log(2)));
    assert!(
        report.keys_received >= N as u64,
        "repair moved too little: {report:?}"
    );
    for i in 0..N {
        let got = c.local(2, &format!("ae-big{i}")).await;
        assert!(got == Some(text(i)), "ae-big{i} on node3 after repair");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leaving_node_streams_large_values_out_page_by_page() {
    // 18 MiB on the leaving node: more than one page of its stream (8 MiB)
    // and than one message (5 MiB), so both cuts are crossed.
    let c = Cluster::start_with(
        5,
        ClusterOptions {
            client_timeout: std::time::Duration::from_secs(30),
            ..ClusterOptions::default()
        },
    )
    .await;
    let client = c.client_for(0);
    const N: usize = 6;
    let keys: Vec<String> = (0..N).map(|i| format!("leave-big{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        client
            .put(key.clone(), text(i), Consistency::All)
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    let leaving = "node3";
    let held = {
        let mut n = 0;
        for key in &keys {
            n += usize::from(c.owners(0, key).await.iter().any(|o| o == leaving));
        }
        n
    };
    assert!(held >= 2, "{leaving} holds only {held} of the keys");
    client.decommission(leaving).await.expect("decommission");
    tinykv_tests::wait_until(
        &format!("{leaving} to leave"),
        std::time::Duration::from_secs(60),
        || async {
            client
                .decommission(leaving)
                .await
                .map(|r| r.state == "left")
                .unwrap_or(false)
        },
    )
    .await;
    // node1 learns of the departure by gossip, just after it is done.
    tinykv_tests::wait_until(
        &format!("node1's ring to drop {leaving}"),
        std::time::Duration::from_secs(30),
        || async {
            for key in &keys {
                if c.owners(0, key).await.iter().any(|o| o == leaving) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for (i, key) in keys.iter().enumerate() {
        for o in c.owners(0, key).await {
            let got = c.local(c.index_of(&o), key).await;
            assert!(got == Some(text(i)), "{key} missing on owner {o}");
        }
    }
}
