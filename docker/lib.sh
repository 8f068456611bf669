# Shared helpers for the TinyKV docker scripts (sourced, not executed).
# shellcheck shell=bash

TINYKV_NODES="${TINYKV_NODES:-tinykv-node1 tinykv-node2 tinykv-node3 tinykv-node4 tinykv-node5}"
TINYKV_IMAGE="${TINYKV_IMAGE:-tinykv:latest}"
TINYKV_NET="${TINYKV_NET:-tinykv-net}"
TINYKV_PROJECT="${TINYKV_PROJECT:-tinykv}"

# The compose command: `docker compose` (v2) when present, else
# docker-compose (v1); TINYKV_COMPOSE=v1 or v2 picks one (CI runs the compose
# test with each).
tinykv_compose() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  case "$(tinykv_compose_kind)" in
    v2) docker compose -p "$TINYKV_PROJECT" -f "$root/docker-compose.yml" "$@" ;;
    v1) docker-compose -p "$TINYKV_PROJECT" -f "$root/docker-compose.yml" "$@" ;;
    *)
      echo "no compose tool: install 'docker compose' (v2) or docker-compose (v1)${TINYKV_COMPOSE:+ (TINYKV_COMPOSE=$TINYKV_COMPOSE)}" >&2
      return 127
      ;;
  esac
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
