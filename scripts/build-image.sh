#!/usr/bin/env bash
# Build the TinyKV image (default tinykv:latest) by one of two paths:
#
#   registry  `docker build` of the top-level multi-stage Dockerfile
#             (needs rust:1-bookworm and debian:bookworm-slim from a registry)
#   local     air-gapped: cargo build --release on the host, base image made by
#             scripts/build-base.sh (debootstrap + docker import), runtime image
#             from docker/Dockerfile.local. No image registry access at all.
#
# The path is chosen by TINYKV_IMAGE_PATH=local|registry|auto (default auto:
# registry if the base images are present or a quick `docker pull` succeeds,
# else local).
#
#   TINYKV_IMAGE        image name:tag (default tinykv:latest)
#   TINYKV_BASE_IMAGE   local base image (default tinykv-base:bookworm)
#   CARGO               cargo command (default cargo)
#   CARGO_TARGET_DIR    honoured for the host build (default ./target)
#   TINYKV_CARGO_FLAGS  extra flags for `cargo build` (e.g. --features ...)
#   TINYKV_PACKAGES     workspace packages whose binaries go into the image
#                       (default "tinykv-node tinykv-client tinykv-bench"; "all" = --workspace)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
TINYKV_LOG_TAG=build-image
IMAGE="${TINYKV_IMAGE:-tinykv:latest}"
BASE_IMAGE="${TINYKV_BASE_IMAGE:-tinykv-base:bookworm}"
MODE="${TINYKV_IMAGE_PATH:-auto}"
CARGO="${CARGO:-cargo}"
RUST_IMAGE="${TINYKV_RUST_IMAGE:-rust:1-bookworm}"
RUNTIME_IMAGE="${TINYKV_RUNTIME_IMAGE:-debian:bookworm-slim}"
PACKAGES="${TINYKV_PACKAGES:-tinykv-node tinykv-client tinykv-bench}"

now() { date +%s; }

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine"

registry_reachable() {
  # Both base images already here (pulled earlier, or loaded by hand)?
  if docker image inspect "$RUST_IMAGE" >/dev/null 2>&1 && docker image inspect "$RUNTIME_IMAGE" >/dev/null 2>&1; then
    return 0
  fi
  # Otherwise a short pull of the small runtime image decides it. Air-gapped
  # engines fail this in well under a second (DNS) or hit the timeout.
  timeout "${TINYKV_REGISTRY_PROBE_TIMEOUT:-20}" docker pull -q "$RUNTIME_IMAGE" >/dev/null 2>&1
}

case "$MODE" in
  auto)
    if registry_reachable; then MODE=registry; else MODE=local; fi
    log "auto-selected the '$MODE' build path (override with TINYKV_IMAGE_PATH=local|registry)"
    ;;
  local|registry) ;;
  *) die "TINYKV_IMAGE_PATH must be local, registry or auto (got '$MODE')" ;;
esac

t0=$(now)
if [ "$MODE" = registry ]; then
  docker build --build-arg RUST_IMAGE="$RUST_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
    --build-arg TINYKV_PACKAGES="$PACKAGES" -t "$IMAGE" . \
    || die "docker build failed"
else
  # 1. base image (skipped when it exists)
  "$ROOT/scripts/build-base.sh"
  t1=$(now)

  # 2. binaries on the host
  command -v "$CARGO" >/dev/null || die "cargo not found: the local path builds the binaries on the host (install Rust >= 1.85)"
  TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
  if [ "$PACKAGES" = all ]; then pkg_flags=(--workspace); else
    pkg_flags=(); for p in $PACKAGES; do pkg_flags+=(-p "$p"); done
  fi
  CTX="$(mktemp -d /tmp/tinykv-image-ctx.XXXXXX)"
  trap 'rm -rf "$CTX"' EXIT
  mkdir -p "$CTX/bin"
  log "cargo build --release --locked --bins ${pkg_flags[*]} (target dir $TARGET_DIR)"
  # The JSON messages name exactly the executables this build produced.
  # shellcheck disable=SC2086
  "$CARGO" build --release --locked --bins "${pkg_flags[@]}" ${TINYKV_CARGO_FLAGS:-} \
      --message-format=json-render-diagnostics >"$CTX/cargo.json" || die "cargo build failed"
  t2=$(now)

  # 3. a tiny build context: the Dockerfile and the executables only
  cp "$ROOT/docker/Dockerfile.local" "$CTX/Dockerfile"
  cp "$ROOT/docker/entrypoint.sh" "$CTX/entrypoint.sh"
  grep -o '"executable":"[^"]*"' "$CTX/cargo.json" | sed 's/^"executable":"//; s/"$//' | sort -u \
    | while read -r exe; do cp "$exe" "$CTX/bin/"; done
  [ -x "$CTX/bin/tinykv-node" ] || die "no tinykv-node binary in $TARGET_DIR/release"
  strip "$CTX"/bin/* 2>/dev/null || true
  # shellcheck disable=SC2012 # our own file names, listed sorted
  log "binaries: $(cd "$CTX/bin" && ls | tr '\n' ' ')"

  # The host's binaries must run on the base's glibc (bookworm: 2.36).
  host_glibc="$(ldd --version 2>/dev/null | head -n1 | grep -oE '[0-9]+\.[0-9]+$' || true)"
  log "host glibc ${host_glibc:-unknown}; base $BASE_IMAGE"

  DOCKER_BUILDKIT=0 docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" "$CTX" >/dev/null 2>"$CTX/build.err" \
    || { cat "$CTX/build.err" >&2; die "docker build of $IMAGE failed"; }
  t3=$(now)
  log "timings: base $((t1 - t0))s, cargo $((t2 - t1))s, image $((t3 - t2))s"
fi

# Smoke checks: the node starts through the image's default entry point
# (catches glibc mismatches and a broken entry point alike), and the
# original TinyKV's `docker run ... tinykv ./build/src/tinykv_client ...`
# form runs the CLI. (Output captured, not piped into grep -q: under
# pipefail, grep quitting early fails the pipeline with SIGPIPE at random.)
node_help="$(docker run --rm "$IMAGE" --help 2>&1 || true)"
case "$node_help" in
  *--peers*) ;;
  *) die "tinykv-node does not run through the entry point of $IMAGE (glibc mismatch? the local path needs a host with glibc <= the base's; see docs/docker.md): $(printf '%s' "$node_help" | tail -n 2)" ;;
esac
docker run --rm "$IMAGE" ./build/src/tinykv_client --help >/dev/null 2>&1 \
  || die "$IMAGE does not run ./build/src/tinykv_client (the original TinyKV's docker run form)"
log "built $IMAGE by the '$MODE' path in $(( $(now) - t0 ))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
