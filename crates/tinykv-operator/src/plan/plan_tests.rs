//! Unit tests of the pure state machine.

use super::*;
use crate::node_admin::{NodeMember, STATE_LEAVING};
use k8s_openapi::jiff::Timestamp;

fn view(states: &[(&str, &str, &str)]) -> NodeStatus {
    NodeStatus {
        node_id: "demo-0".into(),
        replication_factor: 3,
        version: "test".into(),
        members: states
            .iter()
            .map(|(id, state, health)| NodeMember {
                node_id: (*id).into(),
                address: String::new(),
                health: (*health).into(),
                state: (*state).into(),
                replica_ownership: 0.5,
            })
            .collect(),
        ..NodeStatus::default()
    }
}

fn healthy(n: i32) -> NodeStatus {
    let ids: Vec<String> = (0..n).map(|i| format!("demo-{i}")).collect();
    let states: Vec<(&str, &str, &str)> =
        ids.iter().map(|i| (i.as_str(), "normal", "up")).collect();
    view(&states)
}

fn sts(replicas: i32) -> ObservedStatefulSet {
    ObservedStatefulSet {
        replicas,
        ready_replicas: replicas,
        updated_replicas: replicas,
        settled: true,
    }
}

fn input<'a>(
    desired: i32,
    sts: Option<&'a ObservedStatefulSet>,
    op: Option<&'a Operation>,
    view: Option<&'a NodeStatus>,
) -> PlanInput<'a> {
    PlanInput {
        cluster: "demo",
        desired_replicas: desired,
        replication_factor: 3,
        template_hash: "h1",
        when_scaled: PvcRetention::Delete,
        ephemeral: false,
        operation: op,
        rolled_out_hash: Some("h1"),
        already_refused: false,
        statefulset: sts,
        view,
        now: Timestamp::UNIX_EPOCH,
    }
}

#[test]
fn creation_applies_everything() {
    let p = plan(&input(5, None, None, None));
    assert_eq!((p.replicas, p.partition), (5, 0));
    assert_eq!(p.rolled_out_hash.as_deref(), Some("h1"));
    assert!(p.operation.is_none());
}

#[test]
fn steady_state_does_nothing() {
    let s = sts(3);
    let v = healthy(3);
    let p = plan(&input(3, Some(&s), None, Some(&v)));
    assert_eq!((p.replicas, p.partition), (3, 0));
    assert!(p.operation.is_none() && p.events.is_empty() && p.decommission.is_none());
    assert_eq!(p.requeue, IDLE_REQUEUE);
}

#[test]
fn scale_down_walks_one_node_at_a_time() {
    let s = sts(5);
    let mut v = healthy(5);
    // 1: record intent only.
    let p = plan(&input(3, Some(&s), None, Some(&v)));
    let op = p.operation.clone().expect("intent recorded");
    assert_eq!(op.node.as_deref(), Some("demo-4"));
    assert_eq!(p.replicas, 5);
    assert!(p.decommission.is_none());
    // 2: node normal -> decommission it, keep replicas.
    let p = plan(&input(3, Some(&s), Some(&op), Some(&v)));
    assert_eq!(p.decommission.as_deref(), Some("demo-4"));
    assert_eq!(p.replicas, 5);
    // 3: leaving -> wait, no second decommission.
    v.members[4].state = STATE_LEAVING.into();
    let p = plan(&input(3, Some(&s), Some(&op), Some(&v)));
    assert!(p.decommission.is_none());
    assert_eq!(p.replicas, 5);
    assert!(p.operation.is_some());
    // 4: a peer's row says left: no proof, wait for the target's word.
    v.members[4].state = STATE_LEFT.into();
    let p = plan(&input(3, Some(&s), Some(&op), Some(&v)));
    assert_eq!((p.replicas, p.delete_pvc), (5, None));
    // 5: the target itself says left -> lower replicas, delete PVC, clear op.
    let mut own = v.clone();
    own.node_id = "demo-4".into();
    own.state = STATE_LEFT.into();
    let p = plan(&input(3, Some(&s), Some(&op), Some(&own)));
    assert_eq!(p.replicas, 4);
    assert_eq!(p.delete_pvc, Some(4));
    assert!(p.operation.is_none());
    // 6: next pass starts on demo-3.
    let s4 = sts(4);
    let p = plan(&input(3, Some(&s4), None, Some(&v)));
    assert_eq!(p.operation.and_then(|o| o.node).as_deref(), Some("demo-3"));
}

#[test]
fn scale_down_resumes_after_replicas_were_lowered() {
    let op = Operation {
        type_: OperationType::ScaleDown,
        from_replicas: 5,
        to_replicas: 3,
        node: Some("demo-4".into()),
        ordinal: Some(4),
        partition: None,
        template_hash: None,
        message: String::new(),
        step: None,
    };
    let s = sts(4);
    let mut i = input(3, Some(&s), Some(&op), None);
    i.when_scaled = PvcRetention::Retain;
    let p = plan(&i);
    assert_eq!(p.replicas, 4);
    assert_eq!(p.delete_pvc, None, "retained per policy");
    assert!(p.operation.is_none());
}

#[test]
fn refuses_below_replication_factor_once() {
    let s = sts(3);
    let v = healthy(3);
    let p = plan(&input(2, Some(&s), None, Some(&v)));
    assert!(p.refused_below_rf);
    assert_eq!(p.replicas, 3);
    assert_eq!(p.events[0].reason, REASON_BELOW_RF);
    assert!(p.events[0].warning);
    let mut i = input(2, Some(&s), None, Some(&v));
    i.already_refused = true;
    let p = plan(&i);
    assert!(p.refused_below_rf && p.events.is_empty());
}

#[test]
fn scale_up_waits_for_normal_members() {
    let s = sts(3);
    let p = plan(&input(5, Some(&s), None, None));
    assert_eq!(p.replicas, 5);
    let op = p.operation.expect("scale-up op");
    let mut s5 = sts(5);
    s5.ready_replicas = 4;
    let v = healthy(5);
    let p = plan(&input(5, Some(&s5), Some(&op), Some(&v)));
    assert!(p.operation.is_some(), "one pod not ready yet");
    let s5 = sts(5);
    let mut joining = healthy(5);
    joining.members[4].state = "joining".into();
    let p = plan(&input(5, Some(&s5), Some(&op), Some(&joining)));
    assert!(p.operation.is_some(), "still joining");
    let p = plan(&input(5, Some(&s5), Some(&op), Some(&v)));
    assert!(p.operation.is_none());
    assert_eq!(p.events[0].reason, "ScaledUp");
}

#[test]
fn upgrade_lowers_partition_one_pod_at_a_time() {
    let s = sts(3);
    let v = healthy(3);
    let mut i = input(3, Some(&s), None, Some(&v));
    i.template_hash = "h2";
    let p = plan(&i);
    assert_eq!(p.partition, 2);
    let op = p.operation.expect("upgrade op");
    // Pod 2 not yet updated: hold.
    let mut s1 = sts(3);
    s1.updated_replicas = 0;
    let mut i = input(3, Some(&s1), Some(&op), Some(&v));
    i.template_hash = "h2";
    assert_eq!(plan(&i).partition, 2);
    // Pod 2 updated and ready, but a member suspect: hold.
    let mut s2 = sts(3);
    s2.updated_replicas = 1;
    let suspect = view(&[
        ("demo-0", "normal", "up"),
        ("demo-1", "normal", "suspect"),
        ("demo-2", "normal", "up"),
    ]);
    let mut i = input(3, Some(&s2), Some(&op), Some(&suspect));
    i.template_hash = "h2";
    assert_eq!(plan(&i).partition, 2);
    // All healthy: move on to pod 1.
    let mut i = input(3, Some(&s2), Some(&op), Some(&v));
    i.template_hash = "h2";
    let p = plan(&i);
    assert_eq!(p.partition, 1);
    // Last step completes.
    let mut done_op = op.clone();
    done_op.partition = Some(0);
    let mut i = input(3, Some(&s), Some(&done_op), Some(&v));
    i.template_hash = "h2";
    let p = plan(&i);
    assert!(p.operation.is_none());
    assert_eq!(p.rolled_out_hash.as_deref(), Some("h2"));
    assert_eq!(p.partition, 0);
}

#[test]
fn template_change_during_scale_down_is_frozen() {
    let s = sts(5);
    let v = healthy(5);
    let mut i = input(3, Some(&s), None, Some(&v));
    i.rolled_out_hash = Some("old");
    // No op: upgrade starts first (scale waits).
    let p = plan(&i);
    assert_eq!(p.operation.map(|o| o.type_), Some(OperationType::Upgrade));
    // Mid scale-down: partition frozen at replicas.
    let op = Operation {
        type_: OperationType::ScaleDown,
        from_replicas: 5,
        to_replicas: 3,
        node: Some("demo-4".into()),
        ordinal: Some(4),
        partition: None,
        template_hash: None,
        message: String::new(),
        step: None,
    };
    let mut i = input(3, Some(&s), Some(&op), Some(&v));
    i.rolled_out_hash = Some("old");
    assert_eq!(plan(&i).partition, 5);
}

#[test]
fn quorum_check_assumes_worst_case() {
    assert!(every_range_at_quorum(&healthy(5), 3));
    let one_down = view(&[
        ("a", "normal", "up"),
        ("b", "normal", "down"),
        ("c", "normal", "up"),
    ]);
    assert!(every_range_at_quorum(&one_down, 3));
    let two_down = view(&[
        ("a", "normal", "down"),
        ("b", "normal", "down"),
        ("c", "normal", "up"),
        ("d", "left", "down"),
    ]);
    assert!(!every_range_at_quorum(&two_down, 3));
    assert!(every_range_at_quorum(&two_down, 5), "rf=5 tolerates two");
}

fn demo3_scale_down() -> Operation {
    Operation {
        type_: OperationType::ScaleDown,
        from_replicas: 4,
        to_replicas: 3,
        node: Some("demo-3".into()),
        ordinal: Some(3),
        partition: None,
        template_hash: None,
        message: String::new(),
        step: None,
    }
}

#[test]
fn only_the_target_itself_saying_left_lowers_replicas() {
    let op = demo3_scale_down();
    let s = sts(4);
    // demo-0 answers (demo-3 does not) and no longer lists demo-3: its
    // table may be stale or cut off; no proof that demo-3 handed its data on.
    let v = healthy(3);
    let p = plan(&input(3, Some(&s), Some(&op), Some(&v)));
    assert_eq!((p.replicas, p.delete_pvc), (4, None));
    let op2 = p.operation.expect("still scaling down");
    assert!(
        op2.message.contains("waiting for demo-3 to report left"),
        "{}",
        op2.message
    );
    assert_eq!(op2.step.map(|c| c.name).as_deref(), Some("confirm"));
    // A peer's row saying left is no proof either.
    let mut peer = healthy(4);
    peer.members[3].state = STATE_LEFT.into();
    let p = plan(&input(3, Some(&s), Some(&op), Some(&peer)));
    assert_eq!((p.replicas, p.delete_pvc), (4, None));
    // demo-3's own answer is.
    peer.node_id = "demo-3".into();
    peer.state = STATE_LEFT.into();
    let p = plan(&input(3, Some(&s), Some(&op), Some(&peer)));
    assert_eq!((p.replicas, p.delete_pvc), (3, Some(3)));
    assert!(p.operation.is_none());
}

#[test]
fn a_scale_down_step_without_progress_is_reported_once_and_still_waited_for() {
    let op = demo3_scale_down();
    let s = sts(4);
    let mut own = healthy(4);
    own.node_id = "demo-3".into();
    own.state = STATE_LEAVING.into();
    own.operation_progress = 0.25;
    let at = |secs: i64| Timestamp::from_second(secs).expect("time");
    let pass = |op: &Operation, own: &NodeStatus, now| {
        let mut i = input(3, Some(&s), Some(op), Some(own));
        i.now = now;
        plan(&i)
    };
    let p = pass(&op, &own, at(1000));
    let op = p.operation.expect("leaving");
    let clock = op.step.clone().expect("clock started");
    assert_eq!(
        (clock.name.as_str(), clock.progress_permille),
        ("leave", 250)
    );
    assert!(p.stalled.is_none());
    // Progress restarts the clock.
    own.operation_progress = 0.5;
    let p = pass(&op, &own, at(1000 + 14 * 60));
    assert!(p.stalled.is_none());
    let op = p.operation.expect("leaving");
    assert_eq!(
        op.step.as_ref().map(|c| c.since.clone()),
        Some(at(1000 + 14 * 60).to_string())
    );
    // Fifteen minutes without progress: Degraded and one Warning event.
    let p = pass(&op, &own, at(1000 + 29 * 60));
    let why = p.stalled.clone().expect("stalled");
    assert!(why.contains("'leave'") && why.contains("15 min"), "{why}");
    assert_eq!(
        p.events
            .iter()
            .filter(|e| e.warning && e.reason == "ScaleDownStalled")
            .count(),
        1
    );
    assert_eq!(p.replicas, 4, "still waiting, nothing lowered");
    let op = p.operation.expect("still scaling down");
    let p = pass(&op, &own, at(1000 + 40 * 60));
    assert!(p.stalled.is_some());
    assert!(
        p.events.iter().all(|e| e.reason != "ScaleDownStalled"),
        "reported once"
    );
    // The target moves on: the stall clears.
    own.operation_progress = 0.9;
    let p = pass(p.operation.as_ref().expect("op"), &own, at(1000 + 41 * 60));
    assert!(p.stalled.is_none());
}

#[test]
fn scale_down_trusts_the_targets_own_state() {
    let op = Operation {
        type_: OperationType::ScaleDown,
        from_replicas: 5,
        to_replicas: 4,
        node: Some("demo-4".into()),
        ordinal: Some(4),
        partition: None,
        template_hash: None,
        message: String::new(),
        step: None,
    };
    let s = sts(5);
    // The target answers itself: its member row still says leaving (not yet
    // refreshed), but its own state is left. That is the direct signal.
    let mut own = healthy(5);
    own.node_id = "demo-4".into();
    own.members[4].state = STATE_LEAVING.into();
    own.state = STATE_LEFT.into();
    let p = plan(&input(4, Some(&s), Some(&op), Some(&own)));
    assert_eq!(p.replicas, 4);
    assert_eq!(p.operation, None);
    assert_eq!(p.decommission, None);
    // Own state leaving: wait, and never ask again.
    own.state = STATE_LEAVING.into();
    let p = plan(&input(4, Some(&s), Some(&op), Some(&own)));
    assert_eq!((p.replicas, p.decommission.clone()), (5, None));
    assert!(p.operation.is_some());
    // An older node without the field: its member row decides.
    own.state = String::new();
    own.members[4].state = STATE_LEFT.into();
    let p = plan(&input(4, Some(&s), Some(&op), Some(&own)));
    assert_eq!(p.replicas, 4);
}

#[test]
fn scale_up_waits_for_the_new_nodes_own_state() {
    let op = Operation {
        type_: OperationType::ScaleUp,
        from_replicas: 4,
        to_replicas: 5,
        node: None,
        ordinal: None,
        partition: None,
        template_hash: None,
        message: String::new(),
        step: None,
    };
    let s = sts(5);
    // The joining node answers: every row (its own included, not yet
    // refreshed) says normal and up, but it is still streaming.
    let mut own = healthy(5);
    own.node_id = "demo-4".into();
    own.state = "joining".into();
    let p = plan(&input(5, Some(&s), Some(&op), Some(&own)));
    assert!(p.operation.is_some(), "still joining: {p:?}");
    own.state = STATE_NORMAL.into();
    let p = plan(&input(5, Some(&s), Some(&op), Some(&own)));
    assert_eq!(p.operation, None);
}

#[test]
fn a_step_clock_ahead_of_this_operator_is_no_stall() {
    // Another operator replica whose clock runs ahead recorded the step.
    let mut op = demo3_scale_down();
    op.step = Some(crate::crd::StepClock {
        name: "confirm".into(),
        progress_permille: 0,
        since: Timestamp::from_second(10_000_000)
            .expect("time")
            .to_string(),
        stall_reported: false,
    });
    let s = sts(4);
    let v = healthy(3);
    let p = plan(&input(3, Some(&s), Some(&op), Some(&v)));
    assert!(p.stalled.is_none(), "{:?}", p.stalled);
}
