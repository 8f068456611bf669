#!/usr/bin/env bash
# The compose tool on the cluster's docker-compose.yml (project $TINYKV_PROJECT,
# default tinykv): `docker compose` (v2) when present, else docker-compose
# (v1); TINYKV_COMPOSE=v1|v2 picks one. The Makefile's docker targets run
# compose through this script, so the choice is made in one place
# (tinykv_compose in scripts/lib.sh).
#   scripts/compose.sh up -d | down -v | logs -f | ps | config -q ...
#   scripts/compose.sh --kind     prints the tool it would use: v2, v1 or none
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
if [ "${1:-}" = --kind ]; then
  tinykv_compose_kind
  exit 0
fi
tinykv_compose "$@"
