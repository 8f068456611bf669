//! Deletions: the only objects the operator deletes itself (everything
//! else goes with the cluster through owner references). Each is checked
//! to be this cluster's before it goes, and deleted with a uid
//! precondition, so an object recreated meanwhile survives.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::ResourceExt;
use tracing::{info, warn};

use crate::builders::{claim_belongs_to, network_policy_name, pvc_name};
use crate::crd::TinyKVCluster;
use crate::Result;

/// `spec.networkPolicy` is disabled: delete the cluster's NetworkPolicy if
/// this cluster controls it (one the operator made while it was enabled).
/// A same-named policy of anyone else is left alone, and the delete is
/// conditional on the uid read, so a policy recreated meanwhile survives.
/// Costs one GET per pass while disabled.
pub(super) async fn remove_network_policy(
    cluster: &TinyKVCluster,
    api: &Api<NetworkPolicy>,
) -> Result<()> {
    let name = network_policy_name(&cluster.name_any());
    let Some(found) = api.get_opt(&name).await? else {
        return Ok(());
    };
    let ours = cluster.metadata.uid.as_ref().is_some_and(|uid| {
        found
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && &o.uid == uid)
    });
    if !ours {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: found.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&name, &params).await {
        Ok(_) => info!(networkpolicy = %name, "deleted the disabled NetworkPolicy"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// What became of a scaled-away node's data claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ClaimOutcome {
    /// Deleted (or deleted meanwhile by someone else).
    Deleted,
    /// No such claim, or it is being deleted already.
    Absent,
    /// A claim of that name exists but lacks this cluster's labels: kept.
    NotOurs,
}

/// Delete the data claim of the node `ordinal` of `cluster`, only if it
/// carries the cluster's selector labels (claims made from the
/// StatefulSet's volumeClaimTemplate do). The name alone proves nothing:
/// anyone who can create claims in the namespace can make one called
/// `data-<cluster>-<n>`, and the operator must never delete data it did
/// not make. Deleted with a uid precondition on the claim checked.
pub(super) async fn delete_data_claim(
    cluster: &TinyKVCluster,
    api: &Api<PersistentVolumeClaim>,
    ordinal: i32,
) -> Result<ClaimOutcome> {
    let name = pvc_name(&cluster.name_any(), ordinal);
    let Some(found) = api.get_opt(&name).await? else {
        return Ok(ClaimOutcome::Absent);
    };
    if found.metadata.deletion_timestamp.is_some() {
        return Ok(ClaimOutcome::Absent);
    }
    if !claim_belongs_to(&cluster.name_any(), &found) {
        warn!(pvc = %name, "not deleting a claim without this cluster's labels");
        return Ok(ClaimOutcome::NotOurs);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: found.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            info!(pvc = %name, "deleted data volume claim");
            Ok(ClaimOutcome::Deleted)
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(ClaimOutcome::Absent),
        Err(e) => Err(e.into()),
    }
}
