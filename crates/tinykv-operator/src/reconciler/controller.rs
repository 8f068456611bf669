//! The controller loop: which objects are watched, in which namespaces.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use kube::{Client, Resource};

use super::{error_policy, reconcile, Context};
use crate::builders::FIELD_MANAGER;
use crate::crd::TinyKVCluster;
use crate::scope::WatchScope;

/// Run the controller until `shutdown` resolves. Watches TinyKVClusters and
/// the objects they own, in every namespace or, for a list, one controller
/// per namespace (each watch stays inside what a namespaced Role allows).
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    match scope.namespaces() {
        None => run_one(ctx, None, shutdown).await,
        Some(namespaces) => {
            futures::future::join_all(
                namespaces
                    .iter()
                    .map(|ns| run_one(ctx.clone(), Some(ns.clone()), shutdown.clone())),
            )
            .await;
        }
    }
}

/// One controller, over `namespace` (`None`: every namespace).
async fn run_one(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let selector =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    Controller::new(
        api::<TinyKVCluster>(&client, &namespace),
        watcher::Config::default().any_semantic(),
    )
    .owns(api::<StatefulSet>(&client, &namespace), selector.clone())
    .owns(api::<Service>(&client, &namespace), selector.clone())
    .owns(
        api::<PodDisruptionBudget>(&client, &namespace),
        selector.clone(),
    )
    .owns(api::<NetworkPolicy>(&client, &namespace), selector)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        match res {
            Ok((obj, _)) => tracing::debug!(object = %obj.name, "reconciled"),
            Err(e) => tracing::debug!(error = %e, "reconcile error"),
        }
    })
    .await;
}
