#!/usr/bin/env bash
# Installs an OpenCL CPU platform (Debian's PoCL) and pyopencl, for the `opencl` tests that run
# the Adreno kernels' OpenCL source numerically (tests marked @pytest.mark.opencl).
# Idempotent: a second run installs nothing. Needs root (apt-get). Usage:
#   bash scripts/install_pocl.sh            # PYTHON=/path/to/python to pick the interpreter
set -euo pipefail
PY="${PYTHON:-python3}"

apt_pkgs=(pocl-opencl-icd ocl-icd-libopencl1 clinfo)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# pip, not Debian's python3-pyopencl: that one is built for the system Python only
if ! "$PY" -c "import pyopencl" 2>/dev/null; then
  "$PY" -m pip install --quiet pyopencl
fi

"$PY" - <<'EOF'
import pyopencl as cl
devices = [(p.name, d.name) for p in cl.get_platforms() for d in p.get_devices()]
print("OpenCL devices:", devices)
EOF
