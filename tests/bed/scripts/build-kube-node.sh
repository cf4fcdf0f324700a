#!/usr/bin/env bash
# Builds the node half of the bed's Kubernetes v1.20.2 from Debian's `kubernetes` source package and
# caches it as
#   CACHE_DIR/kube-node-v1.20.2/{kubelet,kube-controller-manager,kube-scheduler,pause}
# `pause` is build/pause/linux/pause.c from the same tree, compiled with `gcc -static` (the pod
# sandbox's process; tests/testbed/images.py wraps it into the pause image).
#
# Usage: build-kube-node.sh [CACHE_DIR]   (default: ${XDG_CACHE_HOME:-$HOME/.cache}/flinkop)
#
# Same source tree, recipe and lock as build-kube-apiserver.sh (it reuses CACHE_DIR/kube-build-v1.20.2/src
# when that is still there, e.g. after `FLINKOP_KEEP_KUBE_BUILD=1 build-kube-apiserver.sh`), plus one
# patch: the kubelet starts with KernelTunableWarn instead of KernelTunableModify, so it never changes
# the host's sysctls (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, ...) on a shared machine.
#
# Idempotent: exits at once when the binaries are cached. Binaries are installed atomically; the
# kubelet last, whose presence marks the cache complete. After a successful build the source tree and
# Go build cache are removed (set FLINKOP_KEEP_KUBE_BUILD=1 to keep them). Needs what
# build-kube-apiserver.sh needs, plus gcc and libc6-dev (tests/bed/scripts/install-system-deps.sh).
set -euo pipefail

version=v1.20.2
cache_dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/flinkop}
mkdir -p "$cache_dir"
cache_dir=$(cd "$cache_dir" && pwd)
dest=$cache_dir/kube-node-$version
work=$cache_dir/kube-build-$version
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
binaries=(kube-controller-manager kube-scheduler pause kubelet)

have_all() {
  local b
  for b in "${binaries[@]}"; do [ -x "$dest/$b" ] || return 1; done
}
if have_all; then
  exit 0
fi

log() { echo "build-kube-node: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# One build at a time per cache dir, shared with build-kube-apiserver.sh (same source tree).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_dir/.kube-apiserver-build.lock"
  if ! flock -n 9; then
    log "another Kubernetes build is running in $cache_dir; waiting for it"
    flock 9
  fi
  if have_all; then exit 0; fi
fi

for tool in go rsync jq dpkg-source apt-get make gcc; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; run tests/bed/scripts/install-system-deps.sh"
done
[ -d "$reflect2_src" ] || die "$reflect2_src missing; install golang-github-modern-go-reflect2-dev"

start=$(date +%s)
mkdir -p "$work" "$dest"

# 1. Fetch the source package (.dsc, orig tarball with vendor/, Debian diff) unless already there.
dl=$work/download
if ! ls "$dl"/kubernetes_*.dsc >/dev/null 2>&1 || ! ls "$dl"/kubernetes_*.orig.tar.* >/dev/null 2>&1; then
  log "fetching Debian source package 'kubernetes' into $dl"
  rm -rf "$dl.tmp" && mkdir -p "$dl.tmp"
  (cd "$dl.tmp" && apt-get source --download-only kubernetes) >&2 \
    || die "apt-get source failed (is there a deb-src entry? run tests/bed/scripts/install-system-deps.sh)"
  rm -rf "$dl" && mv "$dl.tmp" "$dl"
fi

# 2. Unpack (with Debian's patches) and swap in reflect2 1.0.2, exactly as build-kube-apiserver.sh.
src=$work/src
if [ ! -f "$src/.flinkop-prepared" ]; then
  log "unpacking source into $src"
  rm -rf "$src" "$src.tmp"
  dsc=$(ls "$dl"/kubernetes_*.dsc | head -n1)
  dpkg-source --no-check -x "$dsc" "$src.tmp" >&2
  rm -f "$work"/kubernetes_*.orig.tar.*
  vendored=$src.tmp/vendor/github.com/modern-go/reflect2
  [ -d "$vendored" ] || die "unexpected source layout: $vendored missing"
  rm -rf "$vendored"
  mkdir -p "$vendored"
  cp -a "$reflect2_src"/. "$vendored"/
  rm -f "$vendored/go.mod" "$vendored/go.sum"
  mkdir -p "$src.tmp/.go/src/k8s.io"
  ln -s ../../.. "$src.tmp/.go/src/k8s.io/kubernetes"
  touch "$src.tmp/.flinkop-prepared"
  mv "$src.tmp" "$src"
fi

# 3. The kubelet must never change host sysctls: warn about them instead of setting them.
cm=$src/pkg/kubelet/cm/container_manager_linux.go
if ! grep -q 'b := KernelTunableWarn' "$cm"; then
  grep -q 'b := KernelTunableModify' "$cm" || die "unexpected $cm: no 'b := KernelTunableModify' to patch"
  sed -i 's/b := KernelTunableModify/b := KernelTunableWarn/' "$cm"
  grep -q 'b := KernelTunableWarn' "$cm" || die "patching $cm failed"
  log "patched $cm: KernelTunableModify -> KernelTunableWarn"
fi

# 4. Build. A failed attempt of ours can leave broken generator binaries in _output/; a successful
#    apiserver build leaves good ones (and the generated code), which are reused.
if [ -e "$work/.node-build-failed" ] && [ -e "$src/_output" ]; then
  log "removing $src/_output left by a failed attempt"
  rm -rf "$src/_output"
fi
mkdir -p "$work/home" "$work/gocache" "$work/tmp"
what="cmd/kubelet cmd/kube-controller-manager cmd/kube-scheduler"
log "building $what ($version) -- about 6 minutes on 2 cores from a fresh tree"
touch "$work/.node-build-failed"
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
) >"$work/node-build.log" 2>&1 || {
  tail -n 40 "$work/node-build.log" >&2
  die "build failed; full log: $work/node-build.log (re-run this script to retry)"
}
gcc -Os -static -DVERSION="$version" -o "$src/_output/bin/pause" "$src/build/pause/linux/pause.c" \
  >>"$work/node-build.log" 2>&1 || die "gcc -static pause.c failed; see $work/node-build.log"
rm -f "$work/.node-build-failed"

# 5. Install atomically; the kubelet last.
install_bin() {
  local name=$1
  local built=$src/_output/bin/$name
  [ -s "$built" ] || die "build produced no $built"
  cp "$built" "$dest/.$name.tmp.$$"
  chmod 0755 "$dest/.$name.tmp.$$"
  mv -f "$dest/.$name.tmp.$$" "$dest/$name"
}
for b in "${binaries[@]}"; do install_bin "$b"; done
"$dest/kubelet" --version >&2
cp "$work/node-build.log" "$dest/build.log"

# 6. Free the disk (source tree and Go cache are ~2 GB); keep the downloaded package.
if [ "${FLINKOP_KEEP_KUBE_BUILD:-0}" != 1 ]; then
  rm -rf "$src" "$work/gocache" "$work/home" "$work/tmp"
fi
log "done in $(( $(date +%s) - start )) s: $dest"
