//! The TinyKVCluster controller.
//!
//! One pass: read the cluster secret (creating the cluster's own Secret
//! the first time), read the StatefulSet (and from it whether its pods are
//! being moved onto the secret: [`crate::builders::auth_mode`]), ask the
//! nodes for their view of the ring, [`plan`](crate::plan::plan) the step,
//! server-side apply every
//! child object with one field manager (deleting the NetworkPolicy it made
//! once `spec.networkPolicy` is disabled), run the node-side step
//! (decommission, signed with the cluster secret) or delete a PVC, publish
//! events, and patch the status when it changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use tracing::{info, warn};

use crate::builders::{
    self, auth_mode, auth_transition, build_client_service, build_headless_service,
    build_network_policy, build_pdb, build_statefulset_with_auth, AuthMode, FIELD_MANAGER,
    TEMPLATE_HASH_ANNOTATION,
};
use crate::crd::TinyKVCluster;
use crate::metrics::Metrics;
use crate::node_admin::{NodeAdmin, NodeCreds};
use crate::plan::{plan, ObservedStatefulSet, Plan, PlanInput, REASON_BELOW_RF};
use crate::status::{compute_status, condition, CONDITION_DEGRADED};
use crate::{Error, Result};

mod cleanup;
mod controller;
mod events;
mod refusal;
mod secret;
mod tls;
mod view;

use cleanup::{delete_data_claim, remove_network_policy, ClaimOutcome};
pub use controller::run;
use events::{auth_event, patch_status, publish, publish_all};
pub use events::{REASON_AUTH_ENFORCING, REASON_AUTH_PERMISSIVE};
pub use refusal::{REASON_APPLY_REJECTED, REASON_INVALID_SPEC};
pub use secret::{signer_from_secret, REASON_SECRET_CREATED, REASON_SECRET_UNUSABLE};
use tls::ensure_tls;
pub use tls::{REASON_TLS_CA_CREATED, REASON_TLS_ISSUED, REASON_TLS_PENDING};
use view::fetch_view;

/// How soon a cluster waiting for cert-manager's certificates is looked at again.
const TLS_PENDING_REQUEUE: Duration = Duration::from_secs(10);

/// Event reason when a scaled-away node's claim is kept because it does
/// not carry the cluster's labels.
pub const REASON_CLAIM_KEPT: &str = "DataVolumeKept";

/// Maps (namespace, cluster, pod, port) to the address the operator dials.
pub type AddressFn = Arc<dyn Fn(&str, &str, &str, i32) -> String + Send + Sync>;

/// Maps a pod name to the id its node goes by in the ring. In Kubernetes the
/// two are the same (`--node-id=$(POD_NAME)`); tests that run nodes with
/// other ids (`node1`, ...) map them here.
pub type NodeIdFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Longest error backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// First error backoff.
const BASE_BACKOFF: Duration = Duration::from_secs(2);

/// Shared state of the reconciler.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event publisher.
    pub recorder: Recorder,
    /// Node admin RPCs.
    pub node_admin: Arc<dyn NodeAdmin>,
    /// How pods are addressed; `None`: the headless-Service DNS name in the
    /// cluster's `spec.clusterDomain` ([`builders::pod_address`]).
    pub address: Option<AddressFn>,
    /// Node id of a pod; the default is the pod name.
    pub node_id: NodeIdFn,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context dialling pods through their headless-Service DNS names.
    pub fn new(client: Client, node_admin: Arc<dyn NodeAdmin>, metrics: Arc<Metrics>) -> Self {
        let recorder = Recorder::new(client.clone(), FIELD_MANAGER.into());
        Self {
            client,
            recorder,
            node_admin,
            address: None,
            node_id: Arc::new(str::to_string),
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Name the operator's pod (`instance`, from `POD_NAME`) as the
    /// reporter of its events, so `kubectl describe` shows which replica
    /// acted when several run.
    pub fn with_reporting_instance(mut self, instance: Option<String>) -> Self {
        self.recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_string(),
                instance,
            },
        );
        self
    }

    /// Replace the address function (tests point it at 127.0.0.1 ports).
    pub fn with_address(mut self, address: AddressFn) -> Self {
        self.address = Some(address);
        self
    }

    /// The address the operator dials for `pod` of `cluster` in `ns`.
    pub fn pod_address(&self, cluster: &TinyKVCluster, ns: &str, pod: &str) -> String {
        match &self.address {
            Some(f) => f(ns, &cluster.name_any(), pod, cluster.spec.service.port),
            None => builders::pod_address(cluster, ns, pod),
        }
    }

    /// Replace the pod-name-to-node-id mapping (tests whose nodes have
    /// other ids than the pod names).
    pub fn with_node_ids(mut self, node_id: NodeIdFn) -> Self {
        self.node_id = node_id;
        self
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn object_key(cluster: &TinyKVCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

fn observe(sts: &StatefulSet) -> ObservedStatefulSet {
    let status = sts.status.clone().unwrap_or_default();
    let generation = sts.metadata.generation.unwrap_or(0);
    ObservedStatefulSet {
        replicas: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: status.ready_replicas.unwrap_or(0),
        updated_replicas: status.updated_replicas.unwrap_or(0),
        settled: status.observed_generation.unwrap_or(0) >= generation,
    }
}

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.name"))?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(obj))
        .await
        .map_err(|e| refusal::apply_error(&kind_of(obj), &name, e))?;
    Ok(())
}

/// The `kind` an object serialises with (only on the error path).
fn kind_of<K: Serialize>(obj: &K) -> String {
    serde_json::to_value(obj)
        .ok()
        .and_then(|v| v.get("kind")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "object".to_string())
}

/// Reconcile one TinyKVCluster. A refused spec (see [`refusal`]) also
/// becomes a `Degraded` condition and a Warning event.
pub async fn reconcile(cluster: Arc<TinyKVCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let result = reconcile_pass(&cluster, &ctx).await;
    if let Some((reason, message)) = result.as_ref().err().and_then(refusal::refusal) {
        if let Err(e) = refusal::report(&cluster, &ctx, reason, message).await {
            warn!(error = %e, "could not report a refused spec");
        }
    }
    result
}

/// One pass over `cluster`.
async fn reconcile_pass(cluster: &TinyKVCluster, ctx: &Context) -> Result<Action> {
    let ns = builders::namespace(cluster)?;
    let name = cluster.name_any();
    let oref = cluster.object_ref(&());

    if cluster.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector removes them.
        // Applying now would only fight it.
        publish(
            ctx,
            &oref,
            false,
            "Deleting",
            "Delete",
            format!("{name} is being deleted; children are garbage-collected"),
        )
        .await?;
        return Ok(Action::await_change());
    }

    // An unusable spec.tls changes nothing.
    builders::validate_tls(cluster)?;
    // The pods mount the Secret: it exists before the StatefulSet does.
    let signer = secret::signer(cluster, ctx, &ns, &oref).await?;

    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = sts_api.get_opt(&name).await?;
    let observed = existing.as_ref().map(observe);
    let status = cluster.status.clone().unwrap_or_default();
    // Pods that ran without a secret are moved onto one in two rollouts.
    let auth = auth_mode(
        cluster,
        existing.as_ref(),
        status.rolled_out_template_hash.as_deref(),
    );
    // The template hash does not depend on replicas or partition.
    let template_hash = build_statefulset_with_auth(cluster, 1, 0, auth)?
        .metadata
        .annotations
        .and_then(|mut a| a.remove(TEMPLATE_HASH_ANNOTATION))
        .ok_or(Error::MissingObjectKey("template hash"))?;
    // Certificates for every pod there is or will be, before the pods.
    let ordinals = cluster
        .spec
        .replicas
        .max(observed.as_ref().map_or(0, |o| o.replicas));
    let tls = ensure_tls(cluster, ctx, &ns, ordinals).await?;
    publish_all(ctx, &oref, &tls.events).await?;
    if !tls.waiting.is_empty() {
        info!(waiting = ?tls.waiting, "waiting for cert-manager");
        return Ok(Action::requeue(TLS_PENDING_REQUEUE));
    }
    let creds = NodeCreds {
        signer: Some(signer),
        tls: tls.client,
        token: tls.token,
    };
    let view = match &observed {
        Some(o) => fetch_view(cluster, ctx, &ns, o.replicas, &creds).await,
        None => None,
    };
    let already_refused = condition(&status, CONDITION_DEGRADED)
        .is_some_and(|c| c.status == "True" && c.reason == REASON_BELOW_RF);

    let now = Timestamp::now();
    let mut step = plan(&PlanInput {
        cluster: &name,
        desired_replicas: cluster.spec.replicas,
        replication_factor: cluster.spec.replication_factor,
        template_hash: &template_hash,
        when_scaled: cluster.spec.storage.when_scaled,
        ephemeral: cluster.spec.storage.ephemeral,
        operation: status.operation.as_ref(),
        rolled_out_hash: status.rolled_out_template_hash.as_deref(),
        already_refused,
        statefulset: observed.as_ref(),
        view: view.as_ref(),
        now,
    });

    if let Some(t) = auth_transition(cluster, existing.as_ref(), auth) {
        step.events.insert(0, auth_event(t));
    }

    apply_children(cluster, ctx, &ns, &step, auth).await?;
    node_step(cluster, ctx, &ns, &step, &creds).await?;
    publish_all(ctx, &oref, &step.events).await?;

    let now = Time(now);
    let new_status = compute_status(cluster, &step, observed.as_ref(), view.as_ref(), &now);
    if cluster.status.as_ref() != Some(&new_status) {
        patch_status(ctx, &ns, &name, &new_status).await?;
    }
    ctx.failures().remove(&object_key(cluster));
    Ok(Action::requeue(step.requeue))
}

/// Server-side applies every child object of `cluster` for `step`, the
/// StatefulSet last (after the NetworkPolicy, so new pods start fenced).
async fn apply_children(
    cluster: &TinyKVCluster,
    ctx: &Context,
    ns: &str,
    step: &Plan,
    auth: AuthMode,
) -> Result<()> {
    // Built before any write: an invalid spec.networkPolicy changes nothing.
    let network_policy = build_network_policy(cluster)?;
    let svc_api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    apply(&svc_api, &build_headless_service(cluster)?).await?;
    apply(&svc_api, &build_client_service(cluster)?).await?;
    let pdb_api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), ns);
    apply(&pdb_api, &build_pdb(cluster)?).await?;
    // Before the StatefulSet, so new pods start fenced.
    let np_api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), ns);
    match network_policy {
        Some(np) => apply(&np_api, &np).await?,
        None => remove_network_policy(cluster, &np_api).await?,
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    apply(
        &sts_api,
        &build_statefulset_with_auth(cluster, step.replicas, step.partition, auth)?,
    )
    .await
}

/// The node-side part of `step`: a decommission, or deleting the data
/// claim of a node that left (kept, with an event, when not ours).
async fn node_step(
    cluster: &TinyKVCluster,
    ctx: &Context,
    ns: &str,
    step: &Plan,
    creds: &NodeCreds,
) -> Result<()> {
    if let Some(node) = &step.decommission {
        let addr = ctx.pod_address(cluster, ns, node);
        let node_id = (ctx.node_id)(node);
        info!(%node, %node_id, %addr, "decommissioning node");
        let progress = ctx
            .node_admin
            .decommission(&addr, &node_id, creds)
            .await
            .inspect_err(|_| {
                ctx.metrics.node_call_failed();
            })?;
        info!(%node, state = %progress.state, "decommission accepted");
    }
    if let Some(ordinal) = step.delete_pvc {
        let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
        if delete_data_claim(cluster, &pvc_api, ordinal).await? == ClaimOutcome::NotOurs {
            let pvc = builders::pvc_name(&cluster.name_any(), ordinal);
            publish(
                ctx,
                &cluster.object_ref(&()),
                true,
                REASON_CLAIM_KEPT,
                "ScaleDown",
                format!("kept PersistentVolumeClaim {pvc}: it lacks this cluster's labels"),
            )
            .await?;
        }
    }
    Ok(())
}

/// Backoff after `failures` consecutive failures: 2s, 4s, 8s, ... capped at 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BASE_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
}

/// On error: count it, log it, requeue with exponential backoff.
pub fn error_policy(cluster: Arc<TinyKVCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.metric_label());
    let n = {
        let mut map = ctx.failures();
        let n = map.entry(object_key(&cluster)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(n);
    warn!(cluster = %object_key(&cluster), %error, failures = n, ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
#[path = "reconciler_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "reconciler_refusal_tests.rs"]
mod refusal_tests;
