//! The StatefulSet that runs the nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;

use super::auth_upgrade::{AuthMode, AUTH_PERMISSIVE_ENV};
use super::secret::{
    cluster_secret_path, cluster_secret_ref, CLUSTER_SECRET_DIR, CLUSTER_SECRET_ENV,
    CLUSTER_SECRET_FILE_NAME, CLUSTER_SECRET_VOLUME,
};
use super::{
    child_meta, headless_service_name, namespace, selector_labels, stable_hash, CONTAINER_NAME,
    TEMPLATE_HASH_ANNOTATION,
};
use crate::crd::TinyKVCluster;
use crate::Result;

/// Name of the data volume (and of the volumeClaimTemplate).
pub const DATA_VOLUME: &str = "data";
/// Where the node keeps its data inside the container.
pub const DATA_DIR: &str = "/var/lib/tinykv";
/// Environment variable that makes a node join with streaming (`--join`).
pub const JOIN_ENV: &str = "TINYKV_JOIN";
/// Environment variable naming the node's cluster (`--cluster-name`): nodes
/// refuse calls from nodes of another cluster, so two TinyKVClusters whose
/// pods can reach each other never merge.
pub const CLUSTER_NAME_ENV: &str = "TINYKV_CLUSTER_NAME";
/// User id the image runs as.
const NODE_UID: i64 = 10001;
/// Default SIGTERM grace: time to hand off hints and flush.
const DEFAULT_GRACE_SECONDS: i64 = 60;
/// Mode of the mounted secret file: read by its group only, which `fsGroup`
/// makes the node's group (the file belongs to root).
pub const CLUSTER_SECRET_MODE: i32 = 0o440;

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
    build_statefulset_with_auth(cluster, replicas, partition, AuthMode::Enforced)
}

/// [`build_statefulset`] with the nodes' authentication `mode`:
/// [`AuthMode::Permissive`] only while a cluster whose pods ran without a
/// secret is rolled onto one (see [`super::auth_upgrade`]).
pub fn build_statefulset_with_auth(
    cluster: &TinyKVCluster,
    replicas: i32,
    partition: i32,
    mode: AuthMode,
) -> Result<StatefulSet> {
    let name = cluster.name_any();
    let spec = &cluster.spec;
    let template = build_pod_template(cluster, mode)?;
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

fn build_pod_template(cluster: &TinyKVCluster, mode: AuthMode) -> Result<PodTemplateSpec> {
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

    let mut volumes = Vec::new();
    if spec.storage.ephemeral {
        volumes.push(Volume {
            name: DATA_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(spec.storage.size.clone())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    // The cluster secret, as one file whatever the Secret's key. Kubelet
    // refreshes it in place when the Secret changes (no subPath).
    let secret = cluster_secret_ref(cluster);
    volumes.push(Volume {
        name: CLUSTER_SECRET_VOLUME.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.name),
            items: Some(vec![KeyToPath {
                key: secret.key,
                path: CLUSTER_SECRET_FILE_NAME.to_string(),
                mode: None,
            }]),
            default_mode: Some(CLUSTER_SECRET_MODE),
            optional: Some(false),
        }),
        ..Volume::default()
    });

    volumes.extend(super::tls::tls_volumes(cluster));

    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![build_container(cluster, &ns, mode)],
            affinity: Some(affinity),
            tolerations: non_empty(opts.tolerations.clone()),
            node_selector: (!opts.node_selector.is_empty()).then(|| opts.node_selector.clone()),
            topology_spread_constraints: non_empty(opts.topology_spread_constraints.clone()),
            priority_class_name: opts.priority_class_name.clone(),
            service_account_name: opts.service_account_name.clone(),
            image_pull_secrets: non_empty(opts.image_pull_secrets.clone()),
            termination_grace_period_seconds: Some(
                opts.termination_grace_period_seconds
                    .unwrap_or(DEFAULT_GRACE_SECONDS),
            ),
            // Nodes never call the Kubernetes API: no token in the pod.
            automount_service_account_token: Some(false),
            // Pod Security "restricted": non-root, RuntimeDefault seccomp,
            // and (per container) no escalation, every capability dropped.
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(NODE_UID),
                run_as_group: Some(NODE_UID),
                fs_group: Some(NODE_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    localhost_profile: None,
                }),
                ..PodSecurityContext::default()
            }),
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    })
}

fn build_container(cluster: &TinyKVCluster, ns: &str, mode: AuthMode) -> Container {
    let name = cluster.name_any();
    let spec = &cluster.spec;
    let port = spec.service.port;
    let headless = headless_service_name(&name);
    let domain = &spec.cluster_domain;
    let mut args = vec![
        "--node-id=$(POD_NAME)".to_string(),
        format!("--listen=0.0.0.0:{port}"),
        format!("--advertise=$(POD_NAME).{headless}.{ns}.svc.{domain}:{port}"),
        format!("--peers-dns={headless}.{ns}.svc.{domain}:{port}"),
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
    // A `--join` node that hears from no peer waits for one (it cannot
    // tell a new cluster from one it lost its disk in). A one-pod cluster
    // has no peer to hear from: its pod may start a cluster alone. Scaling
    // to or from one pod changes the template: one restart of a pod that
    // keeps its data (a member never re-joins, so the flag does nothing
    // there).
    if spec.replicas == 1 {
        args.push("--bootstrap".to_string());
    }
    args.extend(spec.extra_args.iter().cloned());

    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
    ];
    // Every pod starts with `--join` semantics: a fresh data dir streams its
    // ranges before serving (a scale-up), a brand-new cluster bootstraps at
    // once, and a restarted member never re-joins (marker in the data dir).
    // Its cluster name is the resource's `namespace/name`, unique in the
    // Kubernetes cluster. A variable the user sets wins (and a duplicate
    // name would break the apply).
    // The mounted cluster secret guards its peer and admin planes (a node
    // listening on 0.0.0.0 refuses to start without one).
    // While pods without a secret remain, the new ones also accept their
    // unsigned calls (counted and logged), and sign their own.
    let permissive = (mode == AuthMode::Permissive).then(|| (AUTH_PERMISSIVE_ENV, "true".into()));
    for (var, value) in [
        (JOIN_ENV, "true".to_string()),
        (CLUSTER_NAME_ENV, format!("{ns}/{name}")),
        (CLUSTER_SECRET_ENV, cluster_secret_path()),
    ]
    .into_iter()
    .chain(permissive)
    .chain(super::tls::tls_env(cluster))
    {
        if !spec.env.iter().any(|e| e.name == var) {
            env.push(EnvVar {
                name: var.to_string(),
                value: Some(value),
                ..EnvVar::default()
            });
        }
    }
    env.extend(spec.env.iter().cloned());

    // gRPC health, or with TLS the CLI's health command (see tls.rs).
    let (grpc, exec) = super::tls::health_check(cluster);
    let grpc_probe = |period: i32, failures: i32, initial: i32| Probe {
        grpc: grpc.clone(),
        exec: exec.clone(),
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
        volume_mounts: Some(
            [
                VolumeMount {
                    name: DATA_VOLUME.to_string(),
                    mount_path: DATA_DIR.to_string(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: CLUSTER_SECRET_VOLUME.to_string(),
                    mount_path: CLUSTER_SECRET_DIR.to_string(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            ]
            .into_iter()
            .chain(super::tls::tls_mounts(cluster))
            .collect(),
        ),
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
#[path = "statefulset_tests.rs"]
mod tests;
