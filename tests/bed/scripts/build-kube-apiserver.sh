#!/usr/bin/env bash
# Builds kube-apiserver v1.20.2 from Debian's `kubernetes` source package and caches it as
#   CACHE_DIR/kube-apiserver-v1.20.2/kube-apiserver
# (plus kubectl from the same tree, only when no kubectl is on PATH).
#
# Usage: build-kube-apiserver.sh [CACHE_DIR]   (default: ${XDG_CACHE_HOME:-$HOME/.cache}/flinkop)
#
# Why a source build: no reachable registry ships a kube-apiserver binary, kind needs Docker, and
# envtest downloads from outside. See /work/shared/notes/local-kube-apiserver.md.
#
# Idempotent: exits at once when the binaries are cached. A failed build can be retried (its
# _output/ is deleted first). Binaries are installed atomically (temp name, then mv). After a
# successful build the source tree and Go build cache are removed (set FLINKOP_KEEP_KUBE_BUILD=1
# to keep them). Needs: golang-go, rsync, jq, dpkg-dev, golang-github-modern-go-reflect2-dev and a
# deb-src entry (tests/bed/scripts/install-system-deps.sh sets all of that up).
set -euo pipefail

version=v1.20.2
cache_dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/flinkop}
mkdir -p "$cache_dir"
cache_dir=$(cd "$cache_dir" && pwd)
dest=$cache_dir/kube-apiserver-$version
work=$cache_dir/kube-build-$version
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2

need_kubectl=0
if ! command -v kubectl >/dev/null 2>&1; then need_kubectl=1; fi

have_all() {
  [ -x "$dest/kube-apiserver" ] && { [ $need_kubectl = 0 ] || [ -x "$dest/kubectl" ]; }
}
if have_all; then
  exit 0
fi

log() { echo "build-kube-apiserver: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# One build at a time per cache dir; whoever waited finds the binaries there.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_dir/.kube-apiserver-build.lock"
  if ! flock -n 9; then
    log "another build is running in $cache_dir; waiting for it"
    flock 9
  fi
  if have_all; then exit 0; fi
fi

for tool in go rsync jq dpkg-source apt-get make; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; run tests/bed/scripts/install-system-deps.sh"
done
[ -d "$reflect2_src" ] || die "$reflect2_src missing; install golang-github-modern-go-reflect2-dev"

start=$(date +%s)
mkdir -p "$work" "$dest"

# 1. Fetch the source package (.dsc, orig tarball with vendor/, Debian diff).
dl=$work/download
if ! ls "$dl"/kubernetes_*.dsc >/dev/null 2>&1 || ! ls "$dl"/kubernetes_*.orig.tar.* >/dev/null 2>&1; then
  log "fetching Debian source package 'kubernetes' into $dl"
  rm -rf "$dl.tmp" && mkdir -p "$dl.tmp"
  (cd "$dl.tmp" && apt-get source --download-only kubernetes) >&2 \
    || die "apt-get source failed (is there a deb-src entry? run tests/bed/scripts/install-system-deps.sh)"
  rm -rf "$dl" && mv "$dl.tmp" "$dl"
fi

# 2. Unpack (with Debian's patches) and swap in reflect2 1.0.2: the vendored 1.0.1 crashes under
#    Go >= 1.18 on the first custom-resource create (fatal error in mapiterinit).
src=$work/src
if [ ! -f "$src/.flinkop-prepared" ]; then
  log "unpacking source into $src"
  rm -rf "$src" "$src.tmp"
  dsc=$(ls "$dl"/kubernetes_*.dsc | head -n1)
  dpkg-source --no-check -x "$dsc" "$src.tmp" >&2
  rm -f "$work"/kubernetes_*.orig.tar.*  # dpkg-source leaves a copy of the tarball next to the tree
  vendored=$src.tmp/vendor/github.com/modern-go/reflect2
  [ -d "$vendored" ] || die "unexpected source layout: $vendored missing"
  rm -rf "$vendored"
  mkdir -p "$vendored"
  cp -a "$reflect2_src"/. "$vendored"/
  rm -f "$vendored/go.mod" "$vendored/go.sum"
  # GOPATH mode: $src/.go/src/k8s.io/kubernetes -> $src (as debian/rules does).
  mkdir -p "$src.tmp/.go/src/k8s.io"
  ln -s ../../.. "$src.tmp/.go/src/k8s.io/kubernetes"
  touch "$src.tmp/.flinkop-prepared"
  mv "$src.tmp" "$src"
fi

# 3. Build. A previous failed attempt can leave broken generator binaries in _output/.
if [ -e "$src/_output" ]; then
  log "removing $src/_output left by an earlier attempt"
  rm -rf "$src/_output"
fi
what=cmd/kube-apiserver
if [ $need_kubectl = 1 ]; then what="$what cmd/kubectl"; fi
mkdir -p "$work/home" "$work/gocache" "$work/tmp"
log "building $what ($version) -- takes about 5 minutes on 2 cores"
(
  cd "$src"
  export GOPATH=$src/.go
  export CGO_ENABLED=0
  export HOME=$work/home
  export GOCACHE=$work/gocache
  export TMPDIR=$work/tmp
  export GOFLAGS=
  export GO111MODULE=off
  make WHAT="$what"
) >"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log" >&2
  die "build failed; full log: $work/build.log (re-run this script to retry)"
}

# 4. Install atomically.
install_bin() {
  local name=$1
  local built=$src/_output/bin/$name
  [ -s "$built" ] || die "build produced no $built"
  cp "$built" "$dest/.$name.tmp.$$"
  chmod 0755 "$dest/.$name.tmp.$$"
  mv -f "$dest/.$name.tmp.$$" "$dest/$name"
}
if [ $need_kubectl = 1 ]; then install_bin kubectl; fi
install_bin kube-apiserver  # last: its presence marks the cache as complete
"$dest/kube-apiserver" --version >&2

# 5. Free the disk (source tree and Go cache are ~2 GB); keep the downloaded package.
if [ "${FLINKOP_KEEP_KUBE_BUILD:-0}" != 1 ]; then
  cp "$work/build.log" "$dest/build.log"
  rm -rf "$src" "$work/gocache" "$work/home" "$work/tmp"
fi
log "done in $(( $(date +%s) - start )) s: $dest/kube-apiserver"
