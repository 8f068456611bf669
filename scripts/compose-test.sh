#!/usr/bin/env bash
# TinyKV compose test: the whole Docker story end to end, bounded in time.
#
#   build tinykv:latest by the local (air-gapped) path -> compose up -> wait healthy
#   -> put/get through each of the 5 nodes (and the published host ports)
#   -> the original TinyKV's `docker run ... tinykv ./build/src/tinykv_client` form
#   -> a short run of make benchmark's script (write-only, loaded 50/50 mix): 0 errors
#   -> the resilience flow (primary owner killed, QUORUM read, restart, catch-up)
#   -> network cut of one container (docker network disconnect): QUORUM reads and
#      writes still succeed through the others; reconnect and it catches up
#   -> down -v
#
# Cleans up (down -v) on exit, failure, Ctrl-C or timeout. Ends with a line
# "N passed, M failed". Exit 0 only when every check passed.
# Skips (exit 0, says so) when there is no Docker engine, unless
# TINYKV_COMPOSE_TEST_REQUIRE=1.
#
#   TINYKV_COMPOSE_TEST_TIMEOUT  overall limit in seconds, build included (default 1800)
#   TINYKV_IMAGE_PATH            build path (default local; "skip" reuses an existing image)
#   TINYKV_HOST_PORT1..5         host ports to publish (default 50051..50055)
#   TINYKV_TLS=1                 run the cluster with TLS (docker-compose.tls.yml)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT="$(pwd)"

LIMIT="${TINYKV_COMPOSE_TEST_TIMEOUT:-1800}"
if [ -z "${_TINYKV_COMPOSE_TEST_INNER:-}" ]; then
  if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    if [ "${TINYKV_COMPOSE_TEST_REQUIRE:-0}" = 1 ]; then echo "compose-test: no Docker engine" >&2; exit 1; fi
    echo "compose-test: SKIPPED (no Docker engine reachable)"
    exit 0
  fi
  export _TINYKV_COMPOSE_TEST_INNER=1
  # timeout signals the whole process group (the docker CLIs too); the EXIT trap
  # below then tears the cluster down; KILL only if that takes over 120s more.
  exec timeout -k 120 "$LIMIT" "$0" "$@"
fi

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
read -r -a NODES <<<"$TINYKV_NODES"
export TINYKV_IMAGE_PATH="${TINYKV_IMAGE_PATH:-local}"
LOGDIR="${TINYKV_COMPOSE_TEST_LOGS:-${CARGO_TARGET_DIR:-$ROOT/target}/compose-test}"
mkdir -p "$LOGDIR"
T_START=$(date +%s)
exec 3>&1   # fd 3: progress notes from inside checks (whose output is captured)
PASSED=0; FAILED=0; FAILED_NAMES=()

ts() { printf '[%4ss]' "$(( $(date +%s) - T_START ))"; }
pass() { PASSED=$((PASSED + 1)); echo "$(ts) PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); FAILED_NAMES+=("$*"); echo "$(ts) FAIL: $*"; }
# check <name> <command...>: run, record pass/fail, show output on failure
check() {
  local name=$1; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$name"; return 0; fi
  fail "$name"; printf '%s\n' "$out" | tail -n 40 | sed 's/^/    | /'; return 1
}
# kv <container> <args...>: tinykv_client inside <container>, talking to that node
# on loopback (works even while the container is cut off its network)
kv() { local c=$1; shift; docker exec "$c" timeout 30 tinykv_client 127.0.0.1:50051 "$@"; }

summary() {
  echo
  echo "compose-test: $(( $(date +%s) - T_START ))s total; logs in $LOGDIR"
  for n in "${FAILED_NAMES[@]}"; do echo "  failed: $n"; done
  echo "$PASSED passed, $FAILED failed"
}
CLEANED=0
cleanup() {
  local rc=$?
  [ "$CLEANED" = 1 ] && return; CLEANED=1
  trap - EXIT INT TERM
  if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
    for c in "${NODES[@]}"; do docker logs "$c" >"$LOGDIR/$c.log" 2>&1 || true; done
  fi
  echo "$(ts) cleanup: compose down -v"
  tinykv_compose down -v --remove-orphans >"$LOGDIR/down.log" 2>&1 || true
  [ "$rc" -ne 0 ] && [ "$FAILED" = 0 ] && fail "aborted (exit $rc, signal or timeout after ${LIMIT}s?)"
  summary
  [ "$FAILED" = 0 ] && [ "$rc" = 0 ] && exit 0
  exit 1
}
trap cleanup EXIT
trap 'echo "$(ts) interrupted" >&2; exit 130' INT
trap 'echo "$(ts) terminated (timeout ${LIMIT}s?)" >&2; exit 143' TERM
abort() { echo "$(ts) aborting: $*"; exit 1; }

# Host ports: the defaults 50051..50055 unless something (e.g. `make run`)
# already listens there; then 51051..51055. TINYKV_HOST_PORT1..5 override.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "${TINYKV_HOST_PORT1:-}" ]; then
  base=50051
  for i in 0 1 2 3 4; do port_busy $((50051 + i)) && base=51051; done
  for i in 1 2 3 4 5; do export "TINYKV_HOST_PORT$i=$((base + i - 1))"; done
fi
# shellcheck disable=SC2153 # TINYKV_HOST_PORT1..5 are set together above
echo "=== compose-test (limit ${LIMIT}s, build path $TINYKV_IMAGE_PATH, host ports ${TINYKV_HOST_PORT1}..${TINYKV_HOST_PORT5}) ==="

# --- 1. image --------------------------------------------------------------
if [ "$TINYKV_IMAGE_PATH" = skip ]; then
  check "image $TINYKV_IMAGE exists" docker image inspect "$TINYKV_IMAGE" || abort "no image"
else
  t=$(date +%s)
  check "build $TINYKV_IMAGE by the $TINYKV_IMAGE_PATH path" scripts/build-image.sh || abort "image build failed"
  echo "    image build took $(( $(date +%s) - t ))s"
fi
echo "    compose tool: $(tinykv_compose_kind) ($(tinykv_compose version 2>/dev/null | sed -n 1p))"
check "docker-compose.yml is valid" tinykv_compose config -q

# --- 2. up -----------------------------------------------------------------
tinykv_compose down -v --remove-orphans >/dev/null 2>&1 || true
t=$(date +%s)
check "compose up -d" tinykv_compose up -d || abort "compose up failed"
check "all 5 nodes healthy" tinykv_wait_healthy "${TINYKV_UP_TIMEOUT:-120}" "${NODES[@]}" || abort "cluster not healthy"
echo "    up + healthy took $(( $(date +%s) - t ))s"
check "network tinykv-net has the 5 nodes" bash -c \
  "[ \"\$(docker network inspect -f '{{range .Containers}}{{.Name}} {{end}}' tinykv-net | wc -w)\" -ge 5 ]"
# Each member has a "health" field, the top level has none ("node_id"
# is in both, so counting it let four members pass).
check "status lists exactly 5 members" bash -c \
  "[ \"\$(docker exec ${NODES[0]} tinykv_client ${NODES[0]}:50051 status --json | grep -o '\"health\"' | wc -l)\" -eq 5 ]"

# --- 3. smoke: put/get through each node -----------------------------------
smoke_one() { # put through node $1, read back at QUORUM through node $2
  local a=$1 b=$2 key="smoke-$1-$$" val="value-from-$1" got
  kv "$a" put "$key" "$val" --consistency quorum >/dev/null || { echo "put via $a failed"; return 1; }
  got="$(kv "$b" get "$key" --consistency quorum)" || { echo "get via $b failed"; return 1; }
  [ "$got" = "$val" ] || { echo "got '$got' via $b, expected '$val'"; return 1; }
}
for i in "${!NODES[@]}"; do
  a="${NODES[$i]}"; b="${NODES[$(( (i + 1) % ${#NODES[@]} ))]}"
  check "smoke: put via $a, QUORUM get via $b" smoke_one "$a" "$b"
done
HOST_CLI="${CARGO_TARGET_DIR:-$ROOT/target}/release/tinykv_client"
# With TLS the host CLI trusts the cluster's CA (its certificates name 127.0.0.1).
HOST_CA=""
if [ "${TINYKV_TLS:-0}" = 1 ]; then HOST_CA="${TINYKV_CERTS_DIR:-$ROOT/.tinykv/certs}/ca.pem"; fi
if [ -x "$HOST_CLI" ]; then
  host_port_one() { # the published port of node i answers from the host
    local i=$1 port=$2 got
    local tls=()
    [ -n "$HOST_CA" ] && tls=(--tls-ca "$HOST_CA")
    got="$("$HOST_CLI" "${tls[@]}" "127.0.0.1:$port" get "smoke-${NODES[$i]}-$$" --consistency quorum)" || return 1
    [ "$got" = "value-from-${NODES[$i]}" ] || { echo "got '$got'"; return 1; }
  }
  for i in "${!NODES[@]}"; do
    var="TINYKV_HOST_PORT$((i + 1))"; port="${!var:-$((50051 + i))}"
    check "host port $port reaches ${NODES[$i]}" host_port_one "$i" "$port"
  done
else
  echo "    (no host tinykv_client at $HOST_CLI: host-port checks skipped)"
fi

# --- 3a. the original TinyKV's documented CLI form --------------------------
# `docker run -it --rm --network tinykv-net tinykv ./build/src/tinykv_client
# tinykv-node1:50051 put my_key my_data 3`, then `get my_key 2`, as its README
# showed (without -it: no terminal here).
# With TLS the container also gets the CA (tinykv_tls_docker_args).
old_form() {
  local key="old-form-$$" got tls=()
  mapfile -t tls < <(tinykv_tls_docker_args)
  docker run --rm --network "$TINYKV_NET" "${tls[@]}" "$TINYKV_IMAGE" \
    ./build/src/tinykv_client "${NODES[0]}:50051" put "$key" my_data 3 || return 1
  got="$(docker run --rm --network "$TINYKV_NET" "${tls[@]}" "$TINYKV_IMAGE" \
    ./build/src/tinykv_client "${NODES[0]}:50051" get "$key" 2)" || return 1
  [ "$got" = my_data ] || { echo "got '$got', want 'my_data'"; return 1; }
}
check "original form: docker run tinykv ./build/src/tinykv_client ... put k v 3 / get k 2" old_form

# --- 3b. TLS (TINYKV_TLS=1): every node says it serves TLS, and a client
# without the CA cannot talk to it ------------------------------------------
if [ "${TINYKV_TLS:-0}" = 1 ]; then
  tls_on() {
    local n
    for n in "${NODES[@]}"; do
      # grep without -q reads every line: -q would end the pipe early, and
      # pipefail would take docker's SIGPIPE for a failure.
      docker logs "$n" 2>&1 | grep '+ tls' >/dev/null || { echo "$n does not say it serves TLS"; return 1; }
    done
    if docker run --rm --network "$TINYKV_NET" "$TINYKV_IMAGE" \
      ./build/src/tinykv_client --timeout 3s "${NODES[0]}:50051" get "old-form-$$" 1; then
      echo "a plaintext client was answered"; return 1
    fi
  }
  check "TLS: every node serves TLS (mTLS between nodes); a plaintext client is refused" tls_on
fi

# --- 3b. make benchmark's path, short: both workloads, 0 errors -----------
bench_short() {
  local out rc dir="$LOGDIR/bench"
  rm -rf "$dir" # reports of an earlier compose test (the other compose tool)
  out="$(BENCH_OPS=2000 BENCH_READ_KEYSPACE=2000 BENCH_OUT="$dir" scripts/benchmark.sh 2>&1)"; rc=$?
  printf '%s\n' "$out" >"$LOGDIR/benchmark.out"
  printf '%s\n' "$out" | grep -E '^  [0-9]+ ops in ' | sed 's/^  /    /' >&3
  [ "$rc" = 0 ] || { printf '%s\n' "$out" | tail -n 25; return 1; }
  # write-only run, then A's load phase and its run: each error-free.
  [ "$(printf '%s\n' "$out" | grep -cE '^  [0-9]+ ops in .*\([0-9]+ ok, 0 errors')" = 3 ] \
    || { echo "expected 3 error-free phases"; printf '%s\n' "$out" | tail -n 25; return 1; }
  [ "$(find "$dir" -name 'bench-*.json' | wc -l)" = 2 ] || { echo "expected 2 JSON reports in $dir"; ls -l "$dir"; return 1; }
}
check "benchmark (scripts/benchmark.sh, 2,000 ops each): write-only and a loaded 50/50 mix, 0 errors" bench_short

# --- 4. resilience flow ----------------------------------------------------
resilience() {
  local out rc
  out="$(scripts/resilience.sh 2>&1)"; rc=$?
  printf '%s\n' "$out" >"$LOGDIR/resilience.out"
  printf '%s\n' "$out" | grep -E 'SUCCESS!|primary owner:|caught up|RESILIENCE' | sed 's/^/    /' >&3
  [ "$rc" = 0 ] || { printf '%s\n' "$out" | tail -n 25; return 1; }
  printf '%s\n' "$out" | grep -qx 'SUCCESS! Retrieved: I_WILL_SURVIVE' || { echo "no SUCCESS line"; return 1; }
}
check "resilience: primary killed, QUORUM read, restart catches up" resilience
check "all 5 nodes healthy after resilience" tinykv_wait_healthy 90 "${NODES[@]}"

# --- 5. network cut --------------------------------------------------------
PKEY="partition-$$"
check "put $PKEY before the cut" kv "${NODES[0]}" put "$PKEY" before-cut --consistency quorum
CUT="$(kv "${NODES[0]}" owners "$PKEY" 2>/dev/null | sed -n 1p | tr -d '[:space:]')"
[ -n "$CUT" ] || CUT="${NODES[2]}"
OTHERS=(); for c in "${NODES[@]}"; do [ "$c" != "$CUT" ] && OTHERS+=("$c"); done
echo "$(ts) cutting $CUT (primary owner of $PKEY) off tinykv-net"
check "docker network disconnect tinykv-net $CUT" docker network disconnect tinykv-net "$CUT"
cut_off() { # the CLI in $CUT says unavailable (exit 3, as documented), and $CUT itself runs
  local rc
  docker exec "$CUT" timeout 10 tinykv_client --timeout 2s "${OTHERS[0]}:50051" health; rc=$?
  [ "$rc" = 3 ] || { echo "health of ${OTHERS[0]} from $CUT: exit $rc, want 3 (unavailable)"; return 1; }
  [ "$(docker inspect -f '{{.State.Running}}' "$CUT")" = true ] || { echo "$CUT is not running"; return 1; }
  kv "$CUT" health >/dev/null || { echo "$CUT does not serve locally"; return 1; }
}
check "$CUT is cut off (cannot reach ${OTHERS[0]}: exit 3) but alive and serving locally" cut_off
partition_rw() { # QUORUM writes and reads through each remaining node
  local c got k
  for c in "${OTHERS[@]}"; do
    k="cut-$c-$$"
    kv "$c" put "$k" "written-during-cut" --consistency quorum >/dev/null || { echo "put via $c failed"; return 1; }
    got="$(kv "${OTHERS[0]}" get "$k" --consistency quorum)" || { echo "get of $k via ${OTHERS[0]} failed"; return 1; }
    [ "$got" = written-during-cut ] || { echo "got '$got' for $k"; return 1; }
  done
  kv "${OTHERS[1]}" put "$PKEY" after-cut --consistency quorum >/dev/null || { echo "overwrite of $PKEY failed"; return 1; }
  got="$(kv "${OTHERS[2]}" get "$PKEY" --consistency quorum)" || { echo "get of $PKEY failed"; return 1; }
  [ "$got" = after-cut ] || { echo "got '$got' for $PKEY, expected after-cut"; return 1; }
}
check "QUORUM writes/reads through the other 4 during the cut" partition_rw
check "$CUT still holds the old value of $PKEY while cut" bash -c \
  "[ \"\$(docker exec $CUT tinykv_client 127.0.0.1:50051 local-get $PKEY)\" = before-cut ]"
check "docker network connect tinykv-net $CUT" docker network connect tinykv-net "$CUT"
catch_up() { # poll the reconnected node's own replica, with a deadline
  local end=$(( $(date +%s) + ${TINYKV_CATCHUP_TIMEOUT:-60} )) n=0 v
  while :; do
    v="$(kv "$CUT" local-get "$PKEY" 2>/dev/null || true)"
    if [ "$v" = after-cut ]; then
      echo "    $CUT caught up after $n polls$( [ "$n" -ge 5 ] && echo ' (read-repair reads were issued)' )" >&3; return 0
    fi
    [ "$(date +%s)" -ge "$end" ] && { echo "still '$v' at the deadline"; return 1; }
    n=$((n + 1))
    [ $((n % 5)) = 0 ] && kv "$CUT" get "$PKEY" --consistency quorum >/dev/null 2>&1
    sleep 1
  done
}
check "$CUT catches up after reconnect (local-get $PKEY = after-cut)" catch_up
check "$CUT serves QUORUM reads after reconnect" bash -c \
  "[ \"\$(docker exec $CUT timeout 30 tinykv_client 127.0.0.1:50051 get cut-${OTHERS[0]}-$$ --consistency quorum)\" = written-during-cut ]"
check "all 5 nodes healthy after reconnect" tinykv_wait_healthy 60 "${NODES[@]}"

# --- 6. down -v ------------------------------------------------------------
check "compose down -v" tinykv_compose down -v --remove-orphans
check "no tinykv containers or volumes left" bash -c \
  "[ -z \"\$(docker ps -aq --filter name=tinykv-node)\" ] && [ -z \"\$(docker volume ls -q --filter name=tinykv-node)\" ]"
CLEANED=1
trap - EXIT
summary
[ "$FAILED" = 0 ]
