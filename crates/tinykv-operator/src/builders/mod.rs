//! Pure builders: `TinyKVCluster` in, Kubernetes objects out (the
//! StatefulSet, the Services, the PodDisruptionBudget, the cluster-secret
//! Secret, the optional NetworkPolicy, and with `spec.tls` the certificate
//! Secrets or cert-manager Certificates).
//!
//! Nothing here talks to the API server, so every object the operator applies
//! can be unit-tested field by field.

mod auth_upgrade;
mod cert_manager;
mod network_policy;
mod secret;
mod services;
mod statefulset;
mod tls;
mod tls_certs;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::TinyKVCluster;
use crate::{Error, Result};

pub use auth_upgrade::{
    auth_mode, auth_transition, rollout_finished, template_has_secret, template_is_permissive,
    AuthMode, AuthTransition, AUTH_PERMISSIVE_ENV,
};
pub use cert_manager::{
    build_node_certificate, build_operator_certificate, certificate_resource,
    node_certificate_name, operator_certificate_name, CERT_MANAGER_GROUP, CERT_MANAGER_VERSION,
};
pub use network_policy::{
    build_network_policy, default_operator_peers, network_policy_name, OPERATOR_POD_LABEL,
};
pub use secret::{
    build_cluster_secret, cluster_secret_name, cluster_secret_path, cluster_secret_ref,
    operator_creates_secret, CLUSTER_SECRET_DIR, CLUSTER_SECRET_ENV, CLUSTER_SECRET_FILE_NAME,
    CLUSTER_SECRET_VOLUME, OPERATOR_CALLER,
};
pub use services::{build_client_service, build_headless_service, build_pdb, pdb_max_unavailable};
pub use statefulset::{
    build_statefulset, build_statefulset_with_auth, pod_template_hash, DATA_DIR, DATA_VOLUME,
};
pub use tls::{
    cert_key, client_auth, client_token_ref, key_key, node_cert_names, operator_signs,
    tls_ca_secret_name, tls_enabled, tls_nodes_secret_name, validate_tls, CA_CERT_KEY, CA_KEY_KEY,
    CLIENT_AUTH_ENV, CLIENT_TOKEN_DIR, CLIENT_TOKEN_ENV, CLIENT_TOKEN_FILE_NAME,
    CLIENT_TOKEN_VOLUME, OPERATOR_CLIENT_NAME, TLS_CA_ENV, TLS_CERT_ENV, TLS_DIR, TLS_KEY_ENV,
    TLS_VOLUME,
};
pub use tls_certs::{
    build_ca_secret, build_gathered_nodes_secret, build_signed_nodes_secret, ca_from_secret,
    generate_ca, secret_text, CERT_MANAGER_CERT_KEY, CERT_MANAGER_KEY_KEY,
};

/// Field manager used for every server-side apply.
pub const FIELD_MANAGER: &str = "tinykv-operator";
/// Annotation on the StatefulSet holding the hash of its pod template.
pub const TEMPLATE_HASH_ANNOTATION: &str = "tinykv.io/template-hash";
/// Name of the node container.
pub const CONTAINER_NAME: &str = "tinykv";

/// Name of the headless Service used for peer discovery.
pub fn headless_service_name(cluster: &str) -> String {
    format!("{cluster}-headless")
}

/// Name of a node's pod (and node id) from its ordinal.
pub fn pod_name(cluster: &str, ordinal: i32) -> String {
    format!("{cluster}-{ordinal}")
}

/// Name of a node's data PVC (`<template>-<statefulset>-<ordinal>`).
pub fn pvc_name(cluster: &str, ordinal: i32) -> String {
    format!("{DATA_VOLUME}-{cluster}-{ordinal}")
}

/// Whether `pvc` is a data claim of `cluster`: it carries every one of the
/// cluster's selector labels, which the StatefulSet's volumeClaimTemplate
/// puts on each claim it makes. The operator deletes no claim without them.
pub fn claim_belongs_to(cluster: &str, pvc: &PersistentVolumeClaim) -> bool {
    let labels = pvc.labels();
    selector_labels(cluster)
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// Stable DNS name of a node's pod through the headless Service (in the
/// cluster's `spec.clusterDomain`), with the gRPC port.
pub fn pod_address(cluster: &TinyKVCluster, namespace: &str, pod: &str) -> String {
    format!(
        "{pod}.{}.{namespace}.svc.{}:{}",
        headless_service_name(&cluster.name_any()),
        cluster.spec.cluster_domain,
        cluster.spec.service.port
    )
}

/// Labels that select the pods of one cluster.
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "tinykv".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            cluster.to_string(),
        ),
    ])
}

/// The selector labels as a label-selector string (`k=v,k=v`).
pub fn selector_string(cluster: &str) -> String {
    selector_labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels on every object the operator makes.
pub fn common_labels(cluster: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert("app.kubernetes.io/component".into(), "node".into());
    labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
    labels
}

/// Owner reference making `cluster` the controller of a child object.
pub fn owner_reference(cluster: &TinyKVCluster) -> Result<OwnerReference> {
    cluster
        .controller_owner_ref(&())
        .ok_or(Error::MissingObjectKey("metadata.uid"))
}

/// Namespace of the cluster (it is a namespaced resource).
pub fn namespace(cluster: &TinyKVCluster) -> Result<String> {
    cluster
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))
}

/// Metadata of a child object: name, namespace, labels, owner.
pub(crate) fn child_meta(cluster: &TinyKVCluster, name: String) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(cluster)?),
        labels: Some(common_labels(&cluster.name_any())),
        owner_references: Some(vec![owner_reference(cluster)?]),
        ..ObjectMeta::default()
    })
}

/// Every object the operator makes for `cluster` when it creates it, as
/// JSON, in the order it makes them: its Secret (holding `secret`, only when
/// the spec names no Secret of its own), the TLS Secrets or cert-manager
/// Certificates (`spec.tls`), the headless and client Services,
/// the PodDisruptionBudget, the NetworkPolicy (only when enabled) and the
/// StatefulSet (`spec.replicas` pods, all on the current template). For offline checks of the objects (the
/// `render` binary, `make check-manifests`).
pub fn all_objects(cluster: &TinyKVCluster, secret: &str) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    validate_tls(cluster)?;
    if operator_creates_secret(cluster) {
        out.push(serde_json::to_value(build_cluster_secret(
            cluster, secret,
        )?)?);
    }
    out.extend(tls_objects(cluster)?);
    out.push(serde_json::to_value(build_headless_service(cluster)?)?);
    out.push(serde_json::to_value(build_client_service(cluster)?)?);
    out.push(serde_json::to_value(build_pdb(cluster)?)?);
    if let Some(np) = build_network_policy(cluster)? {
        out.push(serde_json::to_value(np)?);
    }
    out.push(serde_json::to_value(build_statefulset(
        cluster,
        cluster.spec.replicas,
        0,
    )?)?);
    Ok(out)
}

/// The TLS objects of [`all_objects`]: with the operator's CA, its Secret
/// and the node certificates of `spec.replicas` pods (a fresh CA, as the
/// operator would make); with cert-manager, a Certificate per pod (and one
/// for the operator with `clientAuth: cert`).
fn tls_objects(cluster: &TinyKVCluster) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    if operator_signs(cluster) {
        let ca = generate_ca(cluster)?;
        out.push(serde_json::to_value(build_ca_secret(cluster, &ca)?)?);
        let (nodes, _) = build_signed_nodes_secret(cluster, &ca, cluster.spec.replicas, None)?;
        out.push(serde_json::to_value(nodes)?);
    } else if tls_enabled(cluster) {
        for ordinal in 0..cluster.spec.replicas {
            out.push(serde_json::to_value(build_node_certificate(
                cluster, ordinal,
            )?)?);
        }
        if client_auth(cluster) == crate::crd::ClientAuthMode::Cert {
            out.push(serde_json::to_value(build_operator_certificate(cluster)?)?);
        }
    }
    Ok(out)
}

/// FNV-1a 64-bit: a hash that is stable across builds and Rust versions.
pub fn stable_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::crd::{TinyKVCluster, TinyKVClusterSpec};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::api::ObjectMeta;

    /// `sts` as an operator before the cluster secret made it: no secret
    /// variable, volume or mount (and its template hash recomputed).
    pub fn without_secret(mut sts: StatefulSet) -> StatefulSet {
        let spec = sts.spec.as_mut().expect("spec");
        let pod = spec.template.spec.as_mut().expect("pod spec");
        for c in &mut pod.containers {
            if let Some(env) = c.env.as_mut() {
                env.retain(|e| e.name != super::CLUSTER_SECRET_ENV);
            }
            if let Some(mounts) = c.volume_mounts.as_mut() {
                mounts.retain(|m| m.name != super::CLUSTER_SECRET_VOLUME);
            }
        }
        if let Some(vols) = pod.volumes.as_mut() {
            vols.retain(|v| v.name != super::CLUSTER_SECRET_VOLUME);
        }
        let hash = super::pod_template_hash(&spec.template).expect("hash");
        sts.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(super::TEMPLATE_HASH_ANNOTATION.to_string(), hash);
        sts
    }

    /// A cluster `demo` in namespace `db` with a uid and generation 1.
    pub fn cluster(spec: TinyKVClusterSpec) -> TinyKVCluster {
        let mut c = TinyKVCluster::new("demo", spec);
        c.metadata = ObjectMeta {
            name: Some("demo".into()),
            namespace: Some("db".into()),
            uid: Some("uid-1234".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;
    use crate::crd::TinyKVClusterSpec;

    #[test]
    fn names_and_addresses() {
        assert_eq!(headless_service_name("demo"), "demo-headless");
        assert_eq!(pod_name("demo", 4), "demo-4");
        assert_eq!(pvc_name("demo", 4), "data-demo-4");
        assert_eq!(
            pod_address(&cluster(TinyKVClusterSpec::default()), "db", "demo-0"),
            "demo-0.demo-headless.db.svc.cluster.local:50051"
        );
        let other = cluster(TinyKVClusterSpec {
            cluster_domain: "corp.example".into(),
            ..TinyKVClusterSpec::default()
        });
        assert_eq!(
            pod_address(&other, "db", "demo-1"),
            "demo-1.demo-headless.db.svc.corp.example:50051"
        );
        assert_eq!(
            selector_string("demo"),
            "app.kubernetes.io/instance=demo,app.kubernetes.io/name=tinykv"
        );
    }

    #[test]
    fn only_claims_with_the_cluster_labels_belong_to_it() {
        let claim = |labels: &[(&str, &str)]| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data-demo-4".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..PersistentVolumeClaim::default()
        };
        let ours = [
            ("app.kubernetes.io/name", "tinykv"),
            ("app.kubernetes.io/instance", "demo"),
            ("extra", "kept"),
        ];
        assert!(claim_belongs_to("demo", &claim(&ours)));
        assert!(!claim_belongs_to("other", &claim(&ours)));
        assert!(!claim_belongs_to(
            "demo",
            &claim(&[("app.kubernetes.io/instance", "demo")])
        ));
        assert!(!claim_belongs_to(
            "demo",
            &claim(&[
                ("app.kubernetes.io/name", "something-else"),
                ("app.kubernetes.io/instance", "demo")
            ])
        ));
        assert!(!claim_belongs_to("demo", &PersistentVolumeClaim::default()));
        // The claims the StatefulSet makes carry exactly these labels.
        let c = test_support::cluster(TinyKVClusterSpec::default());
        let sts = build_statefulset(&c, 3, 0).expect("sts");
        let template = &sts
            .spec
            .expect("spec")
            .volume_claim_templates
            .expect("claims")[0];
        assert!(claim_belongs_to(
            "demo",
            &PersistentVolumeClaim {
                metadata: template.metadata.clone(),
                ..PersistentVolumeClaim::default()
            }
        ));
    }

    #[test]
    fn owner_reference_needs_uid() {
        let mut c = test_support::cluster(TinyKVClusterSpec::default());
        let owner = owner_reference(&c).expect("owner");
        assert_eq!(owner.kind, "TinyKVCluster");
        assert_eq!(owner.api_version, "tinykv.io/v1alpha1");
        assert_eq!(owner.controller, Some(true));
        c.metadata.uid = None;
        assert!(matches!(
            owner_reference(&c),
            Err(Error::MissingObjectKey(_))
        ));
    }

    #[test]
    fn all_objects_lists_the_secret_only_when_the_operator_makes_it() {
        let c = test_support::cluster(TinyKVClusterSpec::default());
        let objs = all_objects(&c, "0123456789abcdef0123").expect("objects");
        let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Secret",
                "Service",
                "Service",
                "PodDisruptionBudget",
                "StatefulSet"
            ]
        );
        assert!(objs.iter().all(|o| o["apiVersion"].is_string()));
        let mut named = c.clone();
        named.spec.security.cluster_secret_ref = Some(crate::crd::SecretKeyRef {
            name: "mine".into(),
            key: "k".into(),
        });
        let objs = all_objects(&named, "unused").expect("objects");
        assert!(objs.iter().all(|o| o["kind"] != "Secret"));
        assert_eq!(objs.len(), 4);
        let mut fenced = named.clone();
        fenced.spec.network_policy.enabled = true;
        let objs = all_objects(&fenced, "unused").expect("objects");
        assert_eq!(objs[3]["kind"], "NetworkPolicy");
        assert_eq!(objs.len(), 5);
    }

    #[test]
    fn all_objects_lists_the_tls_objects_before_the_pods() {
        let mut c = test_support::cluster(TinyKVClusterSpec::default());
        c.spec.tls.enabled = true;
        let objs = all_objects(&c, "0123456789abcdef0123").expect("objects");
        let names: Vec<&str> = objs
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        assert_eq!(
            &names[..3],
            ["demo-cluster-secret", "demo-tls-ca", "demo-tls-nodes"]
        );
        c.spec.tls.issuer_ref = Some(crate::crd::IssuerRef {
            name: "ca".into(),
            kind: crate::crd::IssuerKind::Issuer,
        });
        c.spec.tls.client_auth = Some(crate::crd::ClientAuthMode::Cert);
        let objs = all_objects(&c, "0123456789abcdef0123").expect("objects");
        let certs = objs.iter().filter(|o| o["kind"] == "Certificate").count();
        assert_eq!(certs, 4, "three pods and the operator");
        c.spec.tls.enabled = false;
        assert!(matches!(all_objects(&c, "x"), Err(Error::InvalidSpec(_))));
    }

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(stable_hash(b""), "cbf29ce484222325");
        assert_eq!(stable_hash(b"a"), "af63dc4c8601ec8c");
        assert_ne!(stable_hash(b"x"), stable_hash(b"y"));
    }
}
