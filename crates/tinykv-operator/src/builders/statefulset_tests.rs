//! Tests of `statefulset.rs`.
use super::*;
use crate::builders::test_support::cluster;
use crate::crd::{
    ConsistencyLevel, ImagePullPolicy, PvcRetention, SecretKeyRef, SyncPolicy, TinyKVClusterSpec,
};
use k8s_openapi::api::core::v1::{LocalObjectReference, NodeAffinity, Toleration};

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
    let volumes = pod.volumes.as_ref().expect("volumes");
    assert_eq!(
        volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        [CLUSTER_SECRET_VOLUME],
        "data lives in the claim template, only the secret is a pod volume"
    );
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
    // Every pod joins with streaming (safe for a brand-new cluster too).
    let join: Vec<_> = env.iter().filter(|e| e.name == JOIN_ENV).collect();
    assert_eq!(join.len(), 1, "{env:?}");
    assert_eq!(join[0].value.as_deref(), Some("true"));
    assert!(join[0].value_from.is_none());
    // Its cluster name is unique per resource: namespace/name.
    let named: Vec<_> = env.iter().filter(|e| e.name == CLUSTER_NAME_ENV).collect();
    assert_eq!(named.len(), 1, "{env:?}");
    assert_eq!(named[0].value.as_deref(), Some("db/demo"));
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
    spec.cluster_domain = "corp.example".into();
    spec.pod_template.image_pull_secrets = vec![LocalObjectReference {
        name: "registry-creds".into(),
    }];
    spec.pod_template.service_account_name = Some("tinykv-nodes".into());
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
    assert_eq!(
        pod.image_pull_secrets.as_ref().map(|v| v[0].name.as_str()),
        Some("registry-creds")
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("tinykv-nodes"));
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
        "--advertise=$(POD_NAME).demo-headless.db.svc.corp.example:6000",
        "--peers-dns=demo-headless.db.svc.corp.example:6000",
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

#[test]
fn user_join_env_overrides_the_default() {
    let spec = TinyKVClusterSpec {
        env: vec![EnvVar {
            name: JOIN_ENV.into(),
            value: Some("false".into()),
            ..EnvVar::default()
        }],
        ..TinyKVClusterSpec::default()
    };
    let sts = build_statefulset(&cluster(spec), 3, 0).expect("sts");
    let env = container(&sts).env.as_ref().expect("env");
    let join: Vec<_> = env.iter().filter(|e| e.name == JOIN_ENV).collect();
    // Exactly one entry (a duplicate name would make the apply fail): the user's.
    assert_eq!(join.len(), 1, "{env:?}");
    assert_eq!(join[0].value.as_deref(), Some("false"));
}

fn pod_spec(sts: &StatefulSet) -> &PodSpec {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

#[test]
fn cluster_secret_is_mounted_read_only_and_named_to_the_node() {
    let sts = build_statefulset(&cluster(TinyKVClusterSpec::default()), 3, 0).expect("sts");
    let pod = pod_spec(&sts);
    let vol = pod
        .volumes
        .as_ref()
        .and_then(|v| v.iter().find(|v| v.name == CLUSTER_SECRET_VOLUME))
        .expect("secret volume");
    let src = vol.secret.as_ref().expect("a Secret volume");
    assert_eq!(src.secret_name.as_deref(), Some("demo-cluster-secret"));
    assert_eq!(src.default_mode, Some(0o440));
    assert_eq!(src.optional, Some(false));
    let items = src.items.as_ref().expect("items");
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("cluster.secret", "cluster.secret")
    );

    let ctr = container(&sts);
    let mount = ctr
        .volume_mounts
        .as_ref()
        .and_then(|m| m.iter().find(|m| m.name == CLUSTER_SECRET_VOLUME))
        .expect("secret mount");
    assert_eq!(mount.mount_path, "/etc/tinykv/secret");
    assert_eq!(mount.read_only, Some(true));
    assert!(
        mount.sub_path.is_none(),
        "a subPath mount is never refreshed"
    );
    let env = ctr.env.as_ref().expect("env");
    let file: Vec<_> = env
        .iter()
        .filter(|e| e.name == CLUSTER_SECRET_ENV)
        .collect();
    assert_eq!(file.len(), 1, "{env:?}");
    assert_eq!(
        file[0].value.as_deref(),
        Some("/etc/tinykv/secret/cluster.secret")
    );
    // The node never runs open: no --insecure anywhere.
    assert!(!ctr
        .args
        .as_ref()
        .expect("args")
        .iter()
        .any(|a| a.contains("insecure")));
    assert!(!env.iter().any(|e| e.name == "TINYKV_INSECURE"));
}

#[test]
fn node_pods_pass_pod_security_restricted() {
    let sts = build_statefulset(&cluster(TinyKVClusterSpec::default()), 3, 0).expect("sts");
    let pod = pod_spec(&sts);
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(10001));
    assert_eq!(psc.fs_group, Some(10001), "makes the 0440 secret readable");
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let csc = container(&sts)
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    assert_eq!(csc.read_only_root_filesystem, Some(true));
    assert_eq!(
        csc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    assert!(csc.privileged.is_none() && csc.run_as_user.is_none());
    // Only volume types "restricted" allows.
    for v in pod.volumes.as_ref().expect("volumes") {
        assert!(v.secret.is_some() || v.empty_dir.is_some(), "{v:?}");
    }
}

/// The restricted profile's rules as `scripts/k8s/check_pss.py` applies
/// them, for every container (init containers too) of every storage
/// variant, so a later field cannot quietly break the offline check.
#[test]
fn every_node_container_meets_restricted_in_every_storage_variant() {
    for ephemeral in [false, true] {
        let mut spec = TinyKVClusterSpec::default();
        spec.storage.ephemeral = ephemeral;
        let sts = build_statefulset(&cluster(spec), 3, 0).expect("sts");
        let pod = pod_spec(&sts);
        for host in [pod.host_network, pod.host_pid, pod.host_ipc] {
            assert_ne!(host, Some(true), "ephemeral={ephemeral}");
        }
        let psc = pod.security_context.as_ref().expect("pod securityContext");
        assert!(psc.sysctls.is_none() && psc.se_linux_options.is_none());
        assert_ne!(psc.run_as_user, Some(0));
        let all = pod.init_containers.iter().flatten().chain(&pod.containers);
        let mut seen = 0;
        for c in all {
            seen += 1;
            let csc = c.security_context.as_ref().expect("securityContext");
            assert_eq!(csc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_ne!(csc.privileged, Some(true));
            assert_ne!(csc.run_as_non_root, Some(false));
            assert!(csc.proc_mount.is_none() && csc.se_linux_options.is_none());
            // Unset here: the pod's RuntimeDefault applies.
            assert!(csc.seccomp_profile.is_none());
            let caps = csc.capabilities.as_ref().expect("capabilities");
            assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
            assert!(caps.add.is_none(), "nothing added back");
            for p in c.ports.iter().flatten() {
                assert!(p.host_port.is_none(), "{}", c.name);
            }
        }
        assert_eq!(seen, 1, "one container, no init containers yet");
        for v in pod.volumes.iter().flatten() {
            let allowed = v.secret.is_some() || v.empty_dir.is_some();
            assert!(allowed && v.host_path.is_none(), "{v:?}");
        }
    }
}

#[test]
fn a_named_cluster_secret_is_mounted_under_the_same_file_name() {
    let mut spec = TinyKVClusterSpec::default();
    spec.storage.ephemeral = true;
    spec.security.cluster_secret_ref = Some(SecretKeyRef {
        name: "shared-secret".into(),
        key: "tinykv".into(),
    });
    let c = cluster(spec);
    let sts = build_statefulset(&c, 3, 0).expect("sts");
    let vols = pod_spec(&sts).volumes.as_ref().expect("volumes");
    assert_eq!(
        vols.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        [DATA_VOLUME, CLUSTER_SECRET_VOLUME]
    );
    let src = vols[1].secret.as_ref().expect("secret");
    assert_eq!(src.secret_name.as_deref(), Some("shared-secret"));
    let items = src.items.as_ref().expect("items");
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("tinykv", "cluster.secret")
    );
    // Naming another Secret changes the pod template: the pods are rolled.
    let hash = |c: &TinyKVCluster| {
        build_statefulset(c, 3, 0)
            .expect("sts")
            .metadata
            .annotations
            .expect("annotations")[TEMPLATE_HASH_ANNOTATION]
            .clone()
    };
    let mut other = c.clone();
    other.spec.security.cluster_secret_ref = None;
    assert_ne!(hash(&c), hash(&other));
}

#[test]
fn user_secret_file_env_wins() {
    let spec = TinyKVClusterSpec {
        env: vec![EnvVar {
            name: CLUSTER_SECRET_ENV.into(),
            value: Some("/elsewhere".into()),
            ..EnvVar::default()
        }],
        ..TinyKVClusterSpec::default()
    };
    let sts = build_statefulset(&cluster(spec), 3, 0).expect("sts");
    let env = container(&sts).env.as_ref().expect("env");
    let file: Vec<_> = env
        .iter()
        .filter(|e| e.name == CLUSTER_SECRET_ENV)
        .collect();
    assert_eq!(file.len(), 1, "{env:?}");
    assert_eq!(file[0].value.as_deref(), Some("/elsewhere"));
}

#[test]
fn only_a_one_pod_cluster_may_bootstrap_alone() {
    let args = |replicas: i32| {
        let mut c = cluster(TinyKVClusterSpec::default());
        c.spec.replicas = replicas;
        c.spec.replication_factor = 1;
        let sts = build_statefulset(&c, replicas, 0).expect("sts");
        container(&sts).args.clone().unwrap_or_default()
    };
    assert!(
        args(1).contains(&"--bootstrap".to_string()),
        "{:?}",
        args(1)
    );
    for n in [2, 3, 5] {
        assert!(
            !args(n).iter().any(|a| a.starts_with("--bootstrap")),
            "{n}: {:?}",
            args(n)
        );
    }
}
