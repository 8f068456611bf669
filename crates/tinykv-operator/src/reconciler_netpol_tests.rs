//! `spec.networkPolicy` through the reconciler: applied before the pods,
//! deleted when disabled only if the operator made it, refused when invalid.

use super::*;

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
    let (_, _) = steady_pass(
        c.clone(),
        script(vec![
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
        ]),
    )
    .await;
}

#[tokio::test]
async fn a_disabled_network_policy_the_operator_made_is_deleted() {
    let c = settled_cluster(3, 3);
    let (_, _) = steady_pass(
        c.clone(),
        script(vec![
            vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3)))],
            children_with(
                vec![
                    Expect::Get(paths::NETPOL.into(), Some(netpol_json(Some("uid-1234")))),
                    Expect::Delete(paths::NETPOL.into()),
                ],
                sts_replicas_is(3, 0),
            ),
            vec![status_apply()],
        ]),
    )
    .await;
}

#[tokio::test]
async fn a_network_policy_of_someone_else_is_left_alone() {
    for owner in [None, Some("another-cluster-uid")] {
        let c = settled_cluster(3, 3);
        let (_, _) = steady_pass(
            c.clone(),
            script(vec![
                vec![Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3)))],
                children_with(
                    vec![Expect::Get(paths::NETPOL.into(), Some(netpol_json(owner)))],
                    sts_replicas_is(3, 0),
                ),
                vec![status_apply()],
            ]),
        )
        .await;
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
