#!/usr/bin/env bash
# redis-benchmark against redis-server and against a 5-node TinyKV's RESP
# door, side by side (docs/benchmarks.md#the-redis-protocol).
# Usage: scripts/bench-resp.sh [BIN_DIR] (default target/release).
# Env: REQUESTS (200000), CLIENTS (50), PIPELINE (16), TINYKV_WORKER_THREADS (1, as make run).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}
n=${REQUESTS:-200000}
clients=${CLIENTS:-50}
pipeline=${PIPELINE:-16}
dir=$(mktemp -d /tmp/tinykv-bench-resp.XXXXXX)
pids=()
stop() {
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  pids=()
}
trap 'stop; rm -rf "$dir"' EXIT
bench() { # PORT LABEL
  for p in 1 "$pipeline"; do
    echo "== $2, -P $p: redis-benchmark -t set,get -n $n -c $clients -P $p"
    redis-benchmark -p "$1" -t set,get -n "$n" -c "$clients" -P "$p" -q 2>&1 | tr '\r' '\n' | grep 'requests per second'
  done
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
redis-server --port 6399 --save '' --appendonly no --daemonize no >"$dir/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p 6399 ping >/dev/null 2>&1; do sleep 0.1; done
bench 6399 "redis-server $(redis-server --version | grep -o 'v=[^ ]*')"
stop
peers=$(for i in 1 2 3 4 5; do printf 'node%d=127.0.0.1:%d,' "$i" $((41150 + i)); done)
for i in 1 2 3 4 5; do
  "$bin/tinykv-node" --worker-threads "${TINYKV_WORKER_THREADS:-1}" --node-id "node$i" --listen "127.0.0.1:$((41150 + i))" \
    --peers "${peers%,}" --data-dir "$dir/node$i" --replication-factor 3 --sync periodic --default-consistency quorum \
    --redis-listen "127.0.0.1:$((41160 + i))" --metrics-listen off >"$dir/node$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3 4 5; do
  until redis-cli -p $((41160 + i)) ping >/dev/null 2>&1; do sleep 0.1; done
done
until redis-cli -p 41161 info replication | grep -q 'tinykv_members_up:5'; do sleep 0.2; done
bench 41161 "TinyKV 5 nodes, RF 3, QUORUM, periodic sync"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
