#!/usr/bin/env bash
# Foreground latency while a node streams its ranges in (a join) and while
# the old owners clean up the ranges they lost, against the same load on a
# quiet cluster (docs/benchmarks.md#foreground-latency-during-a-stream-and-a-cleanup).
# A local cluster of 4 nodes (RF 3) holding KEYS keys; an open-loop YCSB A
# at RATE ops/s for SECONDS, three times: before (baseline), while node5
# joins (it streams from the others), and while every old owner runs a
# cleanup round; then the baseline again.
# Usage: scripts/bench-background.sh [BIN_DIR] (default target/release).
# Env: KEYS (300000), RATE (4000), SECONDS_PER_RUN (20).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}
keys=${KEYS:-300000}
rate=${RATE:-4000}
secs=${SECONDS_PER_RUN:-20}
dir=$(mktemp -d /tmp/tinykv-bench-bg.XXXXXX)
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
addr() { echo "127.0.0.1:$((41250 + $1))"; }
secret="$dir/cluster.secret"
"$bin/tinykv_client" - secret >"$secret"
chmod 600 "$secret"
export TINYKV_CLUSTER_SECRET_FILE="$secret"
peers=$(for i in 1 2 3 4; do printf 'node%d=%s,' "$i" "$(addr "$i")"; done)
start_node() { # I [EXTRA ARGS]
  local i=$1; shift
  "$bin/tinykv-node" --worker-threads 1 --cluster-name bg --node-id "node$i" --listen "$(addr "$i")" \
    --peers "${peers%,}" --data-dir "$dir/node$i" --replication-factor 3 --sync periodic \
    --default-consistency quorum --cluster-secret-file "$secret" --metrics-listen off "$@" >"$dir/node$i.log" 2>&1 &
  pids+=($!)
}
wait_up() { # ADDR
  local deadline=$((SECONDS + 60))
  until "$bin/tinykv_client" --timeout 1s "$1" status >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "node $1 did not come up" >&2; exit 1; }
    sleep 0.2
  done
}
endpoints=$(for i in 1 2 3 4; do printf '%s,' "$(addr "$i")"; done)
bench() { # LABEL
  "$bin/tinykv-bench" --endpoints "${endpoints%,}" --workload a --keyspace "$keys" --rate "$rate" \
    --duration "${secs}s" --no-progress --json "$dir/$1.json" >"$dir/$1.txt" 2>&1
  python3 - "$dir/$1.json" "$1" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["run"]
def lat(kind):
    op = run.get(kind) or {}
    l = op.get("corrected_latency_us") or op.get("latency_us") or {}
    return "p50 %.2f ms, p99 %.2f ms" % (l.get("p50", 0) / 1000, l.get("p99", 0) / 1000)
print("%-15s %8.0f ops/s, errors %s; reads %s; writes %s"
      % (sys.argv[2], run["throughput_ops_per_sec"], sum(run["errors"].values()), lat("read"), lat("write")))
PY
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in 1 2 3 4; do start_node "$i"; done
for i in 1 2 3 4; do wait_up "$(addr "$i")"; done
echo "== loading $keys keys"
"$bin/tinykv-bench" --endpoints "${endpoints%,}" --workload write --keyspace "$keys" --load --ops 1 --no-progress >/dev/null
bench baseline
echo "== node5 joins while the load runs"
peers5="${peers}node5=$(addr 5)"
( sleep 2; peers="$peers5" start_node 5 --join; echo $! >"$dir/node5.pid" ) &
t0=$SECONDS
bench during-join
state=$("$bin/tinykv_client" --timeout 2s "$(addr 5)" status 2>/dev/null | grep -m1 'node5' || true)
echo "   node5 after the run: $state"
deadline=$((SECONDS + 300))
until "$bin/tinykv_client" --timeout 2s "$(addr 5)" status 2>/dev/null | grep -q 'node5.*normal'; do
  [ $SECONDS -lt $deadline ] || { echo "node5 did not finish joining" >&2; exit 1; }
  sleep 0.5
done
echo "   node5 normal $((SECONDS - t0)) s after the join started"
echo "== cleanup rounds on the old owners while the load runs"
cleaners=()
for i in 1 2 3 4; do
  "$bin/tinykv_client" --timeout 120s "$(addr "$i")" cleanup >"$dir/cleanup$i.txt" 2>&1 &
  cleaners+=($!)
done
bench during-cleanup
wait "${cleaners[@]}" || true
for i in 1 2 3 4; do echo "   node$i: $(tail -1 "$dir/cleanup$i.txt")"; done
bench baseline-after
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
