#!/usr/bin/env bash
# System test: two QEMU virtual machines, then a User-Mode Linux instance and
# a QEMU VM, attached to one ipn network through the vdeplug plugin
# (`-netdev vde,sock=ipn:///...`), ping each other.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release -q -p vdeplug-ipn
plugin_dir=$PWD/target/release
# LD_LIBRARY_PATH, not VDEPLUGIN_PATH: the latter hides the standard plugins
# (seqpacket://) that UML's vde_plug helper needs.
export LD_LIBRARY_PATH=$plugin_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

net=$(mktemp -d /tmp/ipn-vm-net.XXXXXX)
rmdir "$net"   # the plugin creates the network at first open
trap 'rm -rf "$net"' EXIT

echo "[vm-ping] QEMU <-> QEMU on ipn://$net"
scripts/vm/ping-test.sh "ipn://$net" "ipn://$net"

echo "[vm-ping] User-Mode Linux <-> QEMU on ipn://$net"
rc=0
scripts/vm/uml-ping-test.sh "ipn://$net" "ipn://$net" || rc=$?
if [ "$rc" = 77 ]; then
    echo "[vm-ping] BLOCKED: the UML half could not run on this host (see above); QEMU <-> QEMU passed"
    exit 77
fi
exit "$rc"
