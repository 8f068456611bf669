use super::*;
use crate::builders::test_support::cluster;
use crate::builders::{build_node_certificate, build_operator_certificate, build_statefulset};
use crate::crd::{IssuerKind, IssuerRef, TinyKVClusterSpec};

fn tls(auth: Option<ClientAuthMode>, tokens: bool) -> TinyKVCluster {
    let mut spec = TinyKVClusterSpec::default();
    spec.tls.enabled = true;
    spec.tls.client_auth = auth;
    if tokens {
        spec.tls.client_token_secret_ref = Some(TokenSecretRef {
            name: "apps".into(),
            key: "t".into(),
        });
    }
    cluster(spec)
}

/// The node container and pod spec of the StatefulSet built for `c`.
fn pod(c: &TinyKVCluster) -> k8s_openapi::api::core::v1::PodSpec {
    let sts = build_statefulset(c, 3, 0).expect("sts");
    sts.spec.expect("spec").template.spec.expect("pod")
}

fn env_of(p: &k8s_openapi::api::core::v1::PodSpec) -> Vec<(String, Option<String>)> {
    let env = p.containers[0].env.clone().expect("env");
    env.into_iter().map(|e| (e.name, e.value)).collect()
}

#[test]
fn without_tls_the_pod_is_unchanged_and_probed_over_grpc() {
    let c = cluster(TinyKVClusterSpec::default());
    assert!(tls_volumes(&c).is_empty() && tls_env(&c).is_empty() && tls_mounts(&c).is_empty());
    let p = pod(&c);
    let probe = p.containers[0].readiness_probe.clone().expect("probe");
    assert!(probe.grpc.is_some() && probe.exec.is_none());
    validate_tls(&c).expect("valid");
}

#[test]
fn with_tls_each_pod_reads_its_own_certificate_from_the_shared_secret() {
    let c = tls(None, false);
    let p = pod(&c);
    let env = env_of(&p);
    let at = |name: &str| env.iter().position(|(n, _)| n == name).expect(name);
    let value = |name: &str| env[at(name)].1.clone().expect(name);
    assert_eq!(value(TLS_CERT_ENV), "/etc/tinykv/tls/$(POD_NAME).crt");
    assert_eq!(value(TLS_KEY_ENV), "/etc/tinykv/tls/$(POD_NAME).key");
    assert_eq!(value(TLS_CA_ENV), "/etc/tinykv/tls/ca.crt");
    // Kubernetes expands $(POD_NAME) only from a variable defined earlier.
    assert!(at("POD_NAME") < at(TLS_CERT_ENV));
    assert!(!env
        .iter()
        .any(|(n, _)| n == CLIENT_AUTH_ENV || n == CLIENT_TOKEN_ENV));
    let vols = p.volumes.expect("volumes");
    let v = vols
        .iter()
        .find(|v| v.name == TLS_VOLUME)
        .expect("tls volume");
    let secret = v.secret.as_ref().expect("secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("demo-tls-nodes"));
    assert_eq!(
        (secret.items.clone(), secret.default_mode),
        (None, Some(0o440))
    );
    let mounts = p.containers[0].volume_mounts.clone().expect("mounts");
    let m = mounts
        .iter()
        .find(|m| m.name == TLS_VOLUME)
        .expect("tls mount");
    assert_eq!(
        (m.mount_path.as_str(), m.read_only, m.sub_path.clone()),
        (TLS_DIR, Some(true), None)
    );
    for probe in [
        &p.containers[0].readiness_probe,
        &p.containers[0].liveness_probe,
    ] {
        let probe = probe.clone().expect("probe");
        assert!(probe.grpc.is_none());
        let cmd = probe.exec.expect("exec").command.expect("command");
        assert_eq!(
            cmd,
            [
                "tinykv_client",
                "--timeout",
                "2s",
                "127.0.0.1:50051",
                "health"
            ]
        );
    }
}

#[test]
fn client_auth_sets_the_node_flags_and_mounts_the_tokens() {
    let c = tls(Some(ClientAuthMode::Token), true);
    validate_tls(&c).expect("valid");
    let p = pod(&c);
    let env = env_of(&p);
    assert!(env.contains(&(CLIENT_AUTH_ENV.into(), Some("token".into()))));
    assert!(env.contains(&(
        CLIENT_TOKEN_ENV.into(),
        Some("/etc/tinykv/client-tokens/tokens".into())
    )));
    let vols = p.volumes.expect("volumes");
    let v = vols
        .iter()
        .find(|v| v.name == CLIENT_TOKEN_VOLUME)
        .expect("tokens");
    let secret = v.secret.as_ref().expect("secret");
    assert_eq!(secret.secret_name.as_deref(), Some("apps"));
    let item = &secret.items.as_ref().expect("items")[0];
    assert_eq!((item.key.as_str(), item.path.as_str()), ("t", "tokens"));
    let mounts = p.containers[0].volume_mounts.clone().expect("mounts");
    assert!(mounts
        .iter()
        .any(|m| m.name == CLIENT_TOKEN_VOLUME && m.mount_path == CLIENT_TOKEN_DIR));

    let cert = tls(Some(ClientAuthMode::Cert), false);
    let env = env_of(&pod(&cert));
    assert!(env.contains(&(CLIENT_AUTH_ENV.into(), Some("cert".into()))));
    assert!(tls_volumes(&cert)
        .iter()
        .all(|v| v.name != CLIENT_TOKEN_VOLUME));
}

#[test]
fn impossible_settings_are_refused() {
    let mut off = tls(Some(ClientAuthMode::Cert), false);
    off.spec.tls.enabled = false;
    assert!(matches!(validate_tls(&off), Err(Error::InvalidSpec(_))));
    assert!(validate_tls(&tls(Some(ClientAuthMode::Token), false)).is_err());
    assert!(validate_tls(&tls(Some(ClientAuthMode::Cert), true)).is_err());
    assert!(validate_tls(&tls(None, true)).is_err());
    let mut issuer_off = cluster(TinyKVClusterSpec::default());
    issuer_off.spec.tls.issuer_ref = Some(IssuerRef {
        name: "x".into(),
        kind: IssuerKind::Issuer,
    });
    assert!(validate_tls(&issuer_off).is_err());
    validate_tls(&tls(Some(ClientAuthMode::None), false)).expect("none is fine");
}

#[test]
fn node_certificate_names_start_with_the_member_id() {
    let c = tls(None, false);
    let names = node_cert_names(&c, 4).expect("names");
    assert_eq!(names[0], "demo-4");
    assert!(names.contains(&"demo-4.demo-headless.db.svc.cluster.local".to_string()));
    assert!(names.contains(&"demo-headless.db.svc.cluster.local".to_string()));
    assert!(names.contains(&"demo.db.svc".to_string()));
    assert_eq!(&names[names.len() - 2..], ["localhost", "127.0.0.1"]);
    assert!(operator_signs(&c));
}

#[test]
fn cert_manager_certificates_per_pod_and_for_the_operator() {
    let mut c = tls(Some(ClientAuthMode::Cert), false);
    c.spec.tls.issuer_ref = Some(IssuerRef {
        name: "ca-issuer".into(),
        kind: IssuerKind::Issuer,
    });
    assert!(!operator_signs(&c));
    let v = serde_json::to_value(build_node_certificate(&c, 1).expect("cert")).expect("json");
    assert_eq!(v["apiVersion"], "cert-manager.io/v1");
    assert_eq!(v["kind"], "Certificate");
    assert_eq!(v["metadata"]["name"], "demo-1-tls");
    assert_eq!(v["metadata"]["namespace"], "db");
    assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "uid-1234");
    let spec = &v["spec"];
    assert_eq!(spec["secretName"], "demo-1-tls");
    assert_eq!(spec["dnsNames"][0], "demo-1");
    assert_eq!(spec["dnsNames"].as_array().expect("dns").len(), 11);
    assert_eq!(spec["ipAddresses"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(
        spec["issuerRef"],
        serde_json::json!({"name": "ca-issuer", "kind": "Issuer", "group": "cert-manager.io"})
    );
    let usages = spec["usages"].to_string();
    assert!(usages.contains("server auth") && usages.contains("client auth"));
    let op = serde_json::to_value(build_operator_certificate(&c).expect("op")).expect("json");
    assert_eq!(op["metadata"]["name"], "demo-tls-operator");
    assert_eq!(
        op["spec"]["dnsNames"],
        serde_json::json!(["tinykv-operator"])
    );
    assert!(!op["spec"]["usages"].to_string().contains("server auth"));
}
