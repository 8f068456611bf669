//! The coordinator against a scripted replica set in memory
//! ([`super::fake`]): quorums per level, strict and sloppy writes,
//! fallbacks and hints, read repair, speculative retry, deadlines and
//! batches with mixed outcomes. Time is paused, so deadlines and late
//! answers cost nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::fake::{Call, FakeReplicas, Kind, Script};
use super::*;
use crate::config::ReadFanout;
use crate::convergence::{Convergence, Start};
use crate::detector::Detector;
use crate::error::ReplicaError;
use crate::membership::{Member, MemberState, Membership};
use crate::ring::key_token;

const ME: &str = "n1";

/// A five-node cluster (RF 3) seen from `ME`, with the fake replicas.
struct World {
    fake: FakeReplicas,
    coordinator: Arc<Coordinator>,
    membership: Arc<Membership>,
    detector: Arc<Detector>,
    metrics: Arc<Metrics>,
}

fn settings() -> Settings {
    Settings {
        hinted_handoff: true,
        sloppy_quorum: true,
        read_fanout: ReadFanout::All,
        speculative_retry: Duration::from_millis(50),
        repair_timeout: Duration::from_secs(1),
    }
}

fn world(settings: Settings) -> World {
    world_with(settings, Convergence::settled())
}

/// [`world`] whose membership converges as `convergence` says.
fn world_with(settings: Settings, convergence: Convergence) -> World {
    let members = (1..=5)
        .map(|i| Member {
            id: format!("n{i}"),
            addr: format!("127.0.0.1:{}", 7000 + i),
            state: MemberState::Normal,
            version: 1,
        })
        .collect();
    let membership = Arc::new(Membership::new(ME, members, 3, 8).with_convergence(convergence));
    let detector = Arc::new(Detector::new(8.0, Duration::from_millis(100)));
    let fake = FakeReplicas::default();
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let placement = Arc::new(Placement::new(ME, membership.clone(), detector.clone()));
    let coordinator = Arc::new(Coordinator::new(
        placement,
        Arc::new(fake.clone()),
        settings,
        metrics.clone(),
    ));
    World {
        fake,
        coordinator,
        membership,
        detector,
        metrics,
    }
}

impl World {
    /// `key`'s replicas, in preference order.
    fn owners(&self, key: &[u8]) -> Vec<String> {
        self.membership
            .read_ring()
            .preference_list(key)
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// The nodes after `key`'s replicas, clockwise: its fallbacks in order.
    fn fallbacks(&self, key: &[u8]) -> Vec<String> {
        let owners = self.owners(key);
        self.membership
            .read_ring()
            .walk(key_token(key))
            .into_iter()
            .map(String::from)
            .filter(|n| !owners.contains(n))
            .collect()
    }

    async fn write(&self, reqs: Vec<WriteRequest>) -> Vec<Result<WriteOutcome, RequestError>> {
        self.coordinator.coordinate_writes(reqs).await
    }

    async fn write_one(&self, req: WriteRequest) -> Result<WriteOutcome, RequestError> {
        self.write(vec![req]).await.pop().expect("one outcome")
    }

    async fn read_one(&self, key: &[u8], r: usize) -> Result<ReadOutcome, RequestError> {
        let req = ReadRequest {
            key: Bytes::copy_from_slice(key),
            r,
            deadline: Instant::now() + Duration::from_secs(1),
        };
        let mut out = self.coordinator.coordinate_reads(vec![req]).await;
        out.pop().expect("one outcome")
    }

    fn calls_of(&self, kind: Kind) -> Vec<Call> {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| c.kind == kind)
            .collect()
    }
}

/// A key none of whose replicas is `ME`, so hints the coordinator keeps
/// for a replica are told apart from the replica's own copy.
fn key_not_on_me(w: &World) -> Bytes {
    (0..1000)
        .map(|i| Bytes::from(format!("key{i}")))
        .find(|k| !w.owners(k).iter().any(|o| o == ME))
        .expect("some key lives elsewhere")
}

fn value(ts: u64) -> Record {
    Record::value(Bytes::from(format!("v{ts}")), ts, ME)
}

fn write_req(key: &Bytes, ts: u64, w: usize, strict: bool) -> WriteRequest {
    WriteRequest {
        key: key.clone(),
        record: value(ts),
        w,
        strict,
        deadline: Instant::now() + Duration::from_secs(1),
    }
}

/// Waits (in paused time) until `cond` holds, failing after 10 s.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_answers_at_its_w_and_still_reaches_every_replica() {
    for w in 1..=3 {
        let world = world(settings());
        let key = key_not_on_me(&world);
        let owners = world.owners(&key);
        // One replica answers late: W up to 2 does not wait for it.
        world.fake.script(
            &owners[2],
            Kind::Write,
            Script::Late(Duration::from_millis(200)),
        );
        let started = Instant::now();
        let out = world.write_one(write_req(&key, 10, w, false)).await;
        assert_eq!(out.expect("write succeeds").acks, w);
        let waited = started.elapsed();
        assert_eq!(
            waited >= Duration::from_millis(200),
            w == 3,
            "W={w} waited {waited:?}"
        );
        eventually("every replica has the version", || {
            owners
                .iter()
                .all(|o| world.fake.get(o, &key) == Some(value(10)))
        })
        .await;
        assert!(world.fake.hints(ME).is_empty(), "no replica failed");
    }
}

#[tokio::test(start_paused = true)]
async fn a_strict_write_fails_short_of_w_and_keeps_a_hint_for_the_failed_replica() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    world.fake.script(
        &owners[1],
        Kind::Write,
        Script::Fail(ReplicaError::Unreachable(String::new())),
    );
    let err = world
        .write_one(write_req(&key, 10, 3, true))
        .await
        .expect_err("strict ALL fails");
    let msg = err.to_string();
    assert!(
        msg.contains("write quorum not reached: 2 of 3 acks"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}: unreachable", owners[1])),
        "{msg}"
    );
    match err {
        RequestError::Quorum(q) => assert_eq!(
            q.failures,
            vec![(owners[1].clone(), ReplicaError::Unreachable(String::new()))]
        ),
        other => panic!("not a quorum error: {other}"),
    }
    // Strict: no fallback was asked to stand in.
    assert!(world.calls_of(Kind::Hints).iter().all(|c| c.node == ME));
    eventually(
        "the coordinator keeps a hint for the failed replica",
        || world.fake.hints(ME) == vec![(owners[1].clone(), key.clone())],
    )
    .await;
    let failures = world
        .metrics
        .quorum_failures
        .with_label_values(&["write"])
        .get();
    assert_eq!(failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_sloppy_write_sends_a_down_replica_s_copy_to_the_first_healthy_fallback() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let (owners, fallbacks) = (world.owners(&key), world.fallbacks(&key));
    world.detector.mark_down(&owners[0]);
    world.detector.mark_down(&fallbacks[0]);
    let out = world.write_one(write_req(&key, 10, 3, false)).await;
    assert_eq!(out.expect("sloppy ALL succeeds").acks, 3);
    // The down owner was never called; the first fallback is down too, so
    // the next healthy one keeps the hint for the owner.
    let writes: Vec<String> = world
        .calls_of(Kind::Write)
        .into_iter()
        .map(|c| c.node)
        .collect();
    assert!(!writes.contains(&owners[0]), "{writes:?}");
    let hints = world.calls_of(Kind::Hints);
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert_eq!(hints[0].node, fallbacks[1]);
    assert_eq!(hints[0].owner.as_deref(), Some(owners[0].as_str()));
    assert_eq!(
        world.fake.hints(&fallbacks[1]),
        vec![(owners[0].clone(), key.clone())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_strict_write_asks_a_down_replica_anyway_and_no_fallback_counts() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    world.detector.mark_down(&owners[0]);
    world.fake.script(&owners[0], Kind::Write, Script::Hang);
    let err = world
        .write_one(write_req(&key, 10, 3, true))
        .await
        .expect_err("strict ALL cannot count a fallback");
    let msg = err.to_string();
    assert!(msg.contains("2 of 3 acks"), "{msg}");
    assert!(
        msg.contains(&format!("{}: deadline exceeded", owners[0])),
        "{msg}"
    );
    assert!(world
        .calls_of(Kind::Write)
        .iter()
        .any(|c| c.node == owners[0]));
}

#[tokio::test(start_paused = true)]
async fn a_failed_replica_is_replaced_by_a_fallback_and_keeps_a_hint_here() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let (owners, fallbacks) = (world.owners(&key), world.fallbacks(&key));
    world.fake.script(
        &owners[2],
        Kind::Write,
        Script::Fail(ReplicaError::Refused {
            code: tonic::Code::Internal,
            message: "disk full".into(),
        }),
    );
    let out = world.write_one(write_req(&key, 10, 3, false)).await;
    assert_eq!(out.expect("the fallback's ack counts").acks, 3);
    assert_eq!(
        world.fake.hints(&fallbacks[0]),
        vec![(owners[2].clone(), key.clone())]
    );
    eventually("a hint for the failed replica here too", || {
        world.fake.hints(ME) == vec![(owners[2].clone(), key.clone())]
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_fallback_leaves_a_hint_here_and_the_next_fallback_is_tried() {
    let world = world(settings());
    // A key this node neither holds nor is the first fallback of: then the
    // second fallback is this node, which also keeps the failed call's hint.
    let key = (0..1000)
        .map(|i| Bytes::from(format!("key{i}")))
        .find(|k| !world.owners(k).iter().any(|o| o == ME) && world.fallbacks(k)[0] != ME)
        .expect("such a key");
    let (owners, fallbacks) = (world.owners(&key), world.fallbacks(&key));
    assert_eq!(fallbacks[1], ME);
    world.detector.mark_down(&owners[1]);
    world.fake.script(
        &fallbacks[0],
        Kind::Hints,
        Script::Fail(ReplicaError::HintsFull),
    );
    let out = world.write_one(write_req(&key, 10, 3, false)).await;
    assert_eq!(out.expect("second fallback stands in").acks, 3);
    let tried: Vec<String> = world
        .calls_of(Kind::Hints)
        .into_iter()
        .filter(|c| c.owner.as_deref() == Some(owners[1].as_str()))
        .map(|c| c.node)
        .collect();
    assert_eq!(tried.first(), Some(&fallbacks[0]), "{tried:?}");
    assert!(tried[1..].contains(&fallbacks[1]), "{tried:?}");
    eventually("this node keeps the owner's hint", || {
        world
            .fake
            .hints(ME)
            .contains(&(owners[1].clone(), key.clone()))
    })
    .await;
    assert!(world.fake.hints(&fallbacks[0]).is_empty());
}

#[tokio::test(start_paused = true)]
async fn no_hints_are_kept_or_counted_with_hinted_handoff_off() {
    let world = world(Settings {
        hinted_handoff: false,
        ..settings()
    });
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    world.detector.mark_down(&owners[0]);
    world.fake.script(
        &owners[0],
        Kind::Write,
        Script::Fail(ReplicaError::Deadline),
    );
    let err = world
        .write_one(write_req(&key, 10, 3, false))
        .await
        .expect_err("no fallback");
    assert!(err.to_string().contains("2 of 3 acks"), "{err}");
    assert!(world.calls_of(Kind::Hints).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_replica_fails_at_the_deadline_only_the_writes_that_need_it() {
    let world = world(Settings {
        sloppy_quorum: false,
        ..settings()
    });
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    world.fake.script(&owners[0], Kind::Write, Script::Hang);
    let out = world
        .write(vec![
            write_req(&key, 10, 2, false),
            write_req(&key, 11, 3, false),
        ])
        .await;
    assert_eq!(out[0].as_ref().expect("W=2 succeeds").acks, 2);
    let msg = out[1].as_ref().expect_err("W=3 times out").to_string();
    assert!(
        msg.contains(&format!("{}: deadline exceeded", owners[0])),
        "{msg}"
    );
    // One call per replica for the whole batch.
    let writes = world.calls_of(Kind::Write);
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes.iter().all(|c| c.keys.len() == 2));
}

#[tokio::test(start_paused = true)]
async fn a_batch_keeps_each_write_s_own_outcome() {
    let world = world(settings());
    let a = key_not_on_me(&world);
    let owners_a = world.owners(&a);
    // A key that shares no replica... is not needed: a fails strict ALL
    // through its failing replica, b at W=1 succeeds, c asks too much.
    world.fake.script(
        &owners_a[0],
        Kind::Write,
        Script::Fail(ReplicaError::ShuttingDown),
    );
    let b = Bytes::from_static(b"other");
    let mut too_many = write_req(&b, 12, 3, false);
    too_many.w = 4;
    let out = world
        .write(vec![
            write_req(&a, 10, 3, true),
            write_req(&b, 11, 1, false),
            too_many,
        ])
        .await;
    assert!(out[0]
        .as_ref()
        .is_err_and(|e| e.to_string().contains("shutting down")));
    assert_eq!(out[1].as_ref().expect("W=1").acks, 1);
    assert!(
        matches!(&out[2], Err(RequestError::Unavailable(m)) if m.contains("needs 4 acks")),
        "{:?}",
        out[2]
    );
}

#[tokio::test(start_paused = true)]
async fn a_read_merges_by_lww_and_repairs_stale_and_missing_replicas() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    world.fake.put(&owners[0], &key, value(20));
    world.fake.put(&owners[1], &key, value(10));
    let out = world.read_one(&key, 3).await.expect("all answer");
    assert_eq!(out.winner, Some(value(20)));
    assert_eq!(out.answered, 3);
    eventually("read repair brings every replica up to the winner", || {
        owners
            .iter()
            .all(|o| world.fake.get(o, &key) == Some(value(20)))
    })
    .await;
    // Only the stale and the missing replica were written to.
    let mut repaired: Vec<String> = world
        .calls_of(Kind::Write)
        .into_iter()
        .map(|c| c.node)
        .collect();
    repaired.sort();
    let mut want = vec![owners[1].clone(), owners[2].clone()];
    want.sort();
    assert_eq!(repaired, want);
    assert_eq!(world.metrics.read_repairs.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_read_answers_with_its_first_r_and_repairs_with_a_late_one() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    for o in &owners {
        world.fake.put(o, &key, value(10));
    }
    // The newest copy answers late: R=2 answers without it...
    world.fake.put(&owners[2], &key, value(30));
    world.fake.script(
        &owners[2],
        Kind::Read,
        Script::Late(Duration::from_millis(300)),
    );
    let out = world.read_one(&key, 2).await.expect("two answer");
    assert_eq!(out.winner, Some(value(10)));
    // ...and read repair, waiting for it, spreads it.
    eventually("the late winner is repaired onto the others", || {
        owners
            .iter()
            .all(|o| world.fake.get(o, &key) == Some(value(30)))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_read_short_of_r_fails_with_each_replica_s_reason() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    world.fake.script(&owners[0], Kind::Read, Script::Hang);
    world.fake.script(
        &owners[1],
        Kind::Read,
        Script::Fail(ReplicaError::Storage("EIO".into())),
    );
    let err = world
        .read_one(&key, 2)
        .await
        .expect_err("one answer of two");
    let msg = err.to_string();
    assert!(
        msg.contains("read quorum not reached: 1 of 2 replies"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}: storage: EIO", owners[1])),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}: deadline exceeded", owners[0])),
        "{msg}"
    );
}

#[tokio::test(start_paused = true)]
async fn needed_fanout_asks_the_next_replica_on_failure_and_on_slowness() {
    let world = world(Settings {
        read_fanout: ReadFanout::Needed,
        ..settings()
    });
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    for o in &owners {
        world.fake.put(o, &key, value(10));
    }
    // R=1: the first replica fails, so the second is asked at once.
    world
        .fake
        .script(&owners[0], Kind::Read, Script::Fail(ReplicaError::Deadline));
    let out = world
        .read_one(&key, 1)
        .await
        .expect("the next replica answers");
    assert_eq!(out.answered, 1);
    let asked: Vec<String> = world
        .calls_of(Kind::Read)
        .into_iter()
        .map(|c| c.node)
        .collect();
    assert_eq!(asked, vec![owners[0].clone(), owners[1].clone()]);

    // R=2 with the first two slow: after the speculative-retry delay the
    // third is asked too, and the read answers well before the slow ones.
    let world2 = self::world(Settings {
        read_fanout: ReadFanout::Needed,
        ..settings()
    });
    for o in &owners {
        world2.fake.put(o, &key, value(10));
    }
    world2.fake.script(
        &owners[0],
        Kind::Read,
        Script::Late(Duration::from_millis(500)),
    );
    world2.fake.script(
        &owners[1],
        Kind::Read,
        Script::Late(Duration::from_millis(100)),
    );
    let started = Instant::now();
    let out = world2.read_one(&key, 2).await.expect("answers");
    assert_eq!(out.answered, 2);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(world2.calls_of(Kind::Read).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_read_asks_this_node_first_and_known_down_nodes_last() {
    let world = world(Settings {
        read_fanout: ReadFanout::Needed,
        ..settings()
    });
    let key = (0..1000)
        .map(|i| Bytes::from(format!("key{i}")))
        .find(|k| {
            let o = world.owners(k);
            o.iter().any(|n| n == ME) && o[0] != ME
        })
        .expect("a key with this node as a later replica");
    let owners = world.owners(&key);
    let others: Vec<&String> = owners.iter().filter(|o| *o != ME).collect();
    world.detector.mark_down(others[0]);
    world.read_one(&key, 2).await.expect("answers");
    let asked: Vec<String> = world
        .calls_of(Kind::Read)
        .into_iter()
        .map(|c| c.node)
        .collect();
    assert_eq!(asked, vec![ME.to_string(), others[1].clone()]);
}

mod converge;
mod pending;
mod ttl;

mod each;
