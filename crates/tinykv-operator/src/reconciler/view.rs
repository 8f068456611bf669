//! The nodes' view of the ring, as the reconciler asks for it: which pods
//! to ask (the one an operation is about first) and the renaming of node
//! ids to pod names the state machine speaks.

use std::collections::HashMap;

use kube::ResourceExt;
use tracing::warn;

use super::Context;
use crate::builders::pod_name;
use crate::crd::{OperationType, TinyKVCluster};
use crate::node_admin::{NodeCreds, NodeStatus};

/// Nodes asked for their view of the ring before giving up on this pass.
const MAX_STATUS_ATTEMPTS: usize = 3;

/// Ask nodes for their view: the node an operation is about first (the
/// scale-down target, or the newest pod of a scale-up, whose own `state`
/// says whether it has left or finished joining), then ordinals upwards.
pub(super) async fn fetch_view(
    cluster: &TinyKVCluster,
    ctx: &Context,
    ns: &str,
    replicas: i32,
    creds: &NodeCreds,
) -> Option<NodeStatus> {
    let name = cluster.name_any();
    let mut candidates: Vec<String> = Vec::new();
    if let Some(op) = cluster.status.as_ref().and_then(|s| s.operation.as_ref()) {
        match op.type_ {
            OperationType::ScaleDown => {
                if let Some(node) = &op.node {
                    candidates.push(node.clone());
                }
            }
            OperationType::ScaleUp if op.to_replicas > op.from_replicas => {
                candidates.push(pod_name(&name, op.to_replicas.max(replicas) - 1));
            }
            _ => {}
        }
    }
    for i in 0..replicas {
        let pod = pod_name(&name, i);
        if !candidates.contains(&pod) {
            candidates.push(pod);
        }
    }
    for pod in candidates.iter().take(MAX_STATUS_ATTEMPTS) {
        let addr = ctx.pod_address(cluster, ns, pod);
        match ctx.node_admin.status(&addr, creds).await {
            Ok(view) => return Some(view_by_pod_names(cluster, ctx, replicas, view)),
            Err(e) => {
                ctx.metrics.node_call_failed();
                warn!(%pod, error = %e, "node status failed");
            }
        }
    }
    None
}

/// Renames the node ids of `view` to pod names through [`Context::node_id`]
/// (the state machine speaks pod names); ids of no known pod stay as they are.
pub(super) fn view_by_pod_names(
    cluster: &TinyKVCluster,
    ctx: &Context,
    replicas: i32,
    mut view: NodeStatus,
) -> NodeStatus {
    let name = cluster.name_any();
    let op = cluster.status.as_ref().and_then(|s| s.operation.as_ref());
    let highest = [
        replicas,
        cluster.spec.replicas,
        op.map_or(0, |o| o.from_replicas),
        op.map_or(0, |o| o.to_replicas),
        op.and_then(|o| o.ordinal).map_or(0, |o| o + 1),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let pods: HashMap<String, String> = (0..highest)
        .map(|i| pod_name(&name, i))
        .map(|pod| ((ctx.node_id)(&pod), pod))
        .filter(|(id, pod)| id != pod)
        .collect();
    if pods.is_empty() {
        return view;
    }
    let rename = |id: &mut String| {
        if let Some(pod) = pods.get(id.as_str()) {
            *id = pod.clone();
        }
    };
    rename(&mut view.node_id);
    for m in &mut view.members {
        rename(&mut m.node_id);
    }
    view
}
