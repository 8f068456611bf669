//! Bad input gets a clear error and no node dies.

use std::time::Duration;

use tinykv_client::{Client, ClientError, ClientOptions, Consistency};
use tinykv_tests::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_rejected_clearly() {
    let c = Cluster::start(3).await;
    let client = c.client_for(0);

    let expect_invalid = |r: Result<_, ClientError>, needle: &str| match r {
        Err(ClientError::InvalidArgument(m)) => {
            assert!(m.contains(needle), "{m:?} should mention {needle:?}")
        }
        other => panic!("expected INVALID_ARGUMENT ({needle}), got {other:?}"),
    };
    expect_invalid(
        client.put("", "v", Consistency::Quorum).await.map(|_| ()),
        "key must not be empty",
    );
    expect_invalid(
        client.get("", Consistency::Quorum).await.map(|_| ()),
        "key must not be empty",
    );
    // The longest key the engine stores works at ALL (every replica stores
    // it); one byte more is refused before any replica sees it.
    let longest = vec![b'k'; 65_527];
    client
        .put(longest.clone(), "v", Consistency::All)
        .await
        .expect("the longest key is stored");
    let got = client.get(longest, Consistency::All).await.expect("get");
    assert_eq!(got.map(|v| v.val), Some("v".as_bytes().to_vec().into()));
    expect_invalid(
        client
            .put(vec![b'k'; 65_528], "v", Consistency::Quorum)
            .await
            .map(|_| ()),
        "limit is 65527",
    );
    expect_invalid(
        client
            .put("big", vec![0u8; 4 * 1024 * 1024 + 1], Consistency::Quorum)
            .await
            .map(|_| ()),
        "limit is 4194304",
    );
    expect_invalid(
        client
            .put("k", "v", Consistency::Count(4))
            .await
            .map(|_| ()),
        "replication_factor 4 exceeds the replication factor 3",
    );
    expect_invalid(
        client.get("k", Consistency::Count(9)).await.map(|_| ()),
        "quorum_size 9 exceeds the replication factor 3",
    );

    // The largest allowed value is accepted.
    client
        .put("max", vec![7u8; 4 * 1024 * 1024], Consistency::Quorum)
        .await
        .expect("4 MiB value");
    assert_eq!(
        client
            .get("max", Consistency::Quorum)
            .await
            .expect("get")
            .map(|v| v.val.len()),
        Some(4 * 1024 * 1024)
    );

    // An address where no node listens: a clear UNAVAILABLE, quickly.
    let nobody = Client::connect_many(
        ["127.0.0.1:1"],
        ClientOptions {
            timeout: Duration::from_secs(2),
            ..ClientOptions::default()
        },
    )
    .expect("client");
    match nobody.get("k", Consistency::One).await {
        Err(ClientError::Unavailable(_)) | Err(ClientError::DeadlineExceeded(_)) => {}
        other => panic!("expected UNAVAILABLE from a dead address, got {other:?}"),
    }
    assert!(matches!(
        Client::connect("not an address"),
        Err(ClientError::InvalidAddress { .. })
    ));

    // Every node still serves.
    for i in 0..3 {
        assert!(
            c.client_for(i).health().await.expect("health"),
            "node {i} died"
        );
    }
    client
        .put("still", "alive", Consistency::All)
        .await
        .expect("put after bad input");
}

/// A peer's overlong key or hint target is refused with INVALID_ARGUMENT on
/// every peer write path, as a client's is: it never reaches the storage
/// engine (whose limit is an assert), no node panics, and all stay SERVING.
#[tokio::test(flavor = "multi_thread")]
async fn a_peers_overlong_keys_are_refused_without_a_panic() {
    use tinykv_proto::internal as peer;
    let c = Cluster::start(3).await;
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", c.addr(0)))
        .expect("address")
        .connect()
        .await
        .expect("connect");
    let mut p = peer::peer_client::PeerClient::new(ch).max_decoding_message_size(1 << 24);
    let record = |key: Vec<u8>| peer::KeyedRecord {
        key: key.into(),
        record: Some(peer::Record {
            value: b"v".to_vec().into(),
            timestamp: 1,
            writer: "node2".into(),
            tombstone: false,
            expires_at: 0,
        }),
    };
    let too_long = vec![b'k'; 65_528];
    let codes = [
        p.write(peer::ReplicaWrite {
            key: too_long.clone().into(),
            record: record(Vec::new()).record,
            hint_for: String::new(),
            from: "node2".into(),
        })
        .await
        .map(|_| ()),
        p.write_batch(peer::ReplicaWriteBatch {
            records: vec![record(b"fine".to_vec()), record(too_long.clone())],
            from: "node2".into(),
        })
        .await
        .map(|_| ()),
        p.write_hints(peer::ReplicaHintBatch {
            records: vec![record(too_long.clone())],
            hint_for: "node3".into(),
            from: "node2".into(),
        })
        .await
        .map(|_| ()),
        p.write_hints(peer::ReplicaHintBatch {
            records: vec![record(b"k".to_vec())],
            hint_for: "n".repeat(70_000),
            from: "node2".into(),
        })
        .await
        .map(|_| ()),
    ];
    for (i, got) in codes.into_iter().enumerate() {
        match got {
            Err(s) if s.code() == tonic::Code::InvalidArgument => {}
            other => panic!("write path {i}: expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
    assert_eq!(
        c.local(0, "fine").await,
        None,
        "nothing of the refused batch applied"
    );
    for i in 0..3 {
        assert!(
            c.client_for(i).health().await.expect("health"),
            "node{} serving",
            i + 1
        );
        assert!(
            !c.log(i).contains("panicked"),
            "node{} panicked:\n{}",
            i + 1,
            c.log(i)
        );
    }
}

/// Gossip from a peer is validated like a client's input: a table with more
/// rows than a cluster may have is refused, and rows that are malformed or
/// whose version lies beyond the clock offset (it would win every later
/// change of that member) are left out of the member table.
#[tokio::test(flavor = "multi_thread")]
async fn a_peers_gossip_is_validated() {
    use tinykv_proto::internal as peer;
    let c = Cluster::start(3).await;
    let mut p = peer::peer_client::PeerClient::connect(format!("http://{}", c.addr(0)))
        .await
        .expect("connect");
    let row = |id: &str, version: u64| peer::MemberInfo {
        node_id: id.into(),
        address: "127.0.0.1:1".into(),
        state: "normal".into(),
        version,
    };
    let flood = p
        .heartbeat(peer::HeartbeatRequest {
            from: "node2".into(),
            members: (0..1025).map(|i| row(&format!("x{i}"), 1)).collect(),
            ..Default::default()
        })
        .await
        .expect_err("1025 rows");
    assert_eq!(flood.code(), tonic::Code::InvalidArgument, "{flood:?}");
    let far_ahead = u64::MAX - 1;
    p.heartbeat(peer::HeartbeatRequest {
        from: "node2".into(),
        members: vec![
            row("future", far_ahead),
            row("node3", far_ahead),
            row("bad id with spaces", 1),
            row(&"long".repeat(100), 1),
        ],
        ..Default::default()
    })
    .await
    .expect("a heartbeat with bad rows is answered");
    let status = c.client_for(0).status().await.expect("status");
    let mut ids: Vec<String> = status.members.iter().map(|m| m.node_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["node1", "node2", "node3"]);
    let node3 = status.members.iter().find(|m| m.node_id == "node3");
    assert_eq!(
        node3.map(|m| m.address.clone()),
        Some(c.addr(2)),
        "node3's row was not replaced by a version far ahead"
    );
}
