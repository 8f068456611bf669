//! A coalescing client against a server that has neither `BatchStream` nor
//! `Batch` (the original C++ TinyKV): every call must still work, one RPC
//! each.

mod common;

use std::sync::atomic::Ordering;

use tinykv_client::{Client, ClientOptions, Consistency};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_single_rpcs() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (server, stop, serving) = common::serve(listener);

    let client = Client::connect_many([addr.as_str()], ClientOptions::default()).expect("client");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .put(format!("k{i}"), format!("v{i}"), Consistency::Quorum)
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("put through the fallback");
    }
    for i in 0..40 {
        let got = client
            .get(format!("k{i}"), Consistency::Quorum)
            .await
            .expect("get");
        assert_eq!(
            got.map(|v| v.val.to_vec()),
            Some(format!("v{i}").into_bytes())
        );
    }
    client
        .delete("k0", Consistency::Quorum)
        .await
        .expect("delete");
    assert_eq!(
        client.get("k0", Consistency::Quorum).await.expect("get"),
        None
    );

    // The client asked for a batch stream, then a batch, and, told
    // UNIMPLEMENTED each time, stopped asking.
    assert_eq!(server.stream_calls.load(Ordering::Relaxed), 1);
    let batches = server.batch_calls.load(Ordering::Relaxed);
    assert!(batches >= 1, "the client tried a batch first");
    assert!(
        batches <= 2,
        "at most the first calls in flight tried a batch"
    );
    assert_eq!(server.single_calls.load(Ordering::Relaxed), 40 + 40 + 2);

    stop.cancel();
    serving.await.expect("server task").expect("server");
}
