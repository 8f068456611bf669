#!/usr/bin/env bash
# Put/get smoke check against a running cluster: writes through each node,
# reads back through the next one. ADDRS="h:p h:p ..." (default the local cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
cli=${TINYKV_CLIENT:-target/release/tinykv_client}
[ -x "$cli" ] || cli=target/debug/tinykv_client
read -r -a addrs <<<"${ADDRS:-127.0.0.1:50051 127.0.0.1:50052 127.0.0.1:50053 127.0.0.1:50054 127.0.0.1:50055}"
pass=0; fail=0
for i in "${!addrs[@]}"; do
  a=${addrs[$i]}; b=${addrs[$(((i + 1) % ${#addrs[@]}))]}
  v="smoke-$i-$RANDOM"
  if "$cli" "$a" put "smoke-key-$i" "$v" 2 >/dev/null && [ "$("$cli" "$b" get "smoke-key-$i" 2)" = "$v" ]; then
    echo "ok   put via $a, get via $b"; pass=$((pass + 1))
  else
    echo "FAIL put via $a, get via $b"; fail=$((fail + 1))
  fi
done
"$cli" "${addrs[0]}" delete smoke-key-0 >/dev/null
if "$cli" "${addrs[1]}" get smoke-key-0 >/dev/null 2>&1; then echo "FAIL deleted key still found"; fail=$((fail + 1)); else echo "ok   deleted key is not found"; pass=$((pass + 1)); fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
