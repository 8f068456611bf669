//! A spec that cannot be carried out: the operator's own checks refuse it
//! ([`Error::InvalidSpec`]), or the API server refuses an object built from
//! it ([`Error::ApplyRejected`], e.g. a change to a StatefulSet field
//! Kubernetes forbids changing). Either way the same pass would fail again
//! until the spec changes, so the user must see it where they look: a
//! `Degraded` condition carrying the message and a Warning event, not
//! only a line in the operator's log.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::{patch_status, publish, Context};
use crate::crd::TinyKVCluster;
use crate::status::refused_status;
use crate::{Error, Result};

/// Condition reason and event reason: the API server refused an object.
pub const REASON_APPLY_REJECTED: &str = "ApplyRejected";
/// Condition reason and event reason: the operator refused the spec.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// HTTP statuses with which the API server refuses an object for what it
/// is (bad request, invalid), as opposed to a conflict, a throttle or an
/// outage, which a retry may get past. Not 403: that is mostly the
/// operator's own RBAC, not the user's spec, and stays a Kube error.
const REFUSALS: [u16; 2] = [400, 422];

/// The error for a failed apply of `kind` `name`: [`Error::ApplyRejected`]
/// with the API server's message when it refused the object itself.
pub(super) fn apply_error(kind: &str, name: &str, e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(status) if REFUSALS.contains(&status.code) => Error::ApplyRejected {
            object: format!("{kind} {name}"),
            message: status.message.clone(),
        },
        _ => Error::Kube(e),
    }
}

/// The condition reason and message for `error`, when it is a refusal.
pub(super) fn refusal(error: &Error) -> Option<(&'static str, String)> {
    match error {
        Error::ApplyRejected { object, message } => {
            Some((REASON_APPLY_REJECTED, format!("{object}: {message}")))
        }
        Error::InvalidSpec(why) => Some((REASON_INVALID_SPEC, why.clone())),
        _ => None,
    }
}

/// Publishes a Warning event and sets the `Degraded` condition for a
/// refused spec. The caller still returns the error (backoff, metrics).
pub(super) async fn report(
    cluster: &TinyKVCluster,
    ctx: &Context,
    reason: &'static str,
    message: String,
) -> Result<()> {
    let ns = cluster
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let oref = cluster.object_ref(&());
    // The condition first: it is what lasts; an event that cannot be
    // published must not keep it from being written.
    let now = Time(Timestamp::now());
    let status = refused_status(cluster, reason, message.clone(), &now);
    if cluster.status.as_ref() != Some(&status) {
        patch_status(ctx, &ns, &cluster.name_any(), &status).await?;
    }
    publish(ctx, &oref, true, reason, "Reconcile", message).await
}
