#!/usr/bin/env bash
# The second device call (docs/GPU.md), from the project root with gpu-bundle/ carried: a venv beside the machine's
# Python (its packages seen through a .pth, none installed there), the bundle installed into it offline
# (pip install --no-index --no-deps, pip from the bundle), then scripts/gpu_suite.py: the GPU tests, the benchmark
# against PyTorch, the staged demo and FCN-8s training on GPU 0, within --budget seconds, everything into
# $OUT/gpu-results.json and $OUT/gpu-suite.log as it goes. The last line is the suite's summary.
# --cpu (make gpu-rehearsal): every step that needs no device, in CPU mode, against the bundle exactly as carried.
set -uo pipefail
# All in one function: bash reads a script as it runs, so an edit to this file cannot change a run under way.
main() {
usage="usage: [OUT=DIR] [PYTHON=python3] bash scripts/gpu_suite.sh [--cpu] [--bundle DIR] [--budget SECONDS]
  --cpu          no device: the steps in CPU mode, reduced to fit two cores (make gpu-rehearsal)
  --bundle DIR   the bundle to install (default: gpu-bundle/ in the project)
  --budget S     wall-clock seconds for the steps after the install (default 450; --cpu 2400)
  OUT            where gpu-results.json and gpu-suite.log go (default: gpu-suite-out/; the device call sets it)
  PYTHON         the machine's Python (default python3)"
repo=$(cd "$(dirname "$0")/.." && pwd)
bundle=$repo/gpu-bundle
mode=()
budget=
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=(--cpu) ;;
    --bundle) [ $# -ge 2 ] || { echo "gpu-suite: error: --bundle needs a folder" >&2; exit 2; }; bundle=$2; shift ;;
    --budget) [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "gpu-suite: error: --budget needs whole seconds" >&2; exit 2; }
              budget=$2; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "gpu-suite: error: unknown argument $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
out=${OUT:-$repo/gpu-suite-out}
py=${PYTHON:-python3}
mkdir -p "$out" || { echo "gpu-suite: error: cannot create OUT=$out" >&2; exit 1; }
exec > >(tee -a "$out/gpu-suite.log") 2>&1
fail() { echo "gpu-suite: 0 passed, 0 failed; stopped before the steps: $*"; exit 1; }
make_venv() {
  local base ver
  read -r base ver < <("$py" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable), "%d.%d.%d" % sys.version_info[:3])') \
    || return 1
  rm -rf "$1" && mkdir -p "$1/bin" "$1/lib/python${ver%.*}/site-packages" && ln -s "$base" "$1/bin/python" \
    && ln -s python "$1/bin/python3" \
    && printf 'home = %s\ninclude-system-site-packages = false\nversion = %s\n' "$(dirname "$base")" "$ver" > "$1/pyvenv.cfg"
}
[ -f "$bundle/bundle.json" ] || fail "no bundle in $bundle (make gpu-bundle writes it; docs/GPU.md)"
command -v "$py" >/dev/null || fail "no Python at PYTHON=$py"
work=$(mktemp -d "${TMPDIR:-/tmp}/fcn-gpu-suite.XXXXXX") || fail "mktemp failed"
echo "[gpu-suite] $(date -u '+%F %T') UTC; $("$py" --version 2>&1) at $(command -v "$py"); bundle $bundle; work $work"
# A venv is a pyvenv.cfg beside bin/python: written by hand where the venv module is missing (Debian and Ubuntu
# ship it apart, as python3-venv).
"$py" -m venv --without-pip "$work/venv" 2>/dev/null || make_venv "$work/venv" || fail "cannot make a venv of $py"
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || fail "no venv"
# After the venv's own site-packages: the machine's (its numpy, PyTorch, NVIDIA's wheels, pytest).
"$py" -c 'import site, sys; print("\n".join(p for p in site.getsitepackages() + [site.getusersitepackages()]))' \
  > "$site/_machine_site.pth" || fail "cannot list $py's site-packages"
cd "$repo" && exec "$work/venv/bin/python" scripts/gpu_suite.py --bundle "$bundle" --out "$out" --work "$work" \
  ${budget:+--budget "$budget"} "${mode[@]}"
}

main "$@"
