# A bare Debian 12 root for fresh_check.sh and wheel_check.sh (sourced by both, needs root): built with
# mmdebstrap (minbase bookworm), reaching the package registries the way this host does (its apt sources and
# configuration, pip's configuration, CA bundle and PIP_*/SSL_* variables are carried in), commands run in it as
# a new login on a bare machine would, and everything unmounted and removed at the end, also after a failure or
# Ctrl-C, unless kept. The caller sets `tag` (its name in messages), `root` (an empty folder from mktemp -d) and
# `keep` (1: leave the root), and calls bare_root_traps before bare_root_make.

log() { printf '[%s] %s\n' "$tag" "$*"; }
fail() { echo "$tag: error: $*" >&2; exit 1; }
seconds() { echo $(( $(date +%s) - $1 )); }

step() {  # step NAME COMMAND...: run, print its wall time
  local start; start=$(date +%s)
  log "$1 ..."
  shift
  "$@"; local rc=$?
  log "  took $(seconds "$start") s (exit $rc)"
  return $rc
}

need_root() {
  [ "$(id -u)" -eq 0 ] || { echo "$tag: error: needs root (it builds a Debian root and chroots into it): sudo make $tag" >&2; exit 2; }
}

bare_root_cleaned=0
bare_root_cleanup() {  # idempotent: the EXIT trap calls it again
  [ "$bare_root_cleaned" = 1 ] && return
  bare_root_cleaned=1
  local p m
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

bare_root_traps() {
  trap bare_root_cleanup EXIT
  trap 'echo; log interrupted; exit 130' INT TERM
}

carried=()
bare_root_make() {  # bare_root_make PACKAGES: a minbase bookworm root in $root with these (comma-separated) added
  if ! command -v mmdebstrap >/dev/null; then
    step "apt-get install mmdebstrap" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null' \
      || fail "could not install mmdebstrap"
  fi
  local f name value
  step "mmdebstrap a bare bookworm root with $1 in $root" \
    mmdebstrap --quiet --variant=minbase --include="$1" bookworm "$root" /etc/apt/sources.list.d/debian.sources \
    || fail "mmdebstrap failed"
  # The registries, reached as this host reaches them (mmdebstrap already wrote the host's apt sources in).
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  cp /etc/apt/apt.conf.d/* "$root/etc/apt/apt.conf.d/" 2>/dev/null
  mkdir -p "$root/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
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
    || fail "mounting proc/sys/dev in the root failed"
}

inside() {  # inside DIR COMMAND: run COMMAND in DIR of the root, as a new login on a bare machine would
  chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${carried[@]}" \
    bash -c "cd $1 && $2"
}

verdict() { [ "$1" = 0 ] && echo PASS || echo FAIL; }
