//! The `Batch` RPC: independent operations with their own results, and the
//! client's coalescing of concurrent calls into batches.

use std::collections::HashSet;
use std::time::Duration;

use tinykv_client::proto::operation::Op;
use tinykv_client::proto::operation_result::Result as OpResult;
use tinykv_client::proto::tiny_kv_client::TinyKvClient;
use tinykv_client::proto::{
    BatchRequest, Consistency as WireConsistency, DeleteRequest, GetRequest, Operation, PutRequest,
    ReadStatus,
};
use tinykv_client::{Client, ClientOptions, Consistency, RoutingPolicy, Value};
use tinykv_tests::{wait_until, Cluster, ClusterOptions};

fn put(key: &str, val: &str) -> Operation {
    Operation {
        op: Some(Op::Put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            val: val.as_bytes().to_vec().into(),
            consistency: WireConsistency::Quorum as i32,
            ..Default::default()
        })),
    }
}

fn get(key: &str) -> Operation {
    Operation {
        op: Some(Op::Get(GetRequest {
            key: key.as_bytes().to_vec().into(),
            consistency: WireConsistency::Quorum as i32,
            ..Default::default()
        })),
    }
}

fn delete(key: &str) -> Operation {
    Operation {
        op: Some(Op::Delete(DeleteRequest {
            key: key.as_bytes().to_vec().into(),
            consistency: WireConsistency::Quorum as i32,
            ..Default::default()
        })),
    }
}

async fn batch(c: &Cluster, ops: Vec<Operation>) -> Result<Vec<OpResult>, tonic::Status> {
    let mut kv = TinyKvClient::connect(format!("http://{}", c.addr(0)))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let resp = kv
        .batch(BatchRequest {
            ops,
            sender_id: "test".into(),
        })
        .await?
        .into_inner();
    Ok(resp
        .results
        .into_iter()
        .map(|r| r.result.expect("every operation has a result"))
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_operations_are_independent_and_in_order() {
    let c = Cluster::start(3).await;
    let written = batch(&c, vec![put("a", "1"), put("b", "2"), put("gone", "x")])
        .await
        .expect("batch of puts");
    assert_eq!(written.len(), 3);
    for r in &written {
        match r {
            OpResult::Put(p) => assert!(p.operation_success && p.acks >= 2, "{p:?}"),
            other => panic!("expected a put result, got {other:?}"),
        }
    }

    // A bad operation fails alone; the others in the batch still run.
    let mixed = batch(
        &c,
        vec![
            get("a"),
            put("", "empty key"),
            delete("gone"),
            Operation { op: None },
            get("b"),
        ],
    )
    .await
    .expect("mixed batch");
    assert_eq!(mixed.len(), 5);
    match &mixed[0] {
        OpResult::Get(g) => {
            assert_eq!(g.status, ReadStatus::Found as i32);
            assert_eq!(&g.val[..], b"1");
        }
        other => panic!("expected get of a, got {other:?}"),
    }
    match &mixed[1] {
        OpResult::Error(e) => {
            assert_eq!(e.code, tonic::Code::InvalidArgument as i32);
            assert!(e.message.contains("key must not be empty"), "{e:?}");
        }
        other => panic!("expected an error for the empty key, got {other:?}"),
    }
    assert!(matches!(&mixed[2], OpResult::Delete(d) if d.operation_success));
    assert!(
        matches!(&mixed[3], OpResult::Error(e) if e.code == tonic::Code::InvalidArgument as i32)
    );
    assert!(matches!(&mixed[4], OpResult::Get(g) if &g.val[..] == b"2"));

    // The delete took effect.
    let after = batch(&c, vec![get("gone")])
        .await
        .expect("get after delete");
    assert!(matches!(&after[0], OpResult::Get(g) if g.status == ReadStatus::NotFound as i32));

    // An empty batch is answered with no results; an oversized one is refused.
    assert!(batch(&c, vec![]).await.expect("empty batch").is_empty());
    let too_many = (0..1025).map(|i| get(&format!("k{i}"))).collect();
    let err = batch(&c, too_many).await.expect_err("oversized batch");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("limit is 1024"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_client_calls_each_get_their_own_result() {
    let c = Cluster::start(3).await;
    let client = c.client();
    // Many tasks at once on one coalescing client: each must see its own
    // outcome, whatever batch it travelled in.
    let writes = (0..300).map(|i| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .put(format!("key{i}"), format!("value{i}"), Consistency::Quorum)
                .await
        })
    });
    let mut timestamps = HashSet::new();
    for w in writes {
        let out = w.await.expect("task").expect("put");
        assert!((2..=3).contains(&out.acks), "{} acks at QUORUM", out.acks);
        timestamps.insert(out.timestamp);
    }
    // One coordinator (the client is sticky) stamps every write with its
    // hybrid logical clock, which never hands out a stamp twice.
    assert_eq!(timestamps.len(), 300, "writes got their own versions");

    let reads = (0..300).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { (i, client.get(format!("key{i}"), Consistency::Quorum).await) })
    });
    for r in reads {
        let (i, got) = r.await.expect("task");
        let v: Option<Value> = got.expect("get");
        assert_eq!(
            v.map(|v| v.val),
            Some(format!("value{i}").into_bytes().into()),
            "key{i}"
        );
    }
    // A missing key in the middle of a busy batch is still a clean miss.
    let (miss, hit) = tokio::join!(
        client.get("never-written", Consistency::Quorum),
        client.get("key7", Consistency::Quorum)
    );
    assert_eq!(miss.expect("miss"), None);
    assert!(hit.expect("hit").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn token_aware_client_sends_each_key_to_a_replica() {
    let c = Cluster::start(5).await;
    let client = c.client_with(|o| o.routing = RoutingPolicy::TokenAware);
    client.refresh_topology().await.expect("ring map");
    for i in 0..40 {
        let key = format!("routed{i}");
        client
            .put(key.clone(), "v", Consistency::Quorum)
            .await
            .expect("put");
        // The version's writer is the node that coordinated the write.
        let writer = client
            .get(key.clone(), Consistency::Quorum)
            .await
            .expect("get")
            .expect("found")
            .writer;
        let owners = c.owners(0, &key).await;
        assert_eq!(
            owners.first(),
            Some(&writer),
            "{key} was coordinated by {writer}, not its primary ({owners:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_client_uses_one_node_and_moves_on_when_it_dies() {
    let mut c = Cluster::start(3).await;
    let addrs: Vec<String> = (0..3).map(|i| c.addr(i)).collect();
    let client = Client::connect_many(
        addrs.iter().map(String::as_str),
        ClientOptions {
            timeout: Duration::from_secs(2),
            routing: RoutingPolicy::Sticky,
            ..ClientOptions::default()
        },
    )
    .expect("client");
    let mut writers = HashSet::new();
    for i in 0..20 {
        let key = format!("sticky{i}");
        client
            .put(key.clone(), "v", Consistency::Quorum)
            .await
            .expect("put");
        let v = client.get(key, Consistency::Quorum).await.expect("get");
        writers.insert(v.expect("found").writer);
    }
    assert_eq!(
        writers.len(),
        1,
        "one coordinator for everything: {writers:?}"
    );
    let sticky = writers.into_iter().next().expect("one writer");

    c.kill(c.index_of(&sticky));
    // The call that finds the node gone fails; the client then moves on.
    wait_until(
        "the client moves to a live node",
        Duration::from_secs(15),
        || {
            let client = client.clone();
            async move { client.put("moved", "v", Consistency::Quorum).await.is_ok() }
        },
    )
    .await;
    for i in 0..10 {
        let key = format!("after{i}");
        client
            .put(key.clone(), "v", Consistency::Quorum)
            .await
            .expect("put after failover");
        let v = client
            .get(key, Consistency::Quorum)
            .await
            .expect("get after failover");
        assert_ne!(v.expect("found").writer, sticky);
    }
}

fn put_with(key: &str, val: &str, level: WireConsistency, strict: bool) -> Operation {
    Operation {
        op: Some(Op::Put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            val: val.as_bytes().to_vec().into(),
            consistency: level as i32,
            strict_quorum: strict,
            ..Default::default()
        })),
    }
}

/// A batch's writes are coordinated together (one call per replica), but
/// each keeps its own quorum: with a replica killed and not yet known down,
/// its call fails and every QUORUM write of the batch still succeeds
/// (and every ALL write that is not strict, through a fallback), while a
/// strict ALL write succeeds only if its key's replicas are all alive. Once the node is known down a batch goes to
/// fallbacks at once, which keep hints for it; restarted, the node gets
/// every write it missed from those hints (anti-entropy is off, and the
/// keys are not read after the restart, so nothing else can bring them).
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_keeps_each_writes_quorum_when_a_replica_dies() {
    let mut opts = ClusterOptions::default().with_metrics();
    opts.args
        .extend(["--anti-entropy-interval", "0s"].map(String::from));
    let mut c = Cluster::start_with(5, opts).await;
    const KEYS: usize = 40;
    let owners_of: Vec<Vec<String>> = {
        let mut v = Vec::new();
        for i in 0..KEYS {
            v.push(c.owners(0, &format!("bk{i}")).await);
        }
        v
    };
    let dead = "node3";
    assert!(owners_of.iter().any(|o| o.iter().any(|n| n == dead)));
    c.kill(c.index_of(dead));

    let mut ops: Vec<Operation> = (0..KEYS)
        .map(|i| put_with(&format!("bk{i}"), "v1", WireConsistency::Quorum, false))
        .collect();
    ops.extend((0..KEYS).map(|i| put_with(&format!("strict{i}"), "s", WireConsistency::All, true)));
    ops.extend(
        (0..KEYS).map(|i| put_with(&format!("sloppy{i}"), "s", WireConsistency::All, false)),
    );
    let results = batch(&c, ops).await.expect("batch");
    // Not strict: a write whose replica failed gets its third ack from a
    // fallback that keeps a hint.
    for (i, r) in results[2 * KEYS..].iter().enumerate() {
        assert!(
            matches!(r, OpResult::Put(p) if p.acks == 3),
            "sloppy{i} at ALL: {r:?}"
        );
    }
    for (i, r) in results[..KEYS].iter().enumerate() {
        match r {
            OpResult::Put(p) => assert!(p.operation_success && p.acks >= 2, "bk{i}: {p:?}"),
            other => panic!("bk{i}: expected success at QUORUM, got {other:?}"),
        }
    }
    for (i, r) in results[KEYS..2 * KEYS].iter().enumerate() {
        let key = format!("strict{i}");
        let owned_by_dead = c.owners(0, &key).await.iter().any(|n| n == dead);
        match r {
            OpResult::Put(p) if !owned_by_dead => assert_eq!(p.acks, 3, "{key}: {p:?}"),
            OpResult::Error(e) if owned_by_dead => {
                assert!(
                    e.message.contains("write quorum not reached: 2 of 3 acks"),
                    "{key}: {e:?}"
                );
                assert!(e.message.contains(dead), "{key}: {e:?}");
            }
            other => panic!("{key} (owned by {dead}: {owned_by_dead}): got {other:?}"),
        }
    }

    // Reads of the batch are grouped the same way and keep their own R: at
    // QUORUM every key reads back, at ALL only keys the dead node does not
    // hold.
    let mut reads: Vec<Operation> = (0..KEYS).map(|i| get(&format!("bk{i}"))).collect();
    reads.extend((0..KEYS).map(|i| Operation {
        op: Some(Op::Get(GetRequest {
            key: format!("bk{i}").into_bytes().into(),
            consistency: WireConsistency::All as i32,
            ..Default::default()
        })),
    }));
    let got = batch(&c, reads).await.expect("batch of reads");
    for (i, r) in got.iter().enumerate() {
        let key = format!("bk{}", i % KEYS);
        let owned_by_dead = owners_of[i % KEYS].iter().any(|n| n == dead);
        match r {
            OpResult::Get(g) => {
                assert!(i < KEYS || !owned_by_dead, "{key} at ALL: {g:?}");
                assert_eq!(&g.val[..], b"v1", "{key}: {g:?}");
            }
            OpResult::Error(e) if i >= KEYS && owned_by_dead => assert!(
                e.message
                    .contains("read quorum not reached: 2 of 3 replies"),
                "{key}: {e:?}"
            ),
            other => panic!("{key} (#{i}): got {other:?}"),
        }
    }

    // Known down: the next batch's writes go to fallbacks from the start.
    c.wait_health(0, dead, "down").await;
    let ops = (0..KEYS)
        .map(|i| put_with(&format!("bk{i}"), "v2", WireConsistency::All, false))
        .collect();
    for (i, r) in batch(&c, ops).await.expect("batch").iter().enumerate() {
        assert!(
            matches!(r, OpResult::Put(p) if p.acks == 3),
            "bk{i} at ALL while {dead} is down: {r:?}"
        );
    }

    let dead_i = c.index_of(dead);
    let live: Vec<usize> = (0..5).filter(|&i| i != dead_i).collect();
    let missed = owners_of
        .iter()
        .filter(|o| o.iter().any(|n| n == dead))
        .count() as u64;
    wait_until(
        "hints for the dead node",
        Duration::from_secs(10),
        || async { c.pending_hints(live.clone()).await >= missed },
    )
    .await;
    c.restart(dead_i).await;
    for (i, owners) in owners_of.iter().enumerate() {
        if !owners.iter().any(|n| n == dead) {
            continue;
        }
        let key = format!("bk{i}");
        c.wait_local(
            dead_i,
            &key,
            "v2",
            &format!("{dead} to get {key} back"),
            Duration::from_secs(60),
        )
        .await;
    }
    wait_until("hints to be deleted", Duration::from_secs(10), || async {
        c.pending_hints(0..5).await == 0
    })
    .await;
    let stored = c
        .metric_sum(live.clone(), "tinykv_hints_stored_total")
        .await;
    let replayed = c
        .metric_sum(live.clone(), "tinykv_hints_replayed_total")
        .await;
    assert!(
        replayed >= missed as f64 && replayed == stored,
        "{replayed} hints replayed of {stored} stored, {missed} keys missed"
    );
}
