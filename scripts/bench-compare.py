#!/usr/bin/env python3
"""Compare TinyKV builds (or one build with itself) on fresh local clusters.

On a small shared VM one benchmark run proves little: the same binary can
move by a third within minutes (docs/benchmarks.md). This script alternates
the builds given (A, B, A, B, ...), starts a fresh 5-node cluster for every
run, runs tinykv-bench against it, and reports per run and as medians:
throughput, p99 per operation kind, the CPU time of all tinykv processes
per operation (moves less than throughput), and a machine-speed probe (a
one-second counting loop, so runs on a slowed-down machine can be told
apart).

Each build is a directory holding tinykv-node, tinykv_client and
tinykv-bench (e.g. a copy of target/release). Examples:

    scripts/bench-compare.py target/release
    scripts/bench-compare.py --rounds 5 --bench-args "--duration 10s --workload a --load --keyspace 10000" /tmp/old /tmp/new
    scripts/bench-compare.py --node-env TINYKV_READ_FANOUT=needed target/release
    scripts/bench-compare.py --down 3 /tmp/old /tmp/new   # node3 killed and known down first
    # one build, as variants: plain, with a cluster secret, with TLS ({i}: the node's number;
    # the variant's variables reach the nodes, the health checks and the bench)
    scripts/bench-compare.py target/release \
        "target/release::TINYKV_CLUSTER_SECRET_FILE=/tmp/c.secret" \
        "target/release::TINYKV_CLUSTER_SECRET_FILE=/tmp/c.secret,TINYKV_TLS_CA=/tmp/certs/ca.pem,TINYKV_TLS_CERT=/tmp/certs/node{i}.pem,TINYKV_TLS_KEY=/tmp/certs/node{i}.key"

Exit status: 0 when every run finished with 0 errors, 1 otherwise.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

NODES = 5


def cpu_ticks_of(pids):
    """User + system clock ticks of the given processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def machine_speed():
    """Millions of iterations of a trivial loop in one second."""
    n, end = 0, time.monotonic() + 1.0
    while time.monotonic() < end:
        n += 1
    return n / 1e6


class Cluster:
    """A fresh local cluster of one build, in a temporary directory."""

    def __init__(self, build, base_port, node_env, workers_per_node):
        self.build = build
        self.dir = tempfile.mkdtemp(prefix="tinykv-compare-")
        self.ports = [base_port + i for i in range(NODES)]
        peers = ",".join(f"node{i + 1}=127.0.0.1:{p}" for i, p in enumerate(self.ports))
        self.procs = []
        self.logs = []
        for i, port in enumerate(self.ports):
            env = dict(os.environ, **node_env_of(node_env, i + 1))
            log = open(os.path.join(self.dir, f"node{i + 1}.log"), "w")
            self.logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    [
                        os.path.join(build, "tinykv-node"),
                        "--worker-threads", str(workers_per_node),
                        "--node-id", f"node{i + 1}",
                        "--listen", f"127.0.0.1:{port}",
                        "--peers", peers,
                        "--data-dir", os.path.join(self.dir, f"node{i + 1}"),
                        "--metrics-listen", "127.0.0.1:0",
                    ],
                    stdout=log, stderr=subprocess.STDOUT, env=env,
                )
            )

    def wait_healthy(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        client = os.path.join(self.build, "tinykv_client")
        for i, port in enumerate(self.ports):
            while True:
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"node{i + 1} exited; see {self.dir}/node{i + 1}.log")
                ok = subprocess.run(
                    [client, f"127.0.0.1:{port}", "--timeout", "1s", "health"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ).returncode == 0
                if ok:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node{i + 1} not healthy after {timeout:.0f}s")
                time.sleep(0.1)

    def alive(self):
        return [i for i, p in enumerate(self.procs) if p.poll() is None]

    def endpoints(self):
        return ",".join(f"127.0.0.1:{self.ports[i]}" for i in self.alive())

    def kill_and_wait_down(self, i, timeout=30.0):
        """SIGKILLs node i (0-based) and waits until every other node
        reports it down, so the run measures a known-down replica."""
        self.procs[i].kill()
        self.procs[i].wait()
        deadline = time.monotonic() + timeout
        client = os.path.join(self.build, "tinykv_client")
        for j in self.alive():
            while True:
                out = subprocess.run(
                    [client, f"127.0.0.1:{self.ports[j]}", "--timeout", "1s", "status", "--json"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                ).stdout
                try:
                    members = json.loads(out)["members"]
                except (ValueError, KeyError):
                    members = []
                if any(m["node_id"] == f"node{i + 1}" and m["health"] == "down" for m in members):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node{j + 1} did not see node{i + 1} down in {timeout:.0f}s")
                time.sleep(0.2)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self.logs:
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def split_variant(spec):
    """`DIR` or `DIR::NAME=VALUE,NAME=VALUE`: a build and its own variables."""
    build, _, extra = spec.partition("::")
    env = dict(kv.split("=", 1) for kv in extra.split(",") if kv)
    return build, env


def node_env_of(env, i):
    """The variables as node i (1-based) gets them: `{i}` is its number."""
    return {k: v.replace("{i}", str(i)) for k, v in env.items()}


def one_run(spec, args, node_env):
    build, variant = split_variant(spec)
    env = dict(node_env, **variant)
    # Clients (health checks, the bench) see the variables as node 1 does.
    os.environ.update(node_env_of(variant, 1))
    try:
        return measure(build, args, env)
    finally:
        for k in variant:
            os.environ.pop(k, None)


def measure(build, args, node_env):
    cluster = Cluster(build, args.base_port, node_env, args.worker_threads)
    try:
        cluster.wait_healthy()
        if args.down:
            cluster.kill_and_wait_down(args.down - 1)
        speed = machine_speed()
        pids = [cluster.procs[i].pid for i in cluster.alive()]
        before = cpu_ticks_of(pids)
        bench = subprocess.Popen(
            [os.path.join(build, "tinykv-bench"), "--endpoints", cluster.endpoints(),
             "--no-progress", "--json", "-", *args.bench_args.split()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        out, err = bench.communicate()
        after = cpu_ticks_of(pids)
        if bench.returncode != 0 and not out.strip():
            raise RuntimeError(f"tinykv-bench failed: {err.strip()[-400:]}")
        report = json.loads(out)
    finally:
        cluster.stop()
    run = report["run"]
    hz = os.sysconf("SC_CLK_TCK")
    ops = max(run["total_ops"], 1)
    p99 = {k: run[k]["latency_us"]["p99"] / 1000 for k in ("read", "write") if run[k]["ok"]}
    return {
        "ops_per_sec": run["throughput_ops_per_sec"],
        "errors": run["total_ops"] - run["ok_ops"],
        "p99_ms": p99,
        "node_cpu_us_per_op": (after - before) / hz * 1e6 / ops,
        "machine_speed": speed,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs="*", default=["target/release"],
                    help="directories with tinykv-node, tinykv_client, tinykv-bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bench-args", default="--workers 50 --duration 20s --workload write",
                    help="tinykv-bench arguments (endpoints, --json and --no-progress are added)")
    ap.add_argument("--base-port", type=int, default=50051)
    ap.add_argument("--worker-threads", type=int, default=1,
                    help="async worker threads per node (make run uses 1)")
    ap.add_argument("--down", type=int, default=0, metavar="N",
                    help=f"kill node N (1-{NODES}) and wait until the others see it down "
                         "before measuring (the benchmark uses the other nodes)")
    ap.add_argument("--node-env", action="append", default=[],
                    help="NAME=VALUE for every node of the builds (repeatable)")
    args = ap.parse_args()
    node_env = dict(kv.split("=", 1) for kv in args.node_env)
    if not 0 <= args.down <= NODES:
        sys.exit(f"bench-compare: --down takes a node number from 1 to {NODES}")
    for spec in args.builds:
        b, _ = split_variant(spec)
        for exe in ("tinykv-node", "tinykv_client", "tinykv-bench"):
            if not os.access(os.path.join(b, exe), os.X_OK):
                sys.exit(f"bench-compare: {b}/{exe} not found (build with `make build-local`)")

    results = {b: [] for b in args.builds}
    failed = False
    for r in range(args.rounds):
        for b in args.builds:
            res = one_run(b, args, node_env)
            results[b].append(res)
            failed |= res["errors"] > 0
            p99 = " ".join(f"{k} {v:.2f}ms" for k, v in res["p99_ms"].items())
            print(f"round {r + 1} {b}: {res['ops_per_sec']:.0f} ops/s, p99 {p99}, "
                  f"{res['node_cpu_us_per_op']:.1f} us node CPU/op, {res['errors']} errors, "
                  f"machine speed {res['machine_speed']:.2f}", flush=True)
    print()
    for b, runs in results.items():
        ops = [x["ops_per_sec"] for x in runs]
        cpu = [x["node_cpu_us_per_op"] for x in runs]
        print(f"{b}: median {statistics.median(ops):.0f} ops/s "
              f"(min {min(ops):.0f}, max {max(ops):.0f}), "
              f"median {statistics.median(cpu):.1f} us node CPU/op")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
