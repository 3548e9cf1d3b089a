#!/usr/bin/env bash
# make gpu-rehearsal: the GPU machine's two device calls (docs/GPU.md) rehearsed here, on the path the real bundle
# takes with only the headers swapped: scripts/gpu_headers.sh on this machine's Python (3.11) as call 1, the bundle
# built from its tarball (make gpu-bundle's builder: CUDA Caffe for CUDA_ARCH=90, Boost.Python from
# BOOST_PYTHON_SRC), a fresh venv standing in for the GPU machine's Python (its packages and NVIDIA's CUDA 13
# runtime wheels from PyPI, no project, no Caffe), and scripts/gpu_suite.sh --cpu in it as call 2. Everything lies
# in .gpu-rehearsal/; the last line is `gpu-rehearsal: PASS (...)` or `gpu-rehearsal: FAIL (...)`.
set -uo pipefail
# All in one function: bash reads a script as it runs, so an edit to this file cannot change a run under way.
main() {
usage="usage: bash scripts/gpu_rehearsal.sh --boost-python-src DIR   (make gpu-rehearsal BOOST_PYTHON_SRC=DIR)"
boost=
while [ $# -gt 0 ]; do
  case "$1" in
    --boost-python-src) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; boost=$2; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "gpu-rehearsal: error: unknown argument $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
repo=$(cd "$(dirname "$0")/.." && pwd)
py=$repo/.venv/bin/python
r=$repo/.gpu-rehearsal
begin=$(date +%s)
verdict=FAIL
report="stopped before the end"
trap 'echo "gpu-rehearsal: $verdict ($report; $(( $(date +%s) - begin )) s in all)"' EXIT
fail() { report="$*"; exit 1; }
[ -n "$boost" ] || fail "give BOOST_PYTHON_SRC=DIR: a checkout of boostorg/python at tag boost-1.74.0, e.g. git clone --depth 1 --branch boost-1.74.0 https://github.com/boostorg/python DIR"
[ -x "$py" ] || fail "no $py: run make setup first"
mkdir -p "$r" && rm -rf "$r/call1" "$r/headers" "$r/machine" "$r/call2" || fail "cannot clear $r"

echo "[gpu-rehearsal] call 1: scripts/gpu_headers.sh with this machine's Python"
OUT=$r/call1 PYTHON=$py bash "$repo/scripts/gpu_headers.sh" || fail "gpu_headers.sh failed"
mkdir -p "$r/headers" && tar -xzf "$r/call1/python-headers.tar.gz" -C "$r/headers" || fail "cannot unpack the headers"
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

echo "[gpu-rehearsal] the bundle from those headers"
start=$(date +%s)
"$py" "$repo/scripts/gpu_bundle.py" --py-include "$r/headers/python$ver" --boost-python-src "$boost" \
  --out "$r/bundle" || fail "the bundle builder failed"
bundle_s=$(( $(date +%s) - start ))
size=$("$py" -c 'import json, sys; m = json.load(open(sys.argv[1]))
print("%.1f MiB" % (sum(f["bytes"] for f in m["files"].values()) / 2**20))' "$r/bundle/bundle.json")

echo "[gpu-rehearsal] a fresh venv standing in for the GPU machine's Python"
start=$(date +%s)
base=$("$py" -c 'import sys; print(sys._base_executable)')
# The GPU machine's packages at this venv's versions, and the CUDA runtime wheels the Caffe wheel requires.
mapfile -t wants < <("$py" - "$repo/scripts" <<'EOF'
import sys
from importlib.metadata import version
sys.path.insert(0, sys.argv[1])
from caffe_build.relocate import CUDA_WHEELS, EXTERNAL_LIBS
for name in ('numpy', 'protobuf', 'scipy', 'scikit-image', 'Pillow', 'tqdm', 'matplotlib', 'pytest', 'onnxruntime',
             'torch'):
    print(f'{name}=={version(name)}')
print(*dict.fromkeys(req for _, req, folder in EXTERNAL_LIBS if folder == CUDA_WHEELS), sep='\n')
EOF
)
[ ${#wants[@]} -gt 10 ] || fail "cannot list the GPU machine's packages at this venv's versions (above; make gpu-rehearsal installs the export extra, PyTorch and onnxruntime, first)"
"$base" -m venv "$r/machine" && "$r/machine/bin/pip" install --quiet "${wants[@]}" \
  || fail "pip install of the stand-in machine's packages failed: ${wants[*]}"
machine_s=$(( $(date +%s) - start ))

echo "[gpu-rehearsal] call 2: scripts/gpu_suite.sh --cpu"
start=$(date +%s)
(cd "$repo" && OUT=$r/call2 PYTHON=$r/machine/bin/python bash scripts/gpu_suite.sh --cpu --bundle "$r/bundle")
status=$?
suite_s=$(( $(date +%s) - start ))
last=$(tail -n 1 "$r/call2/gpu-suite.log" 2>/dev/null)
[ -s "$r/call2/gpu-results.json" ] || fail "no gpu-results.json"
[ "$status" -eq 0 ] || fail "the suite failed (exit $status): $last"
verdict=PASS
report="bundle $size, built in $bundle_s s; stand-in machine $machine_s s; suite $suite_s s: $last"
}

main "$@"
