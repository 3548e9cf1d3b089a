#!/usr/bin/env bash
# Install the Debian packages that building Caffe needs, if any are missing.
set -euo pipefail
packages=(build-essential protobuf-compiler libprotobuf-dev libgoogle-glog-dev libgflags-dev
  libhdf5-dev libopenblas-dev libopenblas-openmp-dev libboost-system-dev libboost-thread-dev libboost-filesystem-dev
  libboost-regex-dev libboost-python-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "[setup] missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  sudo=""; command -v sudo >/dev/null && sudo="sudo "
  echo "error: not root, so they cannot be installed here. Run:" >&2
  echo "  ${sudo}apt-get update && ${sudo}apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "[setup] apt-get update && apt-get install -y ${missing[*]}"
if ! apt-get update -qq; then
  echo "error: apt-get update failed: no network, or Debian's mirrors are unreachable" >&2; exit 1
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
  || { echo "error: apt-get install ${missing[*]} failed (see above)" >&2; exit 1; }
