//! Writes acknowledged by one copy before membership has converged: taken
//! only for keys this node owns, refused (UNAVAILABLE) for the others and
//! when the node started knowing no other member; all taken once it has
//! converged.

use super::*;

fn pending(table_known: bool) -> Convergence {
    Convergence::pending(Start {
        bound: Duration::from_secs(3600),
        discovery: true,
        table_known,
    })
}

/// A key one of whose replicas is `ME`.
fn key_on_me(w: &World) -> Bytes {
    (0..1000)
        .map(|i| Bytes::from(format!("key{i}")))
        .find(|k| w.owners(k).iter().any(|o| o == ME))
        .expect("some key lives here")
}

#[tokio::test(start_paused = true)]
async fn one_copy_writes_wait_for_ownership_until_membership_converges() {
    let world = world_with(settings(), pending(true));
    let (mine, elsewhere) = (key_on_me(&world), key_not_on_me(&world));
    assert!(world.write_one(write_req(&mine, 1, 1, false)).await.is_ok());
    let refused = world.write_one(write_req(&elsewhere, 2, 1, false)).await;
    assert!(
        matches!(&refused, Err(RequestError::Unavailable(m)) if m.contains("does not own")),
        "{refused:?}"
    );
    assert!(
        world
            .fake
            .calls()
            .iter()
            .all(|c| !c.keys.contains(&elsewhere)),
        "the refused write made no call"
    );
    assert!(
        world
            .write_one(write_req(&elsewhere, 3, 2, false))
            .await
            .is_ok(),
        "a quorum write is not gated"
    );
    // Every other member answers: converged, and the write is taken.
    for i in 2..=5 {
        world.membership.convergence().heard(&format!("n{i}"));
    }
    assert!(world.membership.check_convergence());
    assert!(world
        .write_one(write_req(&elsewhere, 4, 1, false))
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_node_that_started_knowing_no_member_takes_no_one_copy_write() {
    let world = world_with(settings(), pending(false));
    let mine = key_on_me(&world);
    let refused = world.write_one(write_req(&mine, 1, 1, false)).await;
    assert!(
        matches!(&refused, Err(RequestError::Unavailable(m)) if m.contains("does not know the cluster")),
        "{refused:?}"
    );
}
