//! Expiry changes: a read at R, then the value written again with the new
//! expiry at W; nothing written for a key without a live value.

use super::*;
use crate::version::{Expiry, KeyTtl};

fn expire_req(key: &Bytes, expiry: Expiry, stamp: u64) -> ExpireRequest {
    ExpireRequest {
        key: key.clone(),
        expiry,
        r: 2,
        w: 2,
        strict: false,
        deadline: Instant::now() + Duration::from_secs(1),
        writer: ME.into(),
        stamp,
    }
}

#[tokio::test(start_paused = true)]
async fn expire_writes_the_value_read_with_the_new_expiry_to_every_replica() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    for o in &owners {
        world.fake.put(o, &key, value(10));
    }
    let out = world
        .coordinator
        .expire(expire_req(&key, Expiry::After(Duration::from_secs(5)), 100))
        .await
        .expect("expire succeeds");
    let want = Record::value(Bytes::from("v10"), 100, ME).expiring(5_000_100);
    assert_eq!(
        out,
        ExpireOutcome::Written {
            record: want.clone(),
            acks: 2
        }
    );
    eventually("every replica has the new expiry", || {
        owners
            .iter()
            .all(|o| world.fake.get(o, &key) == Some(want.clone()))
    })
    .await;
    let read = world.read_one(&key, 2).await.expect("read");
    assert_eq!(read.ttl(100), KeyTtl::Remaining(Duration::from_secs(5)));
    assert_eq!(read.ttl(5_000_100), KeyTtl::Missing);

    // persist: the same value again, without an expiry.
    let out = world
        .coordinator
        .expire(expire_req(&key, Expiry::Never, 200))
        .await
        .expect("persist succeeds");
    let persisted = Record::value(Bytes::from("v10"), 200, ME);
    assert!(matches!(out, ExpireOutcome::Written { ref record, .. } if *record == persisted));
    let read = world.read_one(&key, 2).await.expect("read");
    assert_eq!(read.ttl(u64::MAX), KeyTtl::Persistent);
}

#[tokio::test(start_paused = true)]
async fn expire_on_a_missing_deleted_or_expired_key_writes_nothing() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    let owners = world.owners(&key);
    let expire = |stamp| {
        world
            .coordinator
            .expire(expire_req(&key, Expiry::At(9_999), stamp))
    };
    assert_eq!(expire(100).await.ok(), Some(ExpireOutcome::NotFound));
    for o in &owners {
        world.fake.put(o, &key, value(10).expiring(50));
    }
    assert_eq!(
        expire(100).await.ok(),
        Some(ExpireOutcome::NotFound),
        "expired"
    );
    for o in &owners {
        world.fake.put(o, &key, Record::tombstone(60, ME));
    }
    assert_eq!(
        expire(100).await.ok(),
        Some(ExpireOutcome::NotFound),
        "deleted"
    );
    assert!(world.calls_of(Kind::Write).is_empty(), "nothing written");
    for o in &owners {
        assert_eq!(world.fake.get(o, &key), Some(Record::tombstone(60, ME)));
    }
}

#[tokio::test(start_paused = true)]
async fn the_new_version_is_newer_than_the_one_read_even_if_that_was_stamped_ahead() {
    let world = world(settings());
    let key = key_not_on_me(&world);
    for o in &world.owners(&key) {
        world.fake.put(o, &key, value(500));
    }
    let out = world
        .coordinator
        .expire(expire_req(
            &key,
            Expiry::After(Duration::from_micros(10)),
            100,
        ))
        .await
        .expect("expire succeeds");
    let ExpireOutcome::Written { record, .. } = out else {
        panic!("written expected, got {out:?}");
    };
    assert_eq!((record.timestamp, record.expires_at), (501, 511));
    assert!(record.supersedes(&value(500)));
}
