//! The Secrets behind `spec.tls`: the operator's CA (`<cluster>-tls-ca`,
//! created once, never mounted) and the node-certificates Secret every pod
//! mounts (`<cluster>-tls-nodes`), signed by that CA or gathered from
//! cert-manager's per-pod Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::ResourceExt;
use tinykv_auth::{Authority, Role};

use super::tls::{
    cert_key, key_key, node_cert_names, tls_ca_secret_name, tls_nodes_secret_name, CA_CERT_KEY,
    CA_KEY_KEY,
};
use super::{child_meta, pod_name};
use crate::crd::TinyKVCluster;
use crate::{Error, Result};

/// The keys cert-manager writes into a Certificate's Secret.
pub const CERT_MANAGER_CERT_KEY: &str = "tls.crt";
/// The private key's key in cert-manager's Secrets.
pub const CERT_MANAGER_KEY_KEY: &str = "tls.key";

/// The text under `key` of `secret`, if it is there and UTF-8.
pub fn secret_text<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let bytes = secret.data.as_ref()?.get(key)?;
    std::str::from_utf8(&bytes.0).ok()
}

fn tls_err(e: tinykv_auth::TlsError) -> Error {
    Error::Tls(e.to_string())
}

/// A new CA for `cluster`, named after it (the caller makes it once and
/// keeps it in [`build_ca_secret`]).
pub fn generate_ca(cluster: &TinyKVCluster) -> Result<Authority> {
    let name = format!(
        "TinyKV {}/{} CA",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    );
    Authority::generate(&name).map_err(tls_err)
}

/// The Secret keeping the operator's CA (`ca.crt`, `ca.key`). Owned by the
/// cluster; created once and never written again, so every certificate it
/// signed stays valid. No pod mounts it: only the operator signs.
pub fn build_ca_secret(cluster: &TinyKVCluster, ca: &Authority) -> Result<Secret> {
    let name = tls_ca_secret_name(&cluster.name_any());
    Ok(Secret {
        metadata: child_meta(cluster, name)?,
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([
            (CA_CERT_KEY.to_string(), ByteString(ca.cert_pem().into())),
            (
                CA_KEY_KEY.to_string(),
                ByteString(ca.key_pem().into_bytes()),
            ),
        ])),
        ..Secret::default()
    })
}

/// The CA kept in the operator's CA Secret.
pub fn ca_from_secret(secret: &Secret) -> Result<Authority> {
    let (Some(cert), Some(key)) = (
        secret_text(secret, CA_CERT_KEY),
        secret_text(secret, CA_KEY_KEY),
    ) else {
        return Err(Error::Tls(format!(
            "Secret {} lacks {CA_CERT_KEY} or {CA_KEY_KEY}",
            secret.name_any()
        )));
    };
    Authority::from_pem(cert, key).map_err(tls_err)
}

/// An empty node-certificates Secret of `cluster` holding `data`.
fn nodes_secret(cluster: &TinyKVCluster, data: BTreeMap<String, ByteString>) -> Result<Secret> {
    let name = tls_nodes_secret_name(&cluster.name_any());
    Ok(Secret {
        metadata: child_meta(cluster, name)?,
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    })
}

/// The node-certificates Secret for ordinals `0..ordinals`, signed by `ca`.
/// The certificates of `existing` are kept when it was made with this CA
/// (a running node's certificate never changes under it); only ordinals
/// without one get a new certificate. Returns the Secret and the pods whose
/// certificates were issued now (empty: nothing to write).
pub fn build_signed_nodes_secret(
    cluster: &TinyKVCluster,
    ca: &Authority,
    ordinals: i32,
    existing: Option<&Secret>,
) -> Result<(Secret, Vec<String>)> {
    let same_ca = existing.and_then(|s| secret_text(s, CA_CERT_KEY)) == Some(ca.cert_pem());
    let mut data = match existing {
        Some(s) if same_ca => s.data.clone().unwrap_or_default(),
        _ => BTreeMap::new(),
    };
    data.insert(CA_CERT_KEY.to_string(), ByteString(ca.cert_pem().into()));
    let mut issued = Vec::new();
    for ordinal in 0..ordinals {
        let pod = pod_name(&cluster.name_any(), ordinal);
        if data.contains_key(&cert_key(&pod)) && data.contains_key(&key_key(&pod)) {
            continue;
        }
        let names = node_cert_names(cluster, ordinal)?;
        let cert = ca.issue(&names, Role::Node).map_err(tls_err)?;
        data.insert(cert_key(&pod), ByteString(cert.cert_pem.into_bytes()));
        data.insert(key_key(&pod), ByteString(cert.key_pem.into_bytes()));
        issued.push(pod);
    }
    Ok((nodes_secret(cluster, data)?, issued))
}

/// The node-certificates Secret gathered from cert-manager's Secrets
/// (`tls.crt`, `tls.key`, `ca.crt`), one per pod of `0..ordinals`, given in
/// ordinal order (`None`: not issued yet). The CA file holds every distinct
/// `ca.crt` seen, so a CA change in the issuer is trusted on both sides.
/// Returns the Secret and the pods still waiting for their certificate.
pub fn build_gathered_nodes_secret(
    cluster: &TinyKVCluster,
    issued: &[Option<Secret>],
) -> Result<(Secret, Vec<String>)> {
    let mut data = BTreeMap::new();
    let mut cas: Vec<&str> = Vec::new();
    let mut waiting = Vec::new();
    for (ordinal, secret) in issued.iter().enumerate() {
        let pod = pod_name(&cluster.name_any(), ordinal as i32);
        let parts = secret.as_ref().and_then(|s| {
            Some((
                secret_text(s, CERT_MANAGER_CERT_KEY)?,
                secret_text(s, CERT_MANAGER_KEY_KEY)?,
                secret_text(s, CA_CERT_KEY)?,
            ))
        });
        let Some((cert, key, ca)) = parts.filter(|(c, k, _)| !c.is_empty() && !k.is_empty()) else {
            waiting.push(pod);
            continue;
        };
        data.insert(cert_key(&pod), ByteString(cert.as_bytes().to_vec()));
        data.insert(key_key(&pod), ByteString(key.as_bytes().to_vec()));
        if !ca.trim().is_empty() && !cas.contains(&ca) {
            cas.push(ca);
        }
    }
    let bundle: String = cas.iter().map(|c| format!("{}\n", c.trim_end())).collect();
    data.insert(CA_CERT_KEY.to_string(), ByteString(bundle.into_bytes()));
    Ok((nodes_secret(cluster, data)?, waiting))
}

#[cfg(test)]
#[path = "tls_certs_tests.rs"]
mod tests;
