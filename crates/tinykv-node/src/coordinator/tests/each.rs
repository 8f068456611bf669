//! Outcomes handed out one by one (`coordinate_*_each`): a request of a
//! batch that has its quorum is answered then, not when the slowest
//! request of its batch ends (the RESP door merges many clients' commands
//! into one batch).

use super::*;

/// When (since the start) each request of a batch was answered, and how.
type Delivered<O> = Vec<(usize, Duration, Result<O, RequestError>)>;

#[tokio::test(start_paused = true)]
async fn a_write_with_its_acks_is_delivered_before_a_slow_one_of_its_batch() {
    let world = world(Settings {
        sloppy_quorum: false,
        ..settings()
    });
    let key = key_not_on_me(&world);
    world
        .fake
        .script(&world.owners(&key)[0], Kind::Write, Script::Hang);
    let start = Instant::now();
    let mut got: Delivered<WriteOutcome> = Vec::new();
    world
        .coordinator
        .coordinate_writes_each(
            vec![write_req(&key, 10, 3, false), write_req(&key, 11, 2, false)],
            |i, o| got.push((i, start.elapsed(), o)),
        )
        .await;
    assert_eq!(got.len(), 2, "each write delivered once");
    let (i, at, ref out) = got[0];
    assert_eq!(i, 1, "the W=2 write comes first");
    assert_eq!(at, Duration::ZERO, "at once, not at the batch's deadline");
    assert_eq!(out.as_ref().expect("W=2 succeeds").acks, 2);
    let (i, at, ref out) = got[1];
    assert_eq!(i, 0);
    assert_eq!(
        at,
        Duration::from_secs(1),
        "the W=3 write waits its deadline"
    );
    assert!(out.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_read_with_its_answers_is_delivered_before_a_slow_one_of_its_batch() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    world
        .fake
        .script(&world.owners(&key)[0], Kind::Read, Script::Hang);
    let req = |r| ReadRequest {
        key: key.clone(),
        r,
        deadline: Instant::now() + Duration::from_secs(1),
    };
    let start = Instant::now();
    let mut got: Delivered<ReadOutcome> = Vec::new();
    world
        .coordinator
        .coordinate_reads_each(vec![req(3), req(2)], |i, o| {
            got.push((i, start.elapsed(), o))
        })
        .await;
    assert_eq!(got.len(), 2, "each read delivered once");
    let (i, at, ref out) = got[0];
    assert_eq!((i, at), (1, Duration::ZERO), "the R=2 read, at once");
    assert_eq!(out.as_ref().expect("R=2 succeeds").answered, 2);
    let (i, at, ref out) = got[1];
    assert_eq!((i, at), (0, Duration::from_secs(1)), "R=3 at its deadline");
    assert!(out.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_is_delivered_too() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let mut got = Vec::new();
    world
        .coordinator
        .coordinate_writes_each(vec![write_req(&key, 10, 4, false)], |i, o| {
            got.push((i, o.is_err()))
        })
        .await;
    let req = ReadRequest {
        key,
        r: 4,
        deadline: Instant::now() + Duration::from_secs(1),
    };
    world
        .coordinator
        .coordinate_reads_each(vec![req], |i, o| got.push((i, o.is_err())))
        .await;
    assert_eq!(got, vec![(0, true), (0, true)]);
}
