#!/usr/bin/env bash
# Offline checks of everything Kubernetes-facing:
#   1. crdgen output equals manifests/crd.yaml and the operator chart's copy
#      (files/crd.yaml, which templates/crd.yaml renders, so that `helm
#      upgrade` updates the CRD); the rendered CRD equals it but for labels
#      and annotations; the chart READMEs match their values.yaml comments;
#   2. helm lint and helm template for both charts (default and overridden
#      values, monitoring off and on), with values.schema.json: a value of a
#      wrong type, outside its enum or misspelt must be refused; an upgrade
#      render carries the CRD;
#   3. kubernetes-validate --strict for Kubernetes $K8S_VERSION on every plain
#      and rendered manifest;
#   4. the example and chart-rendered TinyKVClusters against the CRD's own
#      schema; ServiceMonitor, PodMonitor and PrometheusRule (CRDs that
#      kubernetes-validate does not know) field by field, the alerts'
#      runbooks and the dashboard's and alerts' metrics against the docs
#      (scripts/k8s/check_monitoring.py);
#   5. every object the operator builds for those clusters (`render` binary),
#      through the same kubernetes-validate --strict as 3;
#   6. every pod template of all of these against Pod Security Standards
#      "restricted" (scripts/k8s/check_pss.py).
# Installs its tools into ./.tools first (scripts/k8s/install-tools.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
K8S_VERSION="${K8S_VERSION:-1.35.0}"
CARGO="${CARGO:-cargo}"
BIN="$ROOT/.tools/bin"
PY="$ROOT/.tools/venv/bin/python"

scripts/k8s/install-tools.sh >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail=0

echo "== crdgen is up to date"
"$CARGO" run --quiet -p tinykv-operator --bin crdgen -- "$work/crd.yaml"
for copy in manifests/crd.yaml charts/tinykv-operator/files/crd.yaml; do
  if diff -u "$copy" "$work/crd.yaml"; then
    echo "ok   $copy"
  else
    echo "FAIL $copy is stale: run 'make crdgen'"
    fail=1
  fi
done

echo "== chart READMEs are up to date"
"$PY" scripts/k8s/chart_readme.py --check || fail=1

echo "== versions"
# The image tags default to the charts' appVersion: it must be the version
# the workspace builds.
ws_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | sed -n 1p)"
for chart in charts/tinykv-operator charts/tinykv-cluster; do
  app="$(sed -n 's/^appVersion: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")"
  if [ "$app" = "$ws_version" ]; then
    echo "ok   $chart appVersion $app is the workspace version"
  else
    echo "FAIL $chart appVersion $app, workspace version $ws_version"
    fail=1
  fi
done
if cmp -s docs/grafana-dashboard.json charts/tinykv-cluster/files/grafana-dashboard.json; then
  echo "ok   docs/grafana-dashboard.json is the chart's dashboard"
else
  echo "FAIL docs/grafana-dashboard.json differs from the chart's files/grafana-dashboard.json"
  fail=1
fi

echo "== helm lint and template"
mkdir -p "$work/rendered" "$work/monitoring"
"$BIN/helm" lint --strict charts/tinykv-operator charts/tinykv-cluster
"$BIN/helm" lint --strict charts/tinykv-cluster --set monitoring.podMonitor.enabled=true \
  --set monitoring.prometheusRule.enabled=true --set monitoring.grafanaDashboard.enabled=true
"$BIN/helm" lint --strict charts/tinykv-operator --set monitoring.serviceMonitor.enabled=true
"$BIN/helm" template tinykv-operator charts/tinykv-operator --namespace tinykv-system \
  > "$work/rendered/operator.yaml"
"$BIN/helm" template tinykv-operator charts/tinykv-operator --namespace tinykv-system \
  --set 'watchNamespaces={tinykv,apps}' --set leaderElection.enabled=false --set replicaCount=1 \
  --set metrics.service.enabled=false > "$work/rendered/operator-scoped.yaml"
"$BIN/helm" template tinykv-operator charts/tinykv-operator --namespace tinykv-system \
  --set rbac.clusterWide=true > "$work/rendered/operator-cluster-wide.yaml"
"$BIN/helm" template demo charts/tinykv-cluster --namespace tinykv > "$work/rendered/cluster.yaml"
"$BIN/helm" template big charts/tinykv-cluster --namespace tinykv \
  --set replicas=7 --set replicationFactor=5 --set vnodes=128 --set storage.ephemeral=true \
  --set storage.storageClassName=fast --set service.type=LoadBalancer \
  --set 'extraArgs[0]=--foo=bar' --set podTemplate.requiredAntiAffinity=true \
  --set 'podTemplate.tolerations[0].key=dedicated' --set 'podTemplate.tolerations[0].operator=Exists' \
  --set security.clusterSecretRef.name=big-secret --set security.clusterSecretRef.key=tinykv \
  --set networkPolicy.enabled=true \
  --set 'networkPolicy.clientSelectors[0].namespaceSelector.matchLabels.team=apps' \
  --set 'networkPolicy.clientSelectors[1].ipBlock.cidr=10.0.0.0/8' \
  --set 'networkPolicy.metricsSelectors[0].podSelector.matchLabels.app=prometheus' \
  --set 'networkPolicy.operatorSelectors[0].namespaceSelector.matchLabels.name=ops' \
  --set 'networkPolicy.operatorSelectors[0].podSelector.matchLabels.app=operator' \
  --set tls.enabled=true --set tls.issuerRef.name=ca-issuer --set tls.issuerRef.kind=ClusterIssuer \
  --set tls.clientAuth=cert \
  > "$work/rendered/cluster-overrides.yaml"
"$BIN/helm" template tokens charts/tinykv-cluster --namespace tinykv \
  --set tls.enabled=true --set tls.clientAuth=token \
  --set tls.clientTokenSecretRef.name=tokens-secret --set backup.enabled=true \
  --set backup.persistence.storageClassName=fast > "$work/rendered/cluster-tls-token.yaml"
# The backup CronJob with its own claim (plain) and on an existing claim.
backup_fail() { echo "FAIL backup CronJob: $*"; fail=1; }
"$BIN/helm" template nightly charts/tinykv-cluster --namespace tinykv --set backup.enabled=true \
  --set backup.fast=true --set backup.keep=3 --set networkPolicy.enabled=true \
  > "$work/rendered/cluster-backup.yaml"
grep -q 'app.kubernetes.io/name: tinykv-backup' "$work/rendered/cluster-backup.yaml" \
  && grep -q 'clientSelectors:' "$work/rendered/cluster-backup.yaml" \
  || backup_fail "the NetworkPolicy does not admit the backup pods"
"$BIN/helm" template shelf charts/tinykv-cluster --namespace tinykv --set backup.enabled=true \
  --set backup.persistence.existingClaim=backups > "$work/rendered/cluster-backup-claim.yaml"
grep -q 'kind: PersistentVolumeClaim' "$work/rendered/cluster-backup.yaml" || backup_fail "no claim rendered"
if grep -q 'kind: PersistentVolumeClaim' "$work/rendered/cluster-backup-claim.yaml"; then
  backup_fail "a claim rendered although existingClaim is set"
fi
for flag in '--tls-ca /run/tinykv/tls/ca.crt' '--token-file /run/tinykv/token/token'; do
  grep -q -- "set -- \"\$@\" $flag\$" "$work/rendered/cluster-tls-token.yaml" \
    || backup_fail "the TLS token job lacks $flag"
done
if "$BIN/helm" template bad charts/tinykv-cluster --set backup.enabled=true --set tls.enabled=true \
  --set tls.clientAuth=cert >/dev/null 2>&1; then
  backup_fail "tls.clientAuth=cert rendered; it must be refused"
fi
# Monitoring on: PodMonitor, PrometheusRule (kubelet's volume sizes) and
# the dashboard; ServiceMonitor with its Service and a fixed volume size;
# the operator's ServiceMonitor. Kept apart from rendered/, whose clusters
# the operator's render binary reads.
"$BIN/helm" template demo charts/tinykv-cluster --namespace tinykv \
  --set monitoring.podMonitor.enabled=true --set monitoring.prometheusRule.enabled=true \
  --set monitoring.grafanaDashboard.enabled=true \
  --set 'monitoring.podMonitor.labels.release=kube-prometheus-stack' \
  --set 'monitoring.grafanaDashboard.annotations.grafana_folder=TinyKV' \
  > "$work/monitoring/cluster-podmonitor.yaml"
"$BIN/helm" template demo charts/tinykv-cluster --namespace tinykv --set storage.ephemeral=true \
  --set monitoring.serviceMonitor.enabled=true --set monitoring.prometheusRule.enabled=true \
  --set monitoring.prometheusRule.disk.capacityBytes=1073741824 \
  --set 'monitoring.prometheusRule.alertLabels.team=storage' \
  --set monitoring.grafanaDashboard.enabled=true --set monitoring.grafanaDashboard.namespace=monitoring \
  > "$work/monitoring/cluster-servicemonitor.yaml"
"$BIN/helm" template tinykv-operator charts/tinykv-operator --namespace tinykv-system \
  --set monitoring.serviceMonitor.enabled=true > "$work/monitoring/operator-servicemonitor.yaml"
for f in "$work"/rendered/*.yaml "$work"/monitoring/*.yaml; do
  [ -s "$f" ] || { echo "FAIL helm rendered nothing into $(basename "$f")"; fail=1; }
done
# kinds: expect FILE KIND COUNT
expect() {
  local got
  got="$(grep -c "^kind: $2\$" "$1" || true)"
  if [ "$got" = "$3" ]; then
    echo "ok   $(basename "$1"): $3 $2"
  else
    echo "FAIL $(basename "$1"): $got $2, expected $3"
    fail=1
  fi
}
# Monitoring off (the defaults): none of its objects.
for kind in ServiceMonitor PodMonitor PrometheusRule ConfigMap; do
  expect "$work/rendered/cluster.yaml" "$kind" 0
  expect "$work/rendered/operator.yaml" "$kind" 0
done
expect "$work/monitoring/cluster-podmonitor.yaml" PodMonitor 1
expect "$work/monitoring/cluster-podmonitor.yaml" PrometheusRule 1
expect "$work/monitoring/cluster-podmonitor.yaml" ConfigMap 1
expect "$work/monitoring/cluster-podmonitor.yaml" ServiceMonitor 0
expect "$work/monitoring/cluster-servicemonitor.yaml" ServiceMonitor 1
expect "$work/monitoring/cluster-servicemonitor.yaml" Service 1
expect "$work/monitoring/cluster-servicemonitor.yaml" PodMonitor 0
expect "$work/monitoring/operator-servicemonitor.yaml" ServiceMonitor 1
grep -q 'kubelet_volume_stats_capacity_bytes' "$work/monitoring/cluster-podmonitor.yaml" \
  && ! grep -q 'kubelet_volume_stats_capacity_bytes' "$work/monitoring/cluster-servicemonitor.yaml" \
  && grep -q '/ 1073741824 > 0.85' "$work/monitoring/cluster-servicemonitor.yaml" \
  || { echo "FAIL the disk alert does not follow monitoring.prometheusRule.disk.capacityBytes"; fail=1; }

# refused: DESCRIPTION EXPECTED-MESSAGE helm-args...: the command must fail
# and say why.
refused() {
  local what="$1" message="$2" out
  shift 2
  if out="$("$BIN/helm" "$@" 2>&1)"; then
    echo "FAIL $what was accepted"
    fail=1
  elif grep -qF -- "$message" <<<"$out"; then
    echo "ok   $what is refused ($message)"
  else
    echo "FAIL $what failed without saying $message:"
    echo "$out"
    fail=1
  fi
}
echo "== values.schema.json refuses bad values"
refused "replicas of the wrong type (lint)" "at '/replicas': got string, want integer" \
  lint --strict charts/tinykv-cluster --set replicas=five
refused "replicas of the wrong type (template)" "at '/replicas': got string, want integer" \
  template x charts/tinykv-cluster --set replicas=five
refused "replicas below the minimum" "at '/replicas': minimum" \
  template x charts/tinykv-cluster --set replicas=0
refused "a Service type outside its enum" "at '/service/type'" \
  template x charts/tinykv-cluster --set service.type=Ingress
refused "a misspelt value" "additional properties 'replcas' not allowed" \
  template x charts/tinykv-cluster --set replcas=3
refused "a misspelt nested value" "additional properties 'tagg' not allowed" \
  template x charts/tinykv-operator --set image.tagg=v1
refused "a disk threshold above 1" "at '/monitoring/prometheusRule/disk/threshold'" \
  template x charts/tinykv-cluster --set monitoring.prometheusRule.disk.threshold=85
refused "an operator pull policy outside its enum" "at '/image/pullPolicy'" \
  template x charts/tinykv-operator --set image.pullPolicy=Sometimes
refused "PodMonitor and ServiceMonitor together" "enable one" \
  template x charts/tinykv-cluster --set monitoring.podMonitor.enabled=true \
  --set monitoring.serviceMonitor.enabled=true
refused "the operator's ServiceMonitor without its Service" "needs metrics.service.enabled" \
  template x charts/tinykv-operator --set monitoring.serviceMonitor.enabled=true \
  --set metrics.service.enabled=false

echo "== the CRD: rendered on install and upgrade, kept on uninstall"
# A CRD in crds/ is installed once and never upgraded; the chart's is a
# template, so an upgrade render (no --include-crds) carries it.
"$BIN/helm" template tinykv-operator charts/tinykv-operator --namespace tinykv-system --is-upgrade \
  > "$work/upgrade.yaml"
"$BIN/helm" template tinykv-operator charts/tinykv-operator --namespace tinykv-system --is-upgrade \
  --set crds.install=false > "$work/upgrade-no-crd.yaml"
expect "$work/upgrade.yaml" CustomResourceDefinition 1
expect "$work/upgrade-no-crd.yaml" CustomResourceDefinition 0
"$PY" - manifests/crd.yaml "$work/rendered/operator.yaml" "$work/upgrade.yaml" <<'PY' || fail=1
import sys, yaml
want = yaml.safe_load(open(sys.argv[1]))
bad = 0
for path in sys.argv[2:]:
    crds = [d for d in yaml.safe_load_all(open(path)) if d and d.get("kind") == "CustomResourceDefinition"]
    if len(crds) != 1:
        print(f"FAIL {path}: {len(crds)} CRDs"); bad = 1; continue
    got = crds[0]
    meta = got["metadata"]
    if meta.get("annotations", {}).get("helm.sh/resource-policy") != "keep":
        print(f"FAIL {path}: the CRD lacks helm.sh/resource-policy: keep"); bad = 1
    if meta.get("labels", {}).get("app.kubernetes.io/managed-by") != "Helm":
        print(f"FAIL {path}: the CRD lacks the chart's labels"); bad = 1
    got = dict(got, metadata={"name": meta["name"]})
    if got != want:
        print(f"FAIL {path}: the rendered CRD differs from manifests/crd.yaml"); bad = 1
    else:
        print(f"ok   {path.rsplit('/', 1)[-1]}: the CRD is manifests/crd.yaml, with labels and the keep policy")
sys.exit(bad)
PY

echo "== common labels on every object the charts render"
"$PY" - "$work"/rendered/{operator,operator-scoped,operator-cluster-wide,cluster,cluster-overrides,cluster-tls-token}.yaml \
  "$work"/monitoring/*.yaml <<'PY' || fail=1
import sys, yaml
need = ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by", "helm.sh/chart"]
bad = n = 0
for path in sys.argv[1:]:
    for d in yaml.safe_load_all(open(path)):
        if not d:
            continue
        n += 1
        labels = d.get("metadata", {}).get("labels") or {}
        missing = [k for k in need if k not in labels]
        if missing:
            print(f"FAIL {path.rsplit('/', 1)[-1]}: {d['kind']}/{d['metadata']['name']} lacks {missing}")
            bad = 1
print(f"{'FAIL' if bad else 'ok  '} {n} rendered objects checked for the common labels")
sys.exit(bad)
PY

echo "== objects the operator builds for the example clusters"
# Its Secret, Services, PDB, NetworkPolicy (where enabled) and StatefulSet
# for every example and chart-rendered TinyKVCluster; validated with the
# rest below.
if "$CARGO" run --quiet -p tinykv-operator --bin render -- manifests/examples/cluster.yaml \
  manifests/examples/cluster-network-policy.yaml manifests/examples/cluster-tls.yaml \
  "$work"/rendered/cluster.yaml "$work"/rendered/cluster-overrides.yaml \
  "$work"/rendered/cluster-tls-token.yaml \
  > "$work/operator-built.yaml" && [ -s "$work/operator-built.yaml" ]; then
  mv "$work/operator-built.yaml" "$work/rendered/operator-built.yaml"
  echo "ok   $(grep -c '^kind:' "$work/rendered/operator-built.yaml") objects built"
  # The examples enable the NetworkPolicy at least once: it is validated too.
  if ! grep -q '^kind: NetworkPolicy$' "$work/rendered/operator-built.yaml"; then
    echo "FAIL no NetworkPolicy among the objects built"
    fail=1
  fi
  # ... and TLS both ways: the operator's CA and node certificates, and
  # cert-manager Certificates.
  for kind in Certificate; do
    grep -q "^kind: $kind\$" "$work/rendered/operator-built.yaml" \
      || { echo "FAIL no $kind among the objects built"; fail=1; }
  done
  grep -q '^  name: secure-tls-nodes$' "$work/rendered/operator-built.yaml" \
    || { echo "FAIL no node-certificates Secret among the objects built"; fail=1; }
else
  echo "FAIL the operator could not build the example clusters' objects"
  fail=1
fi

mapfile -t plain < <(find manifests -name '*.yaml' | sort)

echo "== Pod Security Standards \"restricted\" (every pod template, offline)"
# The checker first proves it catches each violation, then checks the
# charts' pods, the StatefulSets the operator builds and the plain manifests.
if ! "$PY" scripts/k8s/check_pss.py --self-test \
  || ! "$PY" scripts/k8s/check_pss.py "$work"/rendered/*.yaml "${plain[@]}"; then
  echo "FAIL a pod template does not meet Pod Security restricted"
  fail=1
fi

echo "== TinyKVClusters against the CRD schema"
"$PY" scripts/k8s/validate_cr.py manifests/crd.yaml "$work/split" \
  "${plain[@]}" "$work"/rendered/*.yaml "$work"/monitoring/*.yaml || fail=1

echo "== monitoring objects (ServiceMonitor, PodMonitor, PrometheusRule: by field, not kubernetes-validate)"
"$PY" scripts/k8s/check_monitoring.py --self-test || fail=1
"$PY" scripts/k8s/check_monitoring.py --metrics-doc docs/metrics.md --runbooks docs/operations.md \
  --dashboard charts/tinykv-cluster/files/grafana-dashboard.json \
  --built "$work/rendered/operator-built.yaml" "$work"/monitoring/*.yaml || fail=1

echo "== kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
if "$BIN/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$work"/split/*.yaml; then
  # shellcheck disable=SC2012 # counting files we wrote
  echo "ok   $(ls "$work"/split | wc -l) objects valid"
else
  echo "FAIL kubernetes-validate"
  fail=1
fi

if [ "$fail" -ne 0 ]; then
  echo "check-manifests: FAILED"
  exit 1
fi
echo "check-manifests: all passed"
