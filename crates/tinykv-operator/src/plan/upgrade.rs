//! Upgrade steps: the StatefulSet partition is lowered one pod at a time, and
//! only when every pod is ready on the new revision so far and every member is
//! `normal` and `up` (so every range has all its replicas, and is at QUORUM
//! even while the next pod restarts).

use crate::builders::pod_name;
use crate::crd::{Operation, OperationType};

use super::{
    all_members_healthy, event, ObservedStatefulSet, Plan, PlanInput, START_REQUEUE, STEP_REQUEUE,
};

/// A pass of a recorded upgrade: restart it if the template changed again,
/// otherwise move the partition down by one pod once the cluster is healthy.
pub(super) fn upgrade_step(
    input: &PlanInput<'_>,
    sts: &ObservedStatefulSet,
    op: &Operation,
    mut out: Plan,
) -> Plan {
    let current = sts.replicas;
    let mut op = op.clone();
    out.requeue = STEP_REQUEUE;
    if op.template_hash.as_deref() != Some(input.template_hash) {
        return restart_upgrade(input, current, op, out);
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
            out.rolled_out_hash = Some(input.template_hash.to_string());
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

/// The template changed during the upgrade: roll the newest one out from the
/// highest ordinal again.
fn restart_upgrade(input: &PlanInput<'_>, current: i32, mut op: Operation, mut out: Plan) -> Plan {
    let p = (current - 1).max(0);
    op.template_hash = Some(input.template_hash.to_string());
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
    out
}

/// Record an upgrade and let the highest ordinal roll first.
pub(super) fn start_upgrade(input: &PlanInput<'_>, current: i32, mut out: Plan) -> Plan {
    let p = (current - 1).max(0);
    out.partition = p;
    out.operation = Some(Operation {
        type_: OperationType::Upgrade,
        from_replicas: current,
        to_replicas: current,
        node: None,
        ordinal: None,
        partition: Some(p),
        template_hash: Some(input.template_hash.to_string()),
        message: format!("updating {}", pod_name(input.cluster, p)),
        step: None,
    });
    out.events.push(event(
        false,
        "UpgradeStarted",
        "Upgrade",
        "rolling the new pod template out one pod at a time".into(),
    ));
    out.requeue = START_REQUEUE;
    out
}
