//! TLS on the nodes (`spec.tls`): which names a node's certificate carries,
//! which Secrets hold the certificates, and how a pod finds its own.
//!
//! The pods of a StatefulSet share one template, so they cannot each mount
//! a Secret of their own. Every node certificate therefore lives in one
//! Secret (`<cluster>-tls-nodes`: `<pod>.crt`, `<pod>.key` for every
//! ordinal, and the CA as `ca.crt`), mounted whole, and the node picks its
//! own files through `TINYKV_TLS_CERT=/etc/tinykv/tls/$(POD_NAME).crt`
//! (Kubernetes expands `$(POD_NAME)` from the variable defined before it).
//! Adding an ordinal adds keys to that Secret, never changes the template,
//! so scaling up does not roll the existing pods.

use k8s_openapi::api::core::v1::{
    ExecAction, GRPCAction, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};
use kube::ResourceExt;

use super::{headless_service_name, namespace, pod_name};
use crate::crd::{ClientAuthMode, TinyKVCluster, TokenSecretRef};
use crate::{Error, Result};

/// Name of the pod volume holding the node certificates.
pub const TLS_VOLUME: &str = "tls";
/// Where that volume is mounted in the node container.
pub const TLS_DIR: &str = "/etc/tinykv/tls";
/// Key (and file name) of the CA certificate in the node-certificates Secret,
/// and in cert-manager's Secrets.
pub const CA_CERT_KEY: &str = "ca.crt";
/// Key of the CA's private key in the operator's CA Secret.
pub const CA_KEY_KEY: &str = "ca.key";
/// The node's `--tls-cert` variable.
pub const TLS_CERT_ENV: &str = "TINYKV_TLS_CERT";
/// The node's `--tls-key` variable.
pub const TLS_KEY_ENV: &str = "TINYKV_TLS_KEY";
/// The node's `--tls-ca` variable.
pub const TLS_CA_ENV: &str = "TINYKV_TLS_CA";
/// The node's `--client-auth` variable.
pub const CLIENT_AUTH_ENV: &str = "TINYKV_CLIENT_AUTH";
/// The node's `--client-token-file` variable.
pub const CLIENT_TOKEN_ENV: &str = "TINYKV_CLIENT_TOKEN_FILE";
/// Name of the pod volume holding the client tokens.
pub const CLIENT_TOKEN_VOLUME: &str = "client-tokens";
/// Where that volume is mounted.
pub const CLIENT_TOKEN_DIR: &str = "/etc/tinykv/client-tokens";
/// File name of the tokens in that directory, whatever the Secret's key.
pub const CLIENT_TOKEN_FILE_NAME: &str = "tokens";
/// Name in the operator's client certificate (`clientAuth: cert`).
pub const OPERATOR_CLIENT_NAME: &str = "tinykv-operator";
/// Mode of the mounted certificate files (group-readable, like the secret).
const TLS_FILE_MODE: i32 = 0o440;

/// Whether the cluster's nodes serve TLS.
pub fn tls_enabled(cluster: &TinyKVCluster) -> bool {
    cluster.spec.tls.enabled
}

/// What the client plane demands (`none` when unset).
pub fn client_auth(cluster: &TinyKVCluster) -> ClientAuthMode {
    cluster.spec.tls.client_auth.unwrap_or(ClientAuthMode::None)
}

/// Whether the operator signs the node certificates itself (TLS on and no
/// cert-manager issuer named).
pub fn operator_signs(cluster: &TinyKVCluster) -> bool {
    tls_enabled(cluster) && cluster.spec.tls.issuer_ref.is_none()
}

/// Name of the Secret holding the operator's CA (never mounted in a pod).
pub fn tls_ca_secret_name(cluster: &str) -> String {
    format!("{cluster}-tls-ca")
}

/// Name of the Secret holding every node certificate, mounted in the pods.
pub fn tls_nodes_secret_name(cluster: &str) -> String {
    format!("{cluster}-tls-nodes")
}

/// Key of a pod's certificate in the node-certificates Secret.
pub fn cert_key(pod: &str) -> String {
    format!("{pod}.crt")
}

/// Key of a pod's private key in the node-certificates Secret.
pub fn key_key(pod: &str) -> String {
    format!("{pod}.key")
}

/// Refuses a `spec.tls` that cannot work, before anything is written:
/// client authentication without TLS (a token would cross the network in
/// the clear, a certificate cannot be shown at all), `token` without a
/// token Secret, a token Secret or an issuer that nothing would use.
pub fn validate_tls(cluster: &TinyKVCluster) -> Result<()> {
    let tls = &cluster.spec.tls;
    let invalid = |why: &str| Err(Error::InvalidSpec(format!("spec.tls: {why}")));
    let auth = client_auth(cluster);
    if !tls.enabled {
        if auth != ClientAuthMode::None {
            return invalid("clientAuth needs enabled: true");
        }
        if tls.issuer_ref.is_some() {
            return invalid("issuerRef needs enabled: true");
        }
    }
    match (auth, &tls.client_token_secret_ref) {
        (ClientAuthMode::Token, None) => invalid("clientAuth: token needs clientTokenSecretRef"),
        (ClientAuthMode::None | ClientAuthMode::Cert, Some(_)) => {
            invalid("clientTokenSecretRef is only used with clientAuth: token")
        }
        _ => Ok(()),
    }
}

/// The names in the certificate of the node with `ordinal`: its member id
/// (the pod name, `--node-id=$(POD_NAME)`) first, which peers check; then
/// every name it is dialled by: its headless-Service names (what members
/// advertise), the headless Service itself (what `--peers-dns` resolves),
/// the client Service's names, and `localhost`/`127.0.0.1` (the exec probe).
pub fn node_cert_names(cluster: &TinyKVCluster, ordinal: i32) -> Result<Vec<String>> {
    let name = cluster.name_any();
    let ns = namespace(cluster)?;
    let pod = pod_name(&name, ordinal);
    let headless = headless_service_name(&name);
    let domain = &cluster.spec.cluster_domain;
    Ok(vec![
        pod.clone(),
        format!("{pod}.{headless}"),
        format!("{pod}.{headless}.{ns}.svc"),
        format!("{pod}.{headless}.{ns}.svc.{domain}"),
        format!("{headless}.{ns}.svc"),
        format!("{headless}.{ns}.svc.{domain}"),
        name.clone(),
        format!("{name}.{ns}"),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.{domain}"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ])
}

/// The Secret and key of the client tokens (`clientAuth: token`).
pub fn client_token_ref(cluster: &TinyKVCluster) -> Option<&TokenSecretRef> {
    match client_auth(cluster) {
        ClientAuthMode::Token => cluster.spec.tls.client_token_secret_ref.as_ref(),
        _ => None,
    }
}

/// The volumes `spec.tls` adds to a node pod: the node certificates, and
/// the client tokens when `clientAuth: token`.
pub(super) fn tls_volumes(cluster: &TinyKVCluster) -> Vec<Volume> {
    let mut volumes = Vec::new();
    if !tls_enabled(cluster) {
        return volumes;
    }
    volumes.push(secret_volume(
        TLS_VOLUME,
        tls_nodes_secret_name(&cluster.name_any()),
        None,
    ));
    if let Some(tokens) = client_token_ref(cluster) {
        let item = KeyToPath {
            key: tokens.key.clone(),
            path: CLIENT_TOKEN_FILE_NAME.to_string(),
            mode: None,
        };
        volumes.push(secret_volume(
            CLIENT_TOKEN_VOLUME,
            tokens.name.clone(),
            Some(vec![item]),
        ));
    }
    volumes
}

fn secret_volume(name: &str, secret: String, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: name.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items,
            default_mode: Some(TLS_FILE_MODE),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

/// The mounts matching [`tls_volumes`], read-only, without `subPath` (so
/// kubelet refreshes the files when the Secrets change).
pub(super) fn tls_mounts(cluster: &TinyKVCluster) -> Vec<VolumeMount> {
    tls_volumes(cluster)
        .iter()
        .map(|v| VolumeMount {
            name: v.name.clone(),
            mount_path: if v.name == TLS_VOLUME {
                TLS_DIR
            } else {
                CLIENT_TOKEN_DIR
            }
            .to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        })
        .collect()
}

/// The node variables `spec.tls` sets. The certificate and key paths name
/// `$(POD_NAME)`, which must be defined earlier in the container's env.
pub(super) fn tls_env(cluster: &TinyKVCluster) -> Vec<(&'static str, String)> {
    if !tls_enabled(cluster) {
        return Vec::new();
    }
    let mut env = vec![
        (TLS_CERT_ENV, format!("{TLS_DIR}/$(POD_NAME).crt")),
        (TLS_KEY_ENV, format!("{TLS_DIR}/$(POD_NAME).key")),
        (TLS_CA_ENV, format!("{TLS_DIR}/{CA_CERT_KEY}")),
    ];
    let auth = client_auth(cluster);
    if auth != ClientAuthMode::None {
        env.push((CLIENT_AUTH_ENV, auth.as_str().to_string()));
    }
    if client_token_ref(cluster).is_some() {
        env.push((
            CLIENT_TOKEN_ENV,
            format!("{CLIENT_TOKEN_DIR}/{CLIENT_TOKEN_FILE_NAME}"),
        ));
    }
    env
}

/// How kubelet asks a node's health. Its gRPC probe speaks plaintext only,
/// so with TLS the probe runs `tinykv_client 127.0.0.1:PORT health` in the
/// container instead: the client reads `TINYKV_TLS_*` from the container's
/// environment (the node's own certificate, valid for 127.0.0.1), and the
/// health service needs no client credentials.
pub(super) fn health_check(cluster: &TinyKVCluster) -> (Option<GRPCAction>, Option<ExecAction>) {
    let port = cluster.spec.service.port;
    if !tls_enabled(cluster) {
        let grpc = GRPCAction {
            port,
            service: None,
        };
        return (Some(grpc), None);
    }
    let command = [
        "tinykv_client",
        "--timeout",
        "2s",
        &format!("127.0.0.1:{port}"),
        "health",
    ]
    .map(str::to_string)
    .to_vec();
    (
        None,
        Some(ExecAction {
            command: Some(command),
        }),
    )
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
