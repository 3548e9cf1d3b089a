#!/usr/bin/env bash
# make fresh-check: `make test`, then `make demo`, in a bare Debian 12 root built here with mmdebstrap,
# from a clean clone of HEAD, with an empty build cache: what a new user's machine does.
# The root reaches the package registries the way this host does (its apt sources and configuration, pip's
# configuration, CA bundle and PIP_*/SSL_* variables are carried in). Everything made is unmounted and removed
# at the end, also after a failure or Ctrl-C, unless --keep is given.
set -uo pipefail
# All in one function: bash reads a script as it runs, so an edit to this file cannot change a run under way.
main() {
usage="usage: scripts/fresh_check.sh [--keep]   (make fresh-check [KEEP=1])
  --keep   leave the root for inspection (its path is printed)"
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "fresh-check: error: unknown argument $arg" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "fresh-check: error: needs root (it builds a Debian root and chroots into it): sudo make fresh-check" >&2; exit 2; }

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel) || exit 2
shared=$(cd "$repo/.." && pwd)/shared
log() { printf '[fresh-check] %s\n' "$*"; }
seconds() { echo $(( $(date +%s) - $1 )); }

root=$(mktemp -d /var/tmp/fcn-fresh.XXXXXX)
cleaned=0
cleanup() {
  [ "$cleaned" = 1 ] && return
  cleaned=1
  # processes still running inside the root (after Ctrl-C) hold its mounts
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  for m in dev/pts dev sys proc; do
    mountpoint -q "$root/$m" && umount -R "$root/$m"
  done
  if [ "$keep" = 1 ]; then
    log "kept the root: $root (chroot $root; the clone is /root/fcn; rm -rf it when done)"
  else
    rm -rf --one-file-system "$root"
  fi
}
trap cleanup EXIT
trap 'echo; log interrupted; exit 130' INT TERM

step() {  # step NAME COMMAND...: run, print its wall time
  local start; start=$(date +%s)
  log "$1 ..."
  shift
  "$@"; local rc=$?
  log "  took $(seconds "$start") s (exit $rc)"
  return $rc
}

if ! command -v mmdebstrap >/dev/null; then
  step "apt-get install mmdebstrap" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null' \
    || { echo "fresh-check: error: could not install mmdebstrap" >&2; exit 1; }
fi

# the prerequisites the README names, and nothing else: git and make (and CA certificates for TLS)
step "mmdebstrap a bare bookworm root in $root" \
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,git,make bookworm "$root" \
  /etc/apt/sources.list.d/debian.sources \
  || { echo "fresh-check: error: mmdebstrap failed" >&2; exit 1; }

# The registries, reached as this host reaches them (mmdebstrap already wrote the host's apt sources in).
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/apt/apt.conf.d/* "$root/etc/apt/apt.conf.d/" 2>/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
for f in /etc/pip.conf /etc/xdg/pip/pip.conf /etc/xdg/pip/constraints.txt; do
  [ -f "$f" ] && mkdir -p "$root$(dirname "$f")" && cp "$f" "$root$f"
done
carried=()
while IFS='=' read -r name value; do
  # a local wheel folder (PIP_FIND_LINKS) is not a registry: leave it out
  case "$name" in PIP_FIND_LINKS|PIP_INDEX_URL_FILE) continue ;; esac
  carried+=("$name=$value")
done < <(env | grep -E '^(PIP_[A-Z_]+|SSL_CERT_(FILE|DIR)|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE)=')

mount -t proc proc "$root/proc" && mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys" \
  && mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev" \
  || { echo "fresh-check: error: mounting proc/sys/dev in the root failed" >&2; exit 1; }

head=$(git -C "$repo" rev-parse HEAD)
git clone --quiet --no-hardlinks "$repo" "$root/root/fcn" && git -C "$root/root/fcn" checkout --quiet "$head" \
  || { echo "fresh-check: error: git clone failed" >&2; exit 1; }
if [ -d "$shared" ]; then cp -r "$shared" "$root/root/shared"; else log "no $shared: tests that read it skip"; fi
log "clean clone of $(git -C "$repo" log -1 --format='%h %s' "$head")"

inside() {  # run a command in the root, as a new login on a bare machine would
  chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${carried[@]}" \
    bash -c "cd /root/fcn && $1"
}

start=$(date +%s)
step "make test (empty build cache)" inside 'make test' 2>&1 | tee "$root/root/make-test.log"
test_rc=${PIPESTATUS[0]}
test_s=$(seconds "$start")

start=$(date +%s)
step "make demo" inside 'make demo' 2>&1 | tee "$root/root/make-demo.log"
demo_rc=${PIPESTATUS[0]}
demo_s=$(seconds "$start")
mean_iu=$(inside "python3 -c 'import json; print(round(json.load(open(\"demo-output/scores.json\"))[\"mean_iu\"], 3))'" 2>/dev/null) \
  || mean_iu='none'

verdict() { [ "$1" = 0 ] && echo PASS || echo FAIL; }
cleanup
echo "fresh-check: make test $(verdict "$test_rc") ($test_s s), make demo $(verdict "$demo_rc") ($demo_s s, mean IU $mean_iu)"
[ "$test_rc" = 0 ] && [ "$demo_rc" = 0 ]
}

main "$@"
