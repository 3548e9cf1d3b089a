#!/usr/bin/env bash
# Install the Debian 12 packages that `make setup` and every documented Caffe build need, if any are missing.
# Works from a bare debian:bookworm root: it brings the system Python 3.11 with venv and headers too.
set -euo pipefail
packages=(
  # the toolchain (and GNU patch, which applies scripts/patches/), the system Python (venv, headers for _caffe.so),
  # and TLS for pip and the sdist download
  build-essential patch ca-certificates git python3 python3-venv python3-dev
  # Caffe's own dependencies
  protobuf-compiler libprotobuf-dev libgoogle-glog-dev libgflags-dev libhdf5-dev
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-regex-dev libboost-python-dev
  # BLAS=open links the OpenMP OpenBLAS (or, with CAFFE_OPENMP=0, the pthreads one); BLAS=blis links BLIS.
  # Named one by one: `libopenblas-dev` alone lets apt pick a single variant.
  libopenblas-openmp-dev libopenblas-pthread-dev libblis-pthread-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "[setup] missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  sudo=""; command -v sudo >/dev/null && sudo="sudo "
  echo "error: not root, so they cannot be installed here. Run:" >&2
  echo "  ${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "[setup] apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if ! apt-get update -qq; then
  echo "error: apt-get update failed: no network, or Debian's mirrors are unreachable" >&2; exit 1
fi
log=$(mktemp)
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  tail -n 30 "$log" >&2; rm -f "$log"
  echo "error: apt-get install ${missing[*]} failed (see above)" >&2; exit 1
fi
rm -f "$log"
echo "[setup] installed ${#missing[@]} Debian packages"
