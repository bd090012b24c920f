#!/usr/bin/env bash
# Installs RT3D and everything it needs into the active Python (a virtualenv is advised), and,
# with the `test` extra (the default), the Debian packages the default test run needs
# (scripts/system_packages.sh: host and aarch64 cross compilers; PoCL: scripts/install_pocl.sh).
# Idempotent: a second run installs nothing. Usage: bash scripts/setup.sh [extra,...]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
PY="${PYTHON:-python3}"
if [[ ",${extras}," == *",test,"* ]]; then
  bash scripts/system_packages.sh \
    || echo "warning: system packages not installed; the tests that need them will skip" >&2
fi
# torch first and exactly: any other version pulls several GB of CUDA packages
"$PY" -m pip install --quiet -c constraints.txt "torch==2.13.0"
"$PY" -m pip install --quiet -c constraints.txt -e ".[${extras}]"
