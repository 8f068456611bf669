#!/usr/bin/env bash
# Starts a 5-node TinyKV cluster on 127.0.0.1:50051-50055 without Docker,
# data under ./.local-cluster, and stops every node cleanly on Ctrl-C.
# Usage: scripts/run-local.sh [NODES] (default 5). Env: TINYKV_LOCAL_DIR, CARGO_PROFILE (release|dev),
# TINYKV_TLS=1 (TLS on both planes, certificates made once in $dir/certs).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
dir=${TINYKV_LOCAL_DIR:-.local-cluster}
profile=${CARGO_PROFILE:-release}
# The same packages as `make build-local` and `make bench-local` (one
# feature resolution): the benchmark then needs no rebuild.
packages=(-p tinykv-node -p tinykv-client -p tinykv-bench)
if [ "$profile" = release ]; then
  cargo build --release "${packages[@]}"
  bin=target/release
else
  cargo build "${packages[@]}"
  bin=target/debug
fi
mkdir -p "$dir"
# Node-to-node and admin calls prove this secret (made once, kept with the data).
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
secret="$dir/cluster.secret"
tinykv_ensure_secret "$secret"
chmod 600 "$secret"
tls=()
if [ "${TINYKV_TLS:-0}" = 1 ]; then
  certs="$dir/certs"
  if [ ! -s "$certs/ca.pem" ] || [ ! -s "$certs/node$n.pem" ]; then
    nodes=(); for i in $(seq 1 "$n"); do nodes+=(--node "node$i=localhost,127.0.0.1"); done
    "$bin/tinykv_client" - certs --out "$certs" "${nodes[@]}" --client cli >/dev/null
    echo "created TLS certificates in $certs"
  fi
fi
peers=$(for i in $(seq 1 "$n"); do printf 'node%d=127.0.0.1:%d,' "$i" $((50050 + i)); done)
peers=${peers%,}
pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping ${#pids[@]} nodes (SIGTERM: drain, flush storage)..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped. Data kept in $dir (delete it for a fresh cluster)."
}
# Ctrl-C / SIGTERM: a clean stop is a success; any other exit (a node that
# failed to start) keeps its status.
trap 'stop; exit 0' INT TERM
trap stop EXIT
for i in $(seq 1 "$n"); do
  if [ "${TINYKV_TLS:-0}" = 1 ]; then
    tls=(--tls-cert "$certs/node$i.pem" --tls-key "$certs/node$i.key" --tls-ca "$certs/ca.pem")
  fi
  "$bin/tinykv-node" "${tls[@]}" --worker-threads "${TINYKV_WORKER_THREADS:-1}" --cluster-name "${TINYKV_CLUSTER_NAME:-local}" --node-id "node$i" --listen "127.0.0.1:$((50050 + i))" --peers "$peers" \
    --data-dir "$dir/node$i" --cluster-secret-file "$secret" --metrics-listen "127.0.0.1:$((9090 + i))" \
    --redis-listen "127.0.0.1:$((6379 + i))" >"$dir/node$i.log" 2>&1 &
  pids+=($!)
done
# The CLI (and the health checks below) dial TLS when TINYKV_TLS_CA is set.
if [ "${TINYKV_TLS:-0}" = 1 ]; then export TINYKV_TLS_CA="$certs/ca.pem"; fi
deadline=$((SECONDS + 60))
for i in $(seq 1 "$n"); do
  until "$bin/tinykv_client" "127.0.0.1:$((50050 + i))" --timeout 1s health >/dev/null 2>&1; do
    if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then echo "node$i exited; see $dir/node$i.log" >&2; exit 1; fi
    if [ $SECONDS -ge $deadline ]; then echo "node$i not healthy after 60s; see $dir/node$i.log" >&2; exit 1; fi
    sleep 0.2
  done
done
cat <<TXT
TinyKV: $n nodes up on 127.0.0.1:50051-$((50050 + n)) (logs and data in $dir, metrics on :9091-$((9090 + n))/metrics),
the Redis protocol on 127.0.0.1:6380-$((6379 + n)).
Try, in another terminal:
  redis-cli -p 6380 set my_key my_data
  redis-cli -p 6382 get my_key
  $bin/tinykv_client 127.0.0.1:50051 put my_key my_data 3
  $bin/tinykv_client 127.0.0.1:50053 get my_key 2
  $bin/tinykv_client 127.0.0.1:50051 status
  export TINYKV_CLUSTER_SECRET_FILE=$secret   # for admin commands:${TINYKV_TLS_CA:+
  export TINYKV_TLS_CA=$TINYKV_TLS_CA   # TLS is on: the CLI trusts this CA}
  $bin/tinykv_client 127.0.0.1:50051 owners my_key
  make smoke        # put/get through every node
  make bench-local  # benchmark this cluster
Ctrl-C stops every node cleanly.
TXT
wait "${pids[@]}"
