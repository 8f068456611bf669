//! Tests of `crd.rs`.
use super::*;
use kube::CustomResourceExt;

#[test]
fn quorum_is_a_majority() {
    assert_eq!(quorum(1), 1);
    assert_eq!(quorum(2), 2);
    assert_eq!(quorum(3), 2);
    assert_eq!(quorum(4), 3);
    assert_eq!(quorum(5), 3);
}

#[test]
fn empty_spec_gets_defaults() {
    let spec: TinyKVClusterSpec = serde_json::from_str("{}").expect("empty spec parses");
    assert_eq!(spec, TinyKVClusterSpec::default());
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.storage.when_scaled, PvcRetention::Delete);
    assert_eq!(spec.service.port, 50051);
}

#[test]
fn crd_has_scale_subresource_short_name_and_columns() {
    let crd = TinyKVCluster::crd();
    assert_eq!(crd.spec.group, "tinykv.io");
    assert_eq!(crd.spec.names.short_names, Some(vec!["tkv".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let sub = version.subresources.as_ref().expect("subresources");
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.readyReplicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    assert!(sub.status.is_some());
    let cols = version
        .additional_printer_columns
        .as_ref()
        .expect("columns");
    assert!(cols.iter().any(|c| c.name == "Phase"));
}

#[test]
fn cluster_secret_ref_is_optional_and_its_key_defaults() {
    let spec: TinyKVClusterSpec = serde_json::from_str("{}").expect("empty spec");
    assert_eq!(spec.security.cluster_secret_ref, None);
    let spec: TinyKVClusterSpec =
        serde_json::from_str(r#"{"security": {"clusterSecretRef": {"name": "mine"}}}"#)
            .expect("ref parses");
    assert_eq!(
        spec.security.cluster_secret_ref,
        Some(SecretKeyRef {
            name: "mine".into(),
            key: DEFAULT_CLUSTER_SECRET_KEY.into(),
        })
    );
    let crd = serde_json::to_value(TinyKVCluster::crd()).expect("crd json");
    let r = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["security"]["properties"]["clusterSecretRef"];
    assert_eq!(r["required"], serde_json::json!(["name"]), "{r}");
    assert_eq!(r["properties"]["name"]["minLength"], 1, "{r}");
}
