//! The two rollouts that move a cluster whose pods had no cluster secret
//! onto one (`builders::auth_upgrade`), through the reconciler against the
//! mocked API server.

use super::*;
use crate::builders::test_support::without_secret;
use crate::builders::{build_statefulset_with_auth, AuthMode, AUTH_PERMISSIVE_ENV};

/// `sts` as the API server returns it (generation 2, observed).
fn observed_json(mut sts: StatefulSet, ready: i32, updated: i32) -> Value {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    sts.metadata.generation = Some(2);
    sts.status = Some(StatefulSetStatus {
        replicas,
        ready_replicas: Some(ready),
        updated_replicas: Some(updated),
        observed_generation: Some(2),
        ..StatefulSetStatus::default()
    });
    serde_json::to_value(sts).expect("json")
}

fn permissive(c: &TinyKVCluster, partition: i32) -> StatefulSet {
    build_statefulset_with_auth(c, 3, partition, AuthMode::Permissive).expect("sts")
}

fn hash_of(sts: &StatefulSet) -> String {
    sts.metadata.annotations.as_ref().expect("annotations")[TEMPLATE_HASH_ANNOTATION].clone()
}

/// The node container's variables in an applied StatefulSet.
fn env_in(v: &Value) -> Vec<(String, Option<String>)> {
    v["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let value = e["value"].as_str().map(str::to_string);
            (e["name"].as_str().expect("name").to_string(), value)
        })
        .collect()
}

fn has(env: &[(String, Option<String>)], name: &str) -> bool {
    env.iter().any(|(n, _)| n == name)
}

/// Checks an applied StatefulSet: its partition, the secret mounted and
/// named, and whether it runs permissive.
fn sts_is(partition: i32, permissive: bool) -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(move |v: &Value| {
        assert_eq!(
            v["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
            partition
        );
        let env = env_in(v);
        assert!(has(&env, "TINYKV_CLUSTER_SECRET_FILE"), "{env:?}");
        let wanted = (AUTH_PERMISSIVE_ENV.to_string(), Some("true".to_string()));
        assert_eq!(env.contains(&wanted), permissive, "{env:?}");
        let vols = v["spec"]["template"]["spec"]["volumes"].to_string();
        assert!(vols.contains("demo-cluster-secret"), "{vols}");
    })
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
    let status = status_of(&verifier.done().await);
    let op = status.operation.expect("an upgrade");
    assert_eq!(op.type_, OperationType::Upgrade);
    assert_eq!(op.template_hash, Some(hash_of(&permissive(&c, 0))));
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
    c.status = Some(status_of(&verifier.done().await));
    let op = c.status.as_ref().and_then(|s| s.operation.clone());
    assert_eq!(op.and_then(|o| o.template_hash), Some(template_hash(&c)));

    // Pass 2: the enforced template rolls on like any upgrade, no event
    // about authentication again.
    let strict = build_statefulset(&c, 3, 2).expect("sts");
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(
            paths::STS.into(),
            Some(observed_json(strict, 3, 1)),
        )],
        children(sts_is(1, false)),
        vec![Expect::Event("UpgradeStep", "Normal"), status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    verifier.done().await;
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
