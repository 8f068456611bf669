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
    expect_invalid(
        client
            .put(vec![b'k'; 64 * 1024 + 1], "v", Consistency::Quorum)
            .await
            .map(|_| ()),
        "limit is 65536",
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
