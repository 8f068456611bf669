//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated here with
//! kube's client-side CEL validator on good and bad objects: no API server
//! runs in these tests, so this is what shows the rules say what they mean
//! (and compile: a rule that does not would fail every case below).

use super::*;
use kube::CustomResourceExt;

fn object(spec: TinyKVClusterSpec) -> TinyKVCluster {
    TinyKVCluster::new("demo", spec)
}

/// The messages of the rules `new` breaks (as an update of `old` when given).
fn broken(new: &TinyKVCluster, old: Option<&TinyKVCluster>) -> Vec<String> {
    let result = match old {
        Some(old) => new.validate_cel_update(old),
        None => new.validate_cel(),
    };
    match result {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

fn assert_refused(new: &TinyKVCluster, old: Option<&TinyKVCluster>, needle: &str) {
    let msgs = broken(new, old);
    assert!(
        msgs.iter().any(|m| m.contains(needle)),
        "expected a rule saying {needle:?}, got {msgs:?}"
    );
}

#[test]
fn defaults_and_a_full_spec_pass() {
    assert_eq!(
        broken(&object(TinyKVClusterSpec::default()), None),
        Vec::<String>::new()
    );
    let mut spec = TinyKVClusterSpec {
        replicas: 5,
        replication_factor: 3,
        ..TinyKVClusterSpec::default()
    };
    spec.tls.enabled = true;
    spec.tls.client_auth = Some(ClientAuthMode::Token);
    spec.tls.client_token_secret_ref = Some(TokenSecretRef {
        name: "tokens".into(),
        key: DEFAULT_CLIENT_TOKEN_KEY.into(),
    });
    spec.tls.issuer_ref = Some(IssuerRef {
        name: "ca".into(),
        kind: IssuerKind::ClusterIssuer,
    });
    assert_eq!(broken(&object(spec), None), Vec::<String>::new());
}

#[test]
fn replicas_below_the_replication_factor_are_refused() {
    let spec = TinyKVClusterSpec {
        replicas: 2,
        replication_factor: 3,
        ..TinyKVClusterSpec::default()
    };
    assert_refused(
        &object(spec.clone()),
        None,
        "at least spec.replicationFactor",
    );
    let ok = TinyKVClusterSpec {
        replication_factor: 2,
        ..spec
    };
    assert_eq!(broken(&object(ok), None), Vec::<String>::new());
}

#[test]
fn replication_factor_is_immutable_but_replicas_scale() {
    let old = object(TinyKVClusterSpec {
        replicas: 5,
        ..TinyKVClusterSpec::default()
    });
    let mut new = old.clone();
    new.spec.replication_factor = 5;
    assert_refused(&new, Some(&old), "replicationFactor is immutable");
    let mut scaled = old.clone();
    scaled.spec.replicas = 3;
    scaled.spec.image = "tinykv:v2".into();
    assert_eq!(broken(&scaled, Some(&old)), Vec::<String>::new());
    // The same change is fine on creation: only the transition is refused.
    assert_eq!(broken(&new, None), Vec::<String>::new());
}

#[test]
fn storage_size_class_and_ephemeral_are_immutable() {
    let old = object(TinyKVClusterSpec::default());
    let mut size = old.clone();
    size.spec.storage.size = "20Gi".into();
    assert_refused(&size, Some(&old), "storage.size is immutable");
    let mut class = old.clone();
    class.spec.storage.storage_class_name = Some("fast".into());
    assert_refused(&class, Some(&old), "storageClassName is immutable");
    let mut unset = class.clone();
    unset.spec.storage.storage_class_name = None;
    assert_refused(&unset, Some(&class), "storageClassName is immutable");
    let mut ephemeral = old.clone();
    ephemeral.spec.storage.ephemeral = true;
    assert_refused(&ephemeral, Some(&old), "ephemeral is immutable");
    // What happens to claims later may change.
    let mut retention = old.clone();
    retention.spec.storage.when_scaled = PvcRetention::Retain;
    retention.spec.storage.when_deleted = PvcRetention::Delete;
    assert_eq!(broken(&retention, Some(&old)), Vec::<String>::new());
}

#[test]
fn the_metrics_port_must_differ_from_the_grpc_port() {
    let mut spec = TinyKVClusterSpec::default();
    spec.service.metrics_port = spec.service.port;
    assert_refused(&object(spec), None, "metricsPort must differ");
}

#[test]
fn tls_options_that_would_wedge_a_reconcile_are_refused() {
    let mut issuer = TinyKVClusterSpec::default();
    issuer.tls.issuer_ref = Some(IssuerRef {
        name: "ca".into(),
        kind: IssuerKind::Issuer,
    });
    assert_refused(&object(issuer), None, "issuerRef needs spec.tls.enabled");

    let mut auth = TinyKVClusterSpec::default();
    auth.tls.client_auth = Some(ClientAuthMode::Cert);
    assert_refused(&object(auth), None, "clientAuth needs spec.tls.enabled");

    let mut token = TinyKVClusterSpec::default();
    token.tls.enabled = true;
    token.tls.client_auth = Some(ClientAuthMode::Token);
    assert_refused(
        &object(token.clone()),
        None,
        "clientTokenSecretRef goes with",
    );

    let mut stray = TinyKVClusterSpec::default();
    stray.tls.enabled = true;
    stray.tls.client_token_secret_ref = Some(TokenSecretRef {
        name: "tokens".into(),
        key: DEFAULT_CLIENT_TOKEN_KEY.into(),
    });
    assert_refused(&object(stray), None, "clientTokenSecretRef goes with");
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    let crd = serde_json::to_value(TinyKVCluster::crd()).expect("crd json");
    let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map", "{conditions}");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"]),
        "{conditions}"
    );
}
