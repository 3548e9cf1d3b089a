#!/usr/bin/env bash
# make fresh-check: `make wheel`, then `make test`, then `make demo`, in a bare Debian 12 root built here with
# mmdebstrap, from a clean clone of HEAD, with an empty build cache: what a new user's machine does. The wheel it
# builds is then checked in a second bare root that has Python and nothing else (scripts/wheel_check.sh: installed
# with pip, its libraries resolved, a few training steps). Both roots are made, reached and removed as
# scripts/bare_root.sh says (--keep leaves them).
set -uo pipefail
# All in one function: bash reads a script as it runs, so an edit to this file cannot change a run under way.
main() {
tag=fresh-check
usage="usage: scripts/fresh_check.sh [--keep]   (make fresh-check [KEEP=1])
  --keep   leave the roots for inspection (their paths are printed)"
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "$tag: error: unknown argument $arg" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel) || exit 2
# shellcheck source=scripts/bare_root.sh
. "$repo/scripts/bare_root.sh"
need_root
shared=$(cd "$repo/.." && pwd)/shared

root=$(mktemp -d /var/tmp/fcn-fresh.XXXXXX)
bare_root_traps
# the prerequisites the README names, and nothing else: git and make (and CA certificates for TLS)
bare_root_make ca-certificates,git,make

head=$(git -C "$repo" rev-parse HEAD)
git clone --quiet --no-hardlinks "$repo" "$root/root/fcn" && git -C "$root/root/fcn" checkout --quiet "$head" \
  || fail "git clone failed"
if [ -d "$shared" ]; then cp -r "$shared" "$root/root/shared"; else log "no $shared: tests that read it skip"; fi
log "clean clone of $(git -C "$repo" log -1 --format='%h %s' "$head")"

# make wheel does the whole set-up (Debian packages, venv, Caffe built into the empty cache) before the repair.
start=$(date +%s)
step "make wheel (empty build cache)" inside /root/fcn 'make wheel' 2>&1 | tee "$root/root/make-wheel.log"
wheel_rc=${PIPESTATUS[0]}
wheel_s=$(seconds "$start")
wheel=$(grep -E '^/.*\.whl$' "$root/root/make-wheel.log" | tail -n 1)  # make wheel prints its path last

start=$(date +%s)
if [ "$wheel_rc" = 0 ] && [ -n "$wheel" ]; then
  step "wheel-check: $(basename "$wheel") in a root with Python only" \
    bash "$repo/scripts/wheel_check.sh" --wheel "$root$wheel" $([ "$keep" = 1 ] && echo --keep) 2>&1 \
    | tee "$root/root/wheel-check.log"
  check_rc=${PIPESTATUS[0]}
else
  log "no wheel: wheel-check skipped"; check_rc=1
fi
check_s=$(seconds "$start")

start=$(date +%s)
step "make test" inside /root/fcn 'make test' 2>&1 | tee "$root/root/make-test.log"
test_rc=${PIPESTATUS[0]}
test_s=$(seconds "$start")

start=$(date +%s)
step "make demo" inside /root/fcn 'make demo' 2>&1 | tee "$root/root/make-demo.log"
demo_rc=${PIPESTATUS[0]}
demo_s=$(seconds "$start")
mean_iu=$(inside /root/fcn "python3 -c 'import json; print(round(json.load(open(\"demo-output/scores.json\"))[\"mean_iu\"], 3))'" 2>/dev/null) \
  || mean_iu='none'

bare_root_cleanup
echo "$tag: make wheel $(verdict "$wheel_rc") ($wheel_s s), wheel-check $(verdict "$check_rc") ($check_s s)," \
  "make test $(verdict "$test_rc") ($test_s s), make demo $(verdict "$demo_rc") ($demo_s s, mean IU $mean_iu)"
[ "$wheel_rc" = 0 ] && [ "$check_rc" = 0 ] && [ "$test_rc" = 0 ] && [ "$demo_rc" = 0 ]
}

main "$@"
