//! The cluster secret: which Secret the nodes read it from, and the Secret
//! the operator creates when the user names none.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::child_meta;
use crate::crd::{SecretKeyRef, TinyKVCluster, DEFAULT_CLUSTER_SECRET_KEY};
use crate::Result;

/// Name of the pod volume holding the cluster secret.
pub const CLUSTER_SECRET_VOLUME: &str = "cluster-secret";
/// Where that volume is mounted in the node container.
pub const CLUSTER_SECRET_DIR: &str = "/etc/tinykv/secret";
/// File name of the secret in that directory, whatever the Secret's key.
pub const CLUSTER_SECRET_FILE_NAME: &str = "cluster.secret";
/// The node's `--cluster-secret-file` variable.
pub const CLUSTER_SECRET_ENV: &str = "TINYKV_CLUSTER_SECRET_FILE";
/// Caller id of the operator's signed admin calls.
pub const OPERATOR_CALLER: &str = "operator";

/// Name of the Secret the operator creates for `cluster`.
pub fn cluster_secret_name(cluster: &str) -> String {
    format!("{cluster}-cluster-secret")
}

/// Path of the secret file inside a node container.
pub fn cluster_secret_path() -> String {
    format!("{CLUSTER_SECRET_DIR}/{CLUSTER_SECRET_FILE_NAME}")
}

/// The Secret and key the nodes of `cluster` read their secret from: the
/// user's `spec.security.clusterSecretRef`, else the operator's own.
pub fn cluster_secret_ref(cluster: &TinyKVCluster) -> SecretKeyRef {
    cluster
        .spec
        .security
        .cluster_secret_ref
        .clone()
        .unwrap_or_else(|| SecretKeyRef {
            name: cluster_secret_name(&cluster.name_any()),
            key: DEFAULT_CLUSTER_SECRET_KEY.to_string(),
        })
}

/// Whether the operator creates the cluster's Secret (the user named none).
pub fn operator_creates_secret(cluster: &TinyKVCluster) -> bool {
    cluster.spec.security.cluster_secret_ref.is_none()
}

/// The Secret the operator creates, once, for a cluster whose spec names
/// none, holding `secret` (the caller passes a fresh
/// `tinykv_auth::generate_secret()`). Owned by the cluster, so it goes with
/// it; never applied again once it exists, so a rotation the user makes in
/// it stays.
pub fn build_cluster_secret(cluster: &TinyKVCluster, secret: &str) -> Result<Secret> {
    let name = cluster_secret_name(&cluster.name_any());
    Ok(Secret {
        metadata: child_meta(cluster, name)?,
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            DEFAULT_CLUSTER_SECRET_KEY.to_string(),
            ByteString(format!("{secret}\n").into_bytes()),
        )])),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;
    use crate::crd::TinyKVClusterSpec;

    #[test]
    fn generated_secret_is_owned_labelled_and_holds_one_line() {
        let c = cluster(TinyKVClusterSpec::default());
        assert!(operator_creates_secret(&c));
        let s = build_cluster_secret(&c, "0123456789abcdef0123456789abcdef").expect("secret");
        assert_eq!(s.metadata.name.as_deref(), Some("demo-cluster-secret"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("db"));
        let owner = &s.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("TinyKVCluster", "uid-1234")
        );
        assert_eq!(owner.controller, Some(true));
        let labels = s.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/instance"], "demo");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "tinykv-operator");
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert!(s.string_data.is_none());
        assert_eq!(s.immutable, None, "rotations edit it");
        let data = s.data.as_ref().expect("data");
        assert_eq!(data.len(), 1);
        assert_eq!(
            data["cluster.secret"].0,
            b"0123456789abcdef0123456789abcdef\n".to_vec()
        );
        // What the operator stores is what the node and the operator parse.
        let text = String::from_utf8(data["cluster.secret"].0.clone()).expect("utf8");
        assert!(tinykv_auth::Secrets::parse(&text).is_ok());
        let r = cluster_secret_ref(&c);
        assert_eq!(
            (r.name.as_str(), r.key.as_str()),
            ("demo-cluster-secret", "cluster.secret")
        );
    }

    #[test]
    fn a_named_secret_replaces_the_generated_one() {
        let mut spec = TinyKVClusterSpec::default();
        spec.security.cluster_secret_ref = Some(SecretKeyRef {
            name: "mine".into(),
            key: "shared".into(),
        });
        let c = cluster(spec);
        assert!(!operator_creates_secret(&c));
        let r = cluster_secret_ref(&c);
        assert_eq!((r.name.as_str(), r.key.as_str()), ("mine", "shared"));
        assert_eq!(cluster_secret_path(), "/etc/tinykv/secret/cluster.secret");
    }
}
