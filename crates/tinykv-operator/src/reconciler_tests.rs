//! Reconciler tests against a mocked API server that asserts each call:
//! the shared script helpers, and a cluster's creation, steady state,
//! status, deletion and failures. Scaling and upgrades, the cluster
//! secret, the NetworkPolicy, authentication rollouts and TLS are in the
//! modules at the end; the objects every pass applies are checked against
//! the hand-written ones in `reconciler_expected.rs`.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::view::view_by_pod_names;
use super::*;
use crate::builders::build_statefulset;
use crate::builders::test_support::cluster;
use crate::crd::TinyKVClusterStatus;
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

/// The template-hash annotation of `sts`.
fn hash_of(sts: &StatefulSet) -> String {
    sts.metadata.annotations.as_ref().expect("annotations")[TEMPLATE_HASH_ANNOTATION].clone()
}

/// The hash of `c`'s pod template, to set up a status as an earlier pass
/// recorded it (never as an expectation: that is the applied body's).
fn template_hash(c: &TinyKVCluster) -> String {
    hash_of(&build_statefulset(c, 1, 0).expect("sts"))
}

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

/// The StatefulSet of `c` with `replicas` pods as the API server returns it.
fn sts_json(c: &TinyKVCluster, replicas: i32, ready: i32, updated: i32) -> Value {
    observed_json(
        build_statefulset(c, replicas, 0).expect("sts"),
        ready,
        updated,
    )
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
    // Each node answers as itself: its id and its own state.
    for i in 0..n {
        let own = NodeStatus {
            node_id: format!("demo-{i}"),
            state: state_of(i).into(),
            ..view.clone()
        };
        nodes.set_status(&format!("demo-{i}:50051"), Ok(own));
    }
}

/// One reconcile pass over `c` against the API calls `script`, every pod
/// `demo-i:50051` answering Status with three `normal` members; returns
/// the node mock (its calls) and the bodies the API server received.
async fn steady_pass(c: TinyKVCluster, script: Vec<Expect>) -> (MockNodeAdmin, Vec<Value>) {
    let (ctx, nodes, verifier) = test_context(script);
    script_nodes(&nodes, 3, |_| "normal");
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    (nodes, verifier.done().await)
}

/// The applied StatefulSet is exactly the hand-written one of a default
/// cluster with `want` replicas and this partition.
fn sts_replicas_is(want: i32, partition: i32) -> Box<dyn FnOnce(&Value) + Send> {
    expected::sts_is(expected::statefulset(want, partition))
}

fn any() -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(|_| {})
}

/// Headless Service, client Service, PDB (each exactly the hand-written
/// one), the look for a NetworkPolicy to remove (`spec.networkPolicy` is
/// disabled; there is none), then the StatefulSet.
fn children(sts_check: Box<dyn FnOnce(&Value) + Send>) -> Vec<Expect> {
    children_with(vec![Expect::Get(paths::NETPOL.into(), None)], sts_check)
}

/// [`children`] with `netpol` as the NetworkPolicy's calls.
fn children_with(netpol: Vec<Expect>, sts_check: Box<dyn FnOnce(&Value) + Send>) -> Vec<Expect> {
    let mut calls = vec![
        Expect::Apply(
            paths::HEADLESS.into(),
            expected::is(expected::headless_service()),
        ),
        Expect::Apply(
            paths::CLIENT.into(),
            expected::is(expected::client_service()),
        ),
        Expect::Apply(paths::PDB.into(), expected::is(expected::pdb())),
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

/// The template-hash annotation of the StatefulSet among `applied`.
fn applied_hash(applied: &[Value]) -> String {
    let sts = applied.iter().find(|v| v["kind"] == "StatefulSet");
    let hash = &sts.expect("a StatefulSet applied")["metadata"]["annotations"];
    hash["tinykv.io/template-hash"]
        .as_str()
        .expect("a template hash")
        .to_string()
}

/// `c` with its current template recorded as rolled out (after a test
/// changed its spec).
fn settle(mut c: TinyKVCluster) -> TinyKVCluster {
    let hash = template_hash(&c);
    if let Some(s) = c.status.as_mut() {
        s.rolled_out_template_hash = Some(hash);
    }
    c
}

#[tokio::test]
async fn first_creation_applies_children_and_records_status() {
    let c = cluster(spec(3));
    let (ctx, nodes, verifier) = test_context(raw(vec![
        vec![
            // No Secret yet: the operator creates one before the pods need it.
            Expect::Get(paths::SECRET.into(), None),
            Expect::Create(
                paths::SECRETS.into(),
                Box::new(secret::check_generated_secret),
            ),
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
    // The hash recorded is the one of the template applied.
    assert_eq!(
        status.rolled_out_template_hash,
        Some(applied_hash(&applied))
    );
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
        s.operation = Some(scale::scale_down_op());
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

#[path = "reconciler_expected.rs"]
mod expected;

#[path = "reconciler_scale_tests.rs"]
mod scale;

#[path = "reconciler_secret_tests.rs"]
mod secret;

#[path = "reconciler_netpol_tests.rs"]
mod netpol;

#[path = "reconciler_auth_tests.rs"]
mod auth;

#[path = "reconciler_tls_tests.rs"]
mod tls;
