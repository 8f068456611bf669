#!/usr/bin/env bash
# Pod-deletion demo against the current kube context and an existing
# TinyKVCluster (default: tinykv/demo from manifests/examples/cluster.yaml):
#   1. write a set of marker keys;
#   2. start the benchmark Job (manifests/examples/bench-job.yaml shape);
#   3. while it runs, delete one node pod;
#   4. wait for the Job to finish and for the pod to be back;
#   5. read every marker key back at QUORUM and print the benchmark summary.
# Env: NS (tinykv), CLUSTER (demo), KEYS (100), VICTIM (<cluster>-1), IMAGE (tinykv:latest).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

NS="${NS:-tinykv}"
CLUSTER="${CLUSTER:-demo}"
KEYS="${KEYS:-100}"
VICTIM="${VICTIM:-$CLUSTER-1}"
IMAGE="${IMAGE:-tinykv:latest}"
ADDR="$CLUSTER.$NS.svc.cluster.local:50051"
CLI_POD=tinykv-demo-cli
JOB=tinykv-bench-demo

kubectl -n "$NS" get tinykvcluster "$CLUSTER" >/dev/null || die "no TinyKVCluster $NS/$CLUSTER"
replicas="$(tkv_field "$NS" "$CLUSTER" '{.spec.replicas}')"
wait_until 300 "$CLUSTER settled at $replicas nodes" tkv_settled "$NS" "$CLUSTER" "$replicas"

start_cli_pod "$NS" "$CLI_POD" "$IMAGE"
trap 'kubectl -n "$NS" delete pod "$CLI_POD" --wait=false >/dev/null 2>&1 || true' EXIT
log "writing $KEYS marker keys"
write_keys "$NS" "$CLI_POD" "$ADDR" "$KEYS" demo-marker-

log "starting the benchmark Job $JOB"
kubectl -n "$NS" delete job "$JOB" --ignore-not-found >/dev/null
kubectl -n "$NS" apply -f - <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  name: $JOB
spec:
  backoffLimit: 0
  ttlSecondsAfterFinished: 3600
  template:
    metadata:
      labels: {app.kubernetes.io/name: tinykv-bench}
    spec:
      restartPolicy: Never
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: bench
          image: $IMAGE
          imagePullPolicy: IfNotPresent
          command: ["/usr/local/bin/tinykv-bench"]
          args: ["--endpoints=$ADDR", "--workers=50", "--duration=60s", "--workload=a",
                 "--consistency=quorum", "--json", "--no-progress", "--max-error-rate=0.05"]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: ["ALL"]}
YAML
wait_until 180 "benchmark pod running" sh -c \
  "kubectl -n $NS get pods -l job-name=$JOB -o jsonpath='{.items[0].status.phase}' | grep -qx Running"

log "deleting node pod $VICTIM while the benchmark runs"
kubectl -n "$NS" delete pod "$VICTIM" --wait=false

log "reading every marker key while $VICTIM is away"
check_keys "$NS" "$CLI_POD" "$ADDR" "$KEYS" demo-marker- || log "some reads failed while the pod was away"

kubectl -n "$NS" wait --for=condition=complete "job/$JOB" --timeout=300s \
  || { kubectl -n "$NS" logs "job/$JOB" | tail -n 40; die "benchmark Job did not complete"; }
wait_until 600 "$VICTIM back, cluster settled" tkv_settled "$NS" "$CLUSTER" "$replicas"

log "benchmark summary"
kubectl -n "$NS" logs "job/$JOB" | tail -n 40
log "reading every marker key after recovery"
check_keys "$NS" "$CLI_POD" "$ADDR" "$KEYS" demo-marker-
log "resilience demo passed"
