#!/usr/bin/env bash
# Boots one tiny QEMU VM whose NIC is attached through libvdeplug, has it
# ask for a DHCP lease (busybox udhcpc) and fetch a web page (busybox
# wget), and prints the page on standard output. Made for networks with a
# DHCP server and a way out on them, such as
#
#     vde_plug ipn:///tmp/net slirp://          (libvdeplug-slirp)
#     scripts/vm/dhcp-fetch-test.sh ipn:///tmp/net http://10.0.2.2:8080/index.html
#
# (slirp's 10.0.2.2 is the host's loopback). Needs no root: QEMU runs as
# the caller, with TCG unless IPN_VM_ACCEL=kvm.
#
# Usage: dhcp-fetch-test.sh URL FETCH_URL [IMAGEDIR]
#   URL        libvdeplug URL of the VM's NIC
#   FETCH_URL  http:// URL the VM fetches once it has a lease
#   IMAGEDIR   vmlinuz + initramfs.cpio.gz from build-image.sh (default
#              ${IPN_VM_CACHE:-/var/tmp/ipn-vm}, built if needed)
#
# The VM boots the image of build-image.sh with one more small initramfs
# archive appended (the kernel unpacks both): its own /init, passed as
# rdinit=. Serial console markers: IPN-INIT-START, IPN-DHCP-LEASE <ip/mask>
# router <ip> dns <ip>, IPN-FETCH-BEGIN / IPN-FETCH-END around the page,
# IPN-FETCH-OK, IPN-FETCH-FAIL <reason>.
# Exit status: 0 if the VM fetched the page; 1 if not (the console log is
# printed); 2 usage or setup errors.
#
# Environment: IPN_VM_TIMEOUT (seconds, default 120), IPN_VM_ACCEL (tcg,
# default, or kvm), IPN_VM_MEM (MiB, default 128), IPN_VM_QEMU,
# IPN_VM_MAC (default 52:54:00:49:50:0c), IPN_VM_LOGDIR (keep logs there).
# LD_LIBRARY_PATH / VDEPLUGIN_PATH reach QEMU unchanged.
set -euo pipefail

log() { printf '[vm] %s\n' "$*" >&2; }
die() { printf '[vm] ERROR: %s\n' "$*" >&2; exit 2; }

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 URL FETCH_URL [IMAGEDIR]" >&2
  exit 2
fi
url=$1
fetch=$2
case "$fetch" in
  http://*) ;;
  *) die "FETCH_URL must be an http:// URL (busybox wget in the VM), got '$fetch'" ;;
esac
case "$fetch" in
  *[[:space:]]*) die "FETCH_URL cannot contain spaces (it goes on the kernel command line)" ;;
esac
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=${IPN_VM_TIMEOUT:-120}
mem=${IPN_VM_MEM:-128}
qemu=${IPN_VM_QEMU:-qemu-system-x86_64}
mac=${IPN_VM_MAC:-52:54:00:49:50:0c}
command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install qemu-system-x86)"
for tool in cpio gzip; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
case "${IPN_VM_ACCEL:-tcg}" in
  tcg) accel_args=(-accel tcg -cpu max) ;;
  kvm) accel_args=(-accel kvm -cpu host) ;;
  *) die "IPN_VM_ACCEL must be tcg or kvm" ;;
esac

if [ $# -eq 3 ]; then
  imagedir=$3
else
  imagedir=${IPN_VM_CACHE:-/var/tmp/ipn-vm}
  "$script_dir/build-image.sh" "$imagedir"
fi
for f in vmlinuz initramfs.cpio.gz; do
  [ -r "$imagedir/$f" ] || die "$imagedir/$f missing or unreadable (run build-image.sh $imagedir)"
done

if [ -n "${IPN_VM_LOGDIR:-}" ]; then
  logdir=$IPN_VM_LOGDIR
  mkdir -p "$logdir"
  keep_logs=1
else
  logdir=$(mktemp -d "${TMPDIR:-/tmp}/ipn-vm-fetch.XXXXXX")
  keep_logs=0
fi
qemu_pid=""
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
  if [ -n "$qemu_pid" ]; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  if [ "$keep_logs" = 0 ]; then rm -rf "$logdir"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- the extra initramfs archive: /ipn-fetch-init and its udhcpc script -------
overlay=$logdir/overlay
mkdir -p "$overlay"
cat >"$overlay/ipn-fetch-init" <<'INIT'
#!/bin/sh
# /ipn-fetch-init: DHCP, then fetch ipn.fetch=URL (dhcp-fetch-test.sh).
PATH=/bin:/sbin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "IPN-INIT-START kernel $(uname -r)"
fail() {
  echo "IPN-FETCH-FAIL $*"
  ip addr
  ip route
  poweroff -f
  while :; do sleep 60; done
}
fetch=""
read -r cmdline </proc/cmdline
for arg in $cmdline; do
  case "$arg" in ipn.fetch=*) fetch=${arg#ipn.fetch=} ;; esac
done
[ -n "$fetch" ] || fail "no ipn.fetch= on the kernel command line"
for m in /lib/ipn-modules/*.ko; do
  [ -e "$m" ] && insmod "$m"
done
n=0
while [ ! -e /sys/class/net/eth0 ]; do
  n=$((n + 1))
  [ "$n" -le 100 ] || fail "no eth0"
  sleep 0.1
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -f -t 10 -T 2 -s /ipn-udhcpc.sh || fail "no DHCP lease"
# (no -T: busybox 1.35's wget segfaults with it; the host times the VM out)
wget -q -O /tmp/page "$fetch" || fail "wget $fetch failed"
echo "IPN-FETCH-BEGIN"
cat /tmp/page
echo
echo "IPN-FETCH-END"
echo "IPN-FETCH-OK"
sync
poweroff -f
while :; do sleep 60; done
INIT
cat >"$overlay/ipn-udhcpc.sh" <<'SCRIPT'
#!/bin/sh
# udhcpc's hook: configure the lease it got.
case "$1" in
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
      ip route replace default via "${router%% *}" dev "$interface"
    fi
    echo "IPN-DHCP-LEASE $ip/${mask:-24} router ${router:-none} dns ${dns:-none}"
    ;;
esac
SCRIPT
chmod 0755 "$overlay/ipn-fetch-init" "$overlay/ipn-udhcpc.sh"
initrd=$logdir/initramfs-fetch.cpio.gz
{
  cat "$imagedir/initramfs.cpio.gz"
  (cd "$overlay" && printf '%s\n' ipn-fetch-init ipn-udhcpc.sh \
    | cpio --quiet -o -H newc -R 0:0 | gzip -9n)
} >"$initrd"

# --- boot --------------------------------------------------------------------
serial=$logdir/serial.log
hostlog=$logdir/qemu.log
: >"$serial"
log "booting a VM (accel ${IPN_VM_ACCEL:-tcg}, mac $mac) on $url; it fetches $fetch"
# QEMU's option parser treats ',' as a separator: double it.
"$qemu" -nodefaults -no-user-config -display none -no-reboot \
  "${accel_args[@]}" -smp 1 -m "$mem" \
  -kernel "$imagedir/vmlinuz" -initrd "$initrd" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/ipn-fetch-init ipn.fetch=$fetch" \
  -serial "file:$serial" -monitor none \
  -netdev "vde,id=n0,sock=${url//,/,,}" \
  -device "virtio-net-pci,netdev=n0,mac=$mac,romfile=" \
  </dev/null >"$hostlog" 2>&1 &
qemu_pid=$!

start=$SECONDS
result=""
while [ -z "$result" ]; do
  if grep -q 'IPN-FETCH-OK' "$serial"; then
    result=ok
  elif grep -q 'IPN-FETCH-FAIL' "$serial"; then
    result="failed: $(grep -m1 -o 'IPN-FETCH-FAIL.*' "$serial" | tr -d '\r')"
  elif ! kill -0 "$qemu_pid" 2>/dev/null; then
    result="QEMU exited before a result"
  elif [ $((SECONDS - start)) -ge "$timeout_s" ]; then
    result="no result within ${timeout_s}s"
  else
    sleep 1
  fi
done

lease=$(grep -m1 -o 'IPN-DHCP-LEASE.*' "$serial" | tr -d '\r' || true)
[ -z "$lease" ] || log "${lease#IPN-DHCP-}"
if [ "$result" != ok ]; then
  keep_logs=1
  log "FAIL: $result after $((SECONDS - start))s"
  echo "----- QEMU ($hostlog) -----" >&2
  tail -n 20 "$hostlog" >&2 || true
  echo "----- serial console, last 40 lines ($serial) -----" >&2
  tail -n 40 "$serial" | tr -d '\r' >&2 || true
  log "logs kept in $logdir"
  exit 1
fi
log "fetched $fetch in $((SECONDS - start))s"
sed -n '/IPN-FETCH-BEGIN/,/IPN-FETCH-END/p' "$serial" | tr -d '\r' | sed '1d;$d'
