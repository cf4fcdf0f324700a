#!/usr/bin/env bash
# Installs the Debian packages the test bed needs, and the deb-src entry that
# `apt-get source kubernetes` needs. Idempotent: does nothing when all is there.
#
# The real node (tests/testbed/node.py) adds containerd, runc and the CNI plugins, mmdebstrap to
# build the images' root filesystems, and gcc for the static pause binary. Their packages' services
# are never started here: the bed runs its own containerd on a private socket.
set -euo pipefail

packages=(golang-go etcd-server rsync jq openjdk-17-jdk-headless golang-github-modern-go-reflect2-dev dpkg-dev curl
  containerd runc containernetworking-plugins mmdebstrap busybox-static gcc libc6-dev iproute2 util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

src_list=/etc/apt/sources.list.d/flinkop-deb-src.sources
need_update=0
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  echo "install-system-deps: adding a deb-src entry ($src_list)"
  "${sudo_cmd[@]}" tee "$src_list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  need_update=1
fi

if [ ${#missing[@]} -gt 0 ] || [ $need_update = 1 ]; then
  "${sudo_cmd[@]}" apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-system-deps: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A package whose configuration was interrupted (seen once after installing containerd) leaves dpkg
# half-done; finish it so later installs work.
if dpkg --audit 2>/dev/null | grep -q .; then
  echo "install-system-deps: finishing interrupted package configuration (dpkg --configure -a)"
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" dpkg --configure -a
fi
