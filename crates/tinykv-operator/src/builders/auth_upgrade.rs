//! Moving a cluster whose pods ran without a cluster secret onto one,
//! without refusing a single call on the way.
//!
//! Operators before the cluster secret made pods with none; their nodes
//! send unsigned peer calls. A pod on the new template requires the secret,
//! so while a rollout replaces the old pods one at a time, the new ones
//! would refuse the old ones' gossip, writes and reads. So the operator
//! rolls twice:
//!
//! 1. the pods get the secret **and** `TINYKV_AUTH_PERMISSIVE=true`: they
//!    sign their own calls and accept unsigned ones (counted and logged);
//! 2. once every pod runs that template and is ready (and the operator's
//!    upgrade recorded it rolled out), the variable goes: a second rollout
//!    in which every caller already signs, so nothing is refused.
//!
//! Which step a pass is in is read from the StatefulSet alone (its pod
//! template and status), so an operator restart resumes it. Everything
//! here is pure.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::EnvVar;

use super::secret::CLUSTER_SECRET_ENV;
use super::{CONTAINER_NAME, TEMPLATE_HASH_ANNOTATION};
use crate::crd::TinyKVCluster;

/// The node's variable that accepts unsigned peer and admin calls
/// (counting and logging them) while it signs its own.
pub const AUTH_PERMISSIVE_ENV: &str = "TINYKV_AUTH_PERMISSIVE";

/// How the nodes of a pod template treat calls without a valid proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Refused (`UNAUTHENTICATED`): the normal case.
    #[default]
    Enforced,
    /// Accepted, counted and logged: only while pods without the secret remain.
    Permissive,
}

/// A change of [`AuthMode`] this pass starts, worth an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthTransition {
    /// The pods had no secret: the permissive rollout starts.
    Started,
    /// The permissive rollout finished: the one that drops it starts.
    Enforcing,
}

/// The node container's environment in the StatefulSet's pod template.
fn node_env(sts: &StatefulSet) -> &[EnvVar] {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == CONTAINER_NAME))
        .and_then(|c| c.env.as_deref())
        .unwrap_or_default()
}

/// Whether the StatefulSet's nodes are given a cluster secret (the
/// operator names its file in `TINYKV_CLUSTER_SECRET_FILE`; so does a user
/// who set it in `spec.env`).
pub fn template_has_secret(sts: &StatefulSet) -> bool {
    node_env(sts).iter().any(|e| e.name == CLUSTER_SECRET_ENV)
}

/// Whether the StatefulSet's nodes run with `TINYKV_AUTH_PERMISSIVE=true`.
pub fn template_is_permissive(sts: &StatefulSet) -> bool {
    node_env(sts)
        .iter()
        .any(|e| e.name == AUTH_PERMISSIVE_ENV && e.value.as_deref() == Some("true"))
}

/// Whether the StatefulSet's current template is rolled out: the
/// controller has seen the latest spec, no partition holds pods back,
/// every replica is updated and ready on one revision, and the operator's
/// upgrade recorded this template (`rolled_out_hash`) as rolled out, which
/// it does only once every member is `normal` and `up`.
pub fn rollout_finished(sts: &StatefulSet, rolled_out_hash: Option<&str>) -> bool {
    let Some(spec) = sts.spec.as_ref() else {
        return false;
    };
    let status = sts.status.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let settled = status.observed_generation.unwrap_or(0) >= sts.metadata.generation.unwrap_or(0);
    let one_revision = match (&status.current_revision, &status.update_revision) {
        (Some(current), Some(update)) => current == update,
        _ => true,
    };
    let hash = sts
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION));
    partition == 0
        && settled
        && one_revision
        && status.updated_replicas.unwrap_or(0) >= replicas
        && status.ready_replicas.unwrap_or(0) >= replicas
        && hash.is_some()
        && hash.map(String::as_str) == rolled_out_hash
}

/// Whether `spec.env` sets `TINYKV_AUTH_PERMISSIVE` (the user's value wins
/// in the template, so the operator leaves the mode alone).
fn user_sets_permissive(cluster: &TinyKVCluster) -> bool {
    cluster
        .spec
        .env
        .iter()
        .any(|e| e.name == AUTH_PERMISSIVE_ENV)
}

/// The mode of the template to apply this pass, given the StatefulSet as
/// it is (`existing`) and the recorded rolled-out template hash.
///
/// Permissive when the pods have no secret yet, and while the permissive
/// template is still rolling out; enforced otherwise (a new cluster's pods
/// have the secret from the start). A `TINYKV_AUTH_PERMISSIVE` the user
/// sets in `spec.env` is theirs: the operator then never manages the mode.
pub fn auth_mode(
    cluster: &TinyKVCluster,
    existing: Option<&StatefulSet>,
    rolled_out_hash: Option<&str>,
) -> AuthMode {
    if user_sets_permissive(cluster) {
        return AuthMode::Enforced;
    }
    match existing {
        Some(sts) if !template_has_secret(sts) => AuthMode::Permissive,
        Some(sts) if template_is_permissive(sts) && !rollout_finished(sts, rolled_out_hash) => {
            AuthMode::Permissive
        }
        _ => AuthMode::Enforced,
    }
}

/// The transition applying `mode` over `existing` makes, if any (none
/// when the user manages `TINYKV_AUTH_PERMISSIVE` in `spec.env`).
pub fn auth_transition(
    cluster: &TinyKVCluster,
    existing: Option<&StatefulSet>,
    mode: AuthMode,
) -> Option<AuthTransition> {
    let sts = existing?;
    if user_sets_permissive(cluster) {
        return None;
    }
    match mode {
        AuthMode::Permissive if !template_has_secret(sts) => Some(AuthTransition::Started),
        AuthMode::Enforced if template_is_permissive(sts) => Some(AuthTransition::Enforcing),
        _ => None,
    }
}

#[cfg(test)]
#[path = "auth_upgrade_tests.rs"]
mod tests;
