//! A client whose every endpoint has just failed stops trying for a moment
//! and says so, instead of reconnecting as fast as calls come; after the
//! cool-down it tries again and recovers.

mod common;

use std::time::{Duration, Instant};

use tinykv_client::{Client, ClientError, ClientOptions, Consistency};

/// An address on which nothing listens (connections are refused).
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    addr
}

#[tokio::test]
async fn calls_fail_fast_once_every_endpoint_failed() {
    let addrs = [closed_port(), closed_port()];
    let client = Client::connect_many(
        addrs.iter().map(String::as_str),
        ClientOptions {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            ..ClientOptions::default()
        },
    )
    .expect("client");
    // Each endpoint is tried once and refuses the connection.
    for _ in 0..addrs.len() {
        match client.put("k", "v", Consistency::Quorum).await {
            Err(ClientError::Unavailable(m)) => {
                assert!(!m.contains("no node reachable"), "tried, not skipped: {m}")
            }
            other => panic!("want Unavailable from the refused connection, got {other:?}"),
        }
    }
    // Now every endpoint failed within the window: no more attempts.
    for _ in 0..10 {
        match client.get("k", Consistency::Quorum).await {
            Err(ClientError::Unavailable(m)) => {
                assert!(m.contains("no node reachable: all 2 endpoints"), "{m}")
            }
            other => panic!("want a fail-fast Unavailable, got {other:?}"),
        }
    }
    // A node comes up on the first address: once the cool-down is over the
    // client tries again and the calls go through (polled up to a generous
    // deadline; the cool-down's length is not what is tested).
    let listener = tokio::net::TcpListener::bind(&addrs[0])
        .await
        .unwrap_or_else(|e| panic!("rebinding {}: {e}", addrs[0]));
    let (server, stop, serving) = common::serve(listener);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.put("k", "v", Consistency::Quorum).await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the client never tried the endpoints again after its cool-down: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = client.get("k", Consistency::Quorum).await.expect("get");
    assert_eq!(got.map(|v| v.val.to_vec()), Some(b"v".to_vec()));
    assert!(
        server
            .single_calls
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    stop.cancel();
    serving.await.expect("server task").expect("server");
}
