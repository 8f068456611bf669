//! A cluster with no operation recorded: start at most one (an upgrade first,
//! then a scale-down or scale-up), or refuse a scale-down below the
//! replication factor.

use super::scale::{start_scale_down, start_scale_up};
use super::upgrade::start_upgrade;
use super::{event, ObservedStatefulSet, Plan, PlanInput, REASON_BELOW_RF};

/// A pass with no operation in progress.
pub(super) fn at_rest(input: &PlanInput<'_>, sts: &ObservedStatefulSet, mut out: Plan) -> Plan {
    let desired = input.desired();
    let current = sts.replicas;
    out.operation = None;
    if !input.template_current() {
        start_upgrade(input, current, out)
    } else if desired < current && desired < input.replication_factor {
        refuse_below_rf(input, desired, out)
    } else if desired < current {
        start_scale_down(input, current, desired, out)
    } else if desired > current {
        start_scale_up(current, desired, out)
    } else {
        out
    }
}

/// Keep the replicas, flag the refusal, and warn once (not on every pass).
fn refuse_below_rf(input: &PlanInput<'_>, desired: i32, mut out: Plan) -> Plan {
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
    out
}
