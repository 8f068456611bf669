//! Scaling up and down (decommission first, the claim after) and image
//! upgrades one pod at a time, through the reconciler.

use super::*;

#[tokio::test]
async fn scale_up_raises_replicas_and_reports_progressing() {
    let c = settled_cluster(3, 5);
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3)))],
        children(sts_replicas_is(5, 0)),
        vec![Expect::Event("ScaleUpStarted", "Normal"), status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(status.phase, Some(Phase::Scaling));
    assert_eq!(status.replicas, 5);
    assert_eq!(cond(&status, "Progressing"), ("True", "ScalingUp"));
    assert_eq!(
        status.operation.map(|o| (o.from_replicas, o.to_replicas)),
        Some((3, 5))
    );
}

pub(super) fn scale_down_op() -> Operation {
    Operation {
        type_: OperationType::ScaleDown,
        from_replicas: 5,
        to_replicas: 3,
        node: Some("demo-4".into()),
        ordinal: Some(4),
        partition: None,
        template_hash: None,
        message: "decommissioning demo-4".into(),
        step: None,
    }
}

#[tokio::test]
async fn scale_down_records_intent_before_any_decommission() {
    let c = settled_cluster(5, 3);
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 5, 5, 5)))],
        children(sts_replicas_is(5, 0)),
        vec![Expect::Event("ScaleDownStarted", "Normal"), status_apply()],
    ]));
    script_nodes(&nodes, 5, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(status.operation, Some(scale_down_op()));
    assert_eq!(cond(&status, "Progressing"), ("True", "ScalingDown"));
    assert!(
        nodes.decommissions().is_empty(),
        "intent first, RPC on the next pass"
    );
}

#[tokio::test]
async fn scale_down_decommissions_then_resumes_after_restart_and_shrinks() {
    // Pass 2 (a fresh operator reading the recorded intent): demo-4 is normal -> decommission.
    let mut c = settled_cluster(5, 3);
    if let Some(s) = c.status.as_mut() {
        s.operation = Some(scale_down_op());
    }
    let sts5 = sts_json(&c, 5, 5, 5);
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts5.clone()))],
        children(sts_replicas_is(5, 0)),
        vec![Expect::Event("Decommissioning", "Normal"), status_apply()],
    ]));
    script_nodes(&nodes, 5, |_| "normal");
    reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    c.status = Some(status_of(&verifier.done().await));
    assert_eq!(
        nodes.decommissions(),
        vec![("demo-4:50051".to_string(), "demo-4".to_string())]
    );
    assert_eq!(
        nodes.calls()[0],
        NodeCall::Status("demo-4:50051".into()),
        "asks the target first"
    );
    // Every call, the decommission too, proves the cluster's secret.
    assert_eq!(nodes.proofs(), vec![signed_with_secret(); 2]);

    // Operator restarts while demo-4 is leaving: no second decommission, replicas stay.
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts5.clone()))],
        children(sts_replicas_is(5, 0)),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 5, |i| if i == 4 { "leaving" } else { "normal" });
    reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    c.status = Some(status_of(&verifier.done().await));
    assert!(nodes.decommissions().is_empty());
    let op = c
        .status
        .as_ref()
        .and_then(|s| s.operation.clone())
        .expect("still scaling");
    assert!(op.message.contains("leaving"), "{}", op.message);

    // demo-4 reports left: lower replicas to 4, delete its PVC, clear the operation.
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts5))],
        children(sts_replicas_is(4, 0)),
        vec![
            Expect::Get(paths::pvc(4), Some(pvc_json(4, "demo"))),
            Expect::DeleteWith(paths::pvc(4), uid_precondition("pvc-uid-4")),
            Expect::Event("NodeDecommissioned", "Normal"),
            status_apply(),
        ],
    ]));
    script_nodes(&nodes, 5, |i| if i == 4 { STATE_LEFT } else { "normal" });
    reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(status.operation, None);
    assert_eq!(status.replicas, 4);
    assert!(nodes.decommissions().is_empty());
}

#[tokio::test]
async fn scale_down_finishes_when_restart_happened_after_shrinking() {
    // The StatefulSet already has 4 replicas but the status still records the operation.
    let mut c = settled_cluster(5, 3);
    if let Some(s) = c.status.as_mut() {
        s.operation = Some(scale_down_op());
    }
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 4, 4, 4)))],
        children(sts_replicas_is(4, 0)),
        vec![
            Expect::Get(paths::pvc(4), Some(pvc_json(4, "demo"))),
            Expect::DeleteWith(paths::pvc(4), uid_precondition("pvc-uid-4")),
            Expect::Event("ScaledDown", "Normal"),
            status_apply(),
        ],
    ]));
    script_nodes(&nodes, 4, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    assert_eq!(status_of(&verifier.done().await).operation, None);
    assert!(nodes.decommissions().is_empty());
}

#[tokio::test]
async fn refuses_to_scale_below_replication_factor() {
    let c = settled_cluster(3, 2);
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3)))],
        children(sts_replicas_is(3, 0)),
        vec![
            Expect::Event("BelowReplicationFactor", "Warning"),
            status_apply(),
        ],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(
        cond(&status, "Degraded"),
        ("True", "BelowReplicationFactor")
    );
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert_eq!(status.replicas, 3);
    assert!(status.operation.is_none());
    assert!(nodes.decommissions().is_empty());
}

/// The hand-written StatefulSet of a 3-node cluster on `tinykv:v2`.
fn v2_sts_is(partition: i32) -> Box<dyn FnOnce(&Value) + Send> {
    let mut want = expected::statefulset(3, partition);
    want["spec"]["template"]["spec"]["containers"][0]["image"] = "tinykv:v2".into();
    expected::sts_is(want)
}

#[tokio::test]
async fn image_upgrade_moves_partition_one_pod_at_a_time() {
    let mut c = settled_cluster(3, 3);
    c.spec.image = "tinykv:v2".into();
    // Start: partition 2 (only demo-2 rolls).
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 0)))],
        children(v2_sts_is(2)),
        vec![Expect::Event("UpgradeStarted", "Normal"), status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    c.status = Some(status_of(&verifier.done().await));
    let status = c.status.clone().expect("status");
    assert_eq!(status.phase, Some(Phase::Upgrading));
    assert_eq!(cond(&status, "Progressing"), ("True", "RollingUpdate"));

    // demo-2 updated and ready, every member normal: partition 1.
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 1)))],
        children(v2_sts_is(1)),
        vec![Expect::Event("UpgradeStep", "Normal"), status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(status.operation.and_then(|o| o.partition), Some(1));

    // Same step while demo-2 is still joining: hold at partition 2.
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 1)))],
        children(v2_sts_is(2)),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |i| if i == 2 { "joining" } else { "normal" });
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(status.operation.and_then(|o| o.partition), Some(2));
}

/// A data claim `data-demo-<ordinal>` as the API server returns it,
/// labelled as a claim of the cluster `instance`.
fn pvc_json(ordinal: i32, instance: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": format!("data-demo-{ordinal}"),
            "namespace": "db",
            "uid": format!("pvc-uid-{ordinal}"),
            "labels": {"app.kubernetes.io/name": "tinykv", "app.kubernetes.io/instance": instance},
        },
        "spec": {"accessModes": ["ReadWriteOnce"]},
    })
}

/// Checks that a delete is conditional on the uid `uid`.
fn uid_precondition(uid: &'static str) -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(move |v: &Value| {
        assert_eq!(v["preconditions"]["uid"], uid, "{v}");
    })
}

/// A scale-down whose target already reports `left`, with `delete_pvc` set
/// by the plan: the claim is read first.
fn left_scale_down(claim: Vec<Expect>, events: Vec<Expect>) -> (TinyKVCluster, Vec<Expect>) {
    let mut c = settled_cluster(5, 3);
    if let Some(s) = c.status.as_mut() {
        s.operation = Some(scale_down_op());
    }
    let calls = script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 5, 5, 5)))],
        children(sts_replicas_is(4, 0)),
        claim,
        events,
        vec![status_apply()],
    ]);
    (c, calls)
}

#[tokio::test]
async fn a_claim_without_the_cluster_labels_is_never_deleted() {
    for other in [pvc_json(4, "another-cluster"), {
        let mut v = pvc_json(4, "demo");
        v["metadata"]["labels"] = serde_json::json!({"app.kubernetes.io/instance": "demo"});
        v
    }] {
        let (c, calls) = left_scale_down(
            vec![Expect::Get(paths::pvc(4), Some(other))],
            vec![
                Expect::Event(REASON_CLAIM_KEPT, "Warning"),
                Expect::Event("NodeDecommissioned", "Normal"),
            ],
        );
        let (ctx, nodes, verifier) = test_context(calls);
        script_nodes(&nodes, 5, |i| if i == 4 { STATE_LEFT } else { "normal" });
        reconcile(Arc::new(c), ctx).await.expect("reconcile");
        // No DELETE among the calls: the verifier fails on any call not listed.
        assert_eq!(status_of(&verifier.done().await).replicas, 4);
    }
}

#[tokio::test]
async fn an_absent_or_terminating_claim_is_not_deleted_again() {
    let mut terminating = pvc_json(4, "demo");
    terminating["metadata"]["deletionTimestamp"] = serde_json::json!("2026-01-01T00:00:00Z");
    for found in [None, Some(terminating)] {
        let (c, calls) = left_scale_down(
            vec![Expect::Get(paths::pvc(4), found)],
            vec![Expect::Event("NodeDecommissioned", "Normal")],
        );
        let (ctx, nodes, verifier) = test_context(calls);
        script_nodes(&nodes, 5, |i| if i == 4 { STATE_LEFT } else { "normal" });
        reconcile(Arc::new(c), ctx).await.expect("reconcile");
        verifier.done().await;
    }
}
