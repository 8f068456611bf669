//! Scaling steps: a scale-down removes the highest ordinal only after that
//! node reports `left`; a scale-up raises replicas and waits until every node
//! is `normal` and `up`.

use crate::builders::pod_name;
use crate::crd::{Operation, OperationType};
use crate::node_admin::{NodeStatus, STATE_LEFT, STATE_NORMAL};

use super::{
    all_members_healthy, event, member_healthy, ObservedStatefulSet, Plan, PlanInput,
    START_REQUEUE, STEP_REQUEUE,
};

/// The ring state of the scale-down target `node` as `view` reports it.
fn target_state<'v>(view: Option<&'v NodeStatus>, node: &str) -> Option<&'v str> {
    // A normal peer that does not list the node at all: it has left
    // and been forgotten (or never joined, so it holds no data).
    let forgotten = view.is_some_and(|v| {
        v.node_id != node && v.member(node).is_none() && member_healthy(v, &v.node_id)
    });
    // The target's own answer (`state`) first, then a peer's row.
    view.and_then(|v| v.state_of(node))
        .or(forgotten.then_some(STATE_LEFT))
}

/// A pass of a recorded scale-down: ask the target to decommission while it is
/// `normal`, wait while it leaves, and lower the StatefulSet once it is `left`.
pub(super) fn scale_down_step(
    input: &PlanInput<'_>,
    sts: &ObservedStatefulSet,
    op: &Operation,
    mut out: Plan,
) -> Plan {
    let current = sts.replicas;
    let ordinal = op.ordinal.unwrap_or(current - 1);
    let node = op
        .node
        .clone()
        .unwrap_or_else(|| pod_name(input.cluster, ordinal));
    out.requeue = STEP_REQUEUE;
    if current <= ordinal {
        // Replicas already lowered (the operator stopped right after): finish.
        out.operation = None;
        out.delete_pvc = input.pvc_to_delete(ordinal);
        out.events.push(event(
            false,
            "ScaledDown",
            "ScaleDown",
            format!("{node} removed"),
        ));
        out.requeue = START_REQUEUE;
        return out;
    }
    let mut op = op.clone();
    match target_state(input.view, &node) {
        Some(STATE_LEFT) => {
            out.replicas = ordinal;
            out.partition = out.partition.min(ordinal);
            out.delete_pvc = input.pvc_to_delete(ordinal);
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

/// A pass of a recorded scale-up: follow a further raised `spec.replicas`,
/// and finish once every node is ready, `normal` and `up`.
pub(super) fn scale_up_step(
    input: &PlanInput<'_>,
    sts: &ObservedStatefulSet,
    op: &Operation,
    mut out: Plan,
) -> Plan {
    let desired = input.desired();
    let current = sts.replicas;
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

/// Record a scale-down of the highest ordinal (it acts from the next pass).
pub(super) fn start_scale_down(
    input: &PlanInput<'_>,
    current: i32,
    desired: i32,
    mut out: Plan,
) -> Plan {
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
    out
}

/// Record a scale-up and raise the StatefulSet replicas at once.
pub(super) fn start_scale_up(current: i32, desired: i32, mut out: Plan) -> Plan {
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
    out
}
