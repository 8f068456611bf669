//! The cluster secret as the reconciler handles it: the Secret the nodes
//! mount (created once when the spec names none) and the signer of the
//! operator's own admin calls.

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, PostParams};
use tinykv_auth::{generate_secret, Secrets, Signer};
use tracing::info;

use super::events::publish;
use super::Context;
use crate::builders::{
    build_cluster_secret, cluster_secret_ref, operator_creates_secret, FIELD_MANAGER,
    OPERATOR_CALLER,
};
use crate::crd::TinyKVCluster;
use crate::{Error, Result};

/// Event reason when the operator created a cluster's Secret.
pub const REASON_SECRET_CREATED: &str = "ClusterSecretCreated";
/// Event reason when the cluster's Secret is missing or unusable.
pub const REASON_SECRET_UNUSABLE: &str = "ClusterSecretUnusable";

/// The cluster's Secret: the one `spec.security.clusterSecretRef` names,
/// else the operator's own, created here (with a fresh random secret) when
/// it does not exist yet. An existing Secret is never written, so a
/// rotation the user made in it stays. Returns it and whether it was just
/// created.
pub(super) async fn ensure_cluster_secret(
    cluster: &TinyKVCluster,
    ctx: &Context,
    ns: &str,
) -> Result<(Secret, bool)> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let wanted = cluster_secret_ref(cluster);
    if let Some(found) = api.get_opt(&wanted.name).await? {
        return Ok((found, false));
    }
    if !operator_creates_secret(cluster) {
        return Err(Error::ClusterSecret(format!(
            "Secret {ns}/{} named by spec.security.clusterSecretRef does not exist",
            wanted.name
        )));
    }
    let fresh = build_cluster_secret(cluster, &generate_secret())?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match api.create(&params, &fresh).await {
        Ok(created) => Ok((created, true)),
        // Someone created it between the read and the create: theirs wins.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok((api.get(&wanted.name).await?, false)),
        Err(e) => Err(e.into()),
    }
}

/// The signer of the operator's admin calls to the nodes of `cluster`:
/// the secrets of its Secret, the first one signing (as on the nodes).
pub fn signer_from_secret(cluster: &TinyKVCluster, ns: &str, secret: &Secret) -> Result<Signer> {
    let wanted = cluster_secret_ref(cluster);
    let unusable = |why: String| {
        Error::ClusterSecret(format!(
            "Secret {ns}/{} key {:?}: {why}",
            wanted.name, wanted.key
        ))
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&wanted.key))
        .ok_or_else(|| unusable("no such key".into()))?;
    let text = std::str::from_utf8(&bytes.0).map_err(|_| unusable("not UTF-8 text".into()))?;
    let secrets = Secrets::parse(text).map_err(unusable)?;
    Ok(Signer::new(OPERATOR_CALLER, secrets))
}

/// The signer of the operator's admin calls, from the cluster's Secret
/// (created first when needed). Announces a creation, and an unusable
/// Secret, as events.
pub(super) async fn signer(
    cluster: &TinyKVCluster,
    ctx: &Context,
    ns: &str,
    oref: &ObjectReference,
) -> Result<Signer> {
    match ensure_cluster_secret(cluster, ctx, ns)
        .await
        .and_then(|(secret, created)| Ok((signer_from_secret(cluster, ns, &secret)?, created)))
    {
        Ok((signer, created)) => {
            if created {
                let secret = cluster_secret_ref(cluster).name;
                info!(%secret, "created the cluster secret");
                publish(
                    ctx,
                    oref,
                    false,
                    REASON_SECRET_CREATED,
                    "Create",
                    format!("created Secret {secret} holding the cluster secret"),
                )
                .await?;
            }
            Ok(signer)
        }
        Err(e @ Error::ClusterSecret(_)) => {
            publish(
                ctx,
                oref,
                true,
                REASON_SECRET_UNUSABLE,
                "Reconcile",
                e.to_string(),
            )
            .await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}
