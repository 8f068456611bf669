//! `spec.tls` of a `TinyKVCluster`: TLS on both planes of the nodes, where
//! their certificates come from, and what the client plane demands.
//!
//! Kept out of `crd.rs` so the resource's main file stays readable; the
//! types are re-exported from [`crate::crd`].

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Key of the client-token Secret read when `clientTokenSecretRef` names none.
pub const DEFAULT_CLIENT_TOKEN_KEY: &str = "tokens";

/// TLS on the nodes' one gRPC port (client, admin and peer planes).
///
/// Enabled without `issuerRef`, the operator makes a CA once (Secret
/// `<name>-tls-ca`, never mounted in a pod) and signs a certificate for every
/// pod with it (Secret `<name>-tls-nodes`). With `issuerRef`, cert-manager
/// signs them (a `Certificate` per pod) and the operator gathers them into
/// the same `<name>-tls-nodes` Secret. Either way a node's certificate names
/// its pod (its member id) first, which peers check on every connection.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(validation = Rule::new("self.enabled || !has(self.issuerRef)")
    .message("spec.tls.issuerRef needs spec.tls.enabled: true"))]
#[x_kube(validation = Rule::new("self.enabled || !has(self.clientAuth) || self.clientAuth == 'none'")
    .message("spec.tls.clientAuth needs spec.tls.enabled: true"))]
#[x_kube(validation = Rule::new("(has(self.clientAuth) && self.clientAuth == 'token') == has(self.clientTokenSecretRef)")
    .message("spec.tls.clientTokenSecretRef goes with clientAuth: token, and only with it"))]
#[serde(rename_all = "camelCase")]
pub struct TlsOptions {
    /// Serve TLS on both planes and make node-to-node calls mutual TLS
    /// (default false: plaintext, the planes guarded by the cluster secret).
    #[serde(default)]
    pub enabled: bool,
    /// A cert-manager `Issuer` or `ClusterIssuer` that signs the node
    /// certificates. Unset: the operator's own CA signs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// What the client plane demands: `none` (default), `token` (a bearer
    /// token from `clientTokenSecretRef`) or `cert` (a client certificate
    /// signed by the cluster's CA). Needs `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthMode>,
    /// The Secret holding the client tokens (one a line, at least 16 bytes
    /// each) for `clientAuth: token`; mounted into every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token_secret_ref: Option<TokenSecretRef>,
}

/// A cert-manager issuer (`cert-manager.io/v1`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the issuer.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `Issuer` (in the cluster's namespace, the default) or `ClusterIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
}

/// Kind of a cert-manager issuer.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum IssuerKind {
    /// A namespaced `Issuer`.
    #[default]
    Issuer,
    /// A cluster-wide `ClusterIssuer`.
    ClusterIssuer,
}

impl IssuerKind {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuer => "Issuer",
            Self::ClusterIssuer => "ClusterIssuer",
        }
    }
}

/// What the client plane demands (the node's `--client-auth`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// Nothing: anyone who reaches the port can read and write.
    None,
    /// `authorization: Bearer TOKEN` with a token of the token Secret.
    Token,
    /// A client certificate signed by the cluster's CA.
    Cert,
}

impl ClientAuthMode {
    /// The node flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token => "token",
            Self::Cert => "cert",
        }
    }
}

/// A key of a Secret holding client tokens, in the cluster's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key in the Secret's data (default `tokens`).
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_token_key() -> String {
    DEFAULT_CLIENT_TOKEN_KEY.to_string()
}
