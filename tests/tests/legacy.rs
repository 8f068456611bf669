//! Wire compatibility: a client generated from the original C++ TinyKV proto
//! (tests/fixtures/legacy_tinykv.proto) works unchanged.

use tinykv_tests::legacy::tiny_kv_client::TinyKvClient;
use tinykv_tests::legacy::{GetRequest, PingRequest, PutRequest};
use tinykv_tests::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn legacy_client_put_3_get_2() {
    let c = Cluster::start(5).await;
    let mut old = TinyKvClient::connect(format!("http://{}", c.addr(0)))
        .await
        .expect("connect");
    assert!(
        old.ping(PingRequest {
            sender_id: "cli".into()
        })
        .await
        .expect("ping")
        .into_inner()
        .is_ready
    );

    // `tinykv_client host:port put my_key my_data 3`
    let put = old
        .put(PutRequest {
            key: "my_key".into(),
            val: "my_data".into(),
            sender_id: "cli".into(),
            replication_factor: 3,
            timestamp: 0,
        })
        .await
        .expect("put")
        .into_inner();
    assert!(put.operation_success);

    // `tinykv_client host:port get my_key 2`, through another node.
    let mut other = TinyKvClient::connect(format!("http://{}", c.addr(3)))
        .await
        .expect("connect");
    let got = other
        .get(GetRequest {
            key: "my_key".into(),
            sender_id: "cli".into(),
            quorum_size: 2,
        })
        .await
        .expect("get")
        .into_inner();
    assert!(got.operation_success);
    assert_eq!(got.val, "my_data");
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    assert!(
        (now_us - got.timestamp).abs() < 60_000_000,
        "timestamp {} is not µs since the epoch",
        got.timestamp
    );

    // A client-supplied timestamp is kept; an older one loses (LWW).
    let ts = got.timestamp + 1000;
    old.put(PutRequest {
        key: "my_key".into(),
        val: "newer".into(),
        sender_id: "x".into(),
        replication_factor: 0,
        timestamp: ts,
    })
    .await
    .expect("put with timestamp");
    old.put(PutRequest {
        key: "my_key".into(),
        val: "older".into(),
        sender_id: "x".into(),
        replication_factor: 0,
        timestamp: ts - 10,
    })
    .await
    .expect("put with older timestamp");
    let got = other
        .get(GetRequest {
            key: "my_key".into(),
            sender_id: "cli".into(),
            quorum_size: 0,
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!((got.val.as_str(), got.timestamp), ("newer", ts));

    // A missing key: OK status, operation_success=false.
    let missing = other
        .get(GetRequest {
            key: "nope".into(),
            sender_id: "cli".into(),
            quorum_size: 2,
        })
        .await
        .expect("get of a missing key is not an error")
        .into_inner();
    assert!(!missing.operation_success);
}
