#!/usr/bin/env bash
# Makes `docker compose` (Compose v2) available when only docker-compose (v1)
# is, so the compose test can run with both: Debian 12 packages only v1, so
# this fetches the docker-compose package (2.x, a Docker CLI plugin) of
# another Debian release (TINYKV_COMPOSE_SUITE, default trixie, Debian 13)
# with apt, and puts the plugin in ~/.docker/cli-plugins. Needs root (apt).
#
# Where from: the system's own apt sources (sources.list, sources.list.d/
# *.list and deb822 *.sources), with the release codename of each suite
# changed (bookworm -> trixie, bookworm-updates -> trixie-updates, ...;
# entries for other suites are left out). The derived sources, apt's lists
# and its cache live in a private temporary directory: the system's sources,
# lists and cache are not touched.
#
# Does nothing when `docker compose` works; exits 0 with a notice when the
# package cannot be fetched, so a machine without it just skips v2.
#   scripts/install-compose-v2.sh --show-sources   only prints the derived
#                                                  sources (no apt, no root)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
TINYKV_LOG_TAG=install-compose-v2

SUITE="${TINYKV_COMPOSE_SUITE:-trixie}"
SHOW=0
[ "${1:-}" = --show-sources ] && SHOW=1

if [ "$SHOW" = 0 ] && [ "$(TINYKV_COMPOSE=v2 tinykv_compose_kind)" = v2 ]; then
  echo "docker compose already available: $(docker compose version)"
  exit 0
fi

# derived_sources CODENAME: the system's entries for CODENAME's suites, moved
# to $SUITE, in the one-line format.
derived_sources() {
  local from="$1" entry uri suite comps opts
  while read -r entry; do
    uri="$(tinykv_apt_entry_field 1 "$entry")"
    suite="$(tinykv_apt_entry_field 2 "$entry")"
    comps="$(tinykv_apt_entry_field 3 "$entry")"
    case "$suite" in
      "$from") suite="$SUITE" ;;
      "$from"-* | "$from"/*) suite="$SUITE${suite#"$from"}" ;;
      *) continue ;;
    esac
    opts=""
    case "$entry" in "deb ["*) opts="[${entry#deb [}"; opts="${opts%%]*}] " ;; esac
    printf 'deb %s%s %s %s\n' "$opts" "$uri" "$suite" "$comps"
  done < <(tinykv_apt_entries)
}

codename="$(tinykv_os_codename)"
[ -n "$codename" ] || { log "cannot tell this system's release codename; skipping Compose v2"; exit 0; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
derived_sources "$codename" >"$work/sources.list"
if [ "$SHOW" = 1 ]; then
  echo "# the system's apt sources for $codename, moved to $SUITE:"
  cat "$work/sources.list"
  exit 0
fi
if [ ! -s "$work/sources.list" ]; then
  log "no apt source for $codename in ${TINYKV_APT_ETC:-/etc/apt} to derive $SUITE's from; skipping Compose v2"
  exit 0
fi

mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
apt_opts=(
  -o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o "APT::Sandbox::User=root"
)
# A derived source that does not exist for $SUITE (a third-party archive
# without that release) fails its part of the update; the others still count.
if ! apt-get "${apt_opts[@]}" update >"$work/apt.log" 2>&1; then
  log "apt-get update of the derived $SUITE sources reported errors (continuing): $(grep -E '^(E|W):' "$work/apt.log" | sed -n 1p)"
fi
if ! (cd "$work/deb" && apt-get "${apt_opts[@]}" download docker-compose >>"$work/apt.log" 2>&1); then
  log "docker-compose package of $SUITE not downloadable; skipping Compose v2"
  exit 0
fi
deb="$(find "$work/deb" -name 'docker-compose_2*.deb' | sed -n 1p)"
[ -n "$deb" ] || { log "no 2.x docker-compose package in $SUITE; skipping Compose v2"; exit 0; }
dpkg-deb -x "$deb" "$work/x"
mkdir -p "$HOME/.docker/cli-plugins"
install -m 0755 "$work/x/usr/libexec/docker/cli-plugins/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
docker compose version
