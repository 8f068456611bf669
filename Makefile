# TinyKV. The old project's commands keep working:
#   make build up benchmark resilience down   (Docker compose, 5 nodes)
# and without Docker:
#   make run          a local 5-node cluster on 127.0.0.1:50051-50055 (Ctrl-C stops it)
#   make test         the whole test suite
# `make help` lists every target.

CARGO ?= cargo
HAVE_DOCKER := $(shell docker info >/dev/null 2>&1 && echo yes)

-include Makefile.docker
-include Makefile.k8s

.PHONY: help build build-local run smoke test test-rust lint fmt bench-local bench-compare benchmark resilience up down logs cli cargo-bench fuzz-smoke

help: ## this list
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# The packages of a local cluster and its benchmark, built in one cargo
# invocation by build-local, bench-local and `make run` (scripts/run-local.sh
# lists the same three): one feature resolution, so each finds the others'
# build fresh. Built separately, `-p tinykv-bench` alone resolves the shared
# dependencies (tonic, hyper, rand, the client) with other features and
# rebuilds them.
LOCAL_PACKAGES := -p tinykv-node -p tinykv-client -p tinykv-bench
# release (default) or dev, as for scripts/run-local.sh.
CARGO_PROFILE ?= release
LOCAL_BIN := target/$(if $(filter dev,$(CARGO_PROFILE)),debug,release)

build-local: ## release binaries: tinykv-node, tinykv_client, tinykv-bench
	$(CARGO) build --release $(LOCAL_PACKAGES)

build: ## binaries, then the Docker image tinykv:latest (local air-gapped path when no registry)
	$(MAKE) build-local
	@if [ "$(HAVE_DOCKER)" = yes ]; then $(MAKE) docker-build; else echo "no Docker engine: built binaries only"; fi

run: ## start a local 5-node cluster without Docker (Ctrl-C stops it)
	scripts/run-local.sh 5

smoke: ## put/get through every node of a running cluster (ADDRS="h:p ...")
	scripts/smoke.sh

test: ## the whole test suite: fmt, clippy, unit and cluster tests (+ manifests and compose when available)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) test-rust

test-rust: ## unit and cluster tests (real node processes on 127.0.0.1)
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

up: ## start the 5-node compose cluster (tinykv-node1..5 on tinykv-net, ports 50051-50055)
	$(MAKE) docker-up

down: ## stop the compose cluster and delete its volumes
	$(MAKE) docker-down

logs: ## follow the compose cluster's logs
	$(MAKE) docker-logs

cli: ## a shell with the CLI inside tinykv-net
	$(MAKE) docker-cli

benchmark: ## old shape (50 workers, 10,000 replicated writes) then a 50/50 mix; compose cluster, else the local one
	@if [ "$(HAVE_DOCKER)" = yes ] && docker ps --format '{{.Names}}' | grep -q '^tinykv-node1$$'; then \
	  $(MAKE) docker-benchmark; else $(MAKE) bench-local; fi

bench-local: ## benchmark the local cluster on 127.0.0.1:50051-50055 (the binaries `make run` built; CARGO_PROFILE=dev for its dev build)
	$(CARGO) build --profile $(CARGO_PROFILE) $(LOCAL_PACKAGES)
	$(LOCAL_BIN)/tinykv-bench --workers 50 --ops 10000 --workload write --consistency quorum --no-progress
	$(LOCAL_BIN)/tinykv-bench --workers 50 --ops 20000 --workload a --load --keyspace 10000 --consistency quorum --no-progress

resilience: ## kill a key's primary owner container, read at QUORUM, restart it, check it caught up
	$(MAKE) docker-resilience

bench-compare: ## alternate builds on fresh local clusters (BUILDS="dirA dirB", ROUNDS=3, COMPARE_ARGS="--duration 20s --workload write")
	$(if $(BUILDS),,$(MAKE) build-local)
	scripts/bench-compare.py --rounds $(or $(ROUNDS),3) --bench-args "--workers 50 $(or $(COMPARE_ARGS),--duration 20s --workload write)" $(or $(BUILDS),target/release)

cargo-bench: ## micro-benchmarks (storage engine, group commit)
	$(CARGO) bench -p tinykv-node --bench storage

# Fuzzing (docs/security.md, "Fuzzing"): cargo-fuzz targets in fuzz/, a
# crate outside the workspace that needs a nightly toolchain. A long run:
#   cargo +nightly fuzz run peer_requests -- -max_total_time=180
FUZZ_TARGETS := storage_codec auth_proof peer_requests client_requests storage_engine
FUZZ_SECONDS ?= 20
# The smoke build is a dev build without AddressSanitizer (the targets and
# the node are safe Rust): it builds in half the time of the release build
# on a small CI machine (3 min against 6.5 on 2 busy cores), and its
# overflow checks and debug assertions are on. Its own target directory
# keeps the release (ASan) build of long runs.
FUZZ_SMOKE_FLAGS ?= --dev --sanitizer none --target-dir fuzz/target/smoke

fuzz-smoke: ## build every fuzz target (nightly; installs cargo-fuzz if missing) and run each FUZZ_SECONDS (20) s; fails on a crash
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cargo +nightly fuzz build $(FUZZ_SMOKE_FLAGS)
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; log=fuzz/target/smoke/$$t.log; \
	  if cargo +nightly fuzz run $(FUZZ_SMOKE_FLAGS) $$t -- \
	       -max_total_time=$(FUZZ_SECONDS) >$$log 2>&1; then \
	    grep -E '^#[0-9]+.*DONE' $$log; \
	  else \
	    tail -n 60 $$log; echo "fuzz target $$t failed; the input is in fuzz/artifacts/$$t/" >&2; exit 1; \
	  fi; \
	done
