# TinyKV image: the node, the CLI (tinykv_client) and the benchmark (tinykv-bench).
#
# This is the normal build for machines that can pull from an image registry:
#     docker build -t tinykv:latest .
# On an air-gapped machine use `make docker-build` (scripts/build-image.sh), which
# makes its own Debian base with debootstrap and produces the same image from
# docker/Dockerfile.local. Keep the runtime sections of both files in step.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# Workspace packages whose binaries go into the image.
ARG TINYKV_PACKAGES="tinykv-node tinykv-client tinykv-bench"

# ---------------------------------------------------------------------------
# planner: reduce the workspace to a "recipe" (manifests, lock file, build
# scripts, .proto files and stub sources). Its content only changes when the
# dependencies change, so the dependency layer below stays cached while you
# edit code.
FROM ${RUST_IMAGE} AS planner
WORKDIR /src
COPY . .
RUN set -eux; \
    mkdir -p /recipe; \
    find . \( -name target -o -name .git \) -prune -o \
         \( -name Cargo.toml -o -name Cargo.lock -o -name build.rs -o -name '*.proto' -o -name rust-toolchain.toml -o -path './.cargo/*' \) \
         -type f -print | while read -r f; do \
        mkdir -p "/recipe/$(dirname "$f")"; cp "$f" "/recipe/$f"; \
    done; \
    find . \( -name target -o -name .git \) -prune -o -name '*.rs' ! -name build.rs -type f -print | while read -r f; do \
        mkdir -p "/recipe/$(dirname "$f")"; \
        if grep -qE '^[[:space:]]*(pub[[:space:]]+)?(async[[:space:]]+)?fn[[:space:]]+main[[:space:]]*\(' "$f"; then \
            echo 'fn main() {}' > "/recipe/$f"; \
        else \
            : > "/recipe/$f"; \
        fi; \
    done

# ---------------------------------------------------------------------------
# builder: compile the dependencies from the recipe (cached layer), then the
# real sources.
FROM ${RUST_IMAGE} AS builder
ARG TINYKV_PACKAGES
WORKDIR /src
ENV CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0
COPY --from=planner /recipe/ ./
RUN set -eux; \
    pkgs=""; for p in $TINYKV_PACKAGES; do pkgs="$pkgs -p $p"; done; \
    cargo build --release --locked --bins $pkgs
COPY . .
# COPY keeps the files' old mtimes; touch them so cargo rebuilds our crates
# instead of trusting the stub builds above.
RUN set -eux; \
    find . -path ./target -prune -o -name '*.rs' -type f -exec touch {} +; \
    pkgs=""; for p in $TINYKV_PACKAGES; do pkgs="$pkgs -p $p"; done; \
    cargo build --release --locked --bins $pkgs --message-format=json-render-diagnostics > /tmp/cargo.json; \
    mkdir -p /out; \
    grep -o '"executable":"[^"]*"' /tmp/cargo.json | sed 's/^"executable":"//; s/"$//' | sort -u \
      | while read -r exe; do cp "$exe" /out/; done; \
    strip /out/* || true; \
    ls -l /out; \
    test -x /out/tinykv-node

# ---------------------------------------------------------------------------
# runtime
FROM ${RUNTIME_IMAGE} AS runtime
RUN set -eux; \
    groupadd --system --gid 10001 tinykv; \
    useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tinykv --no-create-home --shell /usr/sbin/nologin tinykv; \
    mkdir -p /var/lib/tinykv; \
    chown 10001:10001 /var/lib/tinykv
COPY --from=builder /out/ /usr/local/bin/
COPY docker/entrypoint.sh /usr/local/bin/tinykv-entrypoint
ENV TINYKV_DATA_DIR=/var/lib/tinykv \
    TINYKV_LISTEN=0.0.0.0:50051 \
    RUST_LOG=info
VOLUME ["/var/lib/tinykv"]
WORKDIR /var/lib/tinykv
USER 10001:10001
EXPOSE 50051 9090 6379
# grpc.health.v1.Health/Check on the port of TINYKV_LISTEN (or at
# TINYKV_HEALTH_ADDR when set): exit 0 only when SERVING.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/bin/sh", "-c", "exec tinykv_client \"${TINYKV_HEALTH_ADDR:-127.0.0.1:${TINYKV_LISTEN##*:}}\" health"]
LABEL org.opencontainers.image.title="tinykv" \
      org.opencontainers.image.description="TinyKV: a Dynamo-style distributed key-value store" \
      io.tinykv.build-path="registry"
# The node by default; a program given first runs instead (docker/entrypoint.sh).
ENTRYPOINT ["tinykv-entrypoint"]
