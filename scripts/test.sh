#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh: Python packages and compilers; scripts/install_pocl.sh)
# and runs the default test suite: everything except the markers that need minutes of tuning,
# an emulated device or the optional peer runtimes (the `fuzz` tests run their fast profile).
# Pass pytest arguments to change that, e.g.  bash scripts/test.sh -m tuning
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# PoCL (CPU OpenCL) lets the generated Adreno kernels run; without it those tests skip
bash scripts/install_pocl.sh || echo "warning: PoCL not installed; OpenCL tests will skip" >&2
if [ "$#" -eq 0 ]; then
  set -- -m "not tuning and not emulated and not bench"
fi
exec python3 -m pytest "$@"
