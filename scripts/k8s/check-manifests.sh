#!/usr/bin/env bash
# Offline checks of everything Kubernetes-facing:
#   1. crdgen output equals manifests/crd.yaml and the operator chart's copy;
#   2. helm lint and helm template for both charts (default and overridden values);
#   3. kubernetes-validate --strict for Kubernetes $K8S_VERSION on every plain
#      and rendered manifest;
#   4. the example and chart-rendered TinyKVClusters against the CRD's own schema;
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
for copy in manifests/crd.yaml charts/tinykv-operator/crds/tinykvclusters.yaml; do
  if diff -u "$copy" "$work/crd.yaml"; then
    echo "ok   $copy"
  else
    echo "FAIL $copy is stale: run 'make crdgen'"
    fail=1
  fi
done

echo "== helm lint and template"
mkdir -p "$work/rendered"
"$BIN/helm" lint --strict charts/tinykv-operator charts/tinykv-cluster
"$BIN/helm" template tinykv-operator charts/tinykv-operator --namespace tinykv-system --include-crds \
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
  --set tls.clientTokenSecretRef.name=tokens-secret > "$work/rendered/cluster-tls-token.yaml"
for f in "$work"/rendered/*.yaml; do
  [ -s "$f" ] || { echo "FAIL helm rendered nothing into $(basename "$f")"; fail=1; }
done

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
  "${plain[@]}" "$work"/rendered/*.yaml || fail=1

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
