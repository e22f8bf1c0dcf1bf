#!/usr/bin/env bash
# Ping test with a User-Mode Linux instance: VM A is UML (eth0=vde,URL_A),
# VM B is a QEMU VM (-netdev vde,sock=URL_B) unless IPN_VM_B_KIND=uml.
# Same image, markers, timeouts and environment variables as ping-test.sh.
#
# Usage: uml-ping-test.sh URL_A URL_B [IMAGEDIR]
#
# Needs the Debian packages user-mode-linux (linux.uml) and vdeplug
# (vde_plug): UML's vde transport is vdeplug4's static libvdeplug, which
# runs "vde_plug --descr ... seqpacket://FD URL" from PATH; vde_plug then
# opens URL with the shared libvdeplug, so plugins (e.g. ipn://) work,
# found through LD_LIBRARY_PATH / VDEPLUGIN_PATH like for QEMU.
# Limitation: UML splits its eth0= option on ',', so URL_A cannot contain
# commas.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 URL_A URL_B [IMAGEDIR]  (A runs under UML, B under QEMU)" >&2
    exit 2
fi
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# A host where UML runs no user space at all: BLOCKED (77), said loudly by
# the probe, not a failure of ipn.
"$script_dir/uml-probe.sh" || exit $?
IPN_VM_A_KIND=uml IPN_VM_B_KIND=${IPN_VM_B_KIND:-qemu} \
    exec "$script_dir/ping-test.sh" "$@"
