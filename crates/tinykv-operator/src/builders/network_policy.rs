//! The optional NetworkPolicy of the node pods (`spec.networkPolicy`).
//!
//! The nodes serve the client, admin and peer gRPC planes on one port, so
//! the policy cannot tell the planes apart by port: the gRPC port admits the
//! cluster's own pods (peer plane), the operator (admin plane) and the
//! configured clients (client plane; the admin and peer calls also need the
//! cluster secret). The metrics port admits only the configured scrapers.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{child_meta, selector_labels};
use crate::crd::TinyKVCluster;
use crate::{Error, Result};

/// Label of the operator's pods (its chart's and manifests' Deployment).
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "tinykv-operator");

/// Name of the cluster's NetworkPolicy (the cluster's own name).
pub fn network_policy_name(cluster: &str) -> String {
    cluster.to_string()
}

/// The operator's pods when the spec names none: pods labelled
/// `app.kubernetes.io/name: tinykv-operator` in any namespace.
pub fn default_operator_peers() -> Vec<NetworkPolicyPeer> {
    vec![NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                OPERATOR_POD_LABEL.0.to_string(),
                OPERATOR_POD_LABEL.1.to_string(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }]
}

fn tcp(port: i32) -> Vec<NetworkPolicyPort> {
    vec![NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }]
}

/// A peer names at least one of podSelector, namespaceSelector, ipBlock (the
/// API server refuses an empty one).
fn check_peers(field: &str, peers: &[NetworkPolicyPeer]) -> Result<()> {
    for (i, p) in peers.iter().enumerate() {
        if p.pod_selector.is_none() && p.namespace_selector.is_none() && p.ip_block.is_none() {
            return Err(Error::InvalidSpec(format!(
                "spec.networkPolicy.{field}[{i}] names no podSelector, namespaceSelector or ipBlock"
            )));
        }
    }
    Ok(())
}

/// The cluster's NetworkPolicy, or `None` when `spec.networkPolicy.enabled`
/// is false.
///
/// It selects the cluster's node pods and, Ingress only, admits: the
/// cluster's own pods, the operator's pods and every `clientSelectors` peer
/// to the gRPC port (`spec.service.port`); every `metricsSelectors` peer to
/// the metrics port. A list that is empty gives no rule (nobody), never an
/// empty `from` (which would mean everybody).
pub fn build_network_policy(cluster: &TinyKVCluster) -> Result<Option<NetworkPolicy>> {
    let opts = &cluster.spec.network_policy;
    if !opts.enabled {
        return Ok(None);
    }
    let name = cluster.name_any();
    let svc = &cluster.spec.service;
    let operator = opts
        .operator_selectors
        .clone()
        .unwrap_or_else(default_operator_peers);
    check_peers("clientSelectors", &opts.client_selectors)?;
    check_peers("metricsSelectors", &opts.metrics_selectors)?;
    check_peers("operatorSelectors", &operator)?;
    let own_pods = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(&name)),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let mut rules = vec![NetworkPolicyIngressRule {
        from: Some(vec![own_pods]),
        ports: Some(tcp(svc.port)),
    }];
    for peers in [&operator, &opts.client_selectors] {
        if !peers.is_empty() {
            rules.push(NetworkPolicyIngressRule {
                from: Some(peers.clone()),
                ports: Some(tcp(svc.port)),
            });
        }
    }
    if !opts.metrics_selectors.is_empty() {
        rules.push(NetworkPolicyIngressRule {
            from: Some(opts.metrics_selectors.clone()),
            ports: Some(tcp(svc.metrics_port)),
        });
    }
    Ok(Some(NetworkPolicy {
        metadata: child_meta(cluster, network_policy_name(&name))?,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..NetworkPolicySpec::default()
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;
    use crate::crd::{NetworkPolicyOptions, TinyKVClusterSpec};
    use serde_json::{json, Value};

    fn peer(v: Value) -> NetworkPolicyPeer {
        serde_json::from_value(v).expect("peer")
    }

    fn enabled(opts: NetworkPolicyOptions) -> TinyKVCluster {
        let mut spec = TinyKVClusterSpec {
            network_policy: NetworkPolicyOptions {
                enabled: true,
                ..opts
            },
            ..TinyKVClusterSpec::default()
        };
        spec.service.port = 7000;
        spec.service.metrics_port = 7001;
        cluster(spec)
    }

    #[test]
    fn no_policy_when_disabled() {
        let mut spec = TinyKVClusterSpec::default();
        spec.network_policy.client_selectors = vec![peer(json!({"podSelector": {}}))];
        assert!(build_network_policy(&cluster(spec))
            .expect("build")
            .is_none());
    }

    #[test]
    fn default_policy_admits_own_pods_and_operator_to_grpc_only() {
        let np = build_network_policy(&enabled(NetworkPolicyOptions::default()))
            .expect("build")
            .expect("enabled");
        let v = serde_json::to_value(&np).expect("json");
        assert_eq!(v["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(v["kind"], "NetworkPolicy");
        assert_eq!(v["metadata"]["name"], "demo");
        assert_eq!(v["metadata"]["namespace"], "db");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "TinyKVCluster");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "tinykv-operator"
        );
        let own = json!({"matchLabels": {
            "app.kubernetes.io/name": "tinykv", "app.kubernetes.io/instance": "demo"}});
        assert_eq!(v["spec"]["podSelector"], own);
        assert_eq!(v["spec"]["policyTypes"], json!(["Ingress"]));
        let grpc = json!([{"port": 7000, "protocol": "TCP"}]);
        assert_eq!(
            v["spec"]["ingress"],
            json!([
                {"from": [{"podSelector": own}], "ports": grpc},
                {"from": [{"namespaceSelector": {},
                           "podSelector": {"matchLabels": {"app.kubernetes.io/name": "tinykv-operator"}}}],
                 "ports": grpc},
            ])
        );
    }

    #[test]
    fn clients_and_scrapers_get_their_ports() {
        let client = peer(json!({"podSelector": {"matchLabels": {"role": "app"}}}));
        let scraper = peer(json!({"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}));
        let operator = peer(
            json!({"namespaceSelector": {"matchLabels": {"name": "ops"}},
                                   "podSelector": {"matchLabels": {"app": "op"}}}),
        );
        let np = build_network_policy(&enabled(NetworkPolicyOptions {
            client_selectors: vec![client.clone()],
            metrics_selectors: vec![scraper.clone()],
            operator_selectors: Some(vec![operator.clone()]),
            ..NetworkPolicyOptions::default()
        }))
        .expect("build")
        .expect("enabled");
        let rules = np.spec.expect("spec").ingress.expect("ingress");
        assert_eq!(rules.len(), 4);
        let port_of =
            |r: &NetworkPolicyIngressRule| r.ports.as_ref().expect("ports")[0].port.clone();
        assert_eq!(rules[1].from, Some(vec![operator]));
        assert_eq!(port_of(&rules[1]), Some(IntOrString::Int(7000)));
        assert_eq!(rules[2].from, Some(vec![client]));
        assert_eq!(port_of(&rules[2]), Some(IntOrString::Int(7000)));
        assert_eq!(rules[3].from, Some(vec![scraper]));
        assert_eq!(port_of(&rules[3]), Some(IntOrString::Int(7001)));
        assert!(rules
            .iter()
            .all(|r| r.from.as_ref().is_some_and(|f| !f.is_empty())));
    }

    #[test]
    fn empty_operator_list_gives_no_rule_and_empty_peer_is_refused() {
        let np = build_network_policy(&enabled(NetworkPolicyOptions {
            operator_selectors: Some(Vec::new()),
            ..NetworkPolicyOptions::default()
        }))
        .expect("build")
        .expect("enabled");
        assert_eq!(np.spec.expect("spec").ingress.expect("ingress").len(), 1);
        let bad = enabled(NetworkPolicyOptions {
            client_selectors: vec![NetworkPolicyPeer::default()],
            ..NetworkPolicyOptions::default()
        });
        assert!(matches!(
            build_network_policy(&bad),
            Err(Error::InvalidSpec(m)) if m.contains("clientSelectors[0]")
        ));
    }
}
