//! What the reconciler tells the user: Kubernetes events about the
//! cluster, and the status subresource.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::Resource;

use super::Context;
use crate::builders::{AuthTransition, FIELD_MANAGER};
use crate::crd::{TinyKVCluster, TinyKVClusterStatus};
use crate::plan::PlannedEvent;
use crate::Result;

/// Event reason when pods without a cluster secret start rolling onto one
/// with `TINYKV_AUTH_PERMISSIVE=true`.
pub const REASON_AUTH_PERMISSIVE: &str = "AuthUpgradePermissive";
/// Event reason when that rollout finished and the one dropping the
/// permissive mode starts.
pub const REASON_AUTH_ENFORCING: &str = "AuthUpgradeEnforcing";

/// The event announcing an authentication transition.
pub(super) fn auth_event(t: AuthTransition) -> PlannedEvent {
    let (reason, note) = match t {
        AuthTransition::Started => (
            REASON_AUTH_PERMISSIVE,
            "pods ran without a cluster secret: rolling the secret out with \
             TINYKV_AUTH_PERMISSIVE=true (unsigned calls of the old pods accepted), \
             then again without it",
        ),
        AuthTransition::Enforcing => (
            REASON_AUTH_ENFORCING,
            "every pod holds the cluster secret: rolling out without \
             TINYKV_AUTH_PERMISSIVE (unsigned calls refused from now on)",
        ),
    };
    PlannedEvent {
        warning: false,
        reason,
        action: "Upgrade",
        note: note.to_string(),
    }
}

pub(super) async fn patch_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &TinyKVClusterStatus,
) -> Result<()> {
    let api: Api<TinyKVCluster> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": TinyKVCluster::api_version(&()),
        "kind": TinyKVCluster::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &params, &Patch::Apply(&body))
        .await?;
    Ok(())
}

/// Publishes every event a plan or the TLS step asked for, in order.
pub(super) async fn publish_all(
    ctx: &Context,
    oref: &ObjectReference,
    events: &[PlannedEvent],
) -> Result<()> {
    for ev in events {
        publish(ctx, oref, ev.warning, ev.reason, ev.action, ev.note.clone()).await?;
    }
    Ok(())
}

pub(super) async fn publish(
    ctx: &Context,
    oref: &ObjectReference,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) -> Result<()> {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    ctx.recorder.publish(&event, oref).await?;
    Ok(())
}
