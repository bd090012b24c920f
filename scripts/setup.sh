#!/usr/bin/env bash
# Installs RT3D and everything it needs into the active Python (a virtualenv is advised).
# Idempotent: a second run installs nothing. Usage: bash scripts/setup.sh [extra,...]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
PY="${PYTHON:-python3}"
# torch first and exactly: any other version pulls several GB of CUDA packages
"$PY" -m pip install --quiet -c constraints.txt "torch==2.13.0"
"$PY" -m pip install --quiet -c constraints.txt -e ".[${extras}]"
