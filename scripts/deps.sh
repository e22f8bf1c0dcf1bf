#!/usr/bin/env bash
# Installs the Debian packages that ipn's tests and demo use, when missing.
# Usage: scripts/deps.sh            (needs root, or sudo, to install)
set -euo pipefail

packages=(
  qemu-system-x86   # VMs on an ipn network (-netdev vde,sock=ipn://...)
  user-mode-linux   # UML on an ipn network (through vde_plug)
  vde2              # vde_switch, the peer we bridge to and measure against
  vdeplug           # vdeplug4's vde_plug and its plugins
  libvdeplug-dev    # the plugin header and -lvdeplug for the C tests
  iproute2          # ip: TAP interfaces, namespaces
  ethtool           # vxlan tests and bench: inner checksums over a veth underlay
  iperf3 tcpdump    # traffic and captures in system tests
  iputils-ping procps  # ping, sysctl in the tap/grab tests
  busybox-static cpio xz-utils kmod  # the tiny VM images
  util-linux passwd # setpriv/runuser/useradd for the permission tests
  gcc libc6-dev     # C clients of libvdeplug and of libipn
  binutils          # readelf, nm, strip: libipn's soname and symbols, the package
  libvdeplug-slirp  # slirp://: a network's NAT, DHCP and DNS without root
  vdens             # rootless network namespaces on ipn:// (scripts/system/vdens.sh)
  dpkg-dev pkgconf man-db  # the Debian package: dpkg-shlibdeps, pkg-config ipn, man ipn
  libvirt-daemon-system libvirt-clients  # libvirt domains on ipn vhost-user (started by hand)
  tmux              # ipn top, tested in a real terminal
  systemd           # systemd-analyze verify for the units the package ships (nothing is started)
  # promtool and a parser for status --prometheus (with systemd as init the
  # package also starts a Prometheus server on :9090: stop it if unwanted)
  prometheus python3-prometheus-client
  python3 python3-venv     # the Python package's tests and benchmark (a venv; pip installs the rest)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "[deps] all Debian packages present"
  exit 0
fi

echo "[deps] installing: ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "[deps] need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
