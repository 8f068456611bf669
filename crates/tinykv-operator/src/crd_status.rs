//! `status` of a `TinyKVCluster`: what the operator saw, including the
//! scaling or upgrade operation it is in the middle of (recorded here so
//! that an operator restart resumes it).
//!
//! Kept out of `crd.rs` so the resource's main file stays readable; the
//! types are re-exported from [`crate::crd`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a TinyKV cluster.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TinyKVClusterStatus {
    /// StatefulSet replicas the operator currently runs.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that pass their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the node pods (for the scale subresource).
    #[serde(default)]
    pub selector: String,
    /// Coarse lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Available`, `Progressing` and `Degraded`: a list-map keyed by
    /// `type`, so a server-side apply by another manager (`kubectl`, a
    /// GitOps tool) merges one condition instead of replacing the list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// `metadata.generation` of the spec this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hash of the pod template that every pod runs (rolled out completely).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_out_template_hash: Option<String>,
    /// Members as reported by the nodes' own Status RPC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberState>,
    /// The scaling or upgrade operation in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Coarse lifecycle phase of a cluster.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Objects created, no node ready yet.
    Creating,
    /// Every node ready and normal.
    Running,
    /// Adding or removing nodes.
    Scaling,
    /// Rolling a new pod template out.
    Upgrading,
    /// Running, but something needs attention (see the Degraded condition).
    Degraded,
}

/// A member as reported by a node.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberState {
    /// Node id (the pod name).
    pub node_id: String,
    /// Advertised gRPC address.
    #[serde(default)]
    pub address: String,
    /// Ring membership: `normal`, `joining`, `leaving` or `left`.
    #[serde(default)]
    pub state: String,
    /// Failure detector view: `up`, `suspect` or `down`.
    #[serde(default)]
    pub health: String,
    /// Fraction of the key space this node is a replica of.
    #[serde(default)]
    pub replica_ownership: f64,
}

/// Kind of operation in progress.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OperationType {
    /// Adding nodes.
    ScaleUp,
    /// Removing one node (the highest ordinal) at a time.
    ScaleDown,
    /// Rolling a new pod template out, one pod at a time.
    Upgrade,
}

/// A scaling or upgrade operation, recorded before it starts so that it resumes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// What is being done.
    #[serde(rename = "type")]
    pub type_: OperationType,
    /// Replicas when the operation started.
    pub from_replicas: i32,
    /// Replicas when the operation ends.
    pub to_replicas: i32,
    /// ScaleDown: the node being decommissioned (pod name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// ScaleDown: ordinal of that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordinal: Option<i32>,
    /// Upgrade: current StatefulSet partition (pods with this ordinal and above run the new template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Upgrade: hash of the template being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// Human-readable progress.
    #[serde(default)]
    pub message: String,
    /// ScaleDown: the step the operation is at and since when it has
    /// made no progress (a stalled step is reported as Degraded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepClock>,
}

/// A scale-down step and the last time it moved.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepClock {
    /// `status` (waiting for the target's answer), `decommission` (asked
    /// to leave), `leave` (streaming its ranges away) or `confirm` (a peer
    /// says it left; waiting for the target's own word).
    pub name: String,
    /// The target's reported progress in this step, per mille.
    #[serde(default)]
    pub progress_permille: i32,
    /// When the step started or last made progress (RFC 3339).
    pub since: String,
    /// Whether the stall was reported (one Warning event per stall).
    #[serde(default)]
    pub stall_reported: bool,
}
