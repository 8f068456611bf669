#!/usr/bin/env bash
# Run tinykv-bench inside tinykv-net against the compose cluster:
#   1. the old TinyKV shape: 50 workers, 10,000 write-only ops (replicated, RF 3)
#   2. YCSB A: 50/50 reads/writes, same workers/ops
# JSON results go to $BENCH_OUT (default target/docker-bench/), one file per run.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=docker/lib.sh
. docker/lib.sh

WORKERS="${BENCH_WORKERS:-50}"
OPS="${BENCH_OPS:-10000}"
VALUE_SIZE="${BENCH_VALUE_SIZE:-100}"
CONSISTENCY="${BENCH_CONSISTENCY:-quorum}"
WORKLOADS="${BENCH_WORKLOADS:-write a}"
OUT="${BENCH_OUT:-$(pwd)/target/docker-bench}"
EXTRA="${BENCH_ARGS:-}"

die() { echo "benchmark: ERROR: $*" >&2; exit 1; }

docker network inspect "$TINYKV_NET" >/dev/null 2>&1 || die "network $TINYKV_NET not found: run 'make docker-up' first"
for c in $TINYKV_NODES; do
  [ "$(tinykv_health "$c")" = healthy ] || die "$c is not healthy ($(tinykv_health "$c")): run 'make docker-up' first"
done

endpoints="$(for c in $TINYKV_NODES; do printf '%s:50051,' "$c"; done)"
endpoints="${endpoints%,}"
mkdir -p "$OUT"
chmod 0777 "$OUT" 2>/dev/null || true
tty=""; [ -t 1 ] && tty="-t"

for wl in $WORKLOADS; do
  json="bench-${wl}-$(date +%Y%m%d-%H%M%S).json"
  echo "=== tinykv-bench: workload $wl, $WORKERS workers, $OPS ops, ${VALUE_SIZE}-byte values, consistency $CONSISTENCY (in $TINYKV_NET) ==="
  # shellcheck disable=SC2086
  docker run --rm $tty --network "$TINYKV_NET" --user "$(id -u):$(id -g)" -v "$OUT:/out" \
    --entrypoint tinykv-bench "$TINYKV_IMAGE" \
    --endpoints "$endpoints" --workers "$WORKERS" --ops "$OPS" --workload "$wl" \
    --value-size "$VALUE_SIZE" --consistency "$CONSISTENCY" --json "/out/$json" $EXTRA \
    || die "tinykv-bench (workload $wl) failed"
  echo "JSON: $OUT/$json"
done
echo "=== memory per node: peak since start (cgroup) / now (docker stats) ==="
for c in $TINYKV_NODES; do
  peak="$(docker exec "$c" sh -c 'cat /sys/fs/cgroup/memory.peak 2>/dev/null || cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null' || true)"
  now="$(docker stats --no-stream --format '{{.MemUsage}}' "$c" 2>/dev/null || true)"
  printf '%s\tpeak %s\tnow %s\n' "$c" "$(awk -v b="${peak:-0}" 'BEGIN{ if (b > 0) printf "%.1f MiB", b/1048576; else print "n/a" }')" "${now:-n/a}"
done
