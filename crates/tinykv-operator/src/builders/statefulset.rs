//! The StatefulSet that runs the nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    GRPCAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SecurityContext, Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;

use super::{
    child_meta, headless_service_name, namespace, selector_labels, stable_hash, CLUSTER_DOMAIN,
    CONTAINER_NAME, TEMPLATE_HASH_ANNOTATION,
};
use crate::crd::TinyKVCluster;
use crate::Result;

/// Name of the data volume (and of the volumeClaimTemplate).
pub const DATA_VOLUME: &str = "data";
/// Where the node keeps its data inside the container.
pub const DATA_DIR: &str = "/var/lib/tinykv";
/// User id the image runs as.
const NODE_UID: i64 = 10001;
/// Default SIGTERM grace: time to hand off hints and flush.
const DEFAULT_GRACE_SECONDS: i64 = 60;

/// The node StatefulSet with `replicas` pods, pods with ordinal `>= partition`
/// running the current template.
///
/// `replicas` and `partition` are chosen by the operator's state machine, not
/// taken from the spec directly: scale-down lowers replicas only after a node
/// has left the ring, and upgrades lower the partition one pod at a time.
pub fn build_statefulset(
    cluster: &TinyKVCluster,
    replicas: i32,
    partition: i32,
) -> Result<StatefulSet> {
    let name = cluster.name_any();
    let spec = &cluster.spec;
    let template = build_pod_template(cluster)?;
    let hash = pod_template_hash(&template)?;
    let mut meta = child_meta(cluster, name.clone())?;
    meta.annotations = Some(BTreeMap::from([(
        TEMPLATE_HASH_ANNOTATION.to_string(),
        hash,
    )]));

    let (claims, retention) = if spec.storage.ephemeral {
        (None, None)
    } else {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(DATA_VOLUME.to_string()),
                labels: Some(selector_labels(&name)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_string()]),
                storage_class_name: spec.storage.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(spec.storage.size.clone()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        };
        // The operator deletes a scaled-away node's claim itself, and only
        // after the node has streamed its data away; the StatefulSet
        // controller must never do it on its own.
        let retention = StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_scaled: Some("Retain".to_string()),
            when_deleted: Some(spec.storage.when_deleted.as_str().to_string()),
        };
        (Some(vec![claim]), Some(retention))
    };

    Ok(StatefulSet {
        metadata: meta,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(headless_service_name(&name)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".to_string()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(partition.max(0)),
                    ..RollingUpdateStatefulSetStrategy::default()
                }),
            }),
            persistent_volume_claim_retention_policy: retention,
            volume_claim_templates: claims,
            template,
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

/// Hash of a pod template; it changes exactly when the pods must be rolled.
pub fn pod_template_hash(template: &PodTemplateSpec) -> Result<String> {
    Ok(stable_hash(&serde_json::to_vec(template)?))
}

fn build_pod_template(cluster: &TinyKVCluster) -> Result<PodTemplateSpec> {
    let name = cluster.name_any();
    let ns = namespace(cluster)?;
    let spec = &cluster.spec;
    let opts = &spec.pod_template;

    let mut labels = opts.labels.clone();
    labels.extend(super::common_labels(&name));
    let mut annotations = opts.annotations.clone();
    annotations
        .entry("prometheus.io/scrape".into())
        .or_insert_with(|| "true".into());
    annotations
        .entry("prometheus.io/port".into())
        .or_insert_with(|| spec.service.metrics_port.to_string());

    let affinity = opts
        .affinity
        .clone()
        .unwrap_or_else(|| default_anti_affinity(&name, opts.required_anti_affinity));

    let volumes = spec.storage.ephemeral.then(|| {
        vec![Volume {
            name: DATA_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(spec.storage.size.clone())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        }]
    });

    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![build_container(cluster, &ns)],
            affinity: Some(affinity),
            tolerations: non_empty(opts.tolerations.clone()),
            node_selector: (!opts.node_selector.is_empty()).then(|| opts.node_selector.clone()),
            topology_spread_constraints: non_empty(opts.topology_spread_constraints.clone()),
            priority_class_name: opts.priority_class_name.clone(),
            service_account_name: opts.service_account_name.clone(),
            termination_grace_period_seconds: Some(
                opts.termination_grace_period_seconds
                    .unwrap_or(DEFAULT_GRACE_SECONDS),
            ),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(NODE_UID),
                run_as_group: Some(NODE_UID),
                fs_group: Some(NODE_UID),
                ..PodSecurityContext::default()
            }),
            volumes,
            ..PodSpec::default()
        }),
    })
}

fn build_container(cluster: &TinyKVCluster, ns: &str) -> Container {
    let name = cluster.name_any();
    let spec = &cluster.spec;
    let port = spec.service.port;
    let headless = headless_service_name(&name);
    let mut args = vec![
        "--node-id=$(POD_NAME)".to_string(),
        format!("--listen=0.0.0.0:{port}"),
        format!("--advertise=$(POD_NAME).{headless}.{ns}.svc.{CLUSTER_DOMAIN}:{port}"),
        format!("--peers-dns={headless}.{ns}.svc.{CLUSTER_DOMAIN}:{port}"),
        format!("--data-dir={DATA_DIR}"),
        format!("--replication-factor={}", spec.replication_factor),
        format!("--metrics-listen=0.0.0.0:{}", spec.service.metrics_port),
    ];
    if let Some(v) = spec.vnodes {
        args.push(format!("--vnodes={v}"));
    }
    if let Some(s) = spec.sync {
        args.push(format!("--sync={}", s.as_str()));
    }
    if let Some(c) = spec.default_consistency {
        args.push(format!("--default-consistency={}", c.as_str()));
    }
    args.extend(spec.extra_args.iter().cloned());

    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
    ];
    env.extend(spec.env.iter().cloned());

    let grpc_probe = |period: i32, failures: i32, initial: i32| Probe {
        grpc: Some(GRPCAction {
            port,
            service: None,
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    };

    Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        command: Some(vec!["/usr/local/bin/tinykv-node".to_string()]),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("grpc".into()),
                container_port: port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: spec.service.metrics_port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(grpc_probe(5, 3, 2)),
        liveness_probe: Some(grpc_probe(10, 6, 15)),
        resources: spec.resources.clone(),
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.to_string(),
            mount_path: DATA_DIR.to_string(),
            ..VolumeMount::default()
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn default_anti_affinity(cluster: &str, required: bool) -> Affinity {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(cluster)),
            ..LabelSelector::default()
        }),
        topology_key: "kubernetes.io/hostname".to_string(),
        ..PodAffinityTerm::default()
    };
    let anti = if required {
        PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..PodAntiAffinity::default()
        }
    } else {
        PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term,
                },
            ]),
            ..PodAntiAffinity::default()
        }
    };
    Affinity {
        pod_anti_affinity: Some(anti),
        ..Affinity::default()
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster;
    use crate::crd::{
        ConsistencyLevel, ImagePullPolicy, PvcRetention, SyncPolicy, TinyKVClusterSpec,
    };
    use k8s_openapi::api::core::v1::{NodeAffinity, Toleration};

    fn container(sts: &StatefulSet) -> &Container {
        &sts.spec
            .as_ref()
            .expect("spec")
            .template
            .spec
            .as_ref()
            .expect("pod spec")
            .containers[0]
    }

    #[test]
    fn defaults() {
        let c = cluster(TinyKVClusterSpec::default());
        let sts = build_statefulset(&c, 3, 0).expect("sts");
        assert_eq!(sts.metadata.name.as_deref(), Some("demo"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("db"));
        let owners = sts.metadata.owner_references.as_ref().expect("owners");
        assert_eq!(owners[0].uid, "uid-1234");
        assert!(sts
            .metadata
            .annotations
            .as_ref()
            .expect("annotations")
            .contains_key(TEMPLATE_HASH_ANNOTATION));

        let spec = sts.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("demo-headless"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let strategy = spec.update_strategy.as_ref().expect("strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(
            strategy.rolling_update.as_ref().and_then(|r| r.partition),
            Some(0)
        );
        let claims = spec.volume_claim_templates.as_ref().expect("claims");
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
        let req = claims[0]
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .expect("requests");
        assert_eq!(req["storage"], Quantity("1Gi".into()));
        let retention = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .expect("retention");
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));

        let pod = spec.template.spec.as_ref().expect("pod");
        assert_eq!(pod.termination_grace_period_seconds, Some(60));
        let anti = pod
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .expect("anti");
        let preferred = anti
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()
            .expect("preferred");
        assert_eq!(
            preferred[0].pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
        assert!(pod.volumes.is_none());
        assert_eq!(
            pod.security_context.as_ref().and_then(|s| s.fs_group),
            Some(10001)
        );

        let ctr = container(&sts);
        assert_eq!(ctr.image.as_deref(), Some("tinykv:latest"));
        assert_eq!(ctr.image_pull_policy, None);
        let args = ctr.args.as_ref().expect("args");
        assert_eq!(
            args,
            &vec![
                "--node-id=$(POD_NAME)".to_string(),
                "--listen=0.0.0.0:50051".into(),
                "--advertise=$(POD_NAME).demo-headless.db.svc.cluster.local:50051".into(),
                "--peers-dns=demo-headless.db.svc.cluster.local:50051".into(),
                "--data-dir=/var/lib/tinykv".into(),
                "--replication-factor=3".into(),
                "--metrics-listen=0.0.0.0:9090".into(),
            ]
        );
        let env = ctr.env.as_ref().expect("env");
        assert_eq!(env[0].name, "POD_NAME");
        assert_eq!(
            env[0]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.name")
        );
        for probe in [&ctr.readiness_probe, &ctr.liveness_probe] {
            let grpc = probe
                .as_ref()
                .and_then(|p| p.grpc.as_ref())
                .expect("grpc probe");
            assert_eq!(grpc.port, 50051);
        }
        assert_eq!(
            ctr.volume_mounts.as_ref().expect("mounts")[0].mount_path,
            DATA_DIR
        );
    }

    #[test]
    fn overrides() {
        let mut spec = TinyKVClusterSpec {
            replicas: 5,
            replication_factor: 5,
            image: "registry.example/tinykv:1.2".into(),
            image_pull_policy: Some(ImagePullPolicy::Always),
            vnodes: Some(64),
            default_consistency: Some(ConsistencyLevel::All),
            sync: Some(SyncPolicy::Periodic),
            extra_args: vec!["--foo=bar".into()],
            env: vec![EnvVar {
                name: "RUST_LOG".into(),
                value: Some("debug".into()),
                ..EnvVar::default()
            }],
            ..TinyKVClusterSpec::default()
        };
        spec.storage.size = "20Gi".into();
        spec.storage.storage_class_name = Some("fast".into());
        spec.storage.when_deleted = PvcRetention::Delete;
        spec.service.port = 6000;
        spec.pod_template.termination_grace_period_seconds = Some(120);
        spec.pod_template.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }];
        spec.pod_template
            .node_selector
            .insert("disk".into(), "ssd".into());
        spec.pod_template.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity::default()),
            ..Affinity::default()
        });
        let c = cluster(spec);
        let sts = build_statefulset(&c, 5, 4).expect("sts");
        let s = sts.spec.as_ref().expect("spec");
        assert_eq!(s.replicas, Some(5));
        assert_eq!(
            s.update_strategy
                .as_ref()
                .and_then(|u| u.rolling_update.as_ref())
                .and_then(|r| r.partition),
            Some(4)
        );
        let claim = &s.volume_claim_templates.as_ref().expect("claims")[0];
        assert_eq!(
            claim
                .spec
                .as_ref()
                .and_then(|c| c.storage_class_name.as_deref()),
            Some("fast")
        );
        assert_eq!(
            s.persistent_volume_claim_retention_policy
                .as_ref()
                .and_then(|r| r.when_deleted.as_deref()),
            Some("Delete")
        );
        let pod = s.template.spec.as_ref().expect("pod");
        assert_eq!(pod.termination_grace_period_seconds, Some(120));
        assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            pod.node_selector
                .as_ref()
                .and_then(|n| n.get("disk"))
                .map(String::as_str),
            Some("ssd")
        );
        let affinity = pod.affinity.as_ref().expect("affinity");
        assert!(affinity.node_affinity.is_some());
        assert!(
            affinity.pod_anti_affinity.is_none(),
            "user affinity replaces the default"
        );

        let ctr = container(&sts);
        assert_eq!(ctr.image.as_deref(), Some("registry.example/tinykv:1.2"));
        assert_eq!(ctr.image_pull_policy.as_deref(), Some("Always"));
        let args = ctr.args.as_ref().expect("args");
        for want in [
            "--listen=0.0.0.0:6000",
            "--replication-factor=5",
            "--vnodes=64",
            "--sync=periodic",
            "--default-consistency=all",
            "--foo=bar",
        ] {
            assert!(args.iter().any(|a| a == want), "missing {want} in {args:?}");
        }
        assert_eq!(args.last().map(String::as_str), Some("--foo=bar"));
        assert!(ctr
            .env
            .as_ref()
            .expect("env")
            .iter()
            .any(|e| e.name == "RUST_LOG"));
        assert_eq!(
            ctr.readiness_probe
                .as_ref()
                .and_then(|p| p.grpc.as_ref())
                .map(|g| g.port),
            Some(6000)
        );
    }

    #[test]
    fn ephemeral_storage_uses_empty_dir() {
        let mut spec = TinyKVClusterSpec::default();
        spec.storage.ephemeral = true;
        let sts = build_statefulset(&cluster(spec), 3, 0).expect("sts");
        let s = sts.spec.as_ref().expect("spec");
        assert!(s.volume_claim_templates.is_none());
        assert!(s.persistent_volume_claim_retention_policy.is_none());
        let vols = s
            .template
            .spec
            .as_ref()
            .and_then(|p| p.volumes.as_ref())
            .expect("volumes");
        assert_eq!(vols[0].name, DATA_VOLUME);
        assert!(vols[0].empty_dir.is_some());
    }

    #[test]
    fn required_anti_affinity() {
        let mut spec = TinyKVClusterSpec::default();
        spec.pod_template.required_anti_affinity = true;
        let sts = build_statefulset(&cluster(spec), 3, 0).expect("sts");
        let pod = sts
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        let anti = pod
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .expect("anti");
        assert!(anti
            .required_during_scheduling_ignored_during_execution
            .is_some());
        assert!(anti
            .preferred_during_scheduling_ignored_during_execution
            .is_none());
    }

    #[test]
    fn template_hash_tracks_template_not_replicas() {
        let c = cluster(TinyKVClusterSpec::default());
        let hash = |sts: &StatefulSet| {
            sts.metadata
                .annotations
                .as_ref()
                .map(|a| a[TEMPLATE_HASH_ANNOTATION].clone())
        };
        let a = build_statefulset(&c, 3, 0).expect("sts");
        let b = build_statefulset(&c, 5, 2).expect("sts");
        assert_eq!(hash(&a), hash(&b));
        let mut upgraded = c.clone();
        upgraded.spec.image = "tinykv:v2".into();
        let u = build_statefulset(&upgraded, 3, 0).expect("sts");
        assert_ne!(hash(&a), hash(&u));
    }

    #[test]
    fn missing_namespace_is_an_error() {
        let mut c = cluster(TinyKVClusterSpec::default());
        c.metadata.namespace = None;
        assert!(build_statefulset(&c, 3, 0).is_err());
    }
}
