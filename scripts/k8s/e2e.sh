#!/usr/bin/env bash
# End-to-end test against the CURRENT kube context (kind, k3d, a cloud cluster).
# NOT run in CI: no Kubernetes API server can run on the CI machine.
#
#   install the CRD and the operator (helm) -> create a 5-node cluster ->
#   write keys -> scale 5 -> 3 -> 5 (checking every key after each step) ->
#   delete a pod, read every key while it is gone and after it is back.
#
# Needs: kubectl, helm (make helm-tools), and the images tinykv:latest and
# tinykv-operator:latest pullable by the cluster (for kind:
# `kind load docker-image tinykv:latest tinykv-operator:latest`, or set
# KIND_CLUSTER=<name> and this script loads them).
# Env: E2E_NAMESPACE (tinykv-e2e), E2E_KEYS (200), E2E_KEEP=1 to keep everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

NS="${E2E_NAMESPACE:-tinykv-e2e}"
OP_NS="${E2E_OPERATOR_NAMESPACE:-tinykv-system}"
NAME=e2e
KEYS="${E2E_KEYS:-200}"
IMAGE="${E2E_IMAGE:-tinykv:latest}"
OP_IMAGE_REPO="${E2E_OPERATOR_REPO:-tinykv-operator}"
ADDR="$NAME.$NS.svc.cluster.local:50051"
CLI_POD=e2e-cli

command -v kubectl >/dev/null || die "kubectl not found (make helm-tools puts one in .tools/bin)"
command -v helm >/dev/null || die "helm not found (make helm-tools)"
kubectl version >/dev/null 2>&1 || die "no reachable cluster in the current kube context"
log "kube context: $(kubectl config current-context)"

cleanup() {
  if [ "${E2E_KEEP:-0}" = 1 ]; then log "E2E_KEEP=1: leaving everything in place"; return; fi
  log "cleaning up"
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  helm uninstall tinykv-operator -n "$OP_NS" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [ -n "${KIND_CLUSTER:-}" ]; then
  log "loading images into kind cluster $KIND_CLUSTER"
  kind load docker-image --name "$KIND_CLUSTER" "$IMAGE" "$OP_IMAGE_REPO:latest"
fi

log "installing the operator (watching $NS only: a Role there)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
helm upgrade --install tinykv-operator charts/tinykv-operator \
  --namespace "$OP_NS" --create-namespace --set "watchNamespaces={$NS}" \
  --set image.repository="$OP_IMAGE_REPO" --set image.tag=latest --wait --timeout 5m
kubectl wait --for=condition=Established crd/tinykvclusters.tinykv.io --timeout=60s

log "creating a 5-node cluster"
helm upgrade --install "$NAME" charts/tinykv-cluster --namespace "$NS" \
  --set replicas=5 --set replicationFactor=3 --set image.repository="${IMAGE%:*}" \
  --set image.tag="${IMAGE##*:}" --set storage.whenDeleted=Delete
wait_until 600 "5 nodes ready and Running" tkv_settled "$NS" "$NAME" 5
wait_until 300 "5 members normal and up" members_normal "$NS" "$NAME" 5
kubectl -n "$NS" get tinykvcluster "$NAME"

start_cli_pod "$NS" "$CLI_POD" "$IMAGE"
log "writing $KEYS keys"
write_keys "$NS" "$CLI_POD" "$ADDR" "$KEYS" e2e-key-
check_keys "$NS" "$CLI_POD" "$ADDR" "$KEYS" e2e-key-

log "scaling 5 -> 3 (decommission one node at a time)"
kubectl -n "$NS" scale tinykvcluster "$NAME" --replicas=3
wait_until 900 "scaled down to 3" tkv_settled "$NS" "$NAME" 3
wait_until 300 "3 members normal and up" members_normal "$NS" "$NAME" 3
check_keys "$NS" "$CLI_POD" "$ADDR" "$KEYS" e2e-key-

log "scaling below the replication factor is refused"
kubectl -n "$NS" scale tinykvcluster "$NAME" --replicas=2
wait_until 120 "Degraded/BelowReplicationFactor" sh -c \
  "kubectl -n $NS get tinykvcluster $NAME -o jsonpath='{.status.conditions[?(@.type==\"Degraded\")].reason}' | grep -qx BelowReplicationFactor"
[ "$(kubectl -n "$NS" get statefulset "$NAME" -o 'jsonpath={.spec.replicas}')" = 3 ] || die "StatefulSet went below RF"

log "scaling 3 -> 5"
kubectl -n "$NS" scale tinykvcluster "$NAME" --replicas=5
wait_until 900 "scaled up to 5" tkv_settled "$NS" "$NAME" 5
wait_until 300 "5 members normal and up" members_normal "$NS" "$NAME" 5
check_keys "$NS" "$CLI_POD" "$ADDR" "$KEYS" e2e-key-

log "deleting pod $NAME-1"
kubectl -n "$NS" delete pod "$NAME-1" --wait=false
check_keys "$NS" "$CLI_POD" "$ADDR" "$KEYS" e2e-key-
wait_until 600 "pod back and 5 ready" tkv_settled "$NS" "$NAME" 5
wait_until 300 "5 members normal and up" members_normal "$NS" "$NAME" 5
check_keys "$NS" "$CLI_POD" "$ADDR" "$KEYS" e2e-key-

kubectl -n "$NS" get tinykvcluster "$NAME" -o wide
log "e2e passed"
