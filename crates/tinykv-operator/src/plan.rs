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

use std::time::Duration;

use crate::builders::pod_name;
use crate::crd::{quorum, Operation, OperationType, PvcRetention};
use crate::node_admin::{NodeStatus, HEALTH_UP, STATE_LEFT, STATE_NORMAL};

/// Reason of the Degraded condition when a scale-down is refused.
pub const REASON_BELOW_RF: &str = "BelowReplicationFactor";

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
    let desired = input.desired_replicas.max(0);
    let hash = input.template_hash.to_string();
    let Some(sts) = input.statefulset else {
        // First creation: everything at once, template rolled out by definition.
        return Plan {
            replicas: desired,
            partition: 0,
            operation: None,
            rolled_out_hash: Some(hash),
            decommission: None,
            delete_pvc: None,
            refused_below_rf: false,
            events: vec![event(
                false,
                "Created",
                "Create",
                format!("created StatefulSet with {desired} nodes"),
            )],
            requeue: STEP_REQUEUE,
        };
    };
    let current = sts.replicas;
    let template_current = input.rolled_out_hash == Some(input.template_hash);
    let mut out = Plan {
        replicas: current,
        // Outside an upgrade a changed template is frozen: no pod rolls.
        partition: if template_current { 0 } else { current },
        operation: input.operation.cloned(),
        rolled_out_hash: input.rolled_out_hash.map(str::to_string),
        decommission: None,
        delete_pvc: None,
        refused_below_rf: false,
        events: Vec::new(),
        requeue: IDLE_REQUEUE,
    };
    let pvc_to_delete = |ordinal: i32| {
        (input.when_scaled == PvcRetention::Delete && !input.ephemeral).then_some(ordinal)
    };

    match input.operation {
        Some(op) if op.type_ == OperationType::ScaleDown => {
            let ordinal = op.ordinal.unwrap_or(current - 1);
            let node = op
                .node
                .clone()
                .unwrap_or_else(|| pod_name(input.cluster, ordinal));
            out.requeue = STEP_REQUEUE;
            if current <= ordinal {
                // Replicas already lowered (the operator stopped right after): finish.
                out.operation = None;
                out.delete_pvc = pvc_to_delete(ordinal);
                out.events.push(event(
                    false,
                    "ScaledDown",
                    "ScaleDown",
                    format!("{node} removed"),
                ));
                out.requeue = START_REQUEUE;
                return out;
            }
            // A normal peer that does not list the node at all: it has left
            // and been forgotten (or never joined, so it holds no data).
            let forgotten = input.view.is_some_and(|v| {
                v.node_id != node && v.member(&node).is_none() && member_healthy(v, &v.node_id)
            });
            // The target's own answer (`state`) first, then a peer's row.
            let state = input
                .view
                .and_then(|v| v.state_of(&node))
                .or(forgotten.then_some(STATE_LEFT));
            let mut op = op.clone();
            match state {
                Some(STATE_LEFT) => {
                    out.replicas = ordinal;
                    out.partition = out.partition.min(ordinal);
                    out.delete_pvc = pvc_to_delete(ordinal);
                    out.operation = None;
                    out.events.push(event(
                        false,
                        "NodeDecommissioned",
                        "ScaleDown",
                        format!("{node} left the ring; StatefulSet lowered to {ordinal}"),
                    ));
                    out.requeue = START_REQUEUE;
                    return out;
                }
                Some(STATE_NORMAL) => {
                    out.decommission = Some(node.clone());
                    op.message = format!("decommission of {node} requested");
                    out.events.push(event(
                        false,
                        "Decommissioning",
                        "ScaleDown",
                        format!("asked {node} to stream its ranges away and leave"),
                    ));
                }
                Some(s) => op.message = format!("waiting for {node} to leave (state {s})"),
                None => op.message = format!("waiting for the status of {node}"),
            }
            out.operation = Some(op);
            out
        }
        Some(op) if op.type_ == OperationType::ScaleUp => {
            let mut op = op.clone();
            if desired > current {
                op.to_replicas = desired;
                out.replicas = desired;
            }
            let target = op.to_replicas.max(out.replicas);
            let joined = input
                .view
                .is_some_and(|v| all_members_healthy(v, input.cluster, target));
            if joined && sts.ready_replicas >= target && sts.settled {
                out.operation = None;
                out.events.push(event(
                    false,
                    "ScaledUp",
                    "ScaleUp",
                    format!("all {target} nodes joined and are normal"),
                ));
                out.requeue = START_REQUEUE;
            } else {
                op.message = format!(
                    "waiting for {target} nodes to be ready and normal ({} ready)",
                    sts.ready_replicas
                );
                out.operation = Some(op);
                out.requeue = STEP_REQUEUE;
            }
            out
        }
        Some(op) if op.type_ == OperationType::Upgrade => {
            let mut op = op.clone();
            out.requeue = STEP_REQUEUE;
            if op.template_hash.as_deref() != Some(input.template_hash) {
                let p = (current - 1).max(0);
                op.template_hash = Some(hash);
                op.partition = Some(p);
                op.message = "template changed during the upgrade; restarting it".into();
                out.partition = p;
                out.events.push(event(
                    false,
                    "UpgradeRestarted",
                    "Upgrade",
                    op.message.clone(),
                ));
                out.operation = Some(op);
                return out;
            }
            let p = op.partition.unwrap_or(0).clamp(0, current);
            out.partition = p;
            let updated_ready =
                sts.settled && sts.updated_replicas >= current - p && sts.ready_replicas >= current;
            let healthy = input
                .view
                .is_some_and(|v| all_members_healthy(v, input.cluster, current));
            if updated_ready && healthy {
                if p == 0 {
                    out.operation = None;
                    out.rolled_out_hash = Some(hash);
                    out.events.push(event(
                        false,
                        "UpgradeComplete",
                        "Upgrade",
                        "every pod runs the new template".into(),
                    ));
                    out.requeue = START_REQUEUE;
                    return out;
                }
                out.partition = p - 1;
                op.partition = Some(p - 1);
                op.message = format!("updating {}", pod_name(input.cluster, p - 1));
                out.events
                    .push(event(false, "UpgradeStep", "Upgrade", op.message.clone()));
            } else {
                op.message = format!(
                    "waiting for {} to be ready on the new template and every member normal",
                    pod_name(input.cluster, p)
                );
            }
            out.operation = Some(op);
            out
        }
        Some(_) | None => {
            out.operation = None;
            if !template_current {
                let p = (current - 1).max(0);
                out.partition = p;
                out.operation = Some(Operation {
                    type_: OperationType::Upgrade,
                    from_replicas: current,
                    to_replicas: current,
                    node: None,
                    ordinal: None,
                    partition: Some(p),
                    template_hash: Some(hash),
                    message: format!("updating {}", pod_name(input.cluster, p)),
                });
                out.events.push(event(
                    false,
                    "UpgradeStarted",
                    "Upgrade",
                    "rolling the new pod template out one pod at a time".into(),
                ));
                out.requeue = START_REQUEUE;
            } else if desired < current && desired < input.replication_factor {
                out.refused_below_rf = true;
                if !input.already_refused {
                    out.events.push(event(
                        true,
                        REASON_BELOW_RF,
                        "ScaleDown",
                        format!(
                            "refusing to scale to {desired} nodes: below the replication factor {}",
                            input.replication_factor
                        ),
                    ));
                }
            } else if desired < current {
                let ordinal = current - 1;
                let node = pod_name(input.cluster, ordinal);
                out.operation = Some(Operation {
                    type_: OperationType::ScaleDown,
                    from_replicas: current,
                    to_replicas: desired,
                    node: Some(node.clone()),
                    ordinal: Some(ordinal),
                    partition: None,
                    template_hash: None,
                    message: format!("decommissioning {node}"),
                });
                out.events.push(event(
                    false,
                    "ScaleDownStarted",
                    "ScaleDown",
                    format!("removing {node}"),
                ));
                out.requeue = START_REQUEUE;
            } else if desired > current {
                out.replicas = desired;
                out.partition = out.partition.min(current);
                out.operation = Some(Operation {
                    type_: OperationType::ScaleUp,
                    from_replicas: current,
                    to_replicas: desired,
                    node: None,
                    ordinal: None,
                    partition: None,
                    template_hash: None,
                    message: format!("adding {} nodes", desired - current),
                });
                out.events.push(event(
                    false,
                    "ScaleUpStarted",
                    "ScaleUp",
                    format!("scaling from {current} to {desired} nodes"),
                ));
                out.requeue = STEP_REQUEUE;
            }
            out
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
