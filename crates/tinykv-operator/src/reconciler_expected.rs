//! The objects the reconciler must apply for the cluster `demo` in
//! namespace `db` (uid `uid-1234`) with the default spec, written out by
//! hand: what the nodes need to start and find each other, what keeps
//! QUORUM through disruptions, what Pod Security "restricted" asks. They
//! are not built by the operator's builders, so a change to a builder
//! fails the reconciler tests until it is made here too, on purpose.

use serde_json::{json, Value};

/// The labels every object of the cluster carries.
fn labels() -> Value {
    json!({
        "app.kubernetes.io/component": "node",
        "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/managed-by": "tinykv-operator",
        "app.kubernetes.io/name": "tinykv",
    })
}

/// The labels that select the cluster's pods.
fn selector() -> Value {
    json!({"app.kubernetes.io/instance": "demo", "app.kubernetes.io/name": "tinykv"})
}

/// A child's metadata: named `name`, controlled by the TinyKVCluster.
fn meta(name: &str) -> Value {
    json!({
        "name": name,
        "namespace": "db",
        "labels": labels(),
        "ownerReferences": [{
            "apiVersion": "tinykv.io/v1alpha1",
            "kind": "TinyKVCluster",
            "name": "demo",
            "uid": "uid-1234",
            "controller": true,
        }],
    })
}

/// gRPC (h2c) and metrics, by the container's port names.
fn service_ports() -> Value {
    json!([
        {"name": "grpc", "port": 50051, "targetPort": "grpc", "protocol": "TCP",
         "appProtocol": "kubernetes.io/h2c"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ])
}

/// The headless Service: pod DNS names and `--peers-dns`, with not-ready
/// pods published so a starting node finds its peers.
pub(super) fn headless_service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("demo-headless"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": selector(),
            "ports": service_ports(),
        },
    })
}

/// The client Service over the ready pods.
pub(super) fn client_service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("demo"),
        "spec": {"type": "ClusterIP", "selector": selector(), "ports": service_ports()},
    })
}

/// The PodDisruptionBudget: with RF 3 one pod at a time keeps QUORUM.
pub(super) fn pdb() -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta("demo"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector()}},
    })
}

/// A gRPC health probe on the node's port.
fn probe(initial: i32, period: i32, failures: i32) -> Value {
    json!({
        "grpc": {"port": 50051},
        "initialDelaySeconds": initial,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    })
}

/// The node container.
fn container() -> Value {
    let dns = "demo-headless.db.svc.cluster.local:50051";
    json!({
        "name": "tinykv",
        "image": "tinykv:latest",
        "command": ["/usr/local/bin/tinykv-node"],
        "args": [
            "--node-id=$(POD_NAME)",
            "--listen=0.0.0.0:50051",
            format!("--advertise=$(POD_NAME).{dns}"),
            format!("--peers-dns={dns}"),
            "--data-dir=/var/lib/tinykv",
            "--replication-factor=3",
            "--metrics-listen=0.0.0.0:9090",
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "TINYKV_JOIN", "value": "true"},
            {"name": "TINYKV_CLUSTER_NAME", "value": "db/demo"},
            {"name": "TINYKV_CLUSTER_SECRET_FILE", "value": "/etc/tinykv/secret/cluster.secret"},
        ],
        "ports": [
            {"name": "grpc", "containerPort": 50051, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        ],
        "readinessProbe": probe(2, 5, 3),
        "livenessProbe": probe(15, 10, 6),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/tinykv"},
            {"name": "cluster-secret", "mountPath": "/etc/tinykv/secret", "readOnly": true},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
    })
}

/// The pod template: scraped for metrics, spread over hosts, non-root.
fn pod_template() -> Value {
    json!({
        "metadata": {
            "labels": labels(),
            "annotations": {"prometheus.io/port": "9090", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "containers": [container()],
            "affinity": {"podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": selector()},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }],
            }},
            "terminationGracePeriodSeconds": 60,
            "automountServiceAccountToken": false,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": [{
                "name": "cluster-secret",
                "secret": {
                    "secretName": "demo-cluster-secret",
                    "items": [{"key": "cluster.secret", "path": "cluster.secret"}],
                    "defaultMode": 0o440,
                    "optional": false,
                },
            }],
        },
    })
}

/// The StatefulSet with `replicas` pods, pods from `partition` up on the
/// current template; its template-hash annotation is left out (see
/// [`sts_is`]).
pub(super) fn statefulset(replicas: i32, partition: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta("demo"),
        "spec": {
            "replicas": replicas,
            "serviceName": "demo-headless",
            "selector": {"matchLabels": selector()},
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Retain", "whenDeleted": "Retain"},
            "volumeClaimTemplates": [{
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "labels": selector()},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }],
            "template": pod_template(),
        },
    })
}

/// Checks an applied body is exactly `want`.
pub(super) fn is(want: Value) -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(move |got: &Value| same(got, &want))
}

/// Checks an applied StatefulSet is exactly `want` but for its
/// template-hash annotation, which must be there.
pub(super) fn sts_is(want: Value) -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(move |got: &Value| {
        let mut got = got.clone();
        let annotations = got["metadata"]
            .as_object_mut()
            .and_then(|m| m.remove("annotations"))
            .unwrap_or_default();
        let hash = annotations["tinykv.io/template-hash"].as_str();
        assert!(hash.is_some_and(|h| !h.is_empty()), "{annotations}");
        assert_eq!(annotations.as_object().map(|a| a.len()), Some(1));
        same(&got, &want);
    })
}

fn same(got: &Value, want: &Value) {
    let mut diffs = Vec::new();
    differences("", got, want, &mut diffs);
    assert!(
        diffs.is_empty(),
        "the applied body differs from the expected one:\n{}\napplied:\n{}",
        diffs.join("\n"),
        serde_json::to_string_pretty(got).unwrap_or_default()
    );
}

/// Every place `got` and `want` differ, as `path: got != want`.
fn differences(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            for k in keys {
                let (a, b) = (
                    g.get(k).unwrap_or(&Value::Null),
                    w.get(k).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{k}"), a, b, out);
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                differences(&format!("{path}[{i}]"), a, b, out);
            }
        }
        _ if got != want => out.push(format!("{path}: {got} != {want}")),
        _ => {}
    }
}
