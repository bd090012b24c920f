#!/usr/bin/env bash
# Installs the Debian packages the default test run needs, only those whose command is missing:
#   a host C/C++ compiler (g++)   export_library of compiled models (RPC runs, tuning builds)
#   gcc-aarch64-linux-gnu         rt3d compile --target kryo (the cross-compiled .so)
# (PoCL for the OpenCL tests: scripts/install_pocl.sh.) Idempotent: when every command is there
# it neither updates nor installs anything. Needs root or password-less sudo and apt-get;
# without them it says what is missing and exits 0: the tests that need it skip with the reason.
# Usage: bash scripts/system_packages.sh
set -euo pipefail

missing=()
if ! command -v g++ >/dev/null && ! command -v gcc >/dev/null && ! command -v clang >/dev/null \
    && ! command -v cc >/dev/null; then
  missing+=(g++)
fi
# libc6-dev-arm64-cross is only a Recommends of the compiler, but linking a .so needs it
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
((${#missing[@]})) || exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "warning: not root and no password-less sudo: not installing ${missing[*]}" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "warning: no apt-get: install ${missing[*]} (or their equivalents) by hand" >&2
  exit 0
fi
echo "installing ${missing[*]}" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
