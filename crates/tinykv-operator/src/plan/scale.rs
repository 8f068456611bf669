//! Scaling steps: a scale-down removes the highest ordinal only after that
//! node reports `left`; a scale-up raises replicas and waits until every node
//! is `normal` and `up`.

use crate::builders::pod_name;
use crate::crd::{Operation, OperationType};
use crate::node_admin::{NodeStatus, STATE_LEFT, STATE_NORMAL};

use super::{
    all_members_healthy, event, stall, ObservedStatefulSet, Plan, PlanInput, START_REQUEUE,
    STEP_REQUEUE,
};

/// What the view says of the scale-down target.
enum Target<'v> {
    /// The target answered: its own state, and its streaming progress.
    Own(&'v str, f64),
    /// A peer answered, with this row for the target.
    Peer(&'v str, &'v str),
    /// A peer answered and does not list the target.
    Forgotten(&'v str),
    /// Nobody answered.
    Unknown,
}

/// The scale-down target `node` as `view` reports it.
fn target<'v>(view: Option<&'v NodeStatus>, node: &str) -> Target<'v> {
    match view {
        None => Target::Unknown,
        Some(v) if v.node_id == node => match v.state_of(node) {
            Some(state) => Target::Own(state, v.operation_progress),
            None => Target::Unknown,
        },
        Some(v) => match v.member(node) {
            Some(row) => Target::Peer(&v.node_id, row.state.as_str()),
            None => Target::Forgotten(&v.node_id),
        },
    }
}

/// A pass of a recorded scale-down: ask the target to decommission while it is
/// `normal`, wait while it leaves, and lower the StatefulSet once the target
/// itself reports `left` (a peer's word is not proof: its table may be stale,
/// and a node missing from it may still hold data). A step that makes no
/// progress for [`super::STALL_TIMEOUT`] is reported, and still waited for.
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
    let (step, progress, why) = match target(input.view, &node) {
        Target::Own(STATE_LEFT, _) => {
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
        Target::Own(STATE_NORMAL, _) | Target::Peer(_, STATE_NORMAL) => {
            out.decommission = Some(node.clone());
            op.message = format!("decommission of {node} requested");
            out.events.push(event(
                false,
                "Decommissioning",
                "ScaleDown",
                format!("asked {node} to stream its ranges away and leave"),
            ));
            let why = format!(
                "{node} does not start leaving (is it reachable, and are the other nodes up?)"
            );
            ("decommission", 0, why)
        }
        Target::Own(s, progress) => {
            let p = stall::permille(progress);
            op.message = format!("waiting for {node} to leave (state {s}, {}%)", p / 10);
            let why = format!("{node} is {s} and its streaming does not advance (a new owner of its ranges may be down; see its log and `tinykv_client status`)");
            ("leave", p, why)
        }
        Target::Peer(peer, STATE_LEFT) => {
            op.message = format!("{peer} says {node} left; waiting for {node} to say so itself");
            let why = format!("{node} does not answer; it must report left itself before its pod and data are removed");
            ("confirm", 0, why)
        }
        Target::Forgotten(peer) => {
            op.message =
                format!("{peer} no longer lists {node}; waiting for {node} to report left itself");
            let why = format!("{node} does not answer; it must report left itself before its pod and data are removed");
            ("confirm", 0, why)
        }
        Target::Peer(peer, s) => {
            op.message = format!("waiting for {node} to leave ({peer} says {s})");
            (
                "leave",
                0,
                format!("{node} does not answer and {peer} still sees it {s}"),
            )
        }
        Target::Unknown => {
            op.message = format!("waiting for the status of {node}");
            ("status", 0, "no node answers the status call".to_string())
        }
    };
    let clock = stall::clock(&op, step, progress, input.now);
    stall::check(&mut out, &mut op, clock, input.now, &why);
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
        step: None,
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
        step: None,
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
