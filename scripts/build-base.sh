#!/usr/bin/env bash
# Build the local base image `tinykv-base:bookworm` without any image registry:
# debootstrap a minimal Debian bookworm root file system and `docker import` it.
#
# Usage: scripts/build-base.sh [--force]
#   TINYKV_BASE_IMAGE   image name (default tinykv-base:bookworm)
#   TINYKV_DEB_URI      Debian archive URI to debootstrap from (default: the
#                       first Debian archive in the system's configured apt
#                       sources; none there and none given is an error)
#   TINYKV_DEB_SUITE    suite (default bookworm)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
TINYKV_LOG_TAG=build-base

IMAGE="${TINYKV_BASE_IMAGE:-tinykv-base:bookworm}"
SUITE="${TINYKV_DEB_SUITE:-bookworm}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine"

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already exists; skipping (use --force to rebuild)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "debootstrap needs root (run as root or install sudo)"
  SUDO="sudo"
fi

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap via apt"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null
fi

# The archive: the one the system's apt already uses (its configured
# sources), so this goes wherever apt goes: the first entry whose URI path
# ends in /debian, security updates aside.
archive="${TINYKV_DEB_URI:-}"
if [ -z "$archive" ]; then
  while read -r entry; do
    uri="$(tinykv_apt_entry_field 1 "$entry")"
    case "$(tinykv_apt_entry_field 2 "$entry")" in *security*) continue ;; esac
    case "${uri%/}" in */debian) archive="$uri"; break ;; esac
  done < <(tinykv_apt_entries)
  [ -n "$archive" ] || die "no Debian archive in the system's apt sources (${TINYKV_APT_ETC:-/etc/apt}); set TINYKV_DEB_URI"
fi

ROOTFS="$(mktemp -d /tmp/tinykv-rootfs.XXXXXX)"
cleanup() { $SUDO rm -rf --one-file-system "$ROOTFS"; }
trap cleanup EXIT

start=$(date +%s)
log "debootstrap --variant=minbase $SUITE from $archive into $ROOTFS"
# ca-certificates is small and lets users add TLS later; nothing else is needed
# by the dynamically linked Rust binaries (libc6, libgcc-s1 are in minbase).
$SUDO debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS" "$archive" >/tmp/tinykv-debootstrap.log 2>&1 \
  || { tail -n 30 /tmp/tinykv-debootstrap.log >&2; die "debootstrap failed (full log: /tmp/tinykv-debootstrap.log)"; }
t_boot=$(( $(date +%s) - start ))

# Slim it down: apt lists, caches, docs, man pages, locales.
$SUDO chroot "$ROOTFS" apt-get clean >/dev/null 2>&1 || true
$SUDO rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
  "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/* 2>/dev/null || true
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec $SUDO rm -rf {} + 2>/dev/null || true

start2=$(date +%s)
log "importing as $IMAGE"
$SUDO tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' \
  -c 'CMD ["/bin/bash"]' \
  -m "debootstrap --variant=minbase $SUITE (TinyKV local base)" \
  - "$IMAGE" >/dev/null
t_import=$(( $(date +%s) - start2 ))

log "done: $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')); debootstrap ${t_boot}s, import ${t_import}s"
