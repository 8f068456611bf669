//! The clock guard on real node processes: timestamps far ahead of a
//! node's clock are refused from clients and from peers, so no key can be
//! frozen in the future, and a restarted node never stamps below what it
//! stamped before.

use std::time::{SystemTime, UNIX_EPOCH};

use tinykv_client::Consistency;
use tinykv_proto::internal as peer;
use tinykv_proto::tinykv::{tiny_kv_client::TinyKvClient, PutRequest};
use tinykv_tests::{Cluster, ClusterOptions};

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A put through the raw protocol with the client's own `timestamp`.
async fn put_at(addr: &str, key: &str, val: &str, timestamp: i64) -> Result<(), tonic::Status> {
    let mut client = TinyKvClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    client
        .put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            val: val.as_bytes().to_vec().into(),
            timestamp,
            ..Default::default()
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_far_in_the_future_is_refused_and_later_puts_win() {
    let c = Cluster::start(3).await;
    let ten_years = 10 * 365 * 86_400 * 1_000_000_i64;
    let err = put_at(&c.addr(0), "frozen", "future", now_us() + ten_years)
        .await
        .expect_err("a timestamp ten years ahead");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("--max-clock-offset"), "{err:?}");
    let client = c.client();
    client
        .put("frozen", "now", Consistency::All)
        .await
        .expect("put");
    let got = client.get("frozen", Consistency::All).await.expect("get");
    assert_eq!(got.map(|v| v.val), Some("now".as_bytes().to_vec().into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_version_beyond_the_offset_is_refused() {
    let c = Cluster::start(3).await;
    let mut p = peer::peer_client::PeerClient::connect(format!("http://{}", c.addr(0)))
        .await
        .expect("connect");
    let err = p
        .write(peer::ReplicaWrite {
            key: b"ahead".to_vec().into(),
            record: Some(peer::Record {
                value: b"v".to_vec().into(),
                timestamp: (now_us() + 60_000_000) as u64,
                writer: "node2".into(),
                tombstone: false,
                expires_at: 0,
            }),
            hint_for: String::new(),
            from: "node2".into(),
        })
        .await
        .expect_err("a version a minute ahead");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(c.local(0, "ahead").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_node_never_stamps_below_what_it_stamped_before() {
    let mut opts = ClusterOptions {
        rf: 1,
        ..ClusterOptions::default()
    };
    opts.args
        .extend(["--max-clock-offset".to_string(), "3s".to_string()]);
    let mut c = Cluster::start_with(1, opts).await;
    // Stored (and absorbed by the clock) 2.5 s ahead of the wall clock.
    put_at(&c.addr(0), "k", "before", now_us() + 2_500_000)
        .await
        .expect("a timestamp within the offset");
    c.kill(0);
    c.restart(0).await;
    // Stamped by the restarted node: it must win over the version above.
    let client = c.client_for(0);
    client
        .put("k", "after", Consistency::All)
        .await
        .expect("put");
    let got = client.get("k", Consistency::All).await.expect("get");
    assert_eq!(got.map(|v| v.val), Some("after".as_bytes().to_vec().into()));
}
