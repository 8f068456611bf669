//! Headless and client Services, and the PodDisruptionBudget.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{child_meta, headless_service_name, selector_labels};
use crate::crd::{quorum, TinyKVCluster};
use crate::Result;

fn ports(cluster: &TinyKVCluster) -> Vec<ServicePort> {
    let svc = &cluster.spec.service;
    vec![
        ServicePort {
            name: Some("grpc".into()),
            port: svc.port,
            target_port: Some(IntOrString::String("grpc".into())),
            protocol: Some("TCP".into()),
            app_protocol: Some("kubernetes.io/h2c".into()),
            ..ServicePort::default()
        },
        ServicePort {
            name: Some("metrics".into()),
            port: svc.metrics_port,
            target_port: Some(IntOrString::String("metrics".into())),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        },
    ]
}

/// Headless Service for `--peers-dns` discovery and stable pod DNS names.
///
/// It publishes not-ready addresses so that a starting node finds its peers
/// before its own readiness probe passes.
pub fn build_headless_service(cluster: &TinyKVCluster) -> Result<Service> {
    let name = cluster.name_any();
    Ok(Service {
        metadata: child_meta(cluster, headless_service_name(&name))?,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&name)),
            ports: Some(ports(cluster)),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// Client Service: load-balances over ready nodes (any node coordinates).
pub fn build_client_service(cluster: &TinyKVCluster) -> Result<Service> {
    let name = cluster.name_any();
    let opts = &cluster.spec.service;
    let mut meta = child_meta(cluster, name.clone())?;
    if !opts.annotations.is_empty() {
        meta.annotations = Some(opts.annotations.clone());
    }
    Ok(Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(opts.type_.as_str().into()),
            selector: Some(selector_labels(&name)),
            ports: Some(ports(cluster)),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// Pods that may be voluntarily disrupted at once while every key range keeps QUORUM.
///
/// A range lives on `rf` nodes and needs `quorum(rf)` of them, so it survives
/// `rf - quorum(rf)` missing replicas. Any set of that many pods may hold
/// replicas of one range, so that is also the most the cluster can lose:
/// rf=3 → 1, rf=5 → 2. With rf of 1 or 2 no replica can be spared, so the
/// budget is 0 and voluntary evictions (node drains) wait for a human.
pub fn pdb_max_unavailable(replication_factor: i32) -> i32 {
    let rf = replication_factor.max(1);
    (rf - quorum(rf)).max(0)
}

/// PodDisruptionBudget that keeps QUORUM available (see [`pdb_max_unavailable`]).
pub fn build_pdb(cluster: &TinyKVCluster) -> Result<PodDisruptionBudget> {
    let name = cluster.name_any();
    Ok(PodDisruptionBudget {
        metadata: child_meta(cluster, name.clone())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(pdb_max_unavailable(
                cluster.spec.replication_factor,
            ))),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;
    use crate::crd::{ServiceType, TinyKVClusterSpec};

    #[test]
    fn headless_service_publishes_not_ready() {
        let svc = build_headless_service(&cluster(TinyKVClusterSpec::default())).expect("svc");
        assert_eq!(svc.metadata.name.as_deref(), Some("demo-headless"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some("db"));
        assert!(svc.metadata.owner_references.is_some());
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports = spec.ports.as_ref().expect("ports");
        assert_eq!(ports[0].port, 50051);
        assert_eq!(ports[1].port, 9090);
        assert_eq!(
            spec.selector
                .as_ref()
                .and_then(|s| s.get("app.kubernetes.io/instance"))
                .map(String::as_str),
            Some("demo")
        );
    }

    #[test]
    fn client_service_defaults_and_overrides() {
        let svc = build_client_service(&cluster(TinyKVClusterSpec::default())).expect("svc");
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(svc.metadata.name.as_deref(), Some("demo"));
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(spec.publish_not_ready_addresses, None);
        assert!(svc.metadata.annotations.is_none());

        let mut s = TinyKVClusterSpec::default();
        s.service.type_ = ServiceType::LoadBalancer;
        s.service.port = 7000;
        s.service.annotations.insert("lb".into(), "internal".into());
        let svc = build_client_service(&cluster(s)).expect("svc");
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.ports.as_ref().map(|p| p[0].port), Some(7000));
        assert_eq!(
            svc.metadata.annotations.as_ref().map(|a| a["lb"].as_str()),
            Some("internal")
        );
    }

    #[test]
    fn pdb_keeps_quorum() {
        assert_eq!(pdb_max_unavailable(1), 0);
        assert_eq!(pdb_max_unavailable(2), 0);
        assert_eq!(pdb_max_unavailable(3), 1);
        assert_eq!(pdb_max_unavailable(4), 1);
        assert_eq!(pdb_max_unavailable(5), 2);
        assert_eq!(pdb_max_unavailable(7), 3);
        for rf in 1..10 {
            // Losing maxUnavailable replicas of one range still leaves a quorum.
            assert!(rf - pdb_max_unavailable(rf) >= quorum(rf));
            // And one more would not.
            assert!(rf - pdb_max_unavailable(rf) - 1 < quorum(rf));
        }
    }

    #[test]
    fn pdb_object() {
        let spec = TinyKVClusterSpec {
            replication_factor: 5,
            replicas: 7,
            ..TinyKVClusterSpec::default()
        };
        let pdb = build_pdb(&cluster(spec)).expect("pdb");
        let s = pdb.spec.as_ref().expect("spec");
        assert_eq!(s.max_unavailable, Some(IntOrString::Int(2)));
        assert_eq!(s.min_available, None);
        assert!(s
            .selector
            .as_ref()
            .and_then(|l| l.match_labels.as_ref())
            .is_some());
        assert_eq!(pdb.metadata.name.as_deref(), Some("demo"));
    }
}
