#!/usr/bin/env bash
# TinyKV resilience demo against the running compose cluster (make docker-up):
#   1. put I_WILL_SURVIVE under a fresh key (QUORUM)
#   2. find the key's primary owner (tinykv_client ... owners <key>)
#   3. docker kill that container
#   4. read the key at QUORUM through another node -> "SUCCESS! Retrieved: I_WILL_SURVIVE"
#   5. while it is down, overwrite the key (QUORUM) with I_WILL_SURVIVE_AGAIN
#   6. docker start it, wait until healthy, and poll its own replica
#      (tinykv_client <it> local-get <key>) until it holds the new value
#      (hinted handoff / read repair), with a deadline.
# Exits non-zero with the reason on any failure. The CLI runs inside the node
# containers (docker exec), so this works whichever way the image was built.
#
#   TINYKV_RESILIENCE_KEY        key to use (default: a fresh resilience-<time>-<pid>)
#   TINYKV_CATCHUP_TIMEOUT       seconds to wait for the restarted replica (default 60)
#   TINYKV_UP_TIMEOUT            seconds to wait for the restarted node's health (default 90)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

KEY="${TINYKV_RESILIENCE_KEY:-resilience-$(date +%s)-$$}"
VALUE="I_WILL_SURVIVE"
VALUE2="I_WILL_SURVIVE_AGAIN"
CATCHUP_TIMEOUT="${TINYKV_CATCHUP_TIMEOUT:-60}"
UP_TIMEOUT="${TINYKV_UP_TIMEOUT:-90}"

step() { printf '\n==> %s\n' "$*"; }
# This script's own die (replacing lib.sh's): the failure line says RESILIENCE.
die() { printf '\nRESILIENCE FAILED: %s\n' "$*" >&2; exit 1; }
# kv <container> <tinykv_client args...>: the CLI inside <container>, talking to that node
kv() { local c=$1; shift; docker exec "$c" tinykv_client "$c:50051" "$@"; }

step "checking the cluster"
read -r -a nodes <<<"$TINYKV_NODES"
for c in "${nodes[@]}"; do
  st="$(tinykv_health "$c")"
  [ "$st" = healthy ] || die "$c is $st, expected healthy (run 'make up' first)"
done
echo "all ${#nodes[@]} nodes healthy"
via="${nodes[0]}"

step "put $KEY = $VALUE (QUORUM) through $via"
kv "$via" put "$KEY" "$VALUE" --consistency quorum || die "put through $via failed"

step "finding the primary owner of $KEY"
owners="$(kv "$via" owners "$KEY")" || die "owners query failed"
primary="$(printf '%s\n' "$owners" | sed -n 1p | tr -d '[:space:]')"
# shellcheck disable=SC2086 # split the owners, one per line, onto one line
echo "preference list: $(printf '%s ' $owners)"
[ -n "$primary" ] || die "owners returned no node"
docker inspect "$primary" >/dev/null 2>&1 || die "primary owner '$primary' is not a container name"
echo "primary owner: $primary"

# A node that is not the one we kill coordinates the reads and writes.
reader=""
for c in "${nodes[@]}"; do [ "$c" != "$primary" ] && { reader="$c"; break; }; done

step "docker kill $primary"
docker kill "$primary" >/dev/null || die "docker kill $primary failed"
[ "$(tinykv_health "$primary")" = stopped ] || die "$primary still running after docker kill"
echo "$primary is down"

step "get $KEY at QUORUM through $reader"
got=""
for attempt in 1 2 3; do
  if got="$(kv "$reader" get "$KEY" --consistency quorum 2>/tmp/tinykv-resilience.err)"; then break; fi
  echo "attempt $attempt failed: $(cat /tmp/tinykv-resilience.err)" >&2
  got=""
  sleep 1
done
[ -n "$got" ] || die "QUORUM read through $reader failed with $primary down"
[ "$got" = "$VALUE" ] || die "QUORUM read returned '$got', expected '$VALUE'"
[ "$attempt" = 1 ] || echo "(succeeded on attempt $attempt)"
echo "SUCCESS! Retrieved: $got"

step "overwrite $KEY = $VALUE2 (QUORUM) through $reader while $primary is down"
kv "$reader" put "$KEY" "$VALUE2" --consistency quorum || die "QUORUM write with $primary down failed"

step "docker start $primary"
docker start "$primary" >/dev/null || die "docker start $primary failed"
t0=$(date +%s)
tinykv_wait_healthy "$UP_TIMEOUT" "$primary" || die "$primary did not become healthy within ${UP_TIMEOUT}s after restart"
echo "$primary healthy again after $(( $(date +%s) - t0 ))s"

step "waiting for $primary's own replica of $KEY to catch up (deadline ${CATCHUP_TIMEOUT}s)"
t0=$(date +%s); end=$(( t0 + CATCHUP_TIMEOUT )); local_val=""; first=""; n=0
while :; do
  local_val="$(kv "$primary" local-get "$KEY" 2>/dev/null || true)"
  [ -n "$first" ] || first="${local_val:-<none>}"
  [ "$local_val" = "$VALUE2" ] && break
  [ "$(date +%s)" -ge "$end" ] && break
  n=$((n + 1))
  # Every 5th poll, read at QUORUM through the restarted node, which lets read
  # repair fix its replica if hinted handoff has not delivered yet.
  if [ $((n % 5)) = 0 ]; then kv "$primary" get "$KEY" --consistency quorum >/dev/null 2>&1 || true; fi
  sleep 1
done
echo "$primary local replica right after restart: $first"
[ "$local_val" = "$VALUE2" ] || die "$primary's replica of $KEY is '${local_val:-<none>}' after ${CATCHUP_TIMEOUT}s, expected '$VALUE2'"
if [ "$n" -ge 5 ]; then how="after ${n} polls (read repair reads were issued)"; else how="after ${n} polls, before any read-repair read"; fi
echo "$primary caught up in $(( $(date +%s) - t0 ))s, $how: local-get $KEY = $local_val"

step "done"
echo "RESILIENCE OK: key survived the loss of its primary owner ($primary), and the owner caught up after restart"
