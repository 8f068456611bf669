//! The two rollouts that move a cluster whose pods had no cluster secret
//! onto one (`builders::auth_upgrade`), through the reconciler against the
//! mocked API server.

use super::*;
use crate::builders::test_support::without_secret;
use crate::builders::{build_statefulset_with_auth, AuthMode};

fn permissive(c: &TinyKVCluster, partition: i32) -> StatefulSet {
    build_statefulset_with_auth(c, 3, partition, AuthMode::Permissive).expect("sts")
}

/// Checks an applied StatefulSet: the hand-written one of a default
/// cluster at `partition`, with `TINYKV_AUTH_PERMISSIVE=true` when
/// `permissive`.
fn sts_is(partition: i32, permissive: bool) -> Box<dyn FnOnce(&Value) + Send> {
    let mut want = expected::statefulset(3, partition);
    if permissive {
        let env = want["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .expect("env");
        env.push(serde_json::json!({"name": "TINYKV_AUTH_PERMISSIVE", "value": "true"}));
    }
    expected::sts_is(want)
}

#[tokio::test]
async fn pods_without_a_secret_roll_onto_it_permissively_first() {
    let mut c = settled_cluster(3, 3);
    let legacy = without_secret(build_statefulset(&c, 3, 0).expect("sts"));
    if let Some(s) = c.status.as_mut() {
        s.rolled_out_template_hash = Some(hash_of(&legacy));
    }
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(
            paths::STS.into(),
            Some(observed_json(legacy, 3, 3)),
        )],
        children(sts_is(2, true)),
        vec![
            Expect::Event(REASON_AUTH_PERMISSIVE, "Normal"),
            Expect::Event("UpgradeStarted", "Normal"),
            status_apply(),
        ],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    let applied = verifier.done().await;
    let op = status_of(&applied).operation.expect("an upgrade");
    assert_eq!(op.type_, OperationType::Upgrade);
    // The rollout is of the template applied.
    assert_eq!(op.template_hash, Some(applied_hash(&applied)));
    // The operator signs: old nodes ignore the proof, new ones check it.
    assert_eq!(nodes.proofs(), vec![signed_with_secret()]);
}

#[tokio::test]
async fn the_permissive_template_stays_while_the_rollout_runs() {
    let mut c = settled_cluster(3, 3);
    let h = hash_of(&permissive(&c, 0));
    if let Some(s) = c.status.as_mut() {
        s.rolled_out_template_hash = Some("the-legacy-hash".into());
        s.operation = Some(Operation {
            type_: OperationType::Upgrade,
            from_replicas: 3,
            to_replicas: 3,
            node: None,
            ordinal: None,
            partition: Some(1),
            template_hash: Some(h.clone()),
            message: "updating demo-1".into(),
            step: None,
        });
    }
    // demo-1 and demo-2 updated and ready: on to demo-0, still permissive
    // (demo-0 has no secret yet).
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(
            paths::STS.into(),
            Some(observed_json(permissive(&c, 1), 3, 2)),
        )],
        children(sts_is(0, true)),
        vec![Expect::Event("UpgradeStep", "Normal"), status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(status.operation.and_then(|o| o.template_hash), Some(h));
}

#[tokio::test]
async fn once_rolled_out_the_permissive_variable_is_dropped_in_a_second_rollout() {
    let mut c = settled_cluster(3, 3);
    let open = permissive(&c, 0);
    if let Some(s) = c.status.as_mut() {
        s.rolled_out_template_hash = Some(hash_of(&open));
    }
    // Pass 1: every pod updated and ready, recorded as rolled out.
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(
            paths::STS.into(),
            Some(observed_json(open, 3, 3)),
        )],
        children(sts_is(2, false)),
        vec![
            Expect::Event(REASON_AUTH_ENFORCING, "Normal"),
            Expect::Event("UpgradeStarted", "Normal"),
            status_apply(),
        ],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    let applied = verifier.done().await;
    c.status = Some(status_of(&applied));
    let op = c.status.as_ref().and_then(|s| s.operation.clone());
    assert_eq!(
        op.and_then(|o| o.template_hash),
        Some(applied_hash(&applied))
    );

    // Pass 2: the enforced template rolls on like any upgrade, no event
    // about authentication again.
    let strict = build_statefulset(&c, 3, 2).expect("sts");
    let (_, _) = steady_pass(
        c.clone(),
        script(vec![
            vec![Expect::Get(
                paths::STS.into(),
                Some(observed_json(strict, 3, 1)),
            )],
            children(sts_is(1, false)),
            vec![Expect::Event("UpgradeStep", "Normal"), status_apply()],
        ]),
    )
    .await;
}

#[tokio::test]
async fn the_permissive_template_is_kept_until_the_upgrade_recorded_it() {
    // Every pod updated and ready, but the operator's upgrade has not yet
    // seen every member normal: no second rollout yet.
    let mut c = settled_cluster(3, 3);
    let open = permissive(&c, 0);
    let h = hash_of(&open);
    if let Some(s) = c.status.as_mut() {
        s.rolled_out_template_hash = Some("the-legacy-hash".into());
        s.operation = Some(Operation {
            type_: OperationType::Upgrade,
            from_replicas: 3,
            to_replicas: 3,
            node: None,
            ordinal: None,
            partition: Some(0),
            template_hash: Some(h.clone()),
            message: "updating demo-0".into(),
            step: None,
        });
    }
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(
            paths::STS.into(),
            Some(observed_json(open, 3, 3)),
        )],
        children(sts_is(0, true)),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |i| if i == 0 { "joining" } else { "normal" });
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(status.operation.and_then(|o| o.template_hash), Some(h));
}
