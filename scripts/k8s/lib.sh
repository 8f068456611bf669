# Shared helpers of the Kubernetes scripts. Every wait has a deadline.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "FAIL: $*"; exit 1; }

# wait_until SECONDS DESCRIPTION COMMAND...: run COMMAND until it succeeds or
# the deadline passes (polling once a second; fails loudly at the deadline).
wait_until() {
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "timed out after ${secs}s waiting for: $what"
    fi
    sleep 1
  done
  log "ok: $what"
}

# tkv_field NS NAME JSONPATH: a field of a TinyKVCluster.
tkv_field() { kubectl -n "$1" get tinykvcluster "$2" -o "jsonpath=$3"; }

# tkv_settled NS NAME REPLICAS: status shows REPLICAS ready nodes, no
# operation in progress, phase Running, and the status is for the current spec.
tkv_settled() {
  local ns="$1" name="$2" n="$3" gen obs
  [ "$(tkv_field "$ns" "$name" '{.status.readyReplicas}')" = "$n" ] || return 1
  [ "$(tkv_field "$ns" "$name" '{.status.replicas}')" = "$n" ] || return 1
  [ "$(tkv_field "$ns" "$name" '{.status.phase}')" = "Running" ] || return 1
  [ -z "$(tkv_field "$ns" "$name" '{.status.operation.type}')" ] || return 1
  gen="$(kubectl -n "$ns" get tinykvcluster "$name" -o 'jsonpath={.metadata.generation}')"
  obs="$(tkv_field "$ns" "$name" '{.status.observedGeneration}')"
  [ "$gen" = "$obs" ]
}

# members_normal NS NAME N: the nodes report exactly N members that are normal and up.
members_normal() {
  local ns="$1" name="$2" n="$3" got
  got="$(kubectl -n "$ns" get tinykvcluster "$name" \
    -o 'jsonpath={range .status.members[*]}{.state}/{.health}{"\n"}{end}' | grep -c '^normal/up$' || true)"
  [ "$got" = "$n" ]
}

# cli NS POD ARGS...: run tinykv_client inside the CLI pod.
cli() { local ns="$1" pod="$2"; shift 2; kubectl -n "$ns" exec "$pod" -- tinykv_client "$@"; }

# start_cli_pod NS NAME IMAGE: a long-running pod with the CLI, Ready when it runs.
start_cli_pod() {
  local ns="$1" name="$2" image="$3"
  kubectl -n "$ns" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $name
  labels: {app.kubernetes.io/name: tinykv-cli}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}
  terminationGracePeriodSeconds: 1
  containers:
    - name: cli
      image: $image
      imagePullPolicy: IfNotPresent
      command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 3600 & wait \$!; done"]
YAML
  kubectl -n "$ns" wait --for=condition=Ready "pod/$name" --timeout=180s
}

# write_keys NS POD ADDR COUNT PREFIX: put PREFIX<i> = value-<i> for i in 0..COUNT-1.
write_keys() {
  local ns="$1" pod="$2" addr="$3" count="$4" prefix="$5"
  kubectl -n "$ns" exec "$pod" -- /bin/sh -ec "
    i=0
    while [ \$i -lt $count ]; do
      tinykv_client $addr put ${prefix}\$i value-\$i >/dev/null
      i=\$((i + 1))
    done"
}

# check_keys NS POD ADDR COUNT PREFIX: every key reads back its value; prints the misses.
check_keys() {
  local ns="$1" pod="$2" addr="$3" count="$4" prefix="$5"
  kubectl -n "$ns" exec "$pod" -- /bin/sh -c "
    bad=0; i=0
    while [ \$i -lt $count ]; do
      got=\$(tinykv_client $addr get ${prefix}\$i 2>&1)
      if [ \"\$got\" != \"value-\$i\" ]; then echo \"MISS ${prefix}\$i: \$got\"; bad=\$((bad + 1)); fi
      i=\$((i + 1))
    done
    echo \"checked $count keys, \$bad missing or wrong\"
    [ \$bad -eq 0 ]"
}
