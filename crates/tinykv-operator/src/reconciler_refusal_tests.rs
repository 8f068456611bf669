//! A spec the API server refuses: the reconciler reports it as a
//! `Degraded` condition carrying the API server's message and as a Warning
//! event naming the operator's pod, then fails the pass (backoff). Written
//! against hand-made API answers (a 422 `Status` as the API server sends
//! it), not against the builders.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use serde_json::{json, Value};

use super::*;
use crate::builders::test_support::cluster;
use crate::crd::TinyKVClusterStatus;
use crate::crd::{Phase, TinyKVClusterSpec};
use crate::fixtures::{paths, test_context_with, Expect};
use crate::status::{condition, CONDITION_DEGRADED};

/// What the API server says when a StatefulSet's volume claim templates change.
const FORBIDDEN: &str = "StatefulSet.apps \"demo\" is invalid: spec: Forbidden: updates to \
    statefulset spec for fields other than 'replicas', 'ordinals', 'template', \
    'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

fn existing_secret() -> Expect {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("demo-cluster-secret".into()),
            namespace: Some("db".into()),
            ..kube::api::ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "cluster.secret".to_string(),
            k8s_openapi::ByteString(b"refusal-test-secret-0123456789".to_vec()),
        )])),
        ..Secret::default()
    };
    Expect::Get(
        paths::SECRET.into(),
        Some(serde_json::to_value(secret).expect("json")),
    )
}

/// A StatefulSet as the API server returns it: 3 replicas, all ready.
fn existing_statefulset() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "demo", "namespace": "db", "generation": 4},
        "spec": {
            "replicas": 3,
            "serviceName": "demo-headless",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "tinykv"}},
            "template": {"metadata": {}, "spec": {"containers": []}}
        },
        "status": {"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "observedGeneration": 4}
    })
}

fn ignore() -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(|_| {})
}

#[tokio::test]
async fn a_refused_statefulset_becomes_a_degraded_condition_and_an_event() {
    let mut c = cluster(TinyKVClusterSpec::default());
    c.metadata.generation = Some(7);
    c.status = Some(TinyKVClusterStatus {
        replicas: 3,
        ready_replicas: 3,
        observed_generation: Some(6),
        phase: Some(Phase::Running),
        ..TinyKVClusterStatus::default()
    });
    let (ctx, _nodes, verifier) = test_context_with(
        vec![
            existing_secret(),
            Expect::Get(paths::STS.into(), Some(existing_statefulset())),
            Expect::Apply(paths::HEADLESS.into(), ignore()),
            Expect::Apply(paths::CLIENT.into(), ignore()),
            Expect::Apply(paths::PDB.into(), ignore()),
            Expect::Get(paths::NETPOL.into(), None),
            Expect::ApplyRefused(paths::STS.into(), 422, FORBIDDEN.into()),
            Expect::Apply(paths::STATUS.into(), ignore()),
            Expect::EventBy {
                reason: "ApplyRejected",
                type_: "Warning",
                note: format!("StatefulSet demo: {FORBIDDEN}"),
                instance: "tinykv-operator-7d9f-abcde",
            },
        ],
        |ctx| ctx.with_reporting_instance(Some("tinykv-operator-7d9f-abcde".into())),
    );
    let err = reconcile(Arc::new(c), ctx.clone())
        .await
        .expect_err("the pass fails");
    assert!(
        matches!(&err, Error::ApplyRejected { object, .. } if object == "StatefulSet demo"),
        "{err}"
    );
    assert_eq!(err.metric_label(), "apply_rejected");
    let applied = verifier.done().await;
    let last = applied.last().expect("status patch");
    assert_eq!(last["kind"], "TinyKVCluster");
    let status: TinyKVClusterStatus =
        serde_json::from_value(last["status"].clone()).expect("status parses");
    let degraded = condition(&status, CONDITION_DEGRADED).expect("Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "ApplyRejected");
    assert_eq!(degraded.message, format!("StatefulSet demo: {FORBIDDEN}"));
    assert_eq!(degraded.observed_generation, Some(7));
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert_eq!(
        status.observed_generation,
        Some(6),
        "nothing of generation 7 was applied"
    );
    assert_eq!(status.replicas, 3, "the rest of the status is kept");
}

#[tokio::test]
async fn a_throttled_apply_is_retried_without_a_condition() {
    let c = cluster(TinyKVClusterSpec::default());
    // 429 is not a refusal of the object: no event, no status patch.
    let (ctx, _nodes, verifier) = test_context_with(
        vec![
            existing_secret(),
            Expect::Get(paths::STS.into(), None),
            Expect::ApplyRefused(paths::HEADLESS.into(), 429, "slow down".into()),
        ],
        |ctx| ctx,
    );
    let err = reconcile(Arc::new(c), ctx).await.expect_err("fails");
    assert!(matches!(err, Error::Kube(_)), "{err}");
    verifier.done().await;
}

#[tokio::test]
async fn an_invalid_tls_spec_is_refused_before_any_write() {
    let mut spec = TinyKVClusterSpec::default();
    spec.tls.issuer_ref = Some(crate::crd::IssuerRef {
        name: "ca".into(),
        kind: crate::crd::IssuerKind::Issuer,
    });
    let c = cluster(spec);
    let (ctx, _nodes, verifier) = test_context_with(
        vec![
            Expect::Apply(
                paths::STATUS.into(),
                Box::new(|v| {
                    let conds = v["status"]["conditions"].as_array().expect("conditions");
                    assert!(conds.iter().any(|c| c["type"] == "Degraded"
                        && c["reason"] == "InvalidSpec"
                        && c["status"] == "True"));
                }),
            ),
            Expect::EventBy {
                reason: "InvalidSpec",
                type_: "Warning",
                note: "issuerRef needs enabled: true".into(),
                instance: "op-1",
            },
        ],
        |ctx| ctx.with_reporting_instance(Some("op-1".into())),
    );
    let err = reconcile(Arc::new(c), ctx).await.expect_err("refused");
    assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    verifier.done().await;
}
