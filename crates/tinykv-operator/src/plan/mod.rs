//! The scaling and upgrade state machine, as a pure function.
//!
//! [`plan`] takes what the reconciler observed (the spec, the recorded
//! status, the StatefulSet, the nodes' own view of the ring) and returns what
//! to do in this pass: the StatefulSet replicas and partition to apply, at
//! most one node to decommission, at most one PVC to delete, the operation to
//! record in the status, and the events to publish. Every step is decided
//! from recorded or observable state, so an operator restart resumes it.
//!
//! Rules:
//! * one operation at a time, recorded in `status.operation` before it acts;
//! * scale-down removes the highest ordinal only after that node reports
//!   `left`, and never goes below the replication factor;
//! * scale-up raises replicas and waits until every node is `normal` and `up`;
//! * an upgrade lowers the StatefulSet partition one pod at a time, and only
//!   when every pod is ready on the new revision so far and every member is
//!   `normal` and `up` (so every range has all its replicas, and is at QUORUM
//!   even while the next pod restarts).
//!
//! [`plan`] dispatches on the recorded operation; each operation's steps live
//! in their own submodule: `scale` (scale-down, scale-up), `upgrade`, and
//! `idle` (no operation recorded: start one, or refuse it).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::builders::pod_name;
use crate::crd::{quorum, Operation, OperationType, PvcRetention};
use crate::node_admin::{NodeStatus, HEALTH_UP, STATE_LEFT, STATE_NORMAL};

mod idle;
mod scale;
mod stall;
mod upgrade;

/// Reason of the Degraded condition when a scale-down is refused.
pub const REASON_BELOW_RF: &str = "BelowReplicationFactor";
/// Reason of the Degraded condition when a scale-down step is stalled.
pub const REASON_STALLED: &str = "ScaleDownStalled";
/// How long a scale-down step may go without progress (the target's state
/// or streaming progress unchanged) before it is reported as stalled. The
/// operation keeps waiting: only a person can tell a slow disk from a dead
/// one, and nothing is lowered or deleted without the target's own `left`.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What the reconciler saw of the StatefulSet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedStatefulSet {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// `status.updatedReplicas`: pods on the update revision.
    pub updated_replicas: i32,
    /// `status.observedGeneration >= metadata.generation`.
    pub settled: bool,
}

/// Everything [`plan`] decides from.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput<'a> {
    /// Cluster name (pod names derive from it).
    pub cluster: &'a str,
    /// `spec.replicas`.
    pub desired_replicas: i32,
    /// `spec.replicationFactor`.
    pub replication_factor: i32,
    /// Hash of the pod template built from the current spec.
    pub template_hash: &'a str,
    /// PVC policy after a scale-down.
    pub when_scaled: PvcRetention,
    /// Storage is an emptyDir (no PVC to delete).
    pub ephemeral: bool,
    /// `status.operation` as recorded.
    pub operation: Option<&'a Operation>,
    /// `status.rolledOutTemplateHash` as recorded.
    pub rolled_out_hash: Option<&'a str>,
    /// Whether Degraded/BelowReplicationFactor is already reported.
    pub already_refused: bool,
    /// The StatefulSet, if it exists.
    pub statefulset: Option<&'a ObservedStatefulSet>,
    /// The nodes' view of the ring (from the scale-down target when there is one).
    pub view: Option<&'a NodeStatus>,
    /// The time of this pass (a stalled scale-down step is measured with it).
    pub now: Timestamp,
}

/// An event to publish on the TinyKVCluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Warning rather than Normal.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: &'static str,
    /// What the operator is doing.
    pub action: &'static str,
    /// Human-readable detail.
    pub note: String,
}

/// What to do in this reconcile pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// StatefulSet replicas to apply.
    pub replicas: i32,
    /// StatefulSet partition to apply.
    pub partition: i32,
    /// `status.operation` after this pass.
    pub operation: Option<Operation>,
    /// `status.rolledOutTemplateHash` after this pass.
    pub rolled_out_hash: Option<String>,
    /// Node (pod name) to send Decommission for.
    pub decommission: Option<String>,
    /// Ordinal whose data PVC to delete.
    pub delete_pvc: Option<i32>,
    /// A scale-down below the replication factor was refused.
    pub refused_below_rf: bool,
    /// A scale-down step that made no progress for [`STALL_TIMEOUT`]: why.
    pub stalled: Option<String>,
    /// Events to publish.
    pub events: Vec<PlannedEvent>,
    /// When to look again.
    pub requeue: Duration,
}

/// Pause between steps of an operation in progress.
pub const STEP_REQUEUE: Duration = Duration::from_secs(5);
/// Pause right after an operation was recorded (so it acts from the recorded intent).
pub const START_REQUEUE: Duration = Duration::from_secs(1);
/// Resync period of a cluster at rest.
pub const IDLE_REQUEUE: Duration = Duration::from_secs(60);

fn event(warning: bool, reason: &'static str, action: &'static str, note: String) -> PlannedEvent {
    PlannedEvent {
        warning,
        reason,
        action,
        note,
    }
}

/// Whether the node `node_id` is a `normal`, `up` member in `view` (its own
/// `state` decides when `view` is its own answer).
pub fn member_healthy(view: &NodeStatus, node_id: &str) -> bool {
    view.state_of(node_id) == Some(STATE_NORMAL)
        && view.member(node_id).is_some_and(|m| m.health == HEALTH_UP)
}

/// Whether pods `0..replicas` are all healthy members in `view`.
pub fn all_members_healthy(view: &NodeStatus, cluster: &str, replicas: i32) -> bool {
    (0..replicas).all(|i| member_healthy(view, &pod_name(cluster, i)))
}

/// Whether every key range still has a QUORUM of live replicas.
///
/// Without the ring layout, assume the worst: all unhealthy (not `up`, or
/// `joining`/`leaving`) members share a range.
pub fn every_range_at_quorum(view: &NodeStatus, replication_factor: i32) -> bool {
    let rf = replication_factor.max(1);
    let unhealthy = view
        .members
        .iter()
        .filter(|m| m.state != STATE_LEFT)
        .filter(|m| !(m.state == STATE_NORMAL && m.health == HEALTH_UP))
        .count();
    let unhealthy = i32::try_from(unhealthy).unwrap_or(i32::MAX);
    rf - unhealthy.min(rf) >= quorum(rf)
}

/// Decide this pass. See the module docs for the rules.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let Some(sts) = input.statefulset else {
        return first_creation(input);
    };
    let out = carry_over(input, sts);
    match input.operation {
        Some(op) if op.type_ == OperationType::ScaleDown => {
            scale::scale_down_step(input, sts, op, out)
        }
        Some(op) if op.type_ == OperationType::ScaleUp => scale::scale_up_step(input, sts, op, out),
        Some(op) if op.type_ == OperationType::Upgrade => {
            upgrade::upgrade_step(input, sts, op, out)
        }
        Some(_) | None => idle::at_rest(input, sts, out),
    }
}

impl PlanInput<'_> {
    /// `spec.replicas`, never negative.
    fn desired(&self) -> i32 {
        self.desired_replicas.max(0)
    }

    /// Whether the current template is the one recorded as rolled out.
    fn template_current(&self) -> bool {
        self.rolled_out_hash == Some(self.template_hash)
    }

    /// The PVC of `ordinal` to delete once its node is gone, if the policy says so.
    fn pvc_to_delete(&self, ordinal: i32) -> Option<i32> {
        (self.when_scaled == PvcRetention::Delete && !self.ephemeral).then_some(ordinal)
    }
}

/// No StatefulSet yet: everything at once, template rolled out by definition.
fn first_creation(input: &PlanInput<'_>) -> Plan {
    let desired = input.desired();
    Plan {
        replicas: desired,
        partition: 0,
        operation: None,
        rolled_out_hash: Some(input.template_hash.to_string()),
        decommission: None,
        delete_pvc: None,
        refused_below_rf: false,
        stalled: None,
        events: vec![event(
            false,
            "Created",
            "Create",
            format!("created StatefulSet with {desired} nodes"),
        )],
        requeue: STEP_REQUEUE,
    }
}

/// The plan that changes nothing: the StatefulSet as it is, the recorded
/// operation and rollout kept. Each step starts from it.
fn carry_over(input: &PlanInput<'_>, sts: &ObservedStatefulSet) -> Plan {
    let current = sts.replicas;
    Plan {
        replicas: current,
        // Outside an upgrade a changed template is frozen: no pod rolls.
        partition: if input.template_current() { 0 } else { current },
        operation: input.operation.cloned(),
        rolled_out_hash: input.rolled_out_hash.map(str::to_string),
        decommission: None,
        delete_pvc: None,
        refused_below_rf: false,
        stalled: None,
        events: Vec::new(),
        requeue: IDLE_REQUEUE,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
