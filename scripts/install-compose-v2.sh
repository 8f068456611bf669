#!/usr/bin/env bash
# Makes `docker compose` (Compose v2) available when only docker-compose (v1)
# is, so the compose test can run with both: Debian 12 packages only v1, so
# this fetches Debian 13's docker-compose package (2.x, a Docker CLI plugin)
# with apt, into a private apt state (the system's sources and lists are not
# touched), and puts the plugin in ~/.docker/cli-plugins. Needs root (apt).
# Does nothing when `docker compose` works; exits 0 with a notice when the
# package cannot be fetched, so a machine without it just skips v2.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

if [ "$(TINYKV_COMPOSE=v2 tinykv_compose_kind)" = v2 ]; then
  echo "docker compose already available: $(docker compose version)"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
echo "deb http://deb.debian.org/debian trixie main" > "$work/sources.list"
apt_opts=(
  -o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o "APT::Sandbox::User=root"
)
if ! apt-get "${apt_opts[@]}" update >"$work/apt.log" 2>&1; then
  echo "install-compose-v2: cannot reach Debian's trixie archive; skipping Compose v2" >&2
  exit 0
fi
if ! (cd "$work/deb" && apt-get "${apt_opts[@]}" download docker-compose >>"$work/apt.log" 2>&1); then
  echo "install-compose-v2: docker-compose package not downloadable; skipping Compose v2" >&2
  exit 0
fi
deb="$(find "$work/deb" -name 'docker-compose_2*.deb' | sed -n 1p)"
[ -n "$deb" ] || { echo "install-compose-v2: no 2.x docker-compose package; skipping" >&2; exit 0; }
dpkg-deb -x "$deb" "$work/x"
mkdir -p "$HOME/.docker/cli-plugins"
install -m 0755 "$work/x/usr/libexec/docker/cli-plugins/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
docker compose version
