use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSetStatus;

use super::*;
use crate::builders::test_support::{cluster, without_secret};
use crate::builders::{build_statefulset, build_statefulset_with_auth, CLUSTER_SECRET_VOLUME};
use crate::crd::TinyKVClusterSpec;

fn demo() -> TinyKVCluster {
    cluster(TinyKVClusterSpec::default())
}

fn hash_of(sts: &StatefulSet) -> String {
    sts.metadata.annotations.as_ref().expect("annotations")[TEMPLATE_HASH_ANNOTATION].clone()
}

/// `sts` as the API server returns it: generation 2, `updated` of its
/// replicas on the update revision, `ready` ready.
fn observed(mut sts: StatefulSet, updated: i32, ready: i32) -> StatefulSet {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    sts.metadata.generation = Some(2);
    sts.status = Some(StatefulSetStatus {
        replicas,
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        observed_generation: Some(2),
        current_revision: Some(if updated >= replicas { "r2" } else { "r1" }.into()),
        update_revision: Some("r2".into()),
        ..StatefulSetStatus::default()
    });
    sts
}

fn env_of(sts: &StatefulSet) -> BTreeMap<String, Option<String>> {
    node_env(sts)
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

#[test]
fn the_permissive_template_adds_only_the_variable() {
    let c = demo();
    let strict = build_statefulset(&c, 3, 0).expect("sts");
    let open = build_statefulset_with_auth(&c, 3, 0, AuthMode::Permissive).expect("sts");
    assert!(template_has_secret(&strict) && template_has_secret(&open));
    assert!(!template_is_permissive(&strict));
    assert!(template_is_permissive(&open));
    let (mut a, b) = (env_of(&strict), env_of(&open));
    assert_eq!(b[AUTH_PERMISSIVE_ENV].as_deref(), Some("true"));
    a.insert(AUTH_PERMISSIVE_ENV.into(), Some("true".into()));
    assert_eq!(a, b, "the secret stays; nothing else changes");
    // Two templates, two rollouts.
    assert_ne!(hash_of(&strict), hash_of(&open));
}

#[test]
fn pods_without_a_secret_get_the_permissive_template() {
    let c = demo();
    let legacy = observed(
        without_secret(build_statefulset(&c, 3, 0).expect("sts")),
        3,
        3,
    );
    assert!(!template_has_secret(&legacy));
    let vols = legacy.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    assert!(vols
        .and_then(|p| p.volumes.as_ref())
        .is_none_or(|v| v.iter().all(|v| v.name != CLUSTER_SECRET_VOLUME)));
    // Whatever was recorded as rolled out.
    for recorded in [None, Some(hash_of(&legacy))] {
        assert_eq!(
            auth_mode(&c, Some(&legacy), recorded.as_deref()),
            AuthMode::Permissive
        );
    }
    assert_eq!(
        auth_transition(&c, Some(&legacy), AuthMode::Permissive),
        Some(AuthTransition::Started)
    );
    // A new cluster, or one whose pods have the secret: enforced at once.
    assert_eq!(auth_mode(&c, None, None), AuthMode::Enforced);
    let current = observed(build_statefulset(&c, 3, 0).expect("sts"), 3, 3);
    assert_eq!(auth_mode(&c, Some(&current), None), AuthMode::Enforced);
    assert_eq!(
        auth_transition(&c, Some(&current), AuthMode::Enforced),
        None
    );
    assert_eq!(auth_transition(&c, None, AuthMode::Enforced), None);
}

#[test]
fn permissive_stays_until_every_pod_is_updated_ready_and_recorded() {
    let c = demo();
    let open = build_statefulset_with_auth(&c, 3, 0, AuthMode::Permissive).expect("sts");
    let h = hash_of(&open);
    let done = observed(open.clone(), 3, 3);
    assert!(rollout_finished(&done, Some(&h)));
    assert_eq!(auth_mode(&c, Some(&done), Some(&h)), AuthMode::Enforced);
    assert_eq!(
        auth_transition(&c, Some(&done), AuthMode::Enforced),
        Some(AuthTransition::Enforcing)
    );
    let not_yet = [
        (
            "one pod still old",
            observed(open.clone(), 2, 3),
            Some(h.as_str()),
        ),
        (
            "one pod not ready",
            observed(open.clone(), 3, 2),
            Some(h.as_str()),
        ),
        ("not recorded as rolled out", done.clone(), None),
        ("another template recorded", done.clone(), Some("0123")),
        (
            "partition holds pods back",
            {
                let mut s =
                    build_statefulset_with_auth(&c, 3, 1, AuthMode::Permissive).expect("sts");
                s = observed(s, 3, 3);
                s
            },
            Some(h.as_str()),
        ),
        (
            "spec not yet observed",
            {
                let mut s = done.clone();
                s.metadata.generation = Some(3);
                s
            },
            Some(h.as_str()),
        ),
        (
            "two revisions",
            {
                let mut s = done.clone();
                if let Some(st) = s.status.as_mut() {
                    st.current_revision = Some("r1".into());
                }
                s
            },
            Some(h.as_str()),
        ),
    ];
    for (why, sts, recorded) in not_yet {
        assert!(!rollout_finished(&sts, recorded), "{why}");
        assert_eq!(
            auth_mode(&c, Some(&sts), recorded),
            AuthMode::Permissive,
            "{why}"
        );
    }
    // After the second rollout the template is enforced: it stays so.
    let strict = observed(build_statefulset(&c, 3, 2).expect("sts"), 1, 3);
    assert_eq!(auth_mode(&c, Some(&strict), None), AuthMode::Enforced);
}

#[test]
fn a_permissive_variable_of_the_user_is_left_to_the_user() {
    let mut c = demo();
    c.spec.env.push(EnvVar {
        name: AUTH_PERMISSIVE_ENV.into(),
        value: Some("true".into()),
        ..EnvVar::default()
    });
    let legacy = observed(
        without_secret(build_statefulset(&c, 3, 0).expect("sts")),
        3,
        3,
    );
    assert_eq!(auth_mode(&c, Some(&legacy), None), AuthMode::Enforced);
    assert_eq!(auth_transition(&c, Some(&legacy), AuthMode::Enforced), None);
    let sts = observed(build_statefulset(&c, 3, 0).expect("sts"), 3, 3);
    assert!(template_is_permissive(&sts), "the user's variable is kept");
    assert_eq!(auth_transition(&c, Some(&sts), AuthMode::Enforced), None);
    let vars = node_env(&sts)
        .iter()
        .filter(|e| e.name == AUTH_PERMISSIVE_ENV);
    assert_eq!(vars.count(), 1, "never twice");
}

#[test]
fn a_statefulset_without_a_node_container_has_no_secret() {
    let empty = StatefulSet::default();
    assert!(!template_has_secret(&empty));
    assert!(!template_is_permissive(&empty));
    assert!(!rollout_finished(&empty, Some("x")));
}
