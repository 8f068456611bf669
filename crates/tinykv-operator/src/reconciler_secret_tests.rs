//! The cluster secret through the reconciler: created when absent, read
//! when it exists (rotated, named or unusable).

use super::*;

/// The body the operator creates its Secret with.
pub(super) fn check_generated_secret(v: &Value) {
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
    let (nodes, _) = steady_pass(
        c.clone(),
        raw(vec![
            vec![
                Expect::Get(paths::SECRET.into(), None),
                Expect::CreateConflict(paths::SECRETS.into()),
                secret_exists(),
                Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3))),
            ],
            children(sts_replicas_is(3, 0)),
            vec![status_apply()],
        ]),
    )
    .await;
    assert_eq!(nodes.proofs(), vec![signed_with_secret()]);
}

#[tokio::test]
async fn a_rotated_secret_signs_with_its_first_line() {
    let c = settled_cluster(3, 3);
    let rotated = "the-new-secret-0123456789\nreconciler-test-secret-0123456789\n";
    let (nodes, _) = steady_pass(
        c.clone(),
        raw(vec![
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
        ]),
    )
    .await;
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
    // The pods mount the named Secret (the template hash is of that template).
    let c = settle(with_secret_ref(settled_cluster(3, 3), "mine", "tinykv"));
    let mut mounting_mine = expected::statefulset(3, 0);
    let volume = &mut mounting_mine["spec"]["template"]["spec"]["volumes"][0]["secret"];
    volume["secretName"] = "mine".into();
    volume["items"][0]["key"] = "tinykv".into();
    let (nodes, _) = steady_pass(
        c.clone(),
        raw(vec![
            vec![
                Expect::Get(
                    paths::secret("mine"),
                    Some(secret_json("mine", "tinykv", "a-named-secret-0123456789\n")),
                ),
                Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3))),
            ],
            children(expected::sts_is(mounting_mine)),
            vec![status_apply()],
        ]),
    )
    .await;
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
