//! Computing `TinyKVCluster.status` from the plan, the StatefulSet and the nodes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::builders::selector_string;
use crate::crd::{quorum, MemberState, OperationType, Phase, TinyKVCluster, TinyKVClusterStatus};
use crate::node_admin::{NodeStatus, HEALTH_UP, STATE_LEFT, STATE_NORMAL};
use crate::plan::{
    every_range_at_quorum, ObservedStatefulSet, Plan, REASON_BELOW_RF, REASON_STALLED,
};

/// Condition type: the cluster serves QUORUM reads and writes.
pub const CONDITION_AVAILABLE: &str = "Available";
/// Condition type: a scaling or upgrade operation is in progress.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: something needs attention.
pub const CONDITION_DEGRADED: &str = "Degraded";

/// The status after this pass. Conditions keep their `lastTransitionTime`
/// when their status does not change, so an unchanged cluster yields an
/// identical status (and the reconciler skips the patch).
pub fn compute_status(
    cluster: &TinyKVCluster,
    plan: &Plan,
    sts: Option<&ObservedStatefulSet>,
    view: Option<&NodeStatus>,
    now: &Time,
) -> TinyKVClusterStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    let rf = cluster.spec.replication_factor;
    let ready = sts.map_or(0, |s| s.ready_replicas);
    let generation = cluster.metadata.generation;

    let creating = sts.is_none()
        || (matches!(previous.phase, None | Some(Phase::Creating)) && ready < plan.replicas);
    let available = availability(plan, sts, view, rf, ready);
    let progressing = progressing(plan);
    let degraded = degradation(cluster, plan, view, ready, creating);
    let phase = phase(plan, creating, degraded.value);
    let cond =
        |type_: &str, verdict: Verdict| condition_of(&previous, type_, verdict, generation, now);

    TinyKVClusterStatus {
        replicas: plan.replicas,
        ready_replicas: ready,
        selector: selector_string(&cluster.name_any()),
        phase: Some(phase),
        conditions: vec![
            cond(CONDITION_AVAILABLE, available),
            cond(CONDITION_PROGRESSING, progressing),
            cond(CONDITION_DEGRADED, degraded),
        ],
        observed_generation: generation,
        rolled_out_template_hash: plan.rolled_out_hash.clone(),
        members: members(view, &previous),
        operation: plan.operation.clone(),
    }
}

/// A condition's value, before it is dated.
struct Verdict {
    value: bool,
    reason: &'static str,
    message: String,
}

fn verdict(value: bool, reason: &'static str, message: String) -> Verdict {
    Verdict {
        value,
        reason,
        message,
    }
}

/// The members as the answering node sees them, sorted by id, ownership
/// rounded to three decimals.
fn members(view: Option<&NodeStatus>, previous: &TinyKVClusterStatus) -> Vec<MemberState> {
    let mut members: Vec<MemberState> = view
        .map(|v| {
            v.members
                .iter()
                .map(|m| MemberState {
                    node_id: m.node_id.clone(),
                    address: m.address.clone(),
                    state: m.state.clone(),
                    health: m.health.clone(),
                    replica_ownership: (m.replica_ownership * 1000.0).round() / 1000.0,
                })
                .collect()
        })
        // Without a fresh view, keep the last one rather than flapping to empty.
        .unwrap_or_else(|| previous.members.clone());
    members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    members
}

/// Available: enough pods ready and every range at QUORUM.
fn availability(
    plan: &Plan,
    sts: Option<&ObservedStatefulSet>,
    view: Option<&NodeStatus>,
    rf: i32,
    ready: i32,
) -> Verdict {
    match (sts, view) {
        (None, _) => verdict(false, "Creating", "no StatefulSet yet".to_string()),
        (Some(_), _) if ready == 0 => {
            verdict(false, "NoNodesReady", "no node is ready".to_string())
        }
        (Some(_), None) => verdict(
            false,
            "NodeStatusUnavailable",
            "no node answered the Status RPC".to_string(),
        ),
        (Some(_), Some(v))
            if ready >= quorum(rf).min(plan.replicas) && every_range_at_quorum(v, rf) =>
        {
            verdict(
                true,
                "QuorumAvailable",
                format!("{ready} nodes ready; every range has a quorum"),
            )
        }
        (Some(_), Some(_)) => verdict(
            false,
            "QuorumLost",
            "some range may lack a quorum of live replicas".to_string(),
        ),
    }
}

/// Progressing: an operation is recorded.
fn progressing(plan: &Plan) -> Verdict {
    match &plan.operation {
        Some(op) => {
            let reason = match op.type_ {
                OperationType::ScaleUp => "ScalingUp",
                OperationType::ScaleDown => "ScalingDown",
                OperationType::Upgrade => "RollingUpdate",
            };
            verdict(true, reason, op.message.clone())
        }
        None => verdict(false, "Idle", "no operation in progress".to_string()),
    }
}

/// Degraded: too few nodes for the replication factor, or (outside an
/// operation, which explains them) unhealthy members or unready pods.
fn degradation(
    cluster: &TinyKVCluster,
    plan: &Plan,
    view: Option<&NodeStatus>,
    ready: i32,
    creating: bool,
) -> Verdict {
    let rf = cluster.spec.replication_factor;
    let unhealthy: Vec<&str> = view
        .map(|v| {
            v.members
                .iter()
                .filter(|m| m.state != STATE_LEFT)
                .filter(|m| !(m.state == STATE_NORMAL && m.health == HEALTH_UP))
                .map(|m| m.node_id.as_str())
                .collect()
        })
        .unwrap_or_default();
    if let Some(why) = &plan.stalled {
        verdict(true, REASON_STALLED, why.clone())
    } else if plan.refused_below_rf {
        verdict(
            true,
            REASON_BELOW_RF,
            format!(
                "spec.replicas {} is below the replication factor {rf}; keeping {} nodes",
                cluster.spec.replicas, plan.replicas
            ),
        )
    } else if plan.replicas < rf {
        verdict(
            true,
            REASON_BELOW_RF,
            format!(
                "{} nodes cannot hold {rf} replicas of every key",
                plan.replicas
            ),
        )
    } else if plan.operation.is_none() && !unhealthy.is_empty() {
        verdict(
            true,
            "MembersUnhealthy",
            format!("not normal and up: {}", unhealthy.join(", ")),
        )
    } else if plan.operation.is_none() && !creating && ready < plan.replicas {
        verdict(
            true,
            "PodsNotReady",
            format!("{ready} of {} pods ready", plan.replicas),
        )
    } else {
        verdict(false, "AsExpected", "nothing needs attention".to_string())
    }
}

/// The phase: the operation in progress, else creating, degraded or running.
fn phase(plan: &Plan, creating: bool, degraded: bool) -> Phase {
    match &plan.operation {
        Some(op) if op.type_ == OperationType::Upgrade => Phase::Upgrading,
        Some(_) => Phase::Scaling,
        None if creating => Phase::Creating,
        None if degraded => Phase::Degraded,
        None => Phase::Running,
    }
}

/// Condition `type_` with `verdict`, keeping the previous
/// `lastTransitionTime` when the condition's status is unchanged.
fn condition_of(
    previous: &TinyKVClusterStatus,
    type_: &str,
    verdict: Verdict,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if verdict.value { "True" } else { "False" }.to_string();
    let since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: verdict.reason.to_string(),
        message: verdict.message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The status after a pass that changed nothing because the spec was
/// refused (by the operator's own checks or by the API server, whose
/// message is `message`): the previous status with `Degraded` set to
/// `reason` (its `observedGeneration` the refused one) and the phase
/// `Degraded` unless an operation is in progress.
/// The next pass that gets through computes the whole status again.
pub fn refused_status(
    cluster: &TinyKVCluster,
    reason: &'static str,
    message: String,
    now: &Time,
) -> TinyKVClusterStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let degraded = condition_of(
        &previous,
        CONDITION_DEGRADED,
        verdict(true, reason, message),
        generation,
        now,
    );
    let mut status = previous.clone();
    status.conditions.retain(|c| c.type_ != CONDITION_DEGRADED);
    status.conditions.push(degraded);
    if status.operation.is_none() {
        status.phase = Some(Phase::Degraded);
    }
    status.selector = selector_string(&cluster.name_any());
    // `observedGeneration` stays: nothing of this generation was applied,
    // and tools that wait for it (kubectl wait, Argo CD, Flux) must not
    // take the refused spec for rolled out. The condition carries it.
    status
}

/// The condition `type_` of a status, if present.
pub fn condition<'a>(status: &'a TinyKVClusterStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;
    use crate::crd::TinyKVClusterSpec;
    use crate::node_admin::NodeMember;
    use crate::plan::{plan, PlanInput};
    use k8s_openapi::jiff::Timestamp;

    fn healthy_view(n: i32) -> NodeStatus {
        NodeStatus {
            members: (0..n)
                .map(|i| NodeMember {
                    node_id: format!("demo-{i}"),
                    state: "normal".into(),
                    health: "up".into(),
                    ..NodeMember::default()
                })
                .collect(),
            ..NodeStatus::default()
        }
    }

    fn run(
        c: &TinyKVCluster,
        sts: &ObservedStatefulSet,
        view: &NodeStatus,
        now: &Time,
    ) -> TinyKVClusterStatus {
        let status = c.status.clone().unwrap_or_default();
        let p = plan(&PlanInput {
            cluster: "demo",
            desired_replicas: c.spec.replicas,
            replication_factor: c.spec.replication_factor,
            template_hash: "h",
            when_scaled: c.spec.storage.when_scaled,
            ephemeral: false,
            operation: status.operation.as_ref(),
            rolled_out_hash: Some("h"),
            already_refused: false,
            statefulset: Some(sts),
            view: Some(view),
            now: now.0,
        });
        compute_status(c, &p, Some(sts), Some(view), now)
    }

    #[test]
    fn running_cluster_is_available_and_stable() {
        let mut c = cluster(TinyKVClusterSpec::default());
        let sts = ObservedStatefulSet {
            replicas: 3,
            ready_replicas: 3,
            updated_replicas: 3,
            settled: true,
        };
        let t0 = Time(Timestamp::UNIX_EPOCH);
        let s = run(&c, &sts, &healthy_view(3), &t0);
        assert_eq!(s.phase, Some(Phase::Running));
        assert_eq!(s.ready_replicas, 3);
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(
            condition(&s, CONDITION_AVAILABLE).map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(
            condition(&s, CONDITION_PROGRESSING).map(|c| c.reason.as_str()),
            Some("Idle")
        );
        assert_eq!(
            condition(&s, CONDITION_DEGRADED).map(|c| c.status.as_str()),
            Some("False")
        );
        assert_eq!(s.members.len(), 3);
        // Same inputs later: identical status (times kept).
        c.status = Some(s.clone());
        let later = Time(Timestamp::from_second(1000).expect("ts"));
        assert_eq!(run(&c, &sts, &healthy_view(3), &later), s);
    }

    #[test]
    fn unhealthy_member_degrades_and_flips_time() {
        let mut c = cluster(TinyKVClusterSpec::default());
        let sts = ObservedStatefulSet {
            replicas: 3,
            ready_replicas: 3,
            updated_replicas: 3,
            settled: true,
        };
        let t0 = Time(Timestamp::UNIX_EPOCH);
        c.status = Some(run(&c, &sts, &healthy_view(3), &t0));
        let mut view = healthy_view(3);
        view.members[1].health = "down".into();
        let t1 = Time(Timestamp::from_second(50).expect("ts"));
        let s = run(&c, &sts, &view, &t1);
        let d = condition(&s, CONDITION_DEGRADED).expect("degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "MembersUnhealthy")
        );
        assert_eq!(d.last_transition_time, t1);
        assert_eq!(
            condition(&s, CONDITION_AVAILABLE).map(|c| c.last_transition_time.clone()),
            Some(t0)
        );
        assert_eq!(s.phase, Some(Phase::Degraded));
    }
}
