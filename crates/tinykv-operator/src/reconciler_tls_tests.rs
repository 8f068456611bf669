//! `spec.tls` through the reconciler against the mocked API server: the
//! operator's CA and node certificates, cert-manager Certificates, and what
//! the operator shows the nodes.

use super::*;
use crate::builders::{build_ca_secret, build_signed_nodes_secret, generate_ca};
use crate::crd::{ClientAuthMode, IssuerKind, IssuerRef, TokenSecretRef};
use tinykv_auth::tls::{cert_names, pem_certs};

fn tls_cluster(replicas: i32, desired: i32) -> TinyKVCluster {
    let mut c = settled_cluster(replicas, desired);
    c.spec.tls.enabled = true;
    settle(c)
}

fn text(v: &Value, key: &str) -> String {
    let secret: Secret = serde_json::from_value(v.clone()).expect("a Secret");
    crate::builders::secret_text(&secret, key)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_string()
}

fn data_keys(v: &Value) -> Vec<String> {
    v["data"]
        .as_object()
        .expect("data")
        .keys()
        .cloned()
        .collect()
}

/// The hand-written StatefulSet of a TLS cluster with `replicas` pods:
/// each node's certificate, key and the CA from the nodes' Secret (never
/// the CA's key), and probes through the CLI, since kubelet's gRPC probe
/// speaks plaintext only.
fn tls_statefulset(replicas: i32) -> Value {
    let mut want = expected::statefulset(replicas, 0);
    let pod = &mut want["spec"]["template"]["spec"];
    pod["volumes"].as_array_mut().expect("volumes").push(
        serde_json::json!({"name": "tls", "secret": {
            "secretName": "demo-tls-nodes", "defaultMode": 0o440, "optional": false,
        }}),
    );
    let node = &mut pod["containers"][0];
    let env = node["env"].as_array_mut().expect("env");
    for (name, value) in [
        ("TINYKV_TLS_CERT", "/etc/tinykv/tls/$(POD_NAME).crt"),
        ("TINYKV_TLS_KEY", "/etc/tinykv/tls/$(POD_NAME).key"),
        ("TINYKV_TLS_CA", "/etc/tinykv/tls/ca.crt"),
    ] {
        env.push(serde_json::json!({"name": name, "value": value}));
    }
    node["volumeMounts"]
        .as_array_mut()
        .expect("mounts")
        .push(serde_json::json!({"name": "tls", "mountPath": "/etc/tinykv/tls", "readOnly": true}));
    let health = [
        "tinykv_client",
        "--timeout",
        "2s",
        "127.0.0.1:50051",
        "health",
    ];
    for probe in ["readinessProbe", "livenessProbe"] {
        let p = node[probe].as_object_mut().expect("probe");
        p.remove("grpc");
        p.insert("exec".into(), serde_json::json!({"command": health}));
    }
    want
}

/// Checks an applied StatefulSet is [`tls_statefulset`].
fn sts_has_tls(replicas: i32) -> Box<dyn FnOnce(&Value) + Send> {
    expected::sts_is(tls_statefulset(replicas))
}

#[tokio::test]
async fn a_new_tls_cluster_gets_a_ca_and_a_certificate_per_pod_before_its_pods() {
    let mut c = cluster(spec(3));
    c.spec.tls.enabled = true;
    let (ctx, nodes, verifier) = test_context(raw(vec![
        vec![
            secret_exists(),
            Expect::Get(paths::STS.into(), None),
            Expect::Get(paths::secret("demo-tls-ca"), None),
            Expect::Create(
                paths::SECRETS.into(),
                Box::new(|v| {
                    assert_eq!(v["metadata"]["name"], "demo-tls-ca");
                    assert_eq!(data_keys(v), ["ca.crt", "ca.key"]);
                }),
            ),
            Expect::Get(paths::secret("demo-tls-nodes"), None),
            Expect::Apply(paths::secret("demo-tls-nodes"), any()),
            Expect::Event(REASON_TLS_CA_CREATED, "Normal"),
            Expect::Event(REASON_TLS_ISSUED, "Normal"),
        ],
        children(sts_has_tls(3)),
        vec![Expect::Event("Created", "Normal"), status_apply()],
    ]));
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let applied = verifier.done().await;
    let (ca, nodes_secret) = (&applied[0], &applied[1]);
    assert_eq!(
        data_keys(nodes_secret),
        [
            "ca.crt",
            "demo-0.crt",
            "demo-0.key",
            "demo-1.crt",
            "demo-1.key",
            "demo-2.crt",
            "demo-2.key"
        ]
    );
    assert_eq!(text(nodes_secret, "ca.crt"), text(ca, "ca.crt"));
    let der = &pem_certs(&text(nodes_secret, "demo-2.crt"))[0];
    assert_eq!(cert_names(der)[0], "demo-2", "the member id first");
    assert!(nodes.calls().is_empty(), "no node exists yet");
}

/// The CA Secret and the node certificates of `n` pods, as the API server
/// returns them.
fn existing_certs(c: &TinyKVCluster, n: i32) -> (Value, Value) {
    let ca = generate_ca(c).expect("ca");
    let (nodes, _) = build_signed_nodes_secret(c, &ca, n, None).expect("nodes");
    let ca_secret = build_ca_secret(c, &ca).expect("ca secret");
    (
        serde_json::to_value(ca_secret).expect("json"),
        serde_json::to_value(nodes).expect("json"),
    )
}

#[tokio::test]
async fn scaling_up_signs_only_the_new_pods_and_the_operator_dials_tls() {
    let c = tls_cluster(3, 5);
    let (ca, three) = existing_certs(&c, 3);
    let kept = three.clone();
    let (nodes, _) = steady_pass(
        c.clone(),
        script(vec![
            vec![
                Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3))),
                Expect::Get(paths::secret("demo-tls-ca"), Some(ca)),
                Expect::Get(paths::secret("demo-tls-nodes"), Some(three)),
                Expect::Apply(
                    paths::secret("demo-tls-nodes"),
                    Box::new(move |v| {
                        assert_eq!(data_keys(v).len(), 11, "ca.crt and five pairs");
                        for key in ["demo-0.crt", "demo-0.key", "demo-2.key"] {
                            assert_eq!(v["data"][key], kept["data"][key], "{key} kept");
                        }
                    }),
                ),
                Expect::Event(REASON_TLS_ISSUED, "Normal"),
            ],
            children(sts_has_tls(5)),
            vec![Expect::Event("ScaleUpStarted", "Normal"), status_apply()],
        ]),
    )
    .await;
    assert_eq!(nodes.proofs(), vec![signed_with_secret()]);
    assert_eq!(nodes.shown(), vec![(true, None)], "over TLS, no token");
}

#[tokio::test]
async fn a_steady_tls_cluster_writes_no_certificate() {
    let c = tls_cluster(3, 3);
    let (ca, three) = existing_certs(&c, 3);
    let (_, _) = steady_pass(
        c.clone(),
        script(vec![
            vec![
                Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3))),
                Expect::Get(paths::secret("demo-tls-ca"), Some(ca)),
                Expect::Get(paths::secret("demo-tls-nodes"), Some(three)),
            ],
            children(sts_has_tls(3)),
            vec![status_apply()],
        ]),
    )
    .await;
}

#[tokio::test]
async fn the_token_of_the_token_secret_goes_with_the_operator_calls() {
    let mut c = tls_cluster(3, 3);
    c.spec.tls.client_auth = Some(ClientAuthMode::Token);
    c.spec.tls.client_token_secret_ref = Some(TokenSecretRef {
        name: "apps".into(),
        key: "tokens".into(),
    });
    let c = settle(c);
    // The nodes check client tokens from the Secret `apps`, mounted.
    let mut with_tokens = tls_statefulset(3);
    let pod = &mut with_tokens["spec"]["template"]["spec"];
    pod["volumes"].as_array_mut().expect("volumes").push(
        serde_json::json!({"name": "client-tokens", "secret": {
            "secretName": "apps", "items": [{"key": "tokens", "path": "tokens"}],
            "defaultMode": 0o440, "optional": false,
        }}),
    );
    let node = &mut pod["containers"][0];
    node["env"].as_array_mut().expect("env").extend([
        serde_json::json!({"name": "TINYKV_CLIENT_AUTH", "value": "token"}),
        serde_json::json!({"name": "TINYKV_CLIENT_TOKEN_FILE",
                           "value": "/etc/tinykv/client-tokens/tokens"}),
    ]);
    node["volumeMounts"]
        .as_array_mut()
        .expect("mounts")
        .push(serde_json::json!(
            {"name": "client-tokens", "mountPath": "/etc/tinykv/client-tokens", "readOnly": true}
        ));
    let (ca, three) = existing_certs(&c, 3);
    let token = "first-token-0123456789";
    let tokens = format!("{token}\nsecond-token-0123456789\n");
    let (nodes, _) = steady_pass(
        c.clone(),
        script(vec![
            vec![
                Expect::Get(paths::STS.into(), Some(sts_json(&c, 3, 3, 3))),
                Expect::Get(paths::secret("demo-tls-ca"), Some(ca)),
                Expect::Get(paths::secret("demo-tls-nodes"), Some(three)),
                Expect::Get(
                    paths::secret("apps"),
                    Some(secret_json("apps", "tokens", &tokens)),
                ),
            ],
            children(expected::sts_is(with_tokens)),
            vec![status_apply()],
        ]),
    )
    .await;
    assert_eq!(nodes.shown(), vec![(true, Some(token.to_string()))]);
}

#[tokio::test]
async fn an_impossible_tls_spec_fails_before_any_call() {
    let mut c = cluster(spec(3));
    c.spec.tls.client_auth = Some(ClientAuthMode::Cert);
    let (ctx, _nodes, verifier) = test_context(Vec::new());
    let err = reconcile(Arc::new(c), ctx).await.expect_err("refused");
    assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    verifier.done().await;
}

fn certificate(ordinal: i32) -> String {
    format!("/apis/cert-manager.io/v1/namespaces/db/certificates/demo-{ordinal}-tls")
}

/// The Secret cert-manager writes for pod `ordinal`, signed by `ca`.
fn cm_secret(ca: &tinykv_auth::Authority, ordinal: i32) -> Value {
    let names = vec![format!("demo-{ordinal}")];
    let issued = ca.issue(&names, tinykv_auth::Role::Node).expect("issue");
    let data = [
        ("tls.crt", issued.cert_pem),
        ("tls.key", issued.key_pem),
        ("ca.crt", ca.cert_pem().to_string()),
    ]
    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.into_bytes())));
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("demo-{ordinal}-tls")),
            ..kube::api::ObjectMeta::default()
        },
        data: Some(data.into_iter().collect()),
        ..Secret::default()
    };
    serde_json::to_value(secret).expect("json")
}

fn issuer_check(ordinal: i32) -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(move |v| {
        assert_eq!(v["kind"], "Certificate");
        assert_eq!(v["spec"]["secretName"], format!("demo-{ordinal}-tls"));
        assert_eq!(v["spec"]["dnsNames"][0], format!("demo-{ordinal}"));
        assert_eq!(v["spec"]["issuerRef"]["kind"], "ClusterIssuer");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "TinyKVCluster");
    })
}

#[tokio::test]
async fn with_cert_manager_the_pods_wait_for_every_certificate() {
    let mut c = cluster(spec(2));
    c.spec.tls.enabled = true;
    c.spec.tls.issuer_ref = Some(IssuerRef {
        name: "ca-issuer".into(),
        kind: IssuerKind::ClusterIssuer,
    });
    let ca = generate_ca(&c).expect("the issuer's CA");
    // Pass 1: demo-1's certificate is not issued yet: no StatefulSet.
    let (ctx, _nodes, verifier) = test_context(script(vec![vec![
        Expect::Get(paths::STS.into(), None),
        Expect::Apply(certificate(0), issuer_check(0)),
        Expect::Get(paths::secret("demo-0-tls"), Some(cm_secret(&ca, 0))),
        Expect::Apply(certificate(1), issuer_check(1)),
        Expect::Get(paths::secret("demo-1-tls"), None),
        Expect::Get(paths::secret("demo-tls-nodes"), None),
        Expect::Apply(
            paths::secret("demo-tls-nodes"),
            Box::new(|v| assert_eq!(data_keys(v), ["ca.crt", "demo-0.crt", "demo-0.key"])),
        ),
        Expect::Event(REASON_TLS_PENDING, "Normal"),
    ]]));
    let action = reconcile(Arc::new(c.clone()), ctx)
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    verifier.done().await;

    // Pass 2: both issued; the gathered Secret is written, then the pods.
    let ca_pem = ca.cert_pem().to_string();
    let (ctx, _nodes, verifier) = test_context(script(vec![
        vec![
            Expect::Get(paths::STS.into(), None),
            Expect::Apply(certificate(0), any()),
            Expect::Get(paths::secret("demo-0-tls"), Some(cm_secret(&ca, 0))),
            Expect::Apply(certificate(1), any()),
            Expect::Get(paths::secret("demo-1-tls"), Some(cm_secret(&ca, 1))),
            Expect::Get(paths::secret("demo-tls-nodes"), None),
            Expect::Apply(
                paths::secret("demo-tls-nodes"),
                Box::new(move |v| {
                    assert_eq!(data_keys(v).len(), 5);
                    assert_eq!(text(v, "ca.crt"), format!("{}\n", ca_pem.trim_end()));
                }),
            ),
        ],
        children(sts_has_tls(2)),
        vec![Expect::Event("Created", "Normal"), status_apply()],
    ]));
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    verifier.done().await;
}
