# Shared helpers of every TinyKV shell script (sourced, not executed):
# logging and deadlines, the system's apt sources, the compose tool and
# container health, Kubernetes. Source it as `. scripts/lib.sh` from the repository root, or
# `. "$(dirname "$0")/lib.sh"` from a script in scripts/.
# shellcheck shell=bash

# --- general --------------------------------------------------------------

# log MSG...: "[TAG] MSG" on stderr; TAG is $TINYKV_LOG_TAG (set it to the
# script's name), else the time of day.
log() { printf '[%s] %s\n' "${TINYKV_LOG_TAG:-$(date +%H:%M:%S)}" "$*" >&2; }
# die MSG...: log "ERROR: MSG" and exit 1.
die() { log "ERROR: $*"; exit 1; }

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

# --- apt sources ----------------------------------------------------------
# Only the system's own apt configuration is read (no archive is named in
# this repository). TINYKV_APT_ETC (default /etc/apt) points elsewhere, for
# tests.

# tinykv_os_codename: the running system's release codename (e.g. bookworm).
tinykv_os_codename() {
  local id=""
  if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    id="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  fi
  [ -n "$id" ] || id="$(lsb_release -sc 2>/dev/null || true)"
  printf '%s\n' "$id"
}

# tinykv_apt_entries: every enabled binary ("deb") source of the system, one
# per line in the one-line format `deb [OPTIONS] URI SUITE COMPONENT...`,
# from sources.list, sources.list.d/*.list and the deb822 files
# sources.list.d/*.sources (one line per URI and suite; Signed-By and
# Architectures become signed-by= and arch=; an inline Signed-By key is left
# out, so apt falls back to its trusted keys).
tinykv_apt_entries() {
  local etc="${TINYKV_APT_ETC:-/etc/apt}" f
  for f in "$etc/sources.list" "$etc"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -e 's/#.*$//' -e 's/[[:space:]]\{1,\}/ /g' -e 's/^ //; s/ $//' "$f" | grep -E '^deb ' || true
  done
  for f in "$etc"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
      function flush(   opts, nu, ns, i, j, U, S) {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no" && uris != "" && suites != "") {
          opts = ""
          if (arch != "") { gsub(/[ \t]+/, ",", arch); opts = opts " arch=" arch }
          if (signed != "") { gsub(/[ \t]+/, ",", signed); opts = opts " signed-by=" signed }
          if (opts != "") opts = " [" substr(opts, 2) "]"
          nu = split(uris, U, /[ \t]+/); ns = split(suites, S, /[ \t]+/)
          for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
            print "deb" opts " " U[i] " " S[j] (comps != "" ? " " comps : "")
        }
        types = uris = suites = comps = signed = arch = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { next }   # a continuation line (an inline key): skipped
      {
        c = index($0, ":"); if (c == 0) next
        field = tolower(trim(substr($0, 1, c - 1))); value = trim(substr($0, c + 1))
        if (field == "types") types = value
        else if (field == "uris") uris = value
        else if (field == "suites") suites = value
        else if (field == "components") comps = value
        else if (field == "signed-by") signed = (value ~ /^\//) ? value : ""
        else if (field == "architectures") arch = value
        else if (field == "enabled") enabled = value
      }
      END { flush() }
    ' "$f"
  done
}

# tinykv_apt_entry_field N ENTRY: field N of a one-line entry from
# tinykv_apt_entries, counted after `deb` and its [OPTIONS]:
# 1 = URI, 2 = suite, 3 = components.
tinykv_apt_entry_field() {
  local rest="${2#deb }"
  case "$rest" in "["*) rest="${rest#*] }" ;; esac
  case "$1" in
    1) printf '%s\n' "${rest%% *}" ;;
    2) rest="${rest#* }"; printf '%s\n' "${rest%% *}" ;;
    3) rest="${rest#* }"; rest="${rest#* }"; printf '%s\n' "$rest" ;;
  esac
}

# --- Docker and compose ---------------------------------------------------

TINYKV_NODES="${TINYKV_NODES:-tinykv-node1 tinykv-node2 tinykv-node3 tinykv-node4 tinykv-node5}"
TINYKV_IMAGE="${TINYKV_IMAGE:-tinykv:latest}"
TINYKV_NET="${TINYKV_NET:-tinykv-net}"
TINYKV_PROJECT="${TINYKV_PROJECT:-tinykv}"

# The compose command, the one place that chooses it (the Makefile calls it
# through scripts/compose.sh): `docker compose` (v2) when present, else
# docker-compose (v1); TINYKV_COMPOSE=v1 or v2 picks one (CI runs the compose
# test with each).
tinykv_compose() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  # The nodes mount the cluster secret: make one before the first start.
  if [ "${1:-}" = up ]; then
    export TINYKV_SECRET_FILE="${TINYKV_SECRET_FILE:-$root/.tinykv/cluster.secret}"
    tinykv_ensure_secret "$TINYKV_SECRET_FILE" || return 1
  fi
  # TINYKV_TLS=1: the TLS override, with certificates made before the first start.
  local files=(-f "$root/docker-compose.yml")
  if [ "${TINYKV_TLS:-0}" = 1 ]; then
    files+=(-f "$root/docker-compose.tls.yml")
    export TINYKV_CERTS_DIR="${TINYKV_CERTS_DIR:-$root/.tinykv/certs}"
    if [ "${1:-}" = up ]; then tinykv_ensure_certs "$TINYKV_CERTS_DIR" || return 1; fi
  fi
  case "$(tinykv_compose_kind)" in
    v2) docker compose -p "$TINYKV_PROJECT" "${files[@]}" "$@" ;;
    v1) docker-compose -p "$TINYKV_PROJECT" "${files[@]}" "$@" ;;
    *)
      echo "no compose tool: install 'docker compose' (v2) or docker-compose (v1)${TINYKV_COMPOSE:+ (TINYKV_COMPOSE=$TINYKV_COMPOSE)}" >&2
      return 127
      ;;
  esac
}

# ensure_secret <file>: writes a new random cluster secret (64 hex digits)
# to <file> unless it exists. A directory it creates is private to this
# user (an existing one is left as it is); the file itself is
# world-readable so the nodes' unprivileged user can read it through the
# bind mount.
tinykv_ensure_secret() {
  local file=$1 dir
  if [ -d "$file" ]; then
    # `docker compose up` run before any secret existed makes the missing
    # bind-mount source a directory.
    echo "$file is a directory, not a secret file: remove it (rmdir '$file') and run again" >&2
    return 1
  fi
  [ -f "$file" ] && [ -s "$file" ] && return 0
  dir="$(dirname "$file")"
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir" && chmod 700 "$dir" || return 1
  fi
  (umask 022; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$file.tmp" && echo >>"$file.tmp" && mv "$file.tmp" "$file") || return 1
  echo "created the cluster secret $file (the nodes and admin commands use it)" >&2
}

# ensure_certs <dir>: a CA and a certificate for every node of
# TINYKV_NODES (named by its id, localhost and 127.0.0.1), made with
# `tinykv_client certs` inside the image unless <dir> already holds them.
# The directory is bind-mounted into the nodes, whose unprivileged user
# must read it: it and the keys are world-readable; the directory above it
# (.tinykv, made private by ensure_secret) keeps other host users out.
tinykv_ensure_certs() {
  local dir=$1 node missing=0 args=()
  for node in $TINYKV_NODES; do
    [ -s "$dir/$node.pem" ] || missing=1
    args+=(--node "$node=$node,localhost,127.0.0.1")
  done
  [ -s "$dir/ca.pem" ] && [ "$missing" = 0 ] && return 0
  mkdir -p "$dir" && chmod 755 "$dir" || return 1
  docker run --rm --user "$(id -u):$(id -g)" -v "$dir:/out" --entrypoint tinykv_client \
    "$TINYKV_IMAGE" - certs --out /out "${args[@]}" >/dev/null || return 1
  chmod 644 "$dir"/*.pem "$dir"/tinykv-node*.key || return 1
  chmod 600 "$dir/ca.key" || return 1
  echo "created TLS certificates in $dir (CA: $dir/ca.pem)" >&2
}

# tls_docker_args: the `docker run` flags that let a client container dial
# the TLS compose cluster (the CA mounted and named); nothing without TLS.
tinykv_tls_docker_args() {
  [ "${TINYKV_TLS:-0}" = 1 ] || return 0
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  printf '%s\n' -v "${TINYKV_CERTS_DIR:-$root/.tinykv/certs}:/run/tinykv/tls:ro" -e TINYKV_TLS_CA=/run/tinykv/tls/ca.pem
}

# Which compose tool tinykv_compose uses: v2, v1 or none.
tinykv_compose_kind() {
  local want="${TINYKV_COMPOSE:-auto}"
  if [ "$want" != v1 ] && docker compose version >/dev/null 2>&1; then
    echo v2
  elif [ "$want" != v2 ] && command -v docker-compose >/dev/null 2>&1; then
    echo v1
  else
    echo none
  fi
}

# health <container>: starting|healthy|unhealthy|none|stopped|absent
tinykv_health() {
  local st
  st="$(docker inspect -f '{{.State.Running}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null)" || { echo absent; return; }
  case "$st" in
    "true "*) echo "${st#true }" ;;
    *) echo stopped ;;
  esac
}

# wait_healthy <deadline-seconds> <container>...: polls until every container's
# Docker healthcheck reports healthy; fails at the deadline (or at once if a
# container is not running) and prints the states and the last logs.
tinykv_wait_healthy() {
  local deadline=$1; shift
  local end=$(( $(date +%s) + deadline )) c st all states
  while :; do
    all=1; states=""
    for c in "$@"; do
      st="$(tinykv_health "$c")"
      states="$states $c=$st"
      [ "$st" = healthy ] || all=0
      if [ "$st" = stopped ] || [ "$st" = absent ]; then
        # restart is "no": a container that is not running will not become healthy
        echo "wait-healthy: $c is $st${states:+ (states:$states)}" >&2
        docker logs --tail 30 "$c" >&2 2>&1 || true
        return 1
      fi
    done
    if [ "$all" = 1 ]; then
      echo "all healthy:$states" >&2
      return 0
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "wait-healthy: not healthy after ${deadline}s:$states" >&2
      for c in "$@"; do
        [ "$(tinykv_health "$c")" = healthy ] && continue
        echo "--- $c: last health probes" >&2
        docker inspect -f '{{if .State.Health}}{{range .State.Health.Log}}{{.ExitCode}}: {{.Output}}{{end}}{{end}}' "$c" >&2 2>/dev/null || true
        echo "--- $c: last logs" >&2
        docker logs --tail 20 "$c" >&2 2>&1 || true
      done
      return 1
    fi
    sleep 1
  done
}

# kv <via-container> <args...>: run tinykv_client inside a running node container
# (the image ships the CLI), e.g. kv tinykv-node2 tinykv-node2:50051 get k quorum
tinykv_kv() {
  local via=$1; shift
  docker exec "$via" tinykv_client "$@"
}

# --- Kubernetes -----------------------------------------------------------

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

# k8s_cli NS POD ARGS...: run tinykv_client inside the CLI pod.
k8s_cli() { local ns="$1" pod="$2"; shift 2; kubectl -n "$ns" exec "$pod" -- tinykv_client "$@"; }

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
  # Pod Security "restricted", like manifests/examples/cli-pod.yaml.
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    seccompProfile: {type: RuntimeDefault}
  terminationGracePeriodSeconds: 1
  containers:
    - name: cli
      image: $image
      imagePullPolicy: IfNotPresent
      command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 3600 & wait \$!; done"]
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: ["ALL"]}
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
