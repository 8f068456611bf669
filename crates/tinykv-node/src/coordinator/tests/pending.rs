//! Writes while a join moves ranges: W acks are needed among the key's
//! current (read ring) replicas AND among its future ones, not W over
//! their union (`coordinator/pending.rs`).

use super::*;
use crate::membership::ReplicaSets;

/// The joining node.
const NEW: &str = "n6";

/// A key whose range the join moves, and its replica sets: (key, the
/// current replica that leaves its set, the two staying, the current and
/// future sets). None of them is `ME`, so the coordinator's own hints are
/// told apart.
struct Moving {
    key: Bytes,
    dropped: String,
    stay: [String; 2],
    sets: ReplicaSets,
}

/// `world` with `NEW` joining: its future ring has `NEW`, its read ring not.
fn joining(w: &World) -> Moving {
    w.membership
        .set(NEW, "127.0.0.1:7006", MemberState::Joining, 2);
    (0..10_000)
        .find_map(|i| {
            let key = Bytes::from(format!("key{i}"));
            let sets = w.membership.write_targets(&key).sets?;
            let all = sets.read.iter().chain(&sets.future);
            if all.clone().any(|n| n == ME) || !sets.future.iter().any(|n| n == NEW) {
                return None;
            }
            let dropped = sets.read.iter().find(|n| !sets.future.contains(n))?.clone();
            let stay: Vec<String> = sets
                .read
                .iter()
                .filter(|n| sets.future.contains(n))
                .cloned()
                .collect();
            Some(Moving {
                key,
                dropped,
                stay: [stay[0].clone(), stay[1].clone()],
                sets,
            })
        })
        .expect("a key the join moves")
}

#[tokio::test(start_paused = true)]
async fn a_write_acked_only_by_current_replicas_waits_for_a_future_one() {
    let world = world(settings());
    let m = joining(&world);
    // The joining node never answers; of the future set only stay[0]
    // answers at once, stay[1] late: the dropped replica and stay[0] make
    // W=2 among the current replicas (and over the union), but the future
    // set has W only once stay[1] answers.
    world.fake.script(NEW, Kind::Write, Script::Hang);
    world.fake.script(
        &m.stay[1],
        Kind::Write,
        Script::Late(Duration::from_millis(300)),
    );
    let started = Instant::now();
    let out = world.write_one(write_req(&m.key, 10, 2, true)).await;
    assert_eq!(out.expect("W in both sets").acks, 3);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "acknowledged after {waited:?}, before a second future replica answered"
    );
}

/// A strict QUORUM write of `m.key` while `hang` never answer: it fails
/// with one ack among the key's `which` replicas, `nodes`, naming them.
/// Its message.
async fn short_quorum(
    world: &World,
    m: &Moving,
    hang: [&str; 2],
    which: &str,
    nodes: &[String],
) -> String {
    for n in hang {
        world.fake.script(n, Kind::Write, Script::Hang);
    }
    let msg = world
        .write_one(write_req(&m.key, 10, 2, true))
        .await
        .expect_err("W not met in one set")
        .to_string();
    let nodes = nodes.join(", ");
    assert!(
        msg.starts_with(&format!(
            "write quorum not reached among the key's {which} replicas ({nodes};"
        )),
        "{msg}"
    );
    assert!(msg.contains(": 1 of 2 acks"), "{msg}");
    msg
}

#[tokio::test(start_paused = true)]
async fn a_write_short_in_the_future_set_fails_naming_it() {
    let world = world(settings());
    let m = joining(&world);
    // The dropped replica and stay[0] ack: W=2 over the union and among
    // the current replicas, but one of the three future ones.
    let msg = short_quorum(&world, &m, [NEW, &m.stay[1]], "future", &m.sets.future).await;
    assert!(msg.contains(&format!("{NEW}: deadline exceeded")), "{msg}");
    assert_eq!(
        world.fake.get(&m.dropped, &m.key),
        Some(value(10)),
        "the old replica's ack was there"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_acked_by_the_new_node_and_one_current_replica_fails_naming_the_current_set() {
    let world = world(settings());
    let m = joining(&world);
    // NEW and stay[0] ack: W=2 over the union and in the future set, but
    // one of the three current replicas, which QUORUM reads ask now.
    let hang = [m.dropped.as_str(), m.stay[1].as_str()];
    short_quorum(&world, &m, hang, "current", &m.sets.read).await;
    assert_eq!(world.fake.get(NEW, &m.key), Some(value(10)));
}

#[tokio::test(start_paused = true)]
async fn all_needs_every_replica_of_both_sets_and_one_one_of_each() {
    let world = world(settings());
    let m = joining(&world);
    world
        .fake
        .script(NEW, Kind::Write, Script::Late(Duration::from_millis(200)));
    let started = Instant::now();
    let out = world.write_one(write_req(&m.key, 10, 3, true)).await;
    assert_eq!(out.expect("ALL").acks, 4, "every node of both sets");
    assert!(started.elapsed() >= Duration::from_millis(200));

    // ONE: the dropped replica alone is not enough; the joining node's ack
    // (late) completes it.
    for n in &m.stay {
        world.fake.script(n, Kind::Write, Script::Hang);
    }
    let started = Instant::now();
    let out = world.write_one(write_req(&m.key, 11, 1, true)).await;
    assert_eq!(out.expect("ONE in each set").acks, 2);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn a_fallback_s_ack_counts_in_each_set_of_the_owner_it_stands_in_for() {
    let world = world(settings());
    let m = joining(&world);
    // The joining node is down: a fallback keeps its copy as a hint, and
    // that ack counts in the future set, as NEW's would.
    world.detector.mark_down(NEW);
    world.fake.script(&m.stay[1], Kind::Write, Script::Hang);
    let out = world.write_one(write_req(&m.key, 10, 2, false)).await;
    assert_eq!(out.expect("the hint counts for NEW").acks, 3);
    let hints = world.calls_of(Kind::Hints);
    assert!(
        hints.iter().any(|c| c.owner.as_deref() == Some(NEW)),
        "{hints:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_needing_more_replicas_than_the_future_set_has_is_refused() {
    let world = world(settings());
    // n4 and n5 gone, n3 leaving: three current replicas, two future ones.
    for (id, state) in [
        ("n4", MemberState::Left),
        ("n5", MemberState::Left),
        ("n3", MemberState::Leaving),
    ] {
        world.membership.set(id, "127.0.0.1:7000", state, 2);
    }
    let key = Bytes::from_static(b"any");
    let err = world
        .write_one(write_req(&key, 10, 3, true))
        .await
        .expect_err("ALL cannot be met in the future set");
    assert!(
        matches!(&err, RequestError::Unavailable(m) if m.contains("the key will have only 2 replicas once the join or leave under way completes")),
        "{err}"
    );
    assert!(world.fake.calls().is_empty(), "nothing was sent");
    let out = world.write_one(write_req(&key, 11, 2, true)).await;
    let acks = out.expect("QUORUM is met in both").acks;
    assert!((2..=3).contains(&acks), "{acks}");
}
