#!/usr/bin/env bash
# Run tinykv-bench inside tinykv-net against the compose cluster:
#   1. the old TinyKV shape: 50 workers, 10,000 write-only ops (replicated, RF 3)
#   2. YCSB A: 50/50 reads/writes, same workers/ops, after a load phase that
#      writes its key space (BENCH_READ_KEYSPACE keys, default 10,000), so the
#      reads find values instead of measuring misses
# BENCH_DURATION (e.g. 20s) runs each workload for that long instead of BENCH_OPS.
# JSON results go to $BENCH_OUT (default target/docker-bench/), one file per run.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
TINYKV_LOG_TAG=benchmark

WORKERS="${BENCH_WORKERS:-50}"
OPS="${BENCH_OPS:-10000}"
VALUE_SIZE="${BENCH_VALUE_SIZE:-100}"
CONSISTENCY="${BENCH_CONSISTENCY:-quorum}"
WORKLOADS="${BENCH_WORKLOADS:-write a}"
OUT="${BENCH_OUT:-$(pwd)/target/docker-bench}"
EXTRA="${BENCH_ARGS:-}"
DURATION="${BENCH_DURATION:-}"
READ_KEYSPACE="${BENCH_READ_KEYSPACE:-10000}"

docker network inspect "$TINYKV_NET" >/dev/null 2>&1 || die "network $TINYKV_NET not found: run 'make docker-up' first"
for c in $TINYKV_NODES; do
  [ "$(tinykv_health "$c")" = healthy ] || die "$c is not healthy ($(tinykv_health "$c")): run 'make docker-up' first"
done

endpoints="$(for c in $TINYKV_NODES; do printf '%s:50051,' "$c"; done)"
endpoints="${endpoints%,}"
mkdir -p "$OUT"
chmod 0777 "$OUT" 2>/dev/null || true
tty=""; [ -t 1 ] && tty="-t"

if [ -n "$DURATION" ]; then budget=(--duration "$DURATION"); what="$DURATION"; else budget=(--ops "$OPS"); what="$OPS ops"; fi

for wl in $WORKLOADS; do
  json="bench-${wl}-$(date +%Y%m%d-%H%M%S).json"
  # Workloads with reads first load the key space they read.
  if [ "$wl" = write ]; then keys=(); else keys=(--load --keyspace "$READ_KEYSPACE"); fi
  echo "=== tinykv-bench: workload $wl, $WORKERS workers, $what, ${VALUE_SIZE}-byte values, consistency $CONSISTENCY${keys:+, ${READ_KEYSPACE} keys loaded first} (in $TINYKV_NET) ==="
  mapfile -t tls < <(tinykv_tls_docker_args)
  # shellcheck disable=SC2086
  docker run --rm $tty --network "$TINYKV_NET" "${tls[@]}" --user "$(id -u):$(id -g)" -v "$OUT:/out" \
    --entrypoint tinykv-bench "$TINYKV_IMAGE" \
    --endpoints "$endpoints" --workers "$WORKERS" "${budget[@]}" "${keys[@]}" --workload "$wl" \
    --value-size "$VALUE_SIZE" --consistency "$CONSISTENCY" --json "/out/$json" $EXTRA \
    || die "tinykv-bench (workload $wl) failed"
  echo "JSON: $OUT/$json"
done
echo "=== memory per node: process peak RSS (VmHWM) / container peak incl. page cache (cgroup) / now (docker stats) ==="
for c in $TINYKV_NODES; do
  hwm="$(docker exec "$c" sh -c 'grep VmHWM /proc/1/status' 2>/dev/null | awk '{ printf "%.1f MiB", $2/1024 }' || true)"
  peak="$(docker exec "$c" sh -c 'cat /sys/fs/cgroup/memory.peak 2>/dev/null || cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null' || true)"
  now="$(docker stats --no-stream --format '{{.MemUsage}}' "$c" 2>/dev/null || true)"
  printf '%s\tprocess peak %s\tcontainer peak %s\tnow %s\n' "$c" "${hwm:-n/a}" \
    "$(awk -v b="${peak:-0}" 'BEGIN{ if (b > 0) printf "%.1f MiB", b/1048576; else print "n/a" }')" "${now:-n/a}"
done
