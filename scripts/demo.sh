#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the main job: `rt3d demo` (a zoo model pruned
# one-shot at its preset, compiled dense and sparse with the rt3d pipeline, checked against
# PyTorch and timed). Arguments go to `rt3d demo`, e.g.  bash scripts/demo.sh --model c3d
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec python3 -m rt3d_passes.cli demo "$@"
