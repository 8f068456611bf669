//! Reconciler tests against a mocked API server that asserts each call.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::*;
use crate::builders::build_statefulset;
use crate::builders::test_support::cluster;
use crate::crd::{Operation, OperationType, Phase, TinyKVClusterSpec};
use crate::fixtures::{
    fingerprint, operator_signer, paths, test_context, Expect, MockNodeAdmin, NodeCall,
};
use crate::node_admin::{NodeMember, NodeStatus, STATE_LEFT};

fn spec(replicas: i32) -> TinyKVClusterSpec {
    TinyKVClusterSpec {
        replicas,
        ..TinyKVClusterSpec::default()
    }
}

fn template_hash(c: &TinyKVCluster) -> String {
    build_statefulset(c, 1, 0)
        .expect("sts")
        .metadata
        .annotations
        .expect("annotations")[TEMPLATE_HASH_ANNOTATION]
        .clone()
}

/// The StatefulSet as the API server would return it.
fn sts_json(c: &TinyKVCluster, replicas: i32, ready: i32, updated: i32) -> Value {
    let mut sts: StatefulSet = build_statefulset(c, replicas, 0).expect("sts");
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

/// Every pod `demo-i:50051` answers Status with `n` members in these states.
fn script_nodes(nodes: &MockNodeAdmin, n: i32, state_of: impl Fn(i32) -> &'static str) {
    let view = NodeStatus {
        node_id: "demo-0".into(),
        replication_factor: 3,
        version: "test".into(),
        members: (0..n)
            .map(|i| NodeMember {
                node_id: format!("demo-{i}"),
                address: format!("demo-{i}:50051"),
                health: "up".into(),
                state: state_of(i).into(),
                replica_ownership: 0.6,
            })
            .collect(),
        ..NodeStatus::default()
    };
    for i in 0..n {
        nodes.set_status(&format!("demo-{i}:50051"), Ok(view.clone()));
    }
}

fn sts_replicas_is(want: i32, partition: i32) -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(move |v: &Value| {
        assert_eq!(v["kind"], "StatefulSet");
        assert_eq!(v["spec"]["replicas"], want, "replicas");
        assert_eq!(
            v["spec"]["updateStrategy"]["rollingUpdate"]["partition"], partition,
            "partition"
        );
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "TinyKVCluster");
    })
}

fn any() -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(|_| {})
}

/// Headless Service, client Service, PDB, the look for a NetworkPolicy to
/// remove (`spec.networkPolicy` is disabled; there is none), then the
/// StatefulSet.
fn children(sts_check: Box<dyn FnOnce(&Value) + Send>) -> Vec<Expect> {
    children_with(vec![Expect::Get(paths::NETPOL.into(), None)], sts_check)
}

/// [`children`] with `netpol` as the NetworkPolicy's calls.
fn children_with(netpol: Vec<Expect>, sts_check: Box<dyn FnOnce(&Value) + Send>) -> Vec<Expect> {
    let mut calls = vec![
        Expect::Apply(
            paths::HEADLESS.into(),
            Box::new(|v| assert_eq!(v["spec"]["publishNotReadyAddresses"], true)),
        ),
        Expect::Apply(paths::CLIENT.into(), any()),
        Expect::Apply(
            paths::PDB.into(),
            Box::new(|v| assert_eq!(v["spec"]["maxUnavailable"], 1)),
        ),
    ];
    calls.extend(netpol);
    calls.push(Expect::Apply(paths::STS.into(), sts_check));
    calls
}

fn status_apply() -> Expect {
    Expect::Apply(paths::STATUS.into(), any())
}

fn status_of(applied: &[Value]) -> TinyKVClusterStatus {
    let last = applied.last().expect("a status patch");
    assert_eq!(last["kind"], "TinyKVCluster");
    serde_json::from_value(last["status"].clone()).expect("status parses")
}

/// The secret in the cluster's Secret in these tests.
const SECRET: &str = "reconciler-test-secret-0123456789";

/// A Secret as the API server returns it, `text` under `key`.
fn secret_json(name: &str, key: &str, text: &str) -> Value {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("db".into()),
            ..kube::api::ObjectMeta::default()
        },
        data: Some(std::collections::BTreeMap::from([(
            key.to_string(),
            k8s_openapi::ByteString(text.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    serde_json::to_value(secret).expect("json")
}

/// The operator's Secret exists already (holding [`SECRET`]).
fn secret_exists() -> Expect {
    Expect::Get(
        paths::SECRET.into(),
        Some(secret_json("demo-cluster-secret", "cluster.secret", SECRET)),
    )
}

/// The calls of `parts`, in order.
fn raw(parts: Vec<Vec<Expect>>) -> Vec<Expect> {
    parts.into_iter().flatten().collect()
}

/// Every pass starts by reading the cluster secret; here it exists.
fn script(parts: Vec<Vec<Expect>>) -> Vec<Expect> {
    std::iter::once(secret_exists())
        .chain(parts.into_iter().flatten())
        .collect()
}

/// The fingerprint of the signer made from [`SECRET`].
fn signed_with_secret() -> Option<String> {
    Some(fingerprint(&operator_signer(SECRET)))
}

fn cond<'a>(s: &'a TinyKVClusterStatus, t: &str) -> (&'a str, &'a str) {
    let c = condition(s, t).expect("condition");
    (c.status.as_str(), c.reason.as_str())
}

/// A cluster whose status says it runs `replicas` nodes on the current template.
fn settled_cluster(replicas: i32, desired: i32) -> TinyKVCluster {
    let mut c = cluster(spec(desired));
    c.status = Some(TinyKVClusterStatus {
        replicas,
        ready_replicas: replicas,
        phase: Some(Phase::Running),
        rolled_out_template_hash: Some(template_hash(&c)),
        ..TinyKVClusterStatus::default()
    });
    c
}

#[tokio::test]
async fn first_creation_applies_children_and_records_status() {
    let c = cluster(spec(3));
    let (ctx, nodes, verifier) = test_context(raw(vec![
        vec![
            // No Secret yet: the operator creates one before the pods need it.
            Expect::Get(paths::SECRET.into(), None),
            Expect::Create(paths::SECRETS.into(), Box::new(check_generated_secret)),
            Expect::Event(REASON_SECRET_CREATED, "Normal"),
            Expect::Get(paths::STS.into(), None),
        ],
        children(sts_replicas_is(3, 0)),
        vec![Expect::Event("Created", "Normal"), status_apply()],
    ]));
    let action = reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(crate::plan::STEP_REQUEUE));
    let applied = verifier.done().await;
    assert_eq!(applied[0]["kind"], "Secret", "created first");
    let status = status_of(&applied);
    assert_eq!(status.phase, Some(Phase::Creating));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.rolled_out_template_hash, Some(template_hash(&c)));
    assert_eq!(
        status.selector,
        "app.kubernetes.io/instance=demo,app.kubernetes.io/name=tinykv"
    );
    assert_eq!(cond(&status, "Available"), ("False", "Creating"));
    assert!(nodes.calls().is_empty(), "no node exists yet");
}

#[tokio::test]
async fn steady_cluster_reconciles_without_writes_beyond_apply() {
    // First pass computes the status; a second pass with that status must be a no-op.
    let mut c = settled_cluster(3, 3);
    let sts = sts_json(&c, 3, 3, 3);
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts.clone()))],
        children(sts_replicas_is(3, 0)),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    c.status = Some(status_of(&verifier.done().await));
    assert_eq!(
        c.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Running)
    );

    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts))],
        children(sts_replicas_is(3, 0)),
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    let action = reconcile(Arc::new(c), ctx).await.expect("reconcile");
    assert_eq!(action, Action::requeue(crate::plan::IDLE_REQUEUE));
    verifier.done().await;
    assert_eq!(nodes.calls(), vec![NodeCall::Status("demo-0:50051".into())]);
    assert_eq!(nodes.proofs(), vec![signed_with_secret()]);
    assert!(nodes.decommissions().is_empty());
}

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

fn scale_down_op() -> Operation {
    Operation {
        type_: OperationType::ScaleDown,
        from_replicas: 5,
        to_replicas: 3,
        node: Some("demo-4".into()),
        ordinal: Some(4),
        partition: None,
        template_hash: None,
        message: "decommissioning demo-4".into(),
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

#[tokio::test]
async fn image_upgrade_moves_partition_one_pod_at_a_time() {
    let mut c = settled_cluster(3, 3);
    c.spec.image = "tinykv:v2".into();
    // Start: partition 2 (only demo-2 rolls).
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 0)))],
        children(Box::new(|v: &Value| {
            assert_eq!(v["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 2);
            assert_eq!(
                v["spec"]["template"]["spec"]["containers"][0]["image"],
                "tinykv:v2"
            );
        })),
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
        children(sts_replicas_is(3, 1)),
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
        children(sts_replicas_is(3, 2)),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |i| if i == 2 { "joining" } else { "normal" });
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(status.operation.and_then(|o| o.partition), Some(2));
}

#[tokio::test]
async fn status_follows_ready_pods_and_node_views() {
    let mut c = settled_cluster(3, 3);
    if let Some(s) = c.status.as_mut() {
        s.ready_replicas = 1;
        s.phase = Some(Phase::Creating);
    }
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3)))],
        children(sts_replicas_is(3, 0)),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    // demo-0 is unreachable: the operator asks demo-1 instead.
    nodes.set_status(
        "demo-0:50051",
        Err(crate::node_admin::NodeError::Timeout("demo-0:50051".into())),
    );
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let status = status_of(&verifier.done().await);
    assert_eq!(status.ready_replicas, 3);
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(cond(&status, "Available"), ("True", "QuorumAvailable"));
    assert_eq!(cond(&status, "Degraded"), ("False", "AsExpected"));
    assert_eq!(status.members.len(), 3);
    assert_eq!(status.members[2].node_id, "demo-2");
    assert_eq!(status.members[2].state, "normal");
    assert_eq!(nodes.calls().len(), 2);
}

#[tokio::test]
async fn deletion_only_publishes_an_event() {
    let mut c = settled_cluster(3, 3);
    c.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    let (ctx, nodes, verifier) = test_context(vec![Expect::Event("Deleting", "Normal")]);
    let action = reconcile(Arc::new(c), ctx).await.expect("reconcile");
    assert_eq!(action, Action::await_change());
    verifier.done().await;
    assert!(nodes.calls().is_empty());
}

#[tokio::test]
async fn api_failure_fails_the_pass_and_backs_off() {
    let c = Arc::new(cluster(spec(3)));
    // The mock answers nothing: the client sees the service closed.
    let (ctx, _nodes, verifier) = test_context(Vec::new());
    verifier.done().await;
    let err = reconcile(c.clone(), ctx.clone())
        .await
        .expect_err("no API server");
    assert_eq!(err.metric_label(), "kube");
    assert_eq!(
        error_policy(c.clone(), &err, ctx.clone()),
        Action::requeue(backoff(1))
    );
    assert_eq!(
        error_policy(c, &err, ctx.clone()),
        Action::requeue(backoff(2))
    );
    assert_eq!(ctx.metrics.failure_count("kube"), 2);
    assert_eq!(backoff(1), std::time::Duration::from_secs(2));
    assert_eq!(backoff(3), std::time::Duration::from_secs(8));
    assert_eq!(backoff(40), std::time::Duration::from_secs(300));
}

#[tokio::test]
async fn node_id_seam_maps_views_to_pod_names() {
    let (service, _handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let ctx = Context::new(
        Client::new(service, "default"),
        Arc::new(MockNodeAdmin::default()),
        Arc::new(Metrics::default()),
    )
    .with_node_ids(Arc::new(|pod: &str| {
        let n: i32 = pod
            .rsplit('-')
            .next()
            .and_then(|o| o.parse().ok())
            .expect("ordinal");
        format!("node{}", n + 1)
    }));
    let mut c = settled_cluster(3, 3);
    if let Some(s) = c.status.as_mut() {
        s.operation = Some(scale_down_op());
    }
    let view = NodeStatus {
        node_id: "node2".into(),
        members: ["node1", "node2", "node3", "node5", "stranger"]
            .into_iter()
            .map(|id| NodeMember {
                node_id: id.into(),
                ..NodeMember::default()
            })
            .collect(),
        ..NodeStatus::default()
    };
    // Pods up to the highest ordinal anything refers to (here the recorded
    // scale-down of demo-4, beyond the 3 observed replicas) are mapped; ids
    // of no pod stay as they are.
    let v = view_by_pod_names(&c, &ctx, 3, view);
    assert_eq!(v.node_id, "demo-1");
    let ids: Vec<&str> = v.members.iter().map(|m| m.node_id.as_str()).collect();
    assert_eq!(ids, ["demo-0", "demo-1", "demo-2", "demo-4", "stranger"]);
    assert_eq!((ctx.node_id)("demo-4"), "node5");
}

/// The body the operator creates its Secret with.
fn check_generated_secret(v: &Value) {
    assert_eq!(v["kind"], "Secret");
    assert_eq!(v["metadata"]["name"], "demo-cluster-secret");
    assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "TinyKVCluster");
    assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "uid-1234");
    assert_eq!(
        v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "tinykv-operator"
    );
    let secret: Secret = serde_json::from_value(v.clone()).expect("a Secret");
    let text = &secret.data.as_ref().expect("data")["cluster.secret"].0;
    let text = std::str::from_utf8(text).expect("utf8");
    assert_eq!(text.len(), 65, "64 hex digits and a newline: {text:?}");
    assert!(text.ends_with('\n'));
    assert!(text.trim_end().chars().all(|c| c.is_ascii_hexdigit()));
}

#[tokio::test]
async fn a_secret_created_meanwhile_is_read_not_overwritten() {
    let c = settled_cluster(3, 3);
    let (ctx, nodes, verifier) = test_context(raw(vec![
        vec![
            Expect::Get(paths::SECRET.into(), None),
            Expect::CreateConflict(paths::SECRETS.into()),
            secret_exists(),
            Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3))),
        ],
        children(sts_replicas_is(3, 0)),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    verifier.done().await;
    assert_eq!(nodes.proofs(), vec![signed_with_secret()]);
}

#[tokio::test]
async fn a_rotated_secret_signs_with_its_first_line() {
    let c = settled_cluster(3, 3);
    let rotated = "the-new-secret-0123456789\nreconciler-test-secret-0123456789\n";
    let (ctx, nodes, verifier) = test_context(raw(vec![
        vec![
            Expect::Get(
                paths::SECRET.into(),
                Some(secret_json(
                    "demo-cluster-secret",
                    "cluster.secret",
                    rotated,
                )),
            ),
            Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3))),
        ],
        children(sts_replicas_is(3, 0)),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    verifier.done().await;
    assert_eq!(
        nodes.proofs(),
        vec![Some(fingerprint(&operator_signer(
            "the-new-secret-0123456789"
        )))]
    );
}

fn with_secret_ref(mut c: TinyKVCluster, name: &str, key: &str) -> TinyKVCluster {
    c.spec.security.cluster_secret_ref = Some(crate::crd::SecretKeyRef {
        name: name.into(),
        key: key.into(),
    });
    c
}

#[tokio::test]
async fn a_named_secret_is_used_and_none_is_created() {
    let mut c = with_secret_ref(settled_cluster(3, 3), "mine", "tinykv");
    // The pods mount the named Secret (the template hash is of that template).
    let hash = template_hash(&c);
    if let Some(s) = c.status.as_mut() {
        s.rolled_out_template_hash = Some(hash);
    }
    let (ctx, nodes, verifier) = test_context(raw(vec![
        vec![
            Expect::Get(
                paths::secret("mine"),
                Some(secret_json("mine", "tinykv", "a-named-secret-0123456789\n")),
            ),
            Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3))),
        ],
        children(Box::new(|v: &Value| {
            let vols = &v["spec"]["template"]["spec"]["volumes"];
            assert_eq!(vols[0]["secret"]["secretName"], "mine", "{vols}");
            assert_eq!(vols[0]["secret"]["items"][0]["key"], "tinykv", "{vols}");
        })),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    verifier.done().await;
    assert_eq!(
        nodes.proofs(),
        vec![Some(fingerprint(&operator_signer(
            "a-named-secret-0123456789"
        )))]
    );
}

#[tokio::test]
async fn a_missing_named_secret_fails_the_pass_with_a_warning() {
    let c = with_secret_ref(cluster(spec(3)), "absent", "cluster.secret");
    let (ctx, nodes, verifier) = test_context(vec![
        Expect::Get(paths::secret("absent"), None),
        Expect::Event(REASON_SECRET_UNUSABLE, "Warning"),
    ]);
    let err = reconcile(Arc::new(c), ctx).await.expect_err("no Secret");
    verifier.done().await;
    assert_eq!(err.metric_label(), "cluster_secret");
    assert!(err.to_string().contains("db/absent"), "{err}");
    assert!(nodes.calls().is_empty());
}

#[tokio::test]
async fn an_unusable_secret_fails_the_pass_and_is_left_alone() {
    for (key, text, why) in [
        ("cluster.secret", "short\n", "at least 16"),
        ("other-key", "long-enough-secret-0123456789", "no such key"),
    ] {
        let c = cluster(spec(3));
        let (ctx, _nodes, verifier) = test_context(vec![
            Expect::Get(
                paths::SECRET.into(),
                Some(secret_json("demo-cluster-secret", key, text)),
            ),
            Expect::Event(REASON_SECRET_UNUSABLE, "Warning"),
        ]);
        let err = reconcile(Arc::new(c), ctx).await.expect_err("unusable");
        verifier.done().await;
        assert!(err.to_string().contains(why), "{err}");
        // The secret's text never reaches an error message.
        assert!(!err.to_string().contains("long-enough"), "{err}");
    }
}

fn with_network_policy(mut c: TinyKVCluster) -> TinyKVCluster {
    c.spec.network_policy.enabled = true;
    c.spec.network_policy.client_selectors = vec![serde_json::from_value(
        serde_json::json!({"podSelector": {"matchLabels": {"role": "client"}}}),
    )
    .expect("peer")];
    c
}

/// A NetworkPolicy `demo` as the API server returns it, controlled by the
/// TinyKVCluster of uid `owner` when given.
fn netpol_json(owner: Option<&str>) -> Value {
    let mut v = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "demo", "namespace": "db", "uid": "np-uid"},
        "spec": {"podSelector": {}},
    });
    if let Some(uid) = owner {
        v["metadata"]["ownerReferences"] = serde_json::json!([{
            "apiVersion": "tinykv.io/v1alpha1", "kind": "TinyKVCluster",
            "name": "demo", "uid": uid, "controller": true,
        }]);
    }
    v
}

#[tokio::test]
async fn an_enabled_network_policy_is_applied_before_the_statefulset() {
    let c = with_network_policy(settled_cluster(3, 3));
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3)))],
        children_with(
            vec![Expect::Apply(
                paths::NETPOL.into(),
                Box::new(|v| {
                    assert_eq!(v["kind"], "NetworkPolicy");
                    assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "uid-1234");
                    assert_eq!(v["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
                    let rules = v["spec"]["ingress"].as_array().expect("rules");
                    assert_eq!(rules.len(), 3, "own pods, operator, clients: {v}");
                    assert_eq!(
                        rules[2]["from"][0]["podSelector"]["matchLabels"]["role"],
                        "client"
                    );
                }),
            )],
            sts_replicas_is(3, 0),
        ),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    verifier.done().await;
}

#[tokio::test]
async fn a_disabled_network_policy_the_operator_made_is_deleted() {
    let c = settled_cluster(3, 3);
    let (ctx, nodes, verifier) = test_context(script(vec![
        vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3)))],
        children_with(
            vec![
                Expect::Get(paths::NETPOL.into(), Some(netpol_json(Some("uid-1234")))),
                Expect::Delete(paths::NETPOL.into()),
            ],
            sts_replicas_is(3, 0),
        ),
        vec![status_apply()],
    ]));
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    verifier.done().await;
}

#[tokio::test]
async fn a_network_policy_of_someone_else_is_left_alone() {
    for owner in [None, Some("another-cluster-uid")] {
        let c = settled_cluster(3, 3);
        let (ctx, nodes, verifier) = test_context(script(vec![
            vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3)))],
            children_with(
                vec![Expect::Get(paths::NETPOL.into(), Some(netpol_json(owner)))],
                sts_replicas_is(3, 0),
            ),
            vec![status_apply()],
        ]));
        script_nodes(&nodes, 3, |_| "normal");
        reconcile(Arc::new(c), ctx).await.expect("reconcile");
        verifier.done().await;
    }
}

#[tokio::test]
async fn an_invalid_network_policy_fails_before_any_write() {
    let mut c = settled_cluster(3, 3);
    c.spec.network_policy.enabled = true;
    c.spec.network_policy.metrics_selectors = vec![Default::default()];
    let (ctx, nodes, verifier) = test_context(script(vec![vec![Expect::Get(
        paths::STS.into(),
        Some(sts_json(&c, 3, 3, 3)),
    )]]));
    script_nodes(&nodes, 3, |_| "normal");
    let err = reconcile(Arc::new(c), ctx).await.expect_err("invalid spec");
    assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    verifier.done().await;
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

#[path = "reconciler_auth_tests.rs"]
mod auth;

#[path = "reconciler_tls_tests.rs"]
mod tls;
