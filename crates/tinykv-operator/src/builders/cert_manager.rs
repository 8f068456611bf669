//! cert-manager `Certificate` objects (`cert-manager.io/v1`) for
//! `spec.tls.issuerRef`: one per node, and one for the operator's own
//! client certificate when `clientAuth: cert`.
//!
//! Built as kube `DynamicObject`s from JSON, so the operator needs no
//! cert-manager crate and runs where cert-manager is not installed (it only
//! touches Certificates for clusters that name an issuer).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::ResourceExt;
use serde_json::json;

use super::tls::{node_cert_names, OPERATOR_CLIENT_NAME};
use super::{child_meta, common_labels, pod_name};
use crate::crd::{IssuerRef, TinyKVCluster};
use crate::{Error, Result};

/// cert-manager's API group.
pub const CERT_MANAGER_GROUP: &str = "cert-manager.io";
/// The version of its API the operator writes.
pub const CERT_MANAGER_VERSION: &str = "v1";

/// The `Certificate` kind, for a dynamic `Api`.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(CERT_MANAGER_GROUP, CERT_MANAGER_VERSION, "Certificate"),
        "certificates",
    )
}

/// Name of the Certificate (and of the Secret cert-manager writes) of the
/// node with `ordinal`.
pub fn node_certificate_name(cluster: &str, ordinal: i32) -> String {
    format!("{}-tls", pod_name(cluster, ordinal))
}

/// Name of the Certificate (and Secret) of the operator's client certificate.
pub fn operator_certificate_name(cluster: &str) -> String {
    format!("{cluster}-tls-operator")
}

fn issuer(cluster: &TinyKVCluster) -> Result<&IssuerRef> {
    cluster
        .spec
        .tls
        .issuer_ref
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("spec.tls.issuerRef is not set".into()))
}

/// A Certificate named `name` (its Secret too) for `dns` and `ips` with
/// `usages`, issued by the cluster's issuer and owned by the cluster.
fn certificate(
    cluster: &TinyKVCluster,
    name: String,
    dns: Vec<String>,
    ips: Vec<String>,
    usages: &[&str],
) -> Result<DynamicObject> {
    let issuer = issuer(cluster)?;
    let mut obj = DynamicObject::new(&name, &certificate_resource());
    obj.metadata = child_meta(cluster, name.clone())?;
    obj.data = json!({
        "spec": {
            "secretName": name,
            // The member id is the first DNS name; no common name, as
            // cert-manager recommends (peers read the DNS names).
            "dnsNames": dns,
            "ipAddresses": ips,
            "usages": usages,
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {
                "name": issuer.name,
                "kind": issuer.kind.as_str(),
                "group": CERT_MANAGER_GROUP,
            },
            "secretTemplate": {"labels": common_labels(&cluster.name_any())},
        }
    });
    Ok(obj)
}

/// The Certificate of the node with `ordinal`: the names of
/// [`node_cert_names`] (IP addresses as `ipAddresses`), for serving and
/// for calling peers.
pub fn build_node_certificate(cluster: &TinyKVCluster, ordinal: i32) -> Result<DynamicObject> {
    let (ips, dns): (Vec<String>, Vec<String>) = node_cert_names(cluster, ordinal)?
        .into_iter()
        .partition(|n| n.parse::<std::net::IpAddr>().is_ok());
    certificate(
        cluster,
        node_certificate_name(&cluster.name_any(), ordinal),
        dns,
        ips,
        &[
            "digital signature",
            "key encipherment",
            "server auth",
            "client auth",
        ],
    )
}

/// The Certificate of the operator's client certificate (`clientAuth:
/// cert`: the operator's Status calls are client-plane calls).
pub fn build_operator_certificate(cluster: &TinyKVCluster) -> Result<DynamicObject> {
    certificate(
        cluster,
        operator_certificate_name(&cluster.name_any()),
        vec![OPERATOR_CLIENT_NAME.to_string()],
        Vec::new(),
        &["digital signature", "key encipherment", "client auth"],
    )
}
