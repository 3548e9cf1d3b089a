#!/usr/bin/env bash
# make wheel-check: the relocatable pycaffe wheel (make wheel) on a machine that has Python and nothing else. In a
# bare Debian 12 root with only python3 and python3-venv (no Boost, glog, gflags, protobuf, HDF5 or BLAS), a clean
# venv installs the wheel and the project (a clone of HEAD) from PyPI with their dependencies; every library the
# installed wheel loads must resolve inside the venv (the wheel's own caffe.libs/, MKL's PyPI wheels) or to the
# system's glibc, C++ runtime and zlib; then fcn-train runs a few SGD steps of a reduced-width voc-fcn32s on a
# synthetic dataset. The root is built and removed as scripts/bare_root.sh says. The last line is
# `wheel-check: PASS (...)` or `wheel-check: FAIL (...)`.
set -uo pipefail
# All in one function: bash reads a script as it runs, so an edit to this file cannot change a run under way.
main() {
tag=wheel-check
usage="usage: scripts/wheel_check.sh [--wheel FILE] [--keep]   (make wheel-check [KEEP=1])
  --wheel FILE  the wheel to check (default: build it with make wheel, from the build cache)
  --keep        leave the root for inspection (its path is printed)"
keep=0
wheel=
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --wheel) [ $# -ge 2 ] || { echo "$tag: error: --wheel needs a file" >&2; exit 2; }; wheel=$2; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "$tag: error: unknown argument $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel) || exit 2
# shellcheck source=scripts/bare_root.sh
. "$repo/scripts/bare_root.sh"
need_root
begin=$(date +%s)
verdict=FAIL
report="stopped before the end"
finish() {  # the last line, whatever happened
  [ -n "${root:-}" ] && bare_root_cleanup
  echo "$tag: $verdict (${name:+$name, $size_mb MB; }$report; $(seconds "$begin") s in all)"
}
fail() { report="$*"; exit 1; }  # instead of bare_root.sh's: the last line says FAIL and why
trap finish EXIT
trap 'echo; log interrupted; report=interrupted; exit 130' INT TERM

if [ -z "$wheel" ]; then
  built=$(mktemp)
  step "make wheel" bash -c "set -o pipefail; make -C '$repo' --no-print-directory wheel | tee '$built'" \
    || { rm -f "$built"; fail "make wheel failed"; }
  wheel=$(tail -n 1 "$built"); rm -f "$built"  # make wheel prints the wheel's path last
fi
[ -f "$wheel" ] && [[ "$wheel" == *.whl ]] || fail "no wheel at $wheel"
name=$(basename "$wheel")
size_mb=$(( ($(stat -c %s "$wheel") + 500000) / 1000000 ))

root=$(mktemp -d /var/tmp/fcn-wheel.XXXXXX)
bare_root_make python3,python3-venv

# None of Caffe's Debian libraries may be there: the wheel has to bring its own.
present=$(inside / "dpkg-query -W -f='\${Package}\n' | grep -E '^lib(boost|google-glog|gflags|protobuf|hdf5|openblas|blas|blis|lapack|mkl)' | tr '\n' ' '")
[ -z "$present" ] || fail "the root is not bare: it has $present"

head=$(git -C "$repo" rev-parse HEAD)
git clone --quiet --no-hardlinks "$repo" "$root/root/fcn" && git -C "$root/root/fcn" checkout --quiet "$head" \
  || fail "git clone failed"
mkdir -p "$root/root/wheels" && cp "$wheel" "$root/root/wheels/" || fail "cannot copy $wheel into the root"
log "$name ($size_mb MB) with a clean clone of $(git -C "$repo" log -1 --format='%h %s' "$head")"

start=$(date +%s)
step "python3 -m venv; pip install the wheel and the project" \
  inside /root "python3 -m venv venv && venv/bin/pip install --quiet --no-cache-dir wheels/$name ./fcn" \
  || fail "pip install failed"
install_s=$(seconds "$start")

step "ldd: every library from the venv or glibc" inside /root "venv/bin/python fcn/scripts/ldd_check.py" \
  || fail "pip install ${install_s} s, ldd found libraries outside the venv and glibc (above)"

steps=10
start=$(date +%s)
step "fcn-train voc-fcn32s at width 1/16, $steps steps on a synthetic dataset" inside /root "mkdir -p work && cd work \
  && ../venv/bin/python -c 'import caffe; print(\"caffe from\", caffe.__file__)' \
  && ../venv/bin/fcn-data synth sbdd --out data/sbdd --count 8 && ../venv/bin/fcn-data synth voc --out data/pascal --count 8 \
  && ../venv/bin/fcn-surgery init voc-fcn32s --random --seed 0 --width 1/16 --out stand-in.caffemodel \
  && GLOG_minloglevel=1 ../venv/bin/fcn-train voc-fcn32s --width 1/16 --weights stand-in.caffemodel --data-root data \
       --out run --rounds 1 --steps $steps --seed 0 \
  && test -s run/train_iter_$steps.caffemodel" \
  || fail "pip install ${install_s} s, ldd clean, training failed"
train_s=$(seconds "$start")

verdict=PASS
report="pip install ${install_s} s, ldd clean, fcn-train $steps steps ${train_s} s"
}

main "$@"
