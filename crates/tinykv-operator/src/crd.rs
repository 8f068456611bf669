//! The `TinyKVCluster` custom resource (`tinykv.io/v1alpha1`).
//!
//! The spec is what the user asks for; the status is what the operator saw,
//! including the scaling or upgrade operation it is in the middle of. The
//! operation lives in the status so that an operator restart resumes it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[path = "crd_status.rs"]
mod status;
#[path = "crd_tls.rs"]
mod tls;
pub use status::{MemberState, Operation, OperationType, Phase, StepClock, TinyKVClusterStatus};
pub use tls::{
    ClientAuthMode, IssuerKind, IssuerRef, TlsOptions, TokenSecretRef, DEFAULT_CLIENT_TOKEN_KEY,
};

/// API group of the custom resource.
pub const GROUP: &str = "tinykv.io";
/// API version of the custom resource.
pub const VERSION: &str = "v1alpha1";
/// Default container image of a node.
pub const DEFAULT_IMAGE: &str = "tinykv:latest";
/// gRPC port of a node (client, admin and health services).
pub const DEFAULT_GRPC_PORT: i32 = 50051;
/// DNS domain of a Kubernetes cluster unless `spec.clusterDomain` says otherwise.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Port of a node's Prometheus `/metrics` endpoint.
pub const DEFAULT_METRICS_PORT: i32 = 9090;

/// Desired state of a TinyKV cluster.
// Several `printcolumn(type_ = "...")` entries repeat a key and value inside
// one `#[kube]` attribute, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[cfg_attr(test, kube(cel))]
#[kube(
    group = "tinykv.io",
    version = "v1alpha1",
    kind = "TinyKVCluster",
    plural = "tinykvclusters",
    singular = "tinykvcluster",
    namespaced,
    shortname = "tkv",
    category = "tinykv",
    status = "TinyKVClusterStatus",
    derive = "PartialEq",
    doc = "A replicated TinyKV key-value cluster managed by the TinyKV operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.readyReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired nodes"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready nodes"
    ),
    printcolumn(
        name = "RF",
        type_ = "integer",
        json_path = ".spec.replicationFactor",
        description = "Replication factor"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Operation",
        type_ = "string",
        json_path = ".status.operation.type",
        description = "Scaling or upgrade in progress"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        priority = 1,
        description = "Node image"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.replicas >= self.replicationFactor")
    .message("spec.replicas must be at least spec.replicationFactor: fewer nodes cannot hold every replica")
    .reason(Reason::FieldValueInvalid)
    .field_path(".replicas"))]
#[serde(rename_all = "camelCase")]
pub struct TinyKVClusterSpec {
    /// Number of nodes (StatefulSet replicas), at least `replicationFactor`.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// Copies kept of every key (N). QUORUM is `replicationFactor/2 + 1`.
    /// Immutable: the nodes place replicas by it, and changing it on a
    /// running cluster would leave keys with too few or orphaned copies.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.replicationFactor is immutable: create a new cluster and restore a backup into it"))]
    pub replication_factor: i32,
    /// Node container image.
    #[serde(default = "default_image")]
    pub image: String,
    /// Image pull policy (`Always`, `IfNotPresent`, `Never`); Kubernetes' default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// CPU and memory requests and limits of the node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Data volume of each node. `size`, `storageClassName` and `ephemeral`
    /// are immutable (a StatefulSet's volume claim templates are).
    #[serde(default)]
    pub storage: StorageSpec,
    /// DNS domain of the Kubernetes cluster: the nodes advertise and find
    /// each other as `<pod>.<name>-headless.<namespace>.svc.<clusterDomain>`.
    #[serde(default = "default_cluster_domain")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub cluster_domain: String,
    /// Virtual nodes per node on the hash ring; the node's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub vnodes: Option<i32>,
    /// Consistency level used when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_consistency: Option<ConsistencyLevel>,
    /// Write-ahead durability policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncPolicy>,
    /// Extra command-line arguments appended to the node's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Extra environment variables of the node container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Scheduling and metadata of the node pods.
    #[serde(default)]
    pub pod_template: PodTemplateOptions,
    /// The client Service.
    #[serde(default)]
    pub service: ServiceOptions,
    /// The cluster secret that guards the node-to-node and admin calls.
    #[serde(default)]
    pub security: SecurityOptions,
    /// An optional NetworkPolicy (Ingress only, named like the cluster) on the
    /// node pods: the gRPC port (client, admin and peer planes) admits only the
    /// cluster's own pods, the operator and `clientSelectors`; the metrics port
    /// only `metricsSelectors`. Enforced only by a network plugin that
    /// supports NetworkPolicy. Disabling it deletes the policy.
    #[serde(default)]
    pub network_policy: NetworkPolicyOptions,
    /// TLS on both planes (node certificates from the operator's CA or from
    /// cert-manager) and what the client plane demands.
    #[serde(default)]
    pub tls: TlsOptions,
}

/// An optional NetworkPolicy (`networking.k8s.io/v1`, named like the
/// cluster) on the node pods, Ingress only. The nodes serve the client,
/// admin and peer gRPC planes on one port (`service.port`), so when enabled
/// that port admits only the cluster's own pods, the operator's pods
/// (`operatorSelectors`) and `clientSelectors`; the metrics port admits
/// only `metricsSelectors`; every other port is closed. It takes effect only
/// under a network plugin that enforces NetworkPolicy. Disabling it again
/// deletes the policy the operator made.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyOptions {
    /// Create the NetworkPolicy (default false: the nodes accept any traffic
    /// the rest of the Kubernetes cluster allows).
    #[serde(default)]
    pub enabled: bool,
    /// Who may reach the gRPC port (the client plane) besides the cluster's
    /// own pods and the operator: NetworkPolicy peers (`podSelector`,
    /// `namespaceSelector`, `ipBlock`). A `podSelector` alone selects pods of
    /// the cluster's namespace; add `namespaceSelector: {}` for any namespace.
    /// Empty: no client outside the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_selectors: Vec<NetworkPolicyPeer>,
    /// Who may scrape the metrics port (`service.metricsPort`). Empty: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_selectors: Vec<NetworkPolicyPeer>,
    /// The operator's pods, which call the nodes' admin plane on the gRPC
    /// port. Unset: pods labelled `app.kubernetes.io/name: tinykv-operator`
    /// in any namespace (the labels of the operator's chart and manifests).
    /// An empty list shuts the operator out, which stalls scaling and status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_selectors: Option<Vec<NetworkPolicyPeer>>,
}

/// Key of the generated cluster-secret Secret, and the default key of a named one.
pub const DEFAULT_CLUSTER_SECRET_KEY: &str = "cluster.secret";

/// How the nodes of a cluster prove to each other (and the operator to them)
/// that a call comes from the cluster.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityOptions {
    /// An existing Secret holding the cluster secret (one secret a line, at
    /// least 16 bytes each; the first signs, all are accepted). When unset the
    /// operator creates `<name>-cluster-secret` with a random secret once and
    /// never overwrites it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the TinyKVCluster's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key in the Secret's data (default `cluster.secret`).
    #[serde(default = "default_cluster_secret_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Image pull policy of the node container.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Consistency level of requests that name none.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyLevel {
    /// One replica.
    One,
    /// A majority of the replicas.
    Quorum,
    /// Every replica.
    All,
}

impl ConsistencyLevel {
    /// The node flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::One => "one",
            Self::Quorum => "quorum",
            Self::All => "all",
        }
    }
}

/// Durability policy of the node's log.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// fsync every write before acknowledging it.
    Always,
    /// fsync on a timer.
    Periodic,
}

impl SyncPolicy {
    /// The node flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Periodic => "periodic",
        }
    }
}

/// What happens to a node's PersistentVolumeClaim.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PvcRetention {
    /// Keep the claim (and its data).
    #[default]
    Retain,
    /// Delete the claim.
    Delete,
}

impl PvcRetention {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retain => "Retain",
            Self::Delete => "Delete",
        }
    }
}

/// Data volume of each node.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.size == oldSelf.size")
    .message("spec.storage.size is immutable: a StatefulSet's volume claim templates cannot change"))]
#[x_kube(validation = Rule::new("self.ephemeral == oldSelf.ephemeral")
    .message("spec.storage.ephemeral is immutable"))]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)")
    .message("spec.storage.storageClassName is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size of each node's volume, a Kubernetes quantity such as `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?|[kmun]|[eE][0-9]+)?$")
    )]
    pub size: String,
    /// StorageClass of the volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Use an `emptyDir` instead of a PersistentVolumeClaim (data dies with the pod; for tests).
    #[serde(default)]
    pub ephemeral: bool,
    /// What to do with a node's claim once the operator has decommissioned it on scale-down.
    #[serde(default = "default_delete")]
    pub when_scaled: PvcRetention,
    /// What to do with the claims when the TinyKVCluster is deleted.
    #[serde(default)]
    pub when_deleted: PvcRetention,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            ephemeral: false,
            when_scaled: PvcRetention::Delete,
            when_deleted: PvcRetention::Retain,
        }
    }
}

/// Scheduling and metadata of the node pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOptions {
    /// Affinity of the pods. When unset the operator adds a preferred anti-affinity
    /// that spreads the nodes of one cluster over Kubernetes nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Make the default anti-affinity required instead of preferred (ignored when `affinity` is set).
    #[serde(default)]
    pub required_anti_affinity: bool,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Topology spread constraints of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Extra labels on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Service account of the pods (the namespace's `default` when unset).
    /// The nodes call no Kubernetes API: its token is never mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Secrets to pull the node image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Seconds a node gets after SIGTERM to hand off and flush (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub termination_grace_period_seconds: Option<i64>,
}

/// The client Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.port != self.metricsPort")
    .message("spec.service.port and spec.service.metricsPort must differ"))]
#[serde(rename_all = "camelCase")]
pub struct ServiceOptions {
    /// Service type: `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(default = "default_service_type", rename = "type")]
    pub type_: ServiceType,
    /// gRPC port of the nodes and of the client Service.
    #[serde(default = "default_grpc_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Port of the nodes' `/metrics` endpoint.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub metrics_port: i32,
    /// Extra annotations on the client Service (load-balancer settings and the like).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            type_: ServiceType::ClusterIP,
            port: DEFAULT_GRPC_PORT,
            metrics_port: DEFAULT_METRICS_PORT,
            annotations: BTreeMap::new(),
        }
    }
}

/// Type of the client Service.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Cluster-internal virtual IP.
    ClusterIP,
    /// A port on every Kubernetes node.
    NodePort,
    /// A cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

fn default_replicas() -> i32 {
    3
}
fn default_replication_factor() -> i32 {
    3
}
fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}
fn default_cluster_domain() -> String {
    DEFAULT_CLUSTER_DOMAIN.to_string()
}
fn default_storage_size() -> String {
    "1Gi".to_string()
}
fn default_delete() -> PvcRetention {
    PvcRetention::Delete
}
fn default_service_type() -> ServiceType {
    ServiceType::ClusterIP
}
fn default_grpc_port() -> i32 {
    DEFAULT_GRPC_PORT
}
fn default_metrics_port() -> i32 {
    DEFAULT_METRICS_PORT
}
fn default_cluster_secret_key() -> String {
    DEFAULT_CLUSTER_SECRET_KEY.to_string()
}

impl Default for TinyKVClusterSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            replication_factor: default_replication_factor(),
            image: default_image(),
            image_pull_policy: None,
            resources: None,
            storage: StorageSpec::default(),
            cluster_domain: default_cluster_domain(),
            vnodes: None,
            default_consistency: None,
            sync: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            pod_template: PodTemplateOptions::default(),
            service: ServiceOptions::default(),
            security: SecurityOptions::default(),
            network_policy: NetworkPolicyOptions::default(),
            tls: TlsOptions::default(),
        }
    }
}

/// Number of replicas that make a QUORUM for replication factor `rf`.
pub fn quorum(rf: i32) -> i32 {
    rf.max(1) / 2 + 1
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "crd_cel_tests.rs"]
mod cel_tests;
