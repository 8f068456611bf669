#!/usr/bin/env bash
# Wait until the TinyKV compose containers report healthy (polling, with a
# deadline). Usage: scripts/wait-healthy.sh [deadline-seconds] [container...]
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
deadline="${1:-${TINYKV_UP_TIMEOUT:-120}}"
shift || true
# shellcheck disable=SC2086
[ $# -gt 0 ] || set -- $TINYKV_NODES
start=$(date +%s)
tinykv_wait_healthy "$deadline" "$@"
echo "healthy after $(( $(date +%s) - start ))s" >&2
